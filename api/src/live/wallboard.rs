//! The wallboard on the HTTP listener: the page at `/` (its script and style embedded in
//! the binary: no CDN, no network fetch), the live state as JSON at `/v1/live`, and its
//! updates as server-sent events at `/v1/live/events`. [`routes`] holds every route of
//! the live side, so one layer (authentication) can wrap them all.

use super::{LiveHandle, follow};
use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
}

/// The live side's routes.
pub fn routes(live: LiveHandle, shutdown: Shutdown) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/wallboard.js", get(script))
        .route("/wallboard.css", get(style))
        .route("/v1/live", get(latest))
        .route("/v1/live/events", get(events))
        .with_state(Arc::new(Wall { live, shutdown }))
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
    let updates = ReceiverStream::new(follow(&wall.live, wall.shutdown.clone()));
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
