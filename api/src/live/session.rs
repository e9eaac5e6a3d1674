//! Wallboard sessions: a browser's `EventSource` cannot send an `Authorization` header,
//! so with tokens on, the page asks for a read token once and POSTs it (in the header,
//! never in a URL) to `/v1/live/session`; the answer sets a cookie holding a random
//! session id (256 bits from the kernel), `HttpOnly` (the page's script never sees it),
//! `SameSite=Strict`, `Secure` under TLS, scoped to `/v1/live`, valid [`SESSION_TTL`].
//! The server keeps only the ids' BLAKE3 hashes, in memory: a restart asks again. Neither
//! the token nor the id is ever logged.

use netwait_aggregator::random::{hex, random_bytes};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "netwait_wallboard";

/// How long a session lasts (a shift and then some; the page asks again after).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// At most this many sessions are kept; the oldest go first.
const MAX_SESSIONS: usize = 1024;

/// The open sessions, by the hash of their id.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Sessions {
    /// Opens a session: its id (64 hex digits), for the cookie.
    pub fn open(&self) -> std::io::Result<String> {
        let hex = hex(&random_bytes::<32>()?);
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, until| *until > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(*blake3::hash(hex.as_bytes()).as_bytes(), now + SESSION_TTL);
        Ok(hex)
    }

    /// Whether `id` is an open session's.
    pub fn valid(&self, id: &str) -> bool {
        let key = *blake3::hash(id.as_bytes()).as_bytes();
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&key).is_some_and(|until| *until > Instant::now())
    }

    /// The session id of a request's `Cookie` headers, if it carries one.
    pub fn from_cookies<'a>(headers: impl Iterator<Item = &'a [u8]>) -> Option<String> {
        headers
            .filter_map(|h| std::str::from_utf8(h).ok())
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_owned())
    }

    /// The `Set-Cookie` value for session `id`.
    pub fn set_cookie(id: &str, tls: bool) -> String {
        let secure = if tls { "; Secure" } else { "" };
        format!(
            "{COOKIE}={id}; Path=/v1/live; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            SESSION_TTL.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_kept_hashed_and_found_in_cookies() {
        let s = Sessions::default();
        let a = s.open().expect("urandom");
        let b = s.open().expect("urandom");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(s.valid(&a) && s.valid(&b));
        assert!(!s.valid("00"));
        let header = format!("theme=dark; {COOKIE}={a}; x=y");
        let found = Sessions::from_cookies([header.as_bytes()].into_iter());
        assert_eq!(found.as_deref(), Some(a.as_str()));
        assert_eq!(Sessions::from_cookies(["x=y".as_bytes()].into_iter()), None);
        let cookie = Sessions::set_cookie(&a, true);
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("Secure"),
            "{cookie}"
        );
        assert!(!Sessions::set_cookie(&a, false).contains("Secure"));
        // Only hashes are kept.
        let open = s.open.lock().expect("lock");
        assert!(open.contains_key(blake3::hash(a.as_bytes()).as_bytes()));
    }
}
