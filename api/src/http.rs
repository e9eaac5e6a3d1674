//! The HTTP listener of `serve` (`--http-listen`), for integrators who cannot speak gRPC
//! and for scrapers: `POST /v1/events` and `POST /v1/cdrs` (push), `GET /v1/openapi.json`
//! (their description) and `GET /metrics` (Prometheus text). The one HTTP listener the
//! wallboard will share.
//!
//! A push request goes through the gRPC push's own path: its body is encoded by
//! [`encode_message`] (events) or the CDR decoder, committed by [`commit_chunks`], and
//! answered only once durable, with a result per line. Store errors map through the one
//! table ([`crate::state::store_status`], then [`http_status`]).

use crate::auth::{self, Denied, Role, Tokens};
use crate::push::{MAX_SOURCE_CHARS, checkpoint_if_due, commit_chunks, encode_message, publish};
use crate::server::Security;
use crate::state::AppState;
use crate::tls::TlsListener;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use netwait_aggregator::engine::EncodedChunk;
use netwait_aggregator::observe;
use netwait_aggregator::store::codec::Decoder;
use netwait_aggregator::store::record::Record;
use netwait_ingest::bom::UTF8_BOM;
use netwait_ingest::cdr;
use netwait_ingest::decoded::encode_units;
use netwait_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::Code;

/// The OpenAPI 3 description of the HTTP API, served at `/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("http/openapi.json");

/// Default largest request body (after gzip decompression too).
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// How the HTTP listener is run.
#[derive(Clone)]
pub struct HttpOptions {
    /// Largest request body, compressed and decompressed.
    pub max_body: usize,
    /// A clear token of both roles (`--http-token-file`, NETWAIT_HTTP_TOKEN).
    pub token: Option<String>,
    /// TLS, the tokens by role (see [`crate::auth`]).
    pub security: Security,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            token: None,
            security: Security::default(),
        }
    }
}

impl std::fmt::Debug for HttpOptions {
    // The token is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("max_body", &self.max_body)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("security", &self.security)
            .finish()
    }
}

struct Http {
    state: AppState,
    max_body: usize,
}

/// Serves the HTTP API on `listener` until `shutdown` resolves (then lets open requests
/// finish); TLS only when the options have it.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = options.security.tls.as_ref().map(|t| t.http());
    serve_app(listener, tls, router(state, options), shutdown).await
}

/// Serves only `GET /metrics` (read role), for a process that takes no push: `netwait
/// aggregate --metrics-listen` (its Kafka consumer lag, commits, rejects), and the api
/// role (`serve --clickhouse --http-listen`), with the wallboard when it keeps a `live`
/// state.
pub async fn serve_metrics(
    listener: TcpListener,
    security: Security,
    live: Option<(crate::live::LiveHandle, crate::shutdown::Shutdown)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = security.tls.as_ref().map(|t| t.http());
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            (security.tokens.clone(), Role::Read),
            require_role,
        ))
        .fallback(not_found);
    let app = match live {
        Some((live, stopping)) => app.merge(crate::live::wallboard::routes(
            live,
            stopping,
            security.tokens.clone(),
            security.tls.is_some(),
        )),
        None => app,
    };
    serve_app(listener, tls, app, shutdown).await
}

async fn serve_app(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            // `tap_io` gives the listener axum's peer-address `ConnectInfo`.
            let listener = TlsListener::new(listener, config)?.tap_io(|_| ());
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The routes (peer addresses come from `ConnectInfo<SocketAddr>`), in groups by the
/// role they need: a new route joins a group and so declares its role.
pub fn router(state: AppState, options: HttpOptions) -> Router {
    let mut tokens = (*options.security.tokens).clone();
    if let Some(t) = &options.token {
        tokens = tokens.with_clear_token(t, &[Role::Push, Role::Read]);
    }
    let tokens = Arc::new(tokens);
    let tls = options.security.tls.is_some();
    let live = state
        .live
        .clone()
        .map(|l| crate::live::wallboard::routes(l, state.shutdown.clone(), tokens.clone(), tls));
    let http = Arc::new(Http {
        state,
        max_body: options.max_body,
    });
    let push = Router::new()
        .route("/v1/events", post(push_events))
        .route("/v1/cdrs", post(push_cdrs));
    let read = Router::new().route("/metrics", get(metrics));
    // Open, as gRPC reflection is: the description of the API.
    let open = Router::new().route("/v1/openapi.json", get(openapi));
    let app = Router::new()
        .merge(guarded(push, &tokens, Role::Push))
        .merge(guarded(read, &tokens, Role::Read))
        .merge(open)
        .fallback(not_found)
        .with_state(http);
    // The wallboard's page is open, its live data are read routes (see its module).
    match live {
        Some(live) => app.merge(live),
        None => app,
    }
}

/// `routes`, each refused unless the request's bearer token has `role`.
fn guarded(routes: Router<Arc<Http>>, tokens: &Arc<Tokens>, role: Role) -> Router<Arc<Http>> {
    routes.route_layer(axum::middleware::from_fn_with_state(
        (tokens.clone(), role),
        require_role,
    ))
}

/// Refuses a request whose bearer token does not have `role` (401 / 403).
pub(crate) async fn require_role(
    State((tokens, role)): State<(Arc<Tokens>, Role)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let value = request.headers().get(header::AUTHORIZATION);
    match tokens.check(auth::bearer(value.map(|v| v.as_bytes())), role) {
        Ok(()) => next.run(request).await,
        Err(denied @ Denied::Unauthenticated) => {
            ApiError::new(StatusCode::UNAUTHORIZED, denied.message()).into_response()
        }
        Err(denied @ Denied::WrongRole(_)) => {
            ApiError::new(StatusCode::FORBIDDEN, denied.message()).into_response()
        }
    }
}

/// An error answer: a status and a JSON `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn too_large(max: usize, what: &str) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body {what} over the limit of {max} bytes (serve --http-max-body); split it into smaller requests"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.message,
            "status": self.status.as_u16(),
        });
        let mut response = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"netwait\""),
            );
        }
        response
    }
}

/// The HTTP status of a gRPC status code: store errors keep the meaning the one table
/// ([`crate::state::store_status`]) gives them (UNAVAILABLE: retry later = 503).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        Self::new(http_status(s.code()), s.message())
    }
}

/// Which lines a push answer lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Listed {
    /// Every line.
    #[default]
    All,
    /// Lines that were not accepted (duplicates and rejects).
    Problems,
    /// None: the totals only.
    None,
}

#[derive(Debug, Deserialize)]
struct PushParams {
    /// The name dead letters are kept under (default `http:<peer>`).
    source: Option<String>,
    #[serde(default)]
    results: Listed,
}

/// How a body is laid out (from its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Ndjson,
    JsonArray,
    Csv,
}

/// What a push endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Events,
    Cdrs,
}

fn layout(headers: &HeaderMap, endpoint: Endpoint) -> Result<Layout, ApiError> {
    let accepted = match endpoint {
        Endpoint::Events => "application/x-ndjson or application/json (an array)",
        Endpoint::Cdrs => "application/x-ndjson, application/json (an array) or text/csv",
    };
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{what}: send Content-Type {accepted}"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type"));
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Layout::Ndjson),
        "application/json" => Ok(Layout::JsonArray),
        "text/csv" if endpoint == Endpoint::Cdrs => Ok(Layout::Csv),
        _ => Err(unsupported(&format!(
            "Content-Type {:?} is not taken here",
            truncate(&mime, 64)
        ))),
    }
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Whether the body is gzip-compressed (`Content-Encoding`).
fn gzipped(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        for coding in value.to_str().unwrap_or("?").split(',') {
            match coding.trim().to_ascii_lowercase().as_str() {
                "identity" | "" => {}
                "gzip" | "x-gzip" if !gzip => gzip = true,
                other => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "Content-Encoding {:?} is not taken: send the body plain or gzip-compressed once",
                            truncate(other, 64)
                        ),
                    ));
                }
            }
        }
    }
    Ok(gzip)
}

/// The body, at most `max` bytes (a larger `Content-Length` is refused before reading).
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::too_large(max, "(Content-Length)"));
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::too_large(max, "read"))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// A gzip body decompressed, at most `max` bytes of it.
fn gunzip(bytes: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max));
    flate2::read::MultiGzDecoder::new(bytes)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "Content-Encoding gzip: the body does not decompress: {e}"
            ))
        })?;
    if out.len() > max {
        return Err(ApiError::too_large(max, "decompressed"));
    }
    Ok(out)
}

/// A JSON array body as NDJSON: one line per element, in order (element N is line N).
/// An element's line ends can only be whitespace between its tokens (JSON strings hold
/// none), so they become spaces; each element is otherwise kept byte for byte, and
/// validated as an NDJSON line is.
fn array_to_lines(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the application/json body is not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request(format!(
            "the application/json body must be one JSON array of objects: {e}"
        ))
    })?;
    let mut out = Vec::with_capacity(body.len());
    for item in items {
        out.extend(item.get().bytes().map(|b| match b {
            b'\n' | b'\r' => b' ',
            b => b,
        }));
        out.push(b'\n');
    }
    Ok(out)
}

/// What became of one input line before the commit decides duplicates.
enum Slot {
    /// Its events: `count` event records from the `first`.
    Events {
        first: usize,
        count: usize,
    },
    Rejected {
        code: String,
        reason: String,
    },
}

/// A validated request, ready to commit.
struct Encoded {
    chunks: Vec<EncodedChunk>,
    /// Per line, in order.
    slots: Vec<(u64, Slot)>,
}

fn internal(what: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, what.to_owned())
}

/// The records of `chunks`, in order.
fn records(chunks: &[EncodedChunk]) -> impl Iterator<Item = Result<Record<'_>, ApiError>> {
    chunks.iter().flat_map(|c| {
        Decoder::new(&c.bytes).map(|r| r.map_err(|_| internal("an encoded record does not decode")))
    })
}

/// Events: each line is one record, an event or a dead letter.
fn encode_events(lines: Vec<u8>, source: &str, state: &AppState) -> Result<Encoded, ApiError> {
    let msg = pb::PushRequest {
        ndjson_lines: if lines.is_empty() {
            vec![]
        } else {
            vec![lines]
        },
        source: source.to_owned(),
        first_position: 1,
        ..Default::default()
    };
    let chunk = encode_message(&msg, source, &state.pseudo, &state.hasher)?;
    let mut slots = Vec::new();
    let (mut events, mut line) = (0, 1);
    for record in records(std::slice::from_ref(&chunk)) {
        match record? {
            Record::Event(_) => {
                slots.push((
                    line,
                    Slot::Events {
                        first: events,
                        count: 1,
                    },
                ));
                events += 1;
                line += 1;
            }
            Record::DeadLetter(d) => {
                slots.push((d.position, rejected(&d)));
                line = d.position + 1;
            }
            // A pushed message carries no source positions.
            Record::Positions(_) => {}
        }
    }
    Ok(Encoded {
        chunks: vec![chunk],
        slots,
    })
}

fn rejected(d: &netwait_aggregator::store::record::DeadLetter<'_>) -> Slot {
    Slot::Rejected {
        code: d.code.clone().into_owned(),
        reason: d.reason.clone().into_owned(),
    }
}

/// Call records: each record (a line, a CSV row) becomes its events or one dead letter.
fn encode_cdrs(
    body: &[u8],
    layout: Layout,
    source: &str,
    state: &AppState,
) -> Result<Encoded, ApiError> {
    let units = match layout {
        Layout::Csv => cdr::decode_csv(body, &state.pseudo),
        Layout::Ndjson | Layout::JsonArray => cdr::decode_ndjson(body, &state.pseudo),
    };
    let chunks = encode_units(&units, body, source, &state.pseudo, &state.hasher);
    let mut slots = Vec::with_capacity(units.len());
    let mut recs = records(&chunks).peekable();
    let mut events = 0;
    for unit in &units {
        let slot = match recs.peek() {
            Some(Ok(Record::DeadLetter(d))) => {
                let slot = rejected(d);
                recs.next();
                slot
            }
            _ => {
                let count = unit.decoded.as_ref().map_or(0, Vec::len);
                for _ in 0..count {
                    match recs.next() {
                        Some(Ok(Record::Event(_))) => {}
                        Some(Err(e)) => return Err(e),
                        _ => return Err(internal("a call record's events are not where expected")),
                    }
                }
                let slot = Slot::Events {
                    first: events,
                    count,
                };
                events += count;
                slot
            }
        };
        slots.push((unit.line, slot));
    }
    drop(recs);
    Ok(Encoded { chunks, slots })
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    accepted: u64,
    duplicate: u64,
    rejected: u64,
}

#[derive(Debug, Serialize)]
struct LineResult {
    line: u64,
    status: &'static str,
    /// Call records: the events it made that were new.
    #[serde(skip_serializing_if = "Option::is_none")]
    new_events: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct PushReply {
    source: String,
    /// Input lines (events) or records (call records) read.
    lines: u64,
    /// Per line: accepted (something new), duplicate (nothing new), rejected.
    accepted: u64,
    duplicate: u64,
    rejected: u64,
    /// Per event: what the commit kept (call records make several events each).
    events: Counts,
    results: Vec<LineResult>,
}

async fn push_events(
    State(http): State<Arc<Http>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<PushParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    push(http, Endpoint::Events, peer, params, headers, body).await
}

async fn push_cdrs(
    State(http): State<Arc<Http>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<PushParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    push(http, Endpoint::Cdrs, peer, params, headers, body).await
}

async fn push(
    http: Arc<Http>,
    endpoint: Endpoint,
    peer: SocketAddr,
    params: PushParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let layout = layout(&headers, endpoint)?;
    let gzip = gzipped(&headers)?;
    let source = match params.source {
        Some(s) if s.is_empty() => return Err(ApiError::bad_request("source must not be empty")),
        Some(s) if s.chars().count() > MAX_SOURCE_CHARS => {
            return Err(ApiError::bad_request(format!(
                "source must be at most {MAX_SOURCE_CHARS} characters"
            )));
        }
        Some(s) => s,
        None => format!("http:{peer}"),
    };
    let max = http.max_body;
    let raw = read_body(body, &headers, max).await?;
    if let Some(producer) = http.state.forward.clone() {
        return forward(&producer, endpoint, layout, source, gzip, raw, max).await;
    }
    let state = http.state.clone();
    let name = source.clone();
    let encoded = tokio::task::spawn_blocking(move || -> Result<Encoded, ApiError> {
        let body = if gzip { gunzip(&raw, max)? } else { raw };
        match (endpoint, layout) {
            (Endpoint::Events, Layout::JsonArray) => {
                encode_events(array_to_lines(&body)?, &name, &state)
            }
            (Endpoint::Events, _) => encode_events(body, &name, &state),
            (Endpoint::Cdrs, Layout::JsonArray) => {
                encode_cdrs(&array_to_lines(&body)?, layout, &name, &state)
            }
            (Endpoint::Cdrs, _) => encode_cdrs(&body, layout, &name, &state),
        }
    })
    .await
    .map_err(|e| internal(&format!("validation task failed: {e}")))??;
    let Encoded { chunks, slots } = encoded;
    let (sum, flags) = commit_chunks(&http.state, chunks).await?;
    checkpoint_if_due(&http.state).await?;
    observe::emit(observe::PushCommitted {
        source: "http",
        accepted: sum.accepted,
        duplicate: sum.duplicate,
        rejected: sum.rejected,
        messages: 1,
    });
    let reply = answer(source, endpoint, params.results, slots, &flags, sum)?;
    Ok(json_response(StatusCode::OK, &reply))
}

/// The ingest role: the body's events are published to Kafka (see [`publish`]); call
/// records are taken by an embedded server or the aggregator's own inputs only.
async fn forward(
    producer: &netwait_ingest::kafka::producer::EventProducer,
    endpoint: Endpoint,
    layout: Layout,
    source: String,
    gzip: bool,
    raw: Vec<u8>,
    max: usize,
) -> Result<Response, ApiError> {
    if endpoint == Endpoint::Cdrs {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "call records are not taken by the ingest role (serve --kafka): push events",
        ));
    }
    let lines = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>, ApiError> {
        let body = if gzip { gunzip(&raw, max)? } else { raw };
        let body = match layout {
            Layout::JsonArray => array_to_lines(&body)?,
            _ => body,
        };
        let msg = pb::PushRequest {
            ndjson_lines: if body.is_empty() { vec![] } else { vec![body] },
            ..Default::default()
        };
        Ok(netwait_ingest::kafka::producer::message_lines(&msg))
    })
    .await
    .map_err(|e| internal(&format!("reading task failed: {e}")))??;
    let sum = publish(producer, &lines).await?;
    let reply = PushReply {
        source,
        lines: lines.len() as u64,
        accepted: sum.accepted,
        duplicate: 0,
        rejected: 0,
        events: Counts {
            accepted: sum.accepted,
            duplicate: 0,
            rejected: 0,
        },
        results: Vec::new(),
    };
    Ok(json_response(StatusCode::OK, &reply))
}

/// A JSON answer (axum's `json` feature would add a dependency for this alone).
fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer: {e}"),
        )
            .into_response(),
    }
}

/// The answer of a committed push: per line, from its slot and the commit's flags.
fn answer(
    source: String,
    endpoint: Endpoint,
    listed: Listed,
    slots: Vec<(u64, Slot)>,
    flags: &[bool],
    sum: netwait_aggregator::engine::IngestSummary,
) -> Result<PushReply, ApiError> {
    let mut reply = PushReply {
        source,
        lines: slots.len() as u64,
        accepted: 0,
        duplicate: 0,
        rejected: 0,
        events: Counts {
            accepted: sum.accepted,
            duplicate: sum.duplicate,
            rejected: sum.rejected,
        },
        results: Vec::new(),
    };
    for (line, slot) in slots {
        let result = match slot {
            Slot::Events { first, count } => {
                let new = flags
                    .get(first..first + count)
                    .ok_or_else(|| internal("one dedupe flag per event expected"))?
                    .iter()
                    .filter(|&&f| f)
                    .count();
                let status = if new > 0 {
                    reply.accepted += 1;
                    "accepted"
                } else {
                    reply.duplicate += 1;
                    "duplicate"
                };
                LineResult {
                    line,
                    status,
                    new_events: (endpoint == Endpoint::Cdrs).then_some(new),
                    code: None,
                    reason: None,
                }
            }
            Slot::Rejected { code, reason } => {
                reply.rejected += 1;
                LineResult {
                    line,
                    status: "rejected",
                    new_events: None,
                    code: Some(code),
                    reason: Some(reason),
                }
            }
        };
        let keep = match listed {
            Listed::All => true,
            Listed::Problems => result.status != "accepted",
            Listed::None => false,
        };
        if keep {
            reply.results.push(result);
        }
    }
    Ok(reply)
}

async fn openapi() -> Result<Response, ApiError> {
    Ok(([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response())
}

async fn metrics() -> Result<Response, ApiError> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        observe::METRICS.render(),
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: POST /v1/events, POST /v1/cdrs, GET /v1/openapi.json, GET /metrics",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_parses_and_lists_the_endpoints() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
            "{}",
            doc["openapi"]
        );
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            paths,
            ["/metrics", "/v1/cdrs", "/v1/events", "/v1/openapi.json"]
        );
        for push in ["/v1/events", "/v1/cdrs"] {
            let op = &doc["paths"][push]["post"];
            for status in ["200", "400", "401", "413", "415", "503"] {
                assert!(op["responses"][status].is_object(), "{push} {status}");
            }
        }
    }

    #[test]
    fn a_json_array_becomes_one_line_per_element_kept_byte_for_byte() {
        let body = b"[{\"a\":1,\n \"a\":2}, {\"b\":\"x y\"},3]";
        let lines = array_to_lines(body).expect("an array");
        assert_eq!(lines, b"{\"a\":1,  \"a\":2}\n{\"b\":\"x y\"}\n3\n");
        let err = array_to_lines(b"{\"a\":1}").expect_err("not an array");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("JSON array"), "{}", err.message);
        assert!(array_to_lines(b"[1,").is_err());
    }

    #[test]
    fn gzip_is_capped_after_decompression() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'x'; 10_000]).expect("write");
        let gz = enc.finish().expect("finish");
        assert_eq!(gunzip(&gz, 10_000).expect("fits").len(), 10_000);
        let err = gunzip(&gz, 9_999).expect_err("over");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let err = gunzip(b"not gzip", 100).expect_err("garbage");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn store_errors_keep_the_meaning_of_the_one_table() {
        use netwait_aggregator::store::StoreError;
        let io = StoreError::io(
            std::path::Path::new("events.log"),
            std::io::Error::other("no space left on device"),
        );
        let err = ApiError::from(crate::state::store_status(&io));
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.message.contains("no space left"), "{}", err.message);
        let err = ApiError::from(crate::state::store_status(&StoreError::ReadOnly));
        assert_eq!(err.status, StatusCode::CONFLICT);
    }

    #[test]
    fn content_types_and_encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(
            layout(&h, Endpoint::Events).expect_err("none").status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson; charset=utf-8"),
        );
        assert_eq!(
            layout(&h, Endpoint::Events).expect("ndjson"),
            Layout::Ndjson
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        assert!(layout(&h, Endpoint::Events).is_err());
        assert_eq!(layout(&h, Endpoint::Cdrs).expect("csv"), Layout::Csv);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(gzipped(&h).expect("gzip"));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(gzipped(&h).is_err());
    }
}
