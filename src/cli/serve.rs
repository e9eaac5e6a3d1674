//! `netwait serve`: the gRPC API and push ingest on the embedded store.

use super::StoreArgs;
use super::config::{Use, open_engine};
use anyhow::Context;
use netwait_api::state::AppState;
use std::io::Write;

/// Checkpoint at start when this much log would otherwise be replayed at the next start.
const CHECKPOINT_AT_START_BYTES: u64 = 16 << 20;

pub fn run(store: &StoreArgs, listen: &str) -> anyhow::Result<()> {
    // Bound first: a port in use fails here, before any store is opened or created.
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (mut engine, pseudo) = open_engine(store, Use::Ingest)?;
    if engine.uncheckpointed() >= CHECKPOINT_AT_START_BYTES {
        engine.checkpoint()?;
    }
    let state = AppState::new(engine, pseudo);
    let rt = super::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        // A line on stdout that scripts and tests wait for (the port when `:0` was asked).
        println!("netwait listening on {addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, data = %store.data.display(), "serving");
        netwait_api::server::serve(listener, state.clone(), shutdown_signal()).await?;
        tracing::info!("shutting down: writing a checkpoint");
        state
            .blocking(|e| {
                e.checkpoint()
                    .map_err(|e| netwait_api::state::store_status(&e))
            })
            .await
            .map_err(|s| anyhow::anyhow!("checkpoint at shutdown: {}", s.message()))?;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
