//! `Live.WatchQueue`: the live state as a gRPC server stream.

use super::{LiveHandle, follow};
use crate::shutdown::Shutdown;
use netwait_proto::v1 as pb;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

pub struct LiveService {
    live: LiveHandle,
    shutdown: Shutdown,
}

impl LiveService {
    pub fn new(live: LiveHandle, shutdown: Shutdown) -> Self {
        Self { live, shutdown }
    }
}

type Updates = Pin<Box<dyn Stream<Item = Result<pb::QueueUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl pb::live_server::Live for LiveService {
    type WatchQueueStream = Updates;

    async fn watch_queue(
        &self,
        request: Request<pb::WatchQueueRequest>,
    ) -> Result<Response<Self::WatchQueueStream>, Status> {
        let line = request.into_inner().line;
        if let Some(l) = &line {
            let latest = self.live.latest();
            if !latest.lines.iter().any(|x| &x.line == l) {
                let seen: Vec<&str> = latest.lines.iter().map(|x| x.line.as_str()).collect();
                return Err(Status::invalid_argument(format!(
                    "line: {l:.32?} is not a line seen (lines: {})",
                    seen.join(", ")
                )));
            }
        }
        let updates = follow(&self.live, self.shutdown.clone())
            .map_err(|full| Status::resource_exhausted(full.to_string()))?;
        let updates = ReceiverStream::new(updates);
        let stream =
            updates.map(move |(state, missed)| Ok(state.to_proto(line.as_deref(), missed)));
        Ok(Response::new(Box::pin(stream)))
    }
}
