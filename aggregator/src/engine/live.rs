//! The engine's output side: call and agent transitions, timeouts, the open calls.

use crate::domain::callbook::AgentEvent;
use crate::domain::time::Millis;
use crate::domain::transitions::{
    AgentTransition, CallTransition, OpenCall, Presence, Transitions,
};
use crate::store::record::Record;
use crate::store::{Aside, StoreError};

use super::Engine;

/// What [`Engine::drain_transitions`] hands out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionBatch {
    /// The book was rebuilt from the store (after a failed commit): transitions drained
    /// before are void (they may tell events that never became durable), calls may
    /// have new indexes; start again from [`Engine::open_calls`].
    pub reset: bool,
    pub calls: Vec<CallTransition>,
    pub agents: Vec<AgentTransition>,
}

impl Engine {
    /// From now on, derives call and agent transitions once per stage (see
    /// [`crate::domain::transitions`]), for [`Self::drain_transitions`]; nothing is told
    /// of the book's past. Keeps the cells too ([`Self::index_periods`]): their open-call
    /// index is the one the timeouts and [`Self::open_calls`] read. Costs nothing until
    /// asked for; once watched, drain after each stage (they pile up otherwise).
    ///
    /// Operators' presence is their latest event's, however long ago it was: it is
    /// recalled from the log's agent events, so that a restarted server knows who is
    /// logged in ([`Self::presence`]): from the presence kept aside at the last
    /// checkpoint ([`Aside::Presence`]) and the log after it, else from the whole log
    /// (then kept aside at once, so that the next start reads only what is new).
    pub fn watch_transitions(&mut self) -> Result<(), StoreError> {
        if self.cells.is_none() {
            self.index_periods();
        }
        self.book.track_agents();
        // What changed until now goes into the cells (and a publication), not into
        // transitions: nothing is told of the book's past.
        self.settle_cells();
        let mut live = Transitions::new(&self.book, self.config.threshold_ms);
        let kept = match self.store.load_aside(Aside::Presence) {
            Ok(Some((at, bytes))) if at <= self.position && live.restore_presence(&bytes) => at,
            Ok(Some(_)) => {
                tracing::warn!("ignoring the operators' presence kept aside; reading the log");
                live = Transitions::new(&self.book, self.config.threshold_ms);
                0
            }
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the operators' presence kept aside; reading the log");
                0
            }
        };
        let recalled = self.store.replay(kept, &mut |rec| {
            if let Record::Event(e) = rec
                && e.kind.is_agent_event()
                && let Some(agent) = &e.agent
            {
                live.recall_agent(&AgentEvent {
                    kind: e.kind,
                    ts: e.ts,
                    agent: Box::from(&**agent),
                });
            }
        });
        if recalled.is_err() {
            // Damage in the log (reported by the log check) must not take the live state
            // away; a presence recalled up to the damage could keep operators logged in
            // who logged off after it, so none is recalled.
            tracing::warn!(
                "operators' presence not recalled: the log cannot be read whole; the live state starts with none logged in"
            );
            live = Transitions::new(&self.book, self.config.threshold_ms);
        }
        self.live = Some(live);
        if recalled.is_ok() && kept < self.position {
            self.save_presence();
        }
        Ok(())
    }

    /// Keeps the operators' presence aside, as of what is durable (see
    /// [`Self::watch_transitions`]); a failure only costs the next start a longer read.
    pub(super) fn save_presence(&mut self) {
        let Some(live) = &self.live else {
            return;
        };
        let mut bytes = Vec::new();
        live.encode_presence(&mut bytes);
        if let Err(e) = self
            .store
            .save_aside(Aside::Presence, self.position, &bytes)
        {
            tracing::warn!(error = %e, "cannot keep the operators' presence aside");
        }
    }

    /// The operators logged in or paused now, by name (none when not watched).
    pub fn presence(&self) -> Vec<(Box<str>, Presence)> {
        self.live
            .as_ref()
            .map(Transitions::present)
            .unwrap_or_default()
    }

    /// The transitions derived since the last drain (`None` when not watched).
    pub fn drain_transitions(&mut self) -> Option<TransitionBatch> {
        let live = self.live.as_mut()?;
        let (calls, agents) = live.drain();
        Some(TransitionBatch {
            reset: std::mem::take(&mut self.live_reset),
            calls,
            agents,
        })
    }

    /// When the next open call turns unresolved (6 h after its anchor): the caller
    /// calls [`Self::handle_timeout`] with its wall clock then. `None` when no call is
    /// open or transitions are not watched.
    pub fn next_timeout(&self) -> Option<Millis> {
        let (live, cells) = (self.live.as_ref()?, self.cells.as_ref()?);
        live.next_timeout(cells.open_calls())
    }

    /// Moves the clock of spec §2 to the wall clock `now` (when later): the open calls
    /// anchored 6 h or more before it become unresolved transitions.
    pub fn handle_timeout(&mut self, now: Millis) {
        if let (Some(live), Some(cells)) = (&mut self.live, &self.cells) {
            live.handle_timeout(now, &self.book, cells.open_calls());
        }
    }

    /// The calls of `line` waiting now (open at the transitions' clock), by anchor;
    /// none when transitions are not watched or the line is unknown. Costs the calls
    /// of that line that are open, not the book.
    pub fn open_calls(&self, line: &str) -> impl Iterator<Item = OpenCall> + '_ {
        let parts = match (&self.live, &self.cells, self.book.line_id(line)) {
            (Some(live), Some(cells), Some(id)) => Some((live, cells, id)),
            _ => None,
        };
        parts
            .into_iter()
            .flat_map(|(live, cells, id)| live.open_calls(id, &self.book, cells.open_calls()))
    }
}
