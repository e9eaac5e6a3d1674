//! Assembles the gRPC server in one place: services, health, reflection, limits and
//! graceful shutdown.

use crate::push::IngestService;
use crate::state::AppState;
use crate::stats::StatsService;
use netwait_proto::v1::ingest_server::IngestServer;
use netwait_proto::v1::stats_server::StatsServer;
use std::future::Future;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Largest accepted message: a push message of many lines.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves until `shutdown` resolves, then drains in-flight calls and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
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
    let ingest =
        IngestServer::new(IngestService::new(state)).max_decoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(stats)
        .add_service(ingest)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await?;
    Ok(())
}

/// Accepted connections with `TCP_NODELAY`: a reply is a few small HTTP/2 frames, which
/// Nagle's algorithm would hold back until the client's delayed ACK (about 40 ms).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
