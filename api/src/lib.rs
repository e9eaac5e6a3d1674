//! netwait's gRPC API (tonic): Table 1, the SLA year view and the volume check over the
//! engine, client-streaming push ingest, plus the standard health and reflection services.

pub mod auth;
pub mod availability;
pub mod convert;
pub mod http;
pub mod live;
pub mod push;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod stats;
#[cfg(test)]
mod test_server;
pub mod tls;
