//! Everything the figures need, folded from the accepted events: the dedupe keys, one
//! [`CallState`] per call, the interned lines and the newest `ts` seen (spec §1–§2).

use super::call::{CallRecord, CallState, LineId};
use super::dedupe::{DedupeKey, KeyHasher, KeySet};
use super::event::{DEFAULT_LINE, Event, EventType};
use super::time::Millis;
use std::collections::HashMap;

/// Result of offering one valid event to the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Accepted,
    Duplicate,
}

type CallMap = HashMap<Box<str>, CallState, foldhash::fast::RandomState>;

/// The aggregate state of every call. Pure: no I/O, no clock (callers pass `now`).
pub struct CallBook {
    hasher: KeyHasher,
    seen: KeySet,
    calls: CallMap,
    lines: Vec<Box<str>>,
    line_ids: HashMap<Box<str>, LineId, foldhash::fast::RandomState>,
    newest_ts: Option<Millis>,
}

impl CallBook {
    pub fn new(dedupe_secret: [u8; 16]) -> Self {
        let mut book = Self {
            hasher: KeyHasher::new(dedupe_secret),
            seen: KeySet::default(),
            calls: CallMap::default(),
            lines: Vec::new(),
            line_ids: HashMap::default(),
            newest_ts: None,
        };
        book.intern(DEFAULT_LINE);
        book
    }

    pub fn key(&self, ev: &Event<'_>) -> DedupeKey {
        self.hasher.key(ev)
    }

    /// True when an event with this key was already accepted.
    pub fn is_duplicate(&self, key: DedupeKey) -> bool {
        self.seen.contains(&key)
    }

    /// Folds a valid event in; the first event of a key wins, later ones are duplicates.
    pub fn apply(&mut self, ev: &Event<'_>) -> Applied {
        let key = self.hasher.key(ev);
        self.apply_keyed(ev, key)
    }

    /// [`Self::apply`] with a key computed beforehand (possibly on another thread).
    pub fn apply_keyed(&mut self, ev: &Event<'_>, key: DedupeKey) -> Applied {
        if !self.seen.insert(key) {
            return Applied::Duplicate;
        }
        self.newest_ts = Some(self.newest_ts.map_or(ev.ts, |n| n.max(ev.ts)));
        let Some(call_id) = ev.call_id.as_deref() else {
            return Applied::Accepted; // agent event: only moves the clock
        };
        if ev.kind.is_agent_event() {
            return Applied::Accepted;
        }
        let line = match ev.kind {
            EventType::Offered => Some(self.intern(ev.line.as_deref().unwrap_or(DEFAULT_LINE))),
            _ => None,
        };
        let state = match self.calls.get_mut(call_id) {
            Some(s) => s,
            None => self.calls.entry(call_id.into()).or_default(),
        };
        match line {
            Some(line) => {
                let lines = &self.lines;
                state.apply_offered(ev.ts, line, |a, b| lines[a as usize] < lines[b as usize]);
            }
            None => state.apply(ev.kind, ev.ts),
        }
        Applied::Accepted
    }

    fn intern(&mut self, name: &str) -> LineId {
        if let Some(&id) = self.line_ids.get(name) {
            return id;
        }
        let id = LineId::try_from(self.lines.len()).unwrap_or(LineId::MAX);
        self.lines.push(name.into());
        self.line_ids.insert(name.into(), id);
        id
    }

    fn line_name(&self, state: &CallState) -> &str {
        if state.offered == super::call::NONE {
            DEFAULT_LINE
        } else {
            self.lines
                .get(state.line as usize)
                .map_or(DEFAULT_LINE, |s| s)
        }
    }

    /// The clock of spec §2: the later of the wall clock and the newest accepted `ts`.
    pub fn clock(&self, wall: Millis) -> Millis {
        self.newest_ts.map_or(wall, |n| n.max(wall))
    }

    /// Every call's record at clock `now`.
    pub fn records(&self, now: Millis) -> impl Iterator<Item = CallRecord<'_>> + '_ {
        self.calls
            .values()
            .map(move |s| s.record(now, self.line_name(s)))
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    pub fn distinct_events(&self) -> usize {
        self.seen.len()
    }

    pub fn newest_ts(&self) -> Option<Millis> {
        self.newest_ts
    }

    /// Parts for a snapshot (see the store's snapshot codec).
    pub fn parts(&self) -> BookParts<'_> {
        BookParts {
            seen: &self.seen,
            calls: &self.calls,
            lines: &self.lines,
            newest_ts: self.newest_ts,
        }
    }

    /// Rebuilds a book from snapshot parts; lines must hold "cup" first, as `new` does.
    pub fn from_parts(
        dedupe_secret: [u8; 16],
        seen: KeySet,
        calls: Vec<(Box<str>, CallState)>,
        lines: Vec<Box<str>>,
        newest_ts: Option<Millis>,
    ) -> Self {
        let mut book = Self::new(dedupe_secret);
        book.seen = seen;
        book.lines.clear();
        book.line_ids.clear();
        for l in lines {
            book.intern(&l);
        }
        book.calls = calls.into_iter().collect();
        book.newest_ts = newest_ts;
        book
    }
}

/// Borrowed view of a book's state, for snapshots.
pub struct BookParts<'a> {
    pub seen: &'a KeySet,
    pub calls: &'a HashMap<Box<str>, CallState, foldhash::fast::RandomState>,
    pub lines: &'a [Box<str>],
    pub newest_ts: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::call::Outcome;
    use crate::domain::privacy::Pseudonymizer;
    use crate::domain::validate::validate_line;

    fn feed(book: &mut CallBook, lines: &[&str]) -> Vec<Applied> {
        let p = Pseudonymizer::new([0; 32]);
        lines
            .iter()
            .map(|l| book.apply(&validate_line(l.as_bytes(), &p).expect("valid")))
            .collect()
    }

    #[test]
    fn first_received_wins_and_instants_compare() {
        let mut b = CallBook::new([1; 16]);
        let r = feed(
            &mut b,
            &[
                r#"{"call_id":"c","type":"booking","ts":1551682805250,"booking":"book"}"#,
                r#"{"call_id":"c","type":"booking","ts":"2019-03-04T08:00:05.250+01:00","booking":"book"}"#,
                r#"{"call_id":"c","type":"booking","ts":"2019-03-04T07:00:05.2501Z","booking":"book"}"#,
                r#"{"call_id":"c","type":"booking","ts":1551682805250,"booking":"move"}"#,
            ],
        );
        assert_eq!(
            r,
            [
                Applied::Accepted,
                Applied::Duplicate,
                Applied::Duplicate,
                Applied::Accepted
            ]
        );
        let rec: Vec<_> = b.records(0).collect();
        assert_eq!(rec[0].bookings, 2);
    }

    #[test]
    fn event_id_duplicate_keeps_the_first_whatever_it_carries() {
        let mut b = CallBook::new([1; 16]);
        feed(
            &mut b,
            &[
                r#"{"event_id":"e1","call_id":"c","type":"offered","ts":0,"line":"prelievi"}"#,
                r#"{"event_id":"e1","call_id":"c","type":"offered","ts":0,"line":"cup"}"#,
                r#"{"event_id":"e1","call_id":"d","type":"answered","ts":5,"agent":"a"}"#,
            ],
        );
        assert_eq!(b.calls(), 1);
        let rec: Vec<_> = b.records(0).collect();
        assert_eq!(rec[0].line, "prelievi");
    }

    #[test]
    fn line_rules() {
        let mut b = CallBook::new([1; 16]);
        feed(
            &mut b,
            &[
                r#"{"event_id":"1","call_id":"a","type":"offered","ts":10,"line":"zeta"}"#,
                r#"{"event_id":"2","call_id":"a","type":"offered","ts":10,"line":"prelievi"}"#,
                r#"{"event_id":"3","call_id":"a","type":"offered","ts":11,"line":"alfa"}"#,
                r#"{"event_id":"4","call_id":"b","type":"offered","ts":10,"line":"zeta"}"#,
                r#"{"event_id":"5","call_id":"b","type":"offered","ts":10}"#,
                r#"{"call_id":"c","type":"queued","ts":10}"#,
            ],
        );
        let mut got: Vec<_> = b.records(0).map(|r| (r.anchor, r.line)).collect();
        got.sort();
        // Ties need distinct events (event_id): without one, the second `offered` at the
        // same instant is a duplicate. "cup" (absent line) < "zeta"; call c has no offered.
        assert_eq!(got, [(10, "cup"), (10, "cup"), (10, "prelievi")]);
    }

    #[test]
    fn agent_events_move_the_clock_only() {
        let mut b = CallBook::new([1; 16]);
        feed(
            &mut b,
            &[
                r#"{"call_id":"a","type":"offered","ts":0}"#,
                r#"{"type":"agent_login","ts":21600000,"agent":"op1"}"#,
            ],
        );
        assert_eq!(b.calls(), 1);
        let now = b.clock(0);
        assert_eq!(now, 21_600_000);
        assert_eq!(
            b.records(now).next().map(|r| r.outcome),
            Some(Outcome::Unresolved)
        );
    }
}
