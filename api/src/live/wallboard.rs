//! The wallboard on the HTTP listener: the page at `/` (its script and style embedded in
//! the binary: no CDN, no network fetch), the live state as JSON at `/v1/live`, and its
//! updates as server-sent events at `/v1/live/events`; `POST /v1/live/session` opens a
//! wallboard session for a browser (see [`super::session`]).

use super::session::Sessions;
use super::{LiveHandle, follow};
use crate::auth::{Role, Tokens};
use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const PAGE: &str = include_str!("wallboard/index.html");
const SCRIPT: &str = include_str!("wallboard/wallboard.js");
const STYLE: &str = include_str!("wallboard/wallboard.css");

struct Wall {
    live: LiveHandle,
    shutdown: Shutdown,
    tokens: Arc<Tokens>,
    sessions: Sessions,
    /// The listener serves TLS (the session cookie is then `Secure`).
    tls: bool,
}

/// The live side's routes: the page and its assets are open (they hold no data); the
/// live data need the read role, by bearer token or by a wallboard session (see
/// [`super::session`]), which `POST /v1/live/session` opens for a read token.
pub fn routes(live: LiveHandle, shutdown: Shutdown, tokens: Arc<Tokens>, tls: bool) -> Router {
    let wall = Arc::new(Wall {
        live,
        shutdown,
        tokens: tokens.clone(),
        sessions: Sessions::default(),
        tls,
    });
    let open = Router::new()
        .route("/", get(page))
        .route("/wallboard.js", get(script))
        .route("/wallboard.css", get(style));
    let session = Router::new()
        .route("/v1/live/session", post(open_session))
        .route_layer(from_fn_with_state(
            (tokens, Role::Read),
            crate::http::require_role,
        ));
    let data = Router::new()
        .route("/v1/live", get(latest))
        .route("/v1/live/events", get(events))
        .route_layer(from_fn_with_state(wall.clone(), read_or_session));
    open.merge(session).merge(data).with_state(wall)
}

/// A valid wallboard session cookie, else a read bearer token.
async fn read_or_session(State(wall): State<Arc<Wall>>, request: Request, next: Next) -> Response {
    let session = {
        let cookies = request.headers().get_all(header::COOKIE);
        Sessions::from_cookies(cookies.iter().map(|v| v.as_bytes()))
    };
    if session.is_some_and(|id| wall.sessions.valid(&id)) {
        return next.run(request).await;
    }
    crate::http::require_role(State((wall.tokens.clone(), Role::Read)), request, next).await
}

/// Opens a wallboard session for the read token the request carries.
async fn open_session(State(wall): State<Arc<Wall>>) -> Response {
    match wall.sessions.open() {
        Ok(id) => (
            StatusCode::NO_CONTENT,
            [
                (header::SET_COOKIE, Sessions::set_cookie(&id, wall.tls)),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot open a wallboard session (no random source)");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "no session could be opened",
            )
                .into_response()
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn json(state: &super::LiveState) -> String {
    // Plain data: serializing cannot fail.
    serde_json::to_string(state).unwrap_or_default()
}

async fn latest(State(wall): State<Arc<Wall>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json(&wall.live.latest()),
    )
        .into_response()
}

async fn events(State(wall): State<Arc<Wall>>) -> Response {
    let updates = match follow(&wall.live, wall.shutdown.clone()) {
        Ok(updates) => ReceiverStream::new(updates),
        Err(full) => {
            let answer = serde_json::json!({ "error": full.to_string(), "status": 503 });
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::RETRY_AFTER, "5"),
                ],
                answer.to_string(),
            )
                .into_response();
        }
    };
    let stream = updates.map(|(state, _missed)| {
        let event = Event::default()
            .id(state.seq.to_string())
            .data(json(&state));
        Ok::<_, Infallible>(event)
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
