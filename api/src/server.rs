//! Assembles the gRPC server in one place: services, health, reflection, limits and
//! graceful shutdown.

use crate::auth::{GrpcAuthLayer, Tokens};
use crate::live::LiveHandle;
use crate::live::grpc::LiveService;
use crate::push::IngestService;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use crate::stats::StatsService;
use crate::tls::TlsIdentity;
use netwait_proto::v1::ingest_server::IngestServer;
use netwait_proto::v1::live_server::LiveServer;
use netwait_proto::v1::stats_server::StatsServer;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Largest accepted message: a push message of many lines.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Default limit of concurrent streams (calls) on one connection.
pub const DEFAULT_MAX_STREAMS: u32 = 256;

/// Limits of a server's streams.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// After a stop signal, how long open streams may go on before they are closed.
    pub drain_timeout: Duration,
    /// A push stream with no message for this long is ended.
    pub idle_timeout: Duration,
    pub security: Security,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            security: Security::default(),
        }
    }
}

/// TLS, tokens and limits, shared by the gRPC and HTTP listeners.
#[derive(Debug, Clone)]
pub struct Security {
    /// Serve TLS only (plain-text clients cannot connect).
    pub tls: Option<TlsIdentity>,
    /// The bearer tokens by role (none configured: every call is let through).
    pub tokens: Arc<Tokens>,
    /// Concurrent streams on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            tls: None,
            tokens: Arc::default(),
            max_concurrent_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// Serves until `shutdown` resolves, then waits for open connections to end (see
/// [`crate::shutdown`] for the bounded version).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    state.availability.publish().await;
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(state.availability.reporter()),
    );
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    let stats = StatsServer::new(StatsService::new(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let live = state
        .live
        .clone()
        .map(|l| LiveServer::new(LiveService::new(l, state.shutdown.clone())));
    let ingest = IngestServer::new(IngestService::new(state, options.idle_timeout))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let security = options.security;
    server_builder(&security)?
        .layer(GrpcAuthLayer::new(security.tokens.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(stats)
        .add_service(ingest)
        .add_optional_service(live)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await?;
    Ok(())
}

/// The reflection services, v1 and v1alpha (older clients, grpcurl before 1.9 and many
/// BI connectors, still ask v1alpha).
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(netwait_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// The api role: the Stats service (with health and reflection), on reports that are not
/// the embedded engine's (a ClickHouse database: `serve --clickhouse`), and the live
/// stream when the role keeps a live state (`--kafka`: see
/// [`crate::live::follower`]); serves until `shutdown` resolves (live streams end once
/// `live`'s shutdown is draining).
pub async fn serve_stats(
    listener: TcpListener,
    stats: StatsService,
    live: Option<(LiveHandle, Shutdown)>,
    security: Security,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_serving::<StatsServer<StatsService>>().await;
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    let stats = StatsServer::new(stats).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let live = live.map(|(l, s)| LiveServer::new(LiveService::new(l, s)));
    server_builder(&security)?
        .layer(GrpcAuthLayer::new(security.tokens.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(stats)
        .add_optional_service(live)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await?;
    Ok(())
}

/// A server with the TLS and stream limit of `security` (its tokens are a layer).
fn server_builder(security: &Security) -> Result<tonic::transport::Server, ServeError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &security.tls {
        builder = builder.tls_config(tls.grpc())?;
    }
    Ok(builder.max_concurrent_streams(security.max_concurrent_streams))
}

/// Accepted connections with `TCP_NODELAY`: a reply is a few small HTTP/2 frames, which
/// Nagle's algorithm would hold back until the client's delayed ACK (about 40 ms).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
