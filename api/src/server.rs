//! Assembles the gRPC server in one place: services, health, reflection, limits and
//! graceful shutdown.

use crate::live::grpc::LiveService;
use crate::push::IngestService;
use crate::state::AppState;
use crate::stats::StatsService;
use netwait_proto::v1::ingest_server::IngestServer;
use netwait_proto::v1::live_server::LiveServer;
use netwait_proto::v1::stats_server::StatsServer;
use std::future::Future;
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

/// Limits of a server's streams.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// After a stop signal, how long open streams may go on before they are closed.
    pub drain_timeout: Duration,
    /// A push stream with no message for this long is ended.
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
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
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(netwait_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Older clients (grpcurl before 1.9, many BI connectors) still ask v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(netwait_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let stats = StatsServer::new(StatsService::new(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let live = state
        .live
        .clone()
        .map(|l| LiveServer::new(LiveService::new(l, state.shutdown.clone())));
    let ingest = IngestServer::new(IngestService::new(state, options.idle_timeout))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
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

/// Accepted connections with `TCP_NODELAY`: a reply is a few small HTTP/2 frames, which
/// Nagle's algorithm would hold back until the client's delayed ACK (about 40 ms).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
