//! Per-call state (order-independent: every field is a minimum or a count of distinct
//! events) and the call record derived from it (spec §2).

use super::event::EventType;
use super::time::{HOUR, Millis};

/// Stands for "no such event yet" in [`CallState`]'s minimums.
pub const NONE: Millis = Millis::MAX;

/// A call still open this long after its anchor is closed as unresolved (spec §2).
pub const UNRESOLVED_AFTER: Millis = 6 * HOUR;

/// Interned service line.
pub type LineId = u32;

/// What is known of one call: earliest `ts` per event type, and its bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallState {
    pub first_event: Millis,
    pub offered: Millis,
    /// Line of the earliest `offered` (smallest name among ties); meaningless without one.
    pub line: LineId,
    pub announcement_end: Millis,
    pub queued: Millis,
    pub answered: Millis,
    pub ended: Millis,
    pub abandoned: Millis,
    pub overflow: Millis,
    pub bookings: u32,
}

impl Default for CallState {
    fn default() -> Self {
        Self {
            first_event: NONE,
            offered: NONE,
            line: 0,
            announcement_end: NONE,
            queued: NONE,
            answered: NONE,
            ended: NONE,
            abandoned: NONE,
            overflow: NONE,
            bookings: 0,
        }
    }
}

fn lower(slot: &mut Millis, ts: Millis) {
    *slot = (*slot).min(ts);
}

/// How a call ended, as counted by the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    Abandoned,
    Overflow,
    /// Not resolved yet and younger than [`UNRESOLVED_AFTER`]: counted nowhere.
    Open,
    Unresolved,
}

/// One call as the figures see it (spec §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord<'a> {
    pub anchor: Millis,
    pub line: &'a str,
    pub outcome: Outcome,
    /// Net wait (ms) of answered and abandoned calls.
    pub net_wait: Option<Millis>,
    /// Talk time (ms) of answered calls that have an `ended`.
    pub talk: Option<Millis>,
    pub bookings: u32,
}

impl CallState {
    /// Folds one distinct (already deduplicated) event into the state. An `offered` that
    /// ties the earliest one must be settled by the caller ([`Self::offered_line_tie`]).
    pub fn apply(&mut self, kind: EventType, ts: Millis) {
        lower(&mut self.first_event, ts);
        match kind {
            EventType::Offered => {}
            EventType::AnnouncementEnd => lower(&mut self.announcement_end, ts),
            EventType::Queued => lower(&mut self.queued, ts),
            EventType::Answered => lower(&mut self.answered, ts),
            EventType::Ended => lower(&mut self.ended, ts),
            EventType::Abandoned => lower(&mut self.abandoned, ts),
            EventType::Overflow => lower(&mut self.overflow, ts),
            EventType::Booking => self.bookings += 1,
            EventType::AgentLogin
            | EventType::AgentLogout
            | EventType::AgentPause
            | EventType::AgentResume => {}
        }
    }

    /// Folds an `offered` with its line; `smaller(a, b)` tells whether line `a` sorts before `b`.
    pub fn apply_offered(
        &mut self,
        ts: Millis,
        line: LineId,
        smaller: impl Fn(LineId, LineId) -> bool,
    ) {
        lower(&mut self.first_event, ts);
        if ts < self.offered || (ts == self.offered && smaller(line, self.line)) {
            self.offered = ts;
            self.line = line;
        }
    }

    /// The latest of the times the state holds (`None` without any): how recent the
    /// call is, for keeping the recent ones in memory.
    pub fn latest(&self) -> Option<Millis> {
        [
            self.first_event,
            self.offered,
            self.announcement_end,
            self.queued,
            self.answered,
            self.ended,
            self.abandoned,
            self.overflow,
        ]
        .into_iter()
        .filter(|&t| t != NONE)
        .max()
    }

    pub fn anchor(&self) -> Millis {
        if self.offered != NONE {
            self.offered
        } else {
            self.first_event
        }
    }

    /// Where the net wait starts: the earliest `announcement_end`, else the earliest
    /// `queued`, else the anchor (spec §2).
    pub fn wait_start(&self) -> Millis {
        if self.announcement_end != NONE {
            self.announcement_end
        } else if self.queued != NONE {
            self.queued
        } else {
            self.anchor()
        }
    }

    /// The record at clock `now` (the later of the wall clock and the newest event `ts`).
    pub fn record<'a>(&self, now: Millis, line_name: &'a str) -> CallRecord<'a> {
        let anchor = self.anchor();
        let outcome = if self.answered != NONE {
            Outcome::Answered
        } else if self.abandoned != NONE || self.overflow != NONE {
            // The earliest of the two; a tie goes to abandoned.
            if self.abandoned <= self.overflow {
                Outcome::Abandoned
            } else {
                Outcome::Overflow
            }
        } else if now.saturating_sub(anchor) >= UNRESOLVED_AFTER {
            Outcome::Unresolved
        } else {
            Outcome::Open
        };
        let wait_start = self.wait_start();
        let net_wait = match outcome {
            Outcome::Answered => Some((self.answered - wait_start).max(0)),
            Outcome::Abandoned => Some((self.abandoned - wait_start).max(0)),
            _ => None,
        };
        let talk = (outcome == Outcome::Answered && self.ended != NONE)
            .then(|| (self.ended - self.answered).max(0));
        CallRecord {
            anchor,
            line: line_name,
            outcome,
            net_wait,
            talk,
            bookings: self.bookings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    fn state(events: &[(EventType, Millis)]) -> CallState {
        let mut s = CallState::default();
        for &(k, ts) in events {
            if k == Offered {
                s.apply_offered(ts, 0, |a, b| a < b);
            } else {
                s.apply(k, ts);
            }
        }
        s
    }

    const NOW: Millis = 1_000_000_000_000;

    #[test]
    fn answered_call_waits_from_announcement_end() {
        let s = state(&[
            (Offered, 1_000),
            (AnnouncementEnd, 41_000),
            (Queued, 41_500),
            (Answered, 181_000),
            (Ended, 200_000),
            (Booking, 190_000),
            (Booking, 191_000),
        ]);
        let r = s.record(NOW, "cup");
        assert_eq!(r.outcome, Outcome::Answered);
        assert_eq!(r.net_wait, Some(140_000));
        assert_eq!(r.talk, Some(19_000));
        assert_eq!(r.bookings, 2);
        assert_eq!(r.anchor, 1_000);
    }

    #[test]
    fn order_does_not_matter() {
        let evs = [
            (Answered, 50_000),
            (Queued, 20_000),
            (Offered, 5_000),
            (Answered, 60_000),
            (Ended, 40_000),
        ];
        let a = state(&evs);
        let mut rev = evs;
        rev.reverse();
        assert_eq!(a, state(&rev));
        let r = a.record(NOW, "cup");
        // wait start = queued (no announcement_end); first answered = 50 s.
        assert_eq!(r.net_wait, Some(30_000));
        // ended before answered: floored at 0.
        assert_eq!(r.talk, Some(0));
    }

    #[test]
    fn wait_floors_at_zero_and_falls_back_to_anchor() {
        let r = state(&[
            (Offered, 10_000),
            (AnnouncementEnd, 50_000),
            (Answered, 30_000),
        ])
        .record(NOW, "cup");
        assert_eq!(r.net_wait, Some(0));
        let r = state(&[(Offered, 10_000), (Answered, 12_500)]).record(NOW, "cup");
        assert_eq!(r.net_wait, Some(2_500));
        assert_eq!(r.talk, None);
    }

    #[test]
    fn outcome_rules() {
        let r = state(&[(Offered, 0), (Overflow, 5), (Abandoned, 5)]).record(NOW, "cup");
        assert_eq!(r.outcome, Outcome::Abandoned, "tie goes to abandoned");
        let r = state(&[(Offered, 0), (Overflow, 4), (Abandoned, 5)]).record(NOW, "cup");
        assert_eq!(r.outcome, Outcome::Overflow);
        assert_eq!(r.net_wait, None);
        let r = state(&[(Offered, 0), (Overflow, 4), (Answered, 9)]).record(NOW, "cup");
        assert_eq!(r.outcome, Outcome::Answered);
        let r = state(&[(Offered, 0), (Queued, 1_000), (Abandoned, 3_000)]).record(NOW, "cup");
        assert_eq!(r.net_wait, Some(2_000));
    }

    #[test]
    fn open_becomes_unresolved_at_six_hours() {
        let s = state(&[(Offered, 1_000), (Queued, 2_000)]);
        assert_eq!(
            s.record(1_000 + UNRESOLVED_AFTER - 1, "cup").outcome,
            Outcome::Open
        );
        assert_eq!(
            s.record(1_000 + UNRESOLVED_AFTER, "cup").outcome,
            Outcome::Unresolved
        );
        // No offered: the earliest event anchors the call.
        let s = state(&[(Queued, 7_000), (Booking, 3_000)]);
        assert_eq!(s.anchor(), 3_000);
        // A late event still resolves it.
        let mut s = s;
        s.apply(Abandoned, 8_000);
        assert_eq!(s.record(NOW, "cup").outcome, Outcome::Abandoned);
    }

    #[test]
    fn offered_tie_takes_smallest_line() {
        let mut s = CallState::default();
        s.apply_offered(100, 5, |a, b| a < b);
        s.apply_offered(100, 3, |a, b| a < b);
        s.apply_offered(100, 4, |a, b| a < b);
        assert_eq!(s.line, 3);
        s.apply_offered(99, 9, |a, b| a < b);
        assert_eq!((s.offered, s.line), (99, 9));
    }
}
