//! What a store keeps, record by record: accepted events, dead letters (rejected input
//! with its reason) and the source positions of a commit. Every store holds these; how
//! the embedded one lays them out in bytes is [`super::codec`].

use crate::domain::event::Event;
use crate::store::positions::CheckpointDelta;
use std::borrow::Cow;

/// An input that was rejected, as kept in the dead-letter store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<'a> {
    /// Where it came from (file name, `push:<peer>`, ...).
    pub source: Cow<'a, str>,
    /// 1-based line (or message item) number within `source`.
    pub position: u64,
    /// Stable reason code (see `Reject::code`).
    pub code: Cow<'a, str>,
    /// Human-readable reason.
    pub reason: Cow<'a, str>,
    /// The raw input, with any calling number replaced by its keyed hash; stored, only
    /// its first [`super::codec::RAW_KEPT`] bytes.
    pub raw: Cow<'a, [u8]>,
    /// The input's size when `raw` holds only its first bytes (set by the encoder, or by
    /// whoever cut it before).
    pub truncated_from: Option<u64>,
    /// When it was received (wall clock, epoch ms); `None` in stores written before
    /// netwait kept it.
    pub received_ms: Option<i64>,
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Event(Event<'a>),
    DeadLetter(DeadLetter<'a>),
    /// Where the sources of the commit's input stood once it was read.
    Positions(CheckpointDelta),
}
