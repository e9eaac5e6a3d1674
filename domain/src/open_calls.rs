//! The calls open at a clock: not closed by an outcome event (answered, abandoned,
//! overflow) and younger than [`UNRESOLVED_AFTER`] at that clock (spec §2). One home for
//! the concept: the per-interval cells keep their open calls here (to count those a
//! later query finds unresolved), and the live side reads it for the calls waiting now
//! per line and for the next timeout ([`super::transitions`]).
//!
//! Indexed by anchor (timeouts come in anchor order) and by (line, anchor) (a line's
//! waiting calls without a scan of the others'). Both sets hold the same calls.

use super::call::{LineId, UNRESOLVED_AFTER};
use super::time::Millis;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenCalls {
    by_anchor: BTreeSet<(Millis, u32)>,
    by_line: BTreeSet<(LineId, Millis, u32)>,
}

impl OpenCalls {
    /// From `(anchor, line, call)` triples in any order.
    pub fn from_calls(calls: impl IntoIterator<Item = (Millis, LineId, u32)>) -> Self {
        let mut open = Self::default();
        for (anchor, line, call) in calls {
            open.insert(anchor, line, call);
        }
        open
    }

    pub fn insert(&mut self, anchor: Millis, line: LineId, call: u32) {
        self.by_anchor.insert((anchor, call));
        self.by_line.insert((line, anchor, call));
    }

    /// Removes a call as it was inserted (same anchor and line).
    pub fn remove(&mut self, anchor: Millis, line: LineId, call: u32) {
        self.by_anchor.remove(&(anchor, call));
        self.by_line.remove(&(line, anchor, call));
    }

    /// Removes and returns the earliest call whose anchor is at or before `anchor`.
    /// `line` gives the line a call was inserted with.
    pub fn pop_anchored_by(
        &mut self,
        anchor: Millis,
        line: impl Fn(u32) -> LineId,
    ) -> Option<(Millis, u32)> {
        let &(a, call) = self.by_anchor.first()?;
        if a > anchor {
            return None;
        }
        self.remove(a, line(call), call);
        Some((a, call))
    }

    /// The calls anchored in `[from, to)`, by anchor.
    pub fn anchored_in(&self, from: Millis, to: Millis) -> impl Iterator<Item = (Millis, u32)> {
        let range = (from < to).then(|| self.by_anchor.range((from, 0)..(to, 0)));
        range.into_iter().flatten().copied()
    }

    /// The calls of `line` anchored from `from` on, by anchor.
    pub fn of_line_from(&self, line: LineId, from: Millis) -> impl Iterator<Item = (Millis, u32)> {
        let end = (line, Millis::MAX, u32::MAX);
        self.by_line
            .range((line, from, 0)..=end)
            .map(|&(_, a, c)| (a, c))
    }

    /// The earliest anchor after `after` (whose call times out 6 h later).
    pub fn first_anchor_after(&self, after: Millis) -> Option<Millis> {
        let from = after.checked_add(1)?;
        self.by_anchor.range((from, 0)..).next().map(|&(a, _)| a)
    }

    /// Every call indexed, as (anchor, line, call), by line then anchor.
    pub fn calls(&self) -> impl Iterator<Item = (Millis, LineId, u32)> + '_ {
        self.by_line.iter().map(|&(l, a, c)| (a, l, c))
    }

    /// How many calls are indexed.
    pub fn len(&self) -> usize {
        self.by_anchor.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_anchor.is_empty()
    }
}

/// The latest anchor of a call that is unresolved at `clock` (an open call anchored at or
/// before it has timed out).
pub fn timed_out_by(clock: Millis) -> Millis {
    clock.saturating_sub(UNRESOLVED_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_indexes_agree_and_ranges_are_half_open() {
        let mut o = OpenCalls::from_calls([(10, 1, 0), (5, 2, 1), (10, 2, 2), (20, 1, 3)]);
        assert_eq!(o.len(), 4);
        assert_eq!(
            o.anchored_in(5, 20).collect::<Vec<_>>(),
            [(5, 1), (10, 0), (10, 2)]
        );
        assert_eq!(o.anchored_in(20, 5).count(), 0);
        assert_eq!(o.of_line_from(2, 0).collect::<Vec<_>>(), [(5, 1), (10, 2)]);
        assert_eq!(o.of_line_from(1, 11).collect::<Vec<_>>(), [(20, 3)]);
        assert_eq!(o.first_anchor_after(5), Some(10));
        assert_eq!(o.first_anchor_after(20), None);
        let lines = [1, 2, 2, 1];
        assert_eq!(o.pop_anchored_by(4, |c| lines[c as usize]), None);
        assert_eq!(o.pop_anchored_by(10, |c| lines[c as usize]), Some((5, 1)));
        assert_eq!(o.of_line_from(2, 0).collect::<Vec<_>>(), [(10, 2)]);
        o.remove(10, 2, 2);
        assert_eq!(o.of_line_from(2, 0).count(), 0);
        assert_eq!(o.len(), 2);
    }
}
