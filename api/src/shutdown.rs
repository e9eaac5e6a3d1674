//! Stopping `serve`: on the first signal, no new connections and health `NOT_SERVING`;
//! open streams get a bounded drain, then are closed (each push client is told what was
//! committed); a second signal stops at once.

use crate::server::{ServeError, ServeOptions, serve};
use crate::state::AppState;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How long the server waits for connections to close once their streams are closed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where a stopping server is; only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// No new connections; open streams may finish.
    Draining,
    /// Open streams are closed now.
    Closing,
}

/// The phase, shared by the server and its stream handlers.
#[derive(Clone)]
pub struct Shutdown {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Running)),
        }
    }
}

impl Shutdown {
    /// Moves to `phase` (never back).
    pub fn enter(&self, phase: Phase) {
        self.phase.send_if_modified(|p| {
            let later = phase > *p;
            if later {
                *p = phase;
            }
            later
        });
    }

    /// Resolves once `phase` (or a later one) is reached.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.subscribe();
        // The sender lives in `self`: waiting cannot fail.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

/// How a server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection ended (within the drain, or closed after it).
    Drained,
    /// A second signal, or connections that outlived their closing: stopped at once.
    Forced,
}

/// Serves until a signal arrives on `signals`, then stops as the module says.
pub async fn serve_until_signalled(
    listener: TcpListener,
    state: AppState,
    options: ServeOptions,
    signals: &mut mpsc::Receiver<()>,
) -> Result<Stopped, ServeError> {
    let shutdown = state.shutdown.clone();
    let availability = state.availability.clone();
    let drain_timeout = options.drain_timeout;
    let server = serve(listener, state, options, shutdown.reached(Phase::Draining));
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return r.map(|()| Stopped::Drained),
        Some(()) = signals.recv() => {}
    }
    tracing::info!(
        drain_s = drain_timeout.as_secs_f64(),
        "stopping: no new connections, open streams may finish"
    );
    availability.shutting_down().await;
    shutdown.enter(Phase::Draining);
    tokio::select! {
        r = &mut server => return r.map(|()| Stopped::Drained),
        () = tokio::time::sleep(drain_timeout) => {}
        Some(()) = signals.recv() => return Ok(Stopped::Forced),
    }
    tracing::warn!("drain time over: closing the open streams");
    shutdown.enter(Phase::Closing);
    tokio::select! {
        r = &mut server => r.map(|()| Stopped::Drained),
        () = tokio::time::sleep(CLOSE_GRACE) => {
            tracing::warn!("connections still open after their streams were closed: stopping anyway");
            Ok(Stopped::Forced)
        }
        Some(()) = signals.recv() => Ok(Stopped::Forced),
    }
}
