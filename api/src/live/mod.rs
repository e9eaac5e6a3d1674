//! The live side (issue 14): the queue per line now, operators against the staffing
//! plan, today's and month-to-date SLA, alerts with hysteresis and their webhook; served
//! as the gRPC stream `Live.WatchQueue` and the wallboard's server-sent events.
//!
//! The engine's writer drains the domain's transitions after each piece of work and
//! hands them to the live thread ([`runner`]), which folds them ([`tracker`]), judges the
//! rules ([`alerts`]) and publishes a [`LiveState`] every second and at once on an alert.
//! Every reader takes the latest publication: none of them can slow ingest.

pub mod alerts;
pub mod clock;
pub mod config;
pub mod follower;
pub mod grpc;
pub mod metrics;
pub mod past;
pub mod runner;
pub mod session;
pub mod tracker;
pub mod view;
pub mod wallboard;
pub mod webhook;

pub use clock::{Clock, ManualClock, WallClock};
pub use config::{LiveConfig, LiveRules};
pub use runner::{LiveFeed, LiveHandle, LiveInput, StreamsFull};
pub use view::LiveState;

use crate::shutdown::{Phase, Shutdown};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One reader's updates: each with how many it skipped since the one before (a slow
/// reader gets the latest, never a backlog). Ends when the reader goes away or the
/// server starts to stop. Refused when the server's live streams are all taken (the
/// stream holds its permit until it ends).
pub fn follow(
    live: &LiveHandle,
    shutdown: Shutdown,
) -> Result<mpsc::Receiver<(Arc<LiveState>, u64)>, StreamsFull> {
    let permit = live.open_stream()?;
    let (tx, rx) = mpsc::channel(1);
    let mut updates = live.subscribe();
    tokio::spawn(async move {
        let _permit = permit;
        let mut last: Option<u64> = None;
        loop {
            let state = Arc::clone(&updates.borrow_and_update());
            let missed = last.map_or(0, |l| state.seq.saturating_sub(l + 1));
            last = Some(state.seq);
            tokio::select! {
                sent = tx.send((state, missed)) => if sent.is_err() { return },
                () = shutdown.reached(Phase::Draining) => return,
            }
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
                () = shutdown.reached(Phase::Draining) => return,
            }
        }
    });
    Ok(rx)
}
