//! When a checkpoint is written, and what a failed one does: the one policy of every
//! role (import, tail, serve, push, the Kafka aggregator).
//!
//! A checkpoint only shortens the next open (which replays the log after it), so one
//! that cannot be written (a full disk) fails nothing that was committed: it is
//! reported once ([`observe::CheckpointFailed`]: a warning and a metric) and the next
//! due moment tries again.

use super::Engine;
use crate::observe;

/// Log bytes after the checkpoint that make a writer's open write one.
const AT_OPEN_BYTES: u64 = 16 << 20;
/// Log bytes after the checkpoint that make a durable commit write one.
const AFTER_COMMITS_BYTES: u64 = 64 << 20;

/// A moment a checkpoint may be due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMoment {
    /// A writer opened the store (a long replay is not paid again at the next open).
    Opened,
    /// A commit became durable (a push, a source's batch).
    Committed,
    /// The input ended or the process stops: whatever is new.
    Stopping,
    /// The cells were built for queries (the checkpoint kept none for this threshold
    /// and calendar): kept at once, so that the next start reads them.
    Indexed,
}

impl CheckpointMoment {
    fn due(self, uncheckpointed: u64) -> bool {
        match self {
            Self::Opened => uncheckpointed >= AT_OPEN_BYTES,
            Self::Committed => uncheckpointed >= AFTER_COMMITS_BYTES,
            Self::Stopping => uncheckpointed > 0,
            Self::Indexed => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Opened => "open",
            Self::Committed => "commit",
            Self::Stopping => "stop",
            Self::Indexed => "cells built",
        }
    }
}

impl Engine {
    /// Writes a checkpoint if `moment` makes one due (see the module); true when one
    /// was written.
    pub fn checkpoint_at(&mut self, moment: CheckpointMoment) -> bool {
        let cells = moment == CheckpointMoment::Indexed && self.cells_unsaved();
        if !(cells || moment.due(self.uncheckpointed())) {
            return false;
        }
        match self.checkpoint() {
            Ok(()) => true,
            Err(error) => {
                observe::emit(observe::CheckpointFailed {
                    after: moment.name(),
                    error: &error,
                });
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CheckpointMoment;

    #[test]
    fn each_moment_has_its_own_threshold() {
        assert!(!CheckpointMoment::Stopping.due(0));
        assert!(CheckpointMoment::Stopping.due(1));
        assert!(!CheckpointMoment::Opened.due((16 << 20) - 1));
        assert!(CheckpointMoment::Opened.due(16 << 20));
        assert!(!CheckpointMoment::Committed.due(16 << 20));
        assert!(CheckpointMoment::Committed.due(64 << 20));
    }
}
