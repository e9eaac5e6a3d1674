//! Bearer tokens with roles, for both listeners. A token is configured only as its hash
//! (BLAKE3, hex: `netwait token hash` prints one), compared in constant time, and never
//! logged. What a request needs is decided in one place per listener: gRPC by the path
//! prefix of the method ([`grpc_role`]: a new service is `read` unless listed), HTTP by
//! the route group ([`crate::http`] declares each group's role).

use axum::http;
use constant_time_eq::constant_time_eq_32;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ingest: the `Ingest` service, `POST /v1/events` and `/v1/cdrs`.
    Push,
    /// Everything else: stats, live views, the wallboard, `/metrics`.
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Read => "read",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("token hash {0:.16}…: expected 64 hex digits (netwait token hash prints one)")]
    BadHash(String),
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No bearer token, or one that is not configured.
    Unauthenticated,
    /// A valid token of another role.
    WrongRole(Role),
}

impl Denied {
    pub fn message(self) -> String {
        match self {
            Self::Unauthenticated => {
                "a valid bearer token is required: send authorization: Bearer <token>".into()
            }
            Self::WrongRole(r) => format!(
                "this token may not do this: a {} token is needed",
                r.as_str()
            ),
        }
    }
}

/// The configured token hashes by role. Empty: authentication is off.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    hashes: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for Tokens {
    // Hashes are not secrets, but nothing about tokens is printed beyond their count.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.hashes.len())
    }
}

/// The hash of a token as configured: BLAKE3 of its bytes, 64 lower-case hex digits.
pub fn hash_hex(token: &str) -> String {
    blake3::hash(token.trim().as_bytes()).to_hex().to_string()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

impl Tokens {
    /// From the configured hex hashes of each role.
    pub fn from_hashes(push: &[String], read: &[String]) -> Result<Self, AuthError> {
        let mut hashes = Vec::new();
        for (list, role) in [(push, Role::Push), (read, Role::Read)] {
            for h in list {
                let bytes = unhex(h).ok_or_else(|| AuthError::BadHash(h.clone()))?;
                hashes.push((bytes, role));
            }
        }
        Ok(Self { hashes })
    }

    /// Adds a clear token (read from a file or the environment: the older
    /// `--http-token-file`) with the given roles.
    pub fn with_clear_token(mut self, token: &str, roles: &[Role]) -> Self {
        let hash = *blake3::hash(token.trim().as_bytes()).as_bytes();
        self.hashes.extend(roles.iter().map(|&r| (hash, r)));
        self
    }

    /// Whether any token is configured (otherwise every request is let through).
    pub fn enabled(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether `bearer` (the token a request carries, if any) may act as `role`. Every
    /// configured hash is compared, in constant time, whatever matches.
    pub fn check(&self, bearer: Option<&str>, role: Role) -> Result<(), Denied> {
        if !self.enabled() {
            return Ok(());
        }
        let Some(token) = bearer else {
            return Err(Denied::Unauthenticated);
        };
        let given = blake3::hash(token.trim().as_bytes());
        let (mut known, mut allowed) = (false, false);
        for (hash, r) in &self.hashes {
            let same = constant_time_eq_32(given.as_bytes(), hash);
            known |= same;
            allowed |= same & (*r == role);
        }
        match (known, allowed) {
            (_, true) => Ok(()),
            (true, false) => Err(Denied::WrongRole(role)),
            (false, _) => Err(Denied::Unauthenticated),
        }
    }
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer(value: Option<&[u8]>) -> Option<&str> {
    let text = std::str::from_utf8(value?).ok()?;
    let (scheme, token) = text.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The role a gRPC method needs, by its path (`/package.Service/Method`); `None` for
/// the services every client may reach without a token: health and reflection.
pub fn grpc_role(path: &str) -> Option<Role> {
    const OPEN: [&str; 3] = [
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
    ];
    if OPEN.iter().any(|p| path.starts_with(p)) {
        None
    } else if path.starts_with("/netwait.v1.Ingest/") {
        Some(Role::Push)
    } else {
        Some(Role::Read)
    }
}

/// The tower layer of the gRPC server that checks every call's token ([`grpc_role`]).
#[derive(Debug, Clone)]
pub struct GrpcAuthLayer {
    tokens: Arc<Tokens>,
}

impl GrpcAuthLayer {
    pub fn new(tokens: Arc<Tokens>) -> Self {
        Self { tokens }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let verdict = match grpc_role(req.uri().path()) {
            None => Ok(()),
            Some(role) => {
                let value = req.headers().get(http::header::AUTHORIZATION);
                self.tokens.check(bearer(value.map(|v| v.as_bytes())), role)
            }
        };
        match verdict {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(denied) => {
                let status = match denied {
                    Denied::Unauthenticated => tonic::Status::unauthenticated(denied.message()),
                    Denied::WrongRole(_) => tonic::Status::permission_denied(denied.message()),
                };
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_kept_apart_and_unknown_tokens_are_unauthenticated() {
        let t =
            Tokens::from_hashes(&[hash_hex("p-token")], &[hash_hex("r-token")]).expect("hashes");
        assert_eq!(t.check(Some("p-token"), Role::Push), Ok(()));
        assert_eq!(t.check(Some("r-token"), Role::Read), Ok(()));
        assert_eq!(
            t.check(Some("p-token"), Role::Read),
            Err(Denied::WrongRole(Role::Read))
        );
        assert_eq!(
            t.check(Some("r-token"), Role::Push),
            Err(Denied::WrongRole(Role::Push))
        );
        assert_eq!(
            t.check(Some("nope"), Role::Read),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(t.check(None, Role::Read), Err(Denied::Unauthenticated));
        assert_eq!(Tokens::default().check(None, Role::Push), Ok(()));
        assert!(Tokens::from_hashes(&["abc".into()], &[]).is_err());
        assert!(!format!("{t:?}").contains(&hash_hex("p-token")));
    }

    #[test]
    fn bearer_headers_and_grpc_paths() {
        assert_eq!(bearer(Some(b"Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some(b"bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some(b"Basic abc")), None);
        assert_eq!(bearer(Some(b"Bearer ")), None);
        assert_eq!(bearer(None), None);
        assert_eq!(grpc_role("/netwait.v1.Ingest/Push"), Some(Role::Push));
        assert_eq!(grpc_role("/netwait.v1.Stats/GetTable1"), Some(Role::Read));
        assert_eq!(grpc_role("/netwait.v1.Live/WatchQueue"), Some(Role::Read));
        assert_eq!(grpc_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            grpc_role("/grpc.reflection.v1alpha.ServerReflection/X"),
            None
        );
    }
}
