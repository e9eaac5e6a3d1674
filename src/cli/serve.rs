//! `netwait serve`: the gRPC API and push ingest on the embedded store.

use super::StoreArgs;
use super::config::{Use, open_engine};
use anyhow::Context;
use netwait_aggregator::observe;
use netwait_api::server::ServeOptions;
use netwait_api::shutdown::{Stopped, serve_until_signalled};
use netwait_api::state::AppState;
use std::io::Write;

/// Checkpoint at start when this much log would otherwise be replayed at the next start.
const CHECKPOINT_AT_START_BYTES: u64 = 16 << 20;

pub fn run(store: &StoreArgs, listen: &str, options: ServeOptions) -> anyhow::Result<()> {
    // Bound first: a port in use fails here, before any store is opened or created.
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (mut engine, pseudo) = open_engine(store, Use::Ingest)?;
    // Opened from the checkpoint, the log before it was not read: check it all, aside.
    super::log_check::spawn(&store.data);
    if engine.uncheckpointed() >= CHECKPOINT_AT_START_BYTES
        && let Err(e) = engine.checkpoint()
    {
        observe::emit(observe::CheckpointFailed {
            after: "open",
            error: &e,
        });
    }
    // A server answers many queries: each reads the cells of its period.
    engine.index_periods();
    let state = AppState::new(engine, pseudo);
    let rt = super::runtime()?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let mut signals = signals()?;
        // A line on stdout that scripts and tests wait for (the port when `:0` was asked).
        println!("netwait listening on {addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, data = %store.data.display(), "serving");
        let stopped = serve_until_signalled(listener, state.clone(), options, &mut signals).await?;
        if stopped == Stopped::Forced {
            tracing::warn!("stopped at once: no checkpoint (the next start replays the log)");
            return Ok(());
        }
        tracing::info!("shutting down: writing a checkpoint");
        let checkpoint = state.blocking(|e| {
            if let Err(err) = e.checkpoint() {
                observe::emit(observe::CheckpointFailed {
                    after: "shutdown",
                    error: &err,
                });
            }
            Ok(())
        });
        // A second signal still stops at once while the checkpoint is written (it is
        // replaced by rename: an unfinished one is never read).
        tokio::select! {
            done = checkpoint => done.map_err(|s| anyhow::anyhow!("shutting down: {}", s.message())),
            Some(()) = signals.recv() => {
                tracing::warn!("stopped at once: checkpoint not finished (the next start replays the log)");
                Ok(())
            }
        }
    });
    // Work still running (a commit of a stream stopped at once) is not waited for: what
    // it did not acknowledge, the next open cuts off.
    rt.shutdown_background();
    served
}

/// A message for each SIGINT or SIGTERM.
fn signals() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
