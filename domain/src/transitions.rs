//! The domain's output side (the quinn-proto model: no I/O, no clock; the caller passes
//! `now` and drains what came out): call transitions, the 6-hour timeouts, operator
//! presence.
//!
//! **Call transitions** are derived once per commit from the book's change tracking
//! ([`Changes`]: each changed call's state before its first change, and the calls
//! created), never on the fold's hot path. A transition is emitted when the call's
//! *record* (spec §2) changes, in a fixed order per call: [`CallChange::Offered`] (anchor
//! or line), `AnnouncementEnd`, `Queued`, the outcome, `Ended`, `Booking`.
//!
//! **Retractions.** Events only add facts, but an earlier fact can supersede a later one
//! (a late earlier `answered`, an `abandoned` before the `overflow` seen, an earlier
//! `queued` that moves the wait start). The model is last-writer-wins per field of the
//! record: each transition carries the new value, and `replaces` names the instant of
//! the value it supersedes (`None` when the field had none). An outcome transition
//! (answered, abandoned, overflow, unresolved, reopened) replaces the call's previous
//! outcome whatever it was; a change of the wait start of a closed call re-emits its
//! outcome with the new net wait. So folding a call's transitions in order, each setting
//! its field, gives the call's record ([`tests`] checks it over random streams).
//!
//! **Timeouts.** The clock of spec §2 is the later of the wall clock and the newest
//! accepted `ts`. The transitions keep that clock as far as they know it (the newest
//! `ts`, and every `now` given to [`Transitions::handle_timeout`]); an open call turns
//! [`CallChange::Unresolved`] exactly when that clock reaches its anchor + 6 h, at that
//! instant. The open calls come from the cells' index ([`OpenCalls`]: the calls open at
//! the book's newest `ts`), so the transitions keep no second copy of them.
//!
//! **Presence.** Each accepted agent event gives an [`AgentTransition`]: an operator's
//! presence is the state of their latest event by `ts` (ties: logout, then pause,
//! resume, login), so it depends only on the set of events; a late event (older than the
//! operator's latest) is reported with `late` and changes nothing.

use super::call::{CallState, LineId, NONE, Outcome, UNRESOLVED_AFTER};
use super::callbook::{AgentEvent, CallBook, Changes};
use super::event::EventType;
use super::open_calls::{OpenCalls, timed_out_by};
use super::time::Millis;
use std::collections::HashMap;

/// What changed in a call's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallChange {
    /// The anchor (`at`) or the line changed: the earliest `offered` (or, without one,
    /// the earliest event).
    Offered {
        line: LineId,
    },
    AnnouncementEnd,
    Queued,
    /// `within_threshold`: net wait < T, the SLA's numerator (spec §5).
    Answered {
        net_wait_ms: Millis,
        within_threshold: bool,
    },
    Abandoned {
        net_wait_ms: Millis,
    },
    Overflow,
    /// Still open at anchor + 6 h (`at`).
    Unresolved,
    /// Open again (an anchor moved later by a late `offered`): counted nowhere yet.
    Reopened,
    /// The first `ended` (`at`); the talk time when the call is answered.
    Ended {
        talk_ms: Option<Millis>,
    },
    /// The call's distinct bookings now. The state keeps no booking instants: `at` is
    /// the clock of the commit that brought them.
    Booking {
        bookings: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTransition {
    /// The call's index in the book (stable for the book's life).
    pub call: u32,
    /// The call's line after the change.
    pub line: LineId,
    pub at: Millis,
    pub change: CallChange,
    /// The instant of the value this one supersedes (see the module doc).
    pub replaces: Option<Millis>,
}

/// An operator's presence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Presence {
    #[default]
    LoggedOut,
    Available,
    Paused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTransition {
    pub agent: Box<str>,
    pub kind: EventType,
    pub at: Millis,
    pub before: Presence,
    pub after: Presence,
    /// Older than the operator's latest event: changes nothing.
    pub late: bool,
}

/// A call waiting now (open at the transitions' clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenCall {
    pub call: u32,
    pub anchor: Millis,
    /// Where its net wait starts (spec §2): its wait so far is `now - wait_start`.
    pub wait_start: Millis,
}

/// The output side of a book (see the module doc).
#[derive(Debug, Clone)]
pub struct Transitions {
    threshold_ms: Millis,
    /// The clock of spec §2 as far as known: the records the transitions describe.
    clock: Millis,
    calls: Vec<CallTransition>,
    agents: Vec<AgentTransition>,
    presence: HashMap<Box<str>, PresenceSlot>,
}

/// Tie order of agent events at one instant (the last wins).
fn rank(kind: EventType) -> u8 {
    match kind {
        EventType::AgentLogin => 0,
        EventType::AgentResume => 1,
        EventType::AgentPause => 2,
        _ => 3,
    }
}

/// An operator's slot of [`Transitions::presence`].
type PresenceSlot = ((Millis, u8), Presence);

fn decode_presence(bytes: &[u8]) -> Option<Vec<(Box<str>, PresenceSlot)>> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = bytes.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let u32_of = |b: &[u8]| b.first_chunk::<4>().map(|w| u32::from_le_bytes(*w));
    let n = u32_of(take(4)?)? as usize;
    // At least 14 bytes an operator: a damaged count cannot make us allocate much.
    let mut out = Vec::with_capacity(n.min(bytes.len() / 14));
    for _ in 0..n {
        let len = u32_of(take(4)?)? as usize;
        let name = std::str::from_utf8(take(len)?).ok()?;
        let ts = i64::from_le_bytes(*take(8)?.first_chunk::<8>()?);
        let rank = *take(1)?.first()?;
        let presence = match take(1)?.first()? {
            0 => Presence::LoggedOut,
            1 => Presence::Available,
            2 => Presence::Paused,
            _ => return None,
        };
        out.push((Box::from(name), ((ts, rank), presence)));
    }
    (at == bytes.len()).then_some(out)
}

fn presence_after(kind: EventType) -> Presence {
    match kind {
        EventType::AgentLogin | EventType::AgentResume => Presence::Available,
        EventType::AgentPause => Presence::Paused,
        _ => Presence::LoggedOut,
    }
}

impl Transitions {
    /// Starts describing `book` as it is now (nothing is emitted for its past).
    pub fn new(book: &CallBook, threshold_ms: Millis) -> Self {
        Self {
            threshold_ms,
            clock: book.clock(Millis::MIN),
            calls: Vec::new(),
            agents: Vec::new(),
            presence: HashMap::new(),
        }
    }

    /// The clock the transitions are at.
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// Derives the transitions of one commit: `changes` (all of them since the last
    /// derive) as `book` reported them, `open` the calls open at the book's newest `ts`
    /// *before* these changes (the cells' index, before they settle the same changes).
    pub fn derive(&mut self, book: &CallBook, changes: &Changes, open: &OpenCalls) {
        let (old, new) = (self.clock, self.clock.max(book.clock(Millis::MIN)));
        // Unchanged calls that time out as the clock moves.
        let mut timed_out = open
            .anchored_in(
                timed_out_by(old).saturating_add(1),
                timed_out_by(new).saturating_add(1),
            )
            .peekable();
        if timed_out.peek().is_some() {
            let mut changed: Vec<u32> = changes.before.iter().map(|(i, _)| *i).collect();
            changed.sort_unstable();
            for (anchor, i) in timed_out {
                if changed.binary_search(&i).is_err() {
                    let line = book.line_of(book.state(i));
                    self.calls.push(unresolved(i, line, anchor, None));
                }
            }
        }
        self.clock = new;
        for (i, before) in &changes.before {
            let after = book.state(*i);
            self.diff(book, *i, Some((before, old)), after);
        }
        for i in changes.created_from..book.states().len() {
            self.diff(book, i as u32, None, book.state(i as u32));
        }
        for ev in changes.agents.iter().flatten() {
            self.agent(ev);
        }
    }

    /// When the next open call turns unresolved (its anchor + 6 h), if any: call
    /// [`Self::handle_timeout`] then. `open` as for [`Self::derive`] (now settled).
    pub fn next_timeout(&self, open: &OpenCalls) -> Option<Millis> {
        open.first_anchor_after(timed_out_by(self.clock))
            .map(|a| a.saturating_add(UNRESOLVED_AFTER))
    }

    /// Moves the clock to `now` (when later): the open calls anchored 6 h or more
    /// before it turn unresolved, in anchor order. `open` as for [`Self::next_timeout`].
    pub fn handle_timeout(&mut self, now: Millis, book: &CallBook, open: &OpenCalls) {
        if now <= self.clock {
            return;
        }
        let from = timed_out_by(self.clock).saturating_add(1);
        for (anchor, i) in open.anchored_in(from, timed_out_by(now).saturating_add(1)) {
            let line = book.line_of(book.state(i));
            self.calls.push(unresolved(i, line, anchor, None));
        }
        self.clock = now;
    }

    /// The calls of `line` waiting now (open at [`Self::clock`]), by anchor. `open` as
    /// for [`Self::next_timeout`].
    pub fn open_calls<'a>(
        &self,
        line: LineId,
        book: &'a CallBook,
        open: &'a OpenCalls,
    ) -> impl Iterator<Item = OpenCall> + 'a {
        let from = timed_out_by(self.clock).saturating_add(1);
        open.of_line_from(line, from)
            .map(move |(anchor, call)| OpenCall {
                call,
                anchor,
                wait_start: book.state(call).wait_start(),
            })
    }

    /// Takes the transitions emitted so far.
    pub fn drain(&mut self) -> (Vec<CallTransition>, Vec<AgentTransition>) {
        (
            std::mem::take(&mut self.calls),
            std::mem::take(&mut self.agents),
        )
    }

    /// The presence of an operator (logged out when never seen).
    pub fn presence(&self, agent: &str) -> Presence {
        self.presence
            .get(agent)
            .map_or(Presence::default(), |p| p.1)
    }

    /// Takes an operator's presence from a stored agent event (the book's past, which
    /// [`Self::new`] tells nothing of): folded as a live one is, nothing emitted.
    pub fn recall_agent(&mut self, ev: &AgentEvent) {
        self.fold_presence(ev);
    }

    /// Every operator's presence as folded so far, for [`Self::restore_presence`]:
    /// the count (`u32`), then each operator's name (length `u32`, UTF-8), the `ts` and
    /// tie rank of their latest event (`i64`, `u8`) and their presence (`u8`), by name.
    pub fn encode_presence(&self, out: &mut Vec<u8>) {
        let mut all: Vec<_> = self.presence.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.extend_from_slice(&(all.len() as u32).to_le_bytes());
        for (agent, ((ts, rank), presence)) in all {
            out.extend_from_slice(&(agent.len() as u32).to_le_bytes());
            out.extend_from_slice(agent.as_bytes());
            out.extend_from_slice(&ts.to_le_bytes());
            out.push(*rank);
            out.push(*presence as u8);
        }
    }

    /// Takes the operators' presence encoded by [`Self::encode_presence`] (of the events
    /// up to some point of the log; those after it are then recalled one by one, in any
    /// order: presence depends only on the set of events). False, and nothing taken, when
    /// the bytes do not decode.
    pub fn restore_presence(&mut self, bytes: &[u8]) -> bool {
        let Some(table) = decode_presence(bytes) else {
            return false;
        };
        for (agent, slot) in table {
            let known = self
                .presence
                .entry(agent)
                .or_insert(((Millis::MIN, 0), Presence::LoggedOut));
            if slot.0 >= known.0 {
                *known = slot;
            }
        }
        true
    }

    /// The operators logged in (available or paused), by name.
    pub fn present(&self) -> Vec<(Box<str>, Presence)> {
        let mut out: Vec<(Box<str>, Presence)> = self
            .presence
            .iter()
            .filter(|(_, p)| p.1 != Presence::LoggedOut)
            .map(|(agent, p)| (agent.clone(), p.1))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Folds one agent event: (presence before, after, whether it was late).
    fn fold_presence(&mut self, ev: &AgentEvent) -> (Presence, Presence, bool) {
        let key = (ev.ts, rank(ev.kind));
        let slot = self
            .presence
            .entry(ev.agent.clone())
            .or_insert(((Millis::MIN, 0), Presence::LoggedOut));
        let before = slot.1;
        let late = key < slot.0;
        if !late {
            *slot = (key, presence_after(ev.kind));
        }
        (before, slot.1, late)
    }

    fn agent(&mut self, ev: &AgentEvent) {
        let (before, after, late) = self.fold_presence(ev);
        self.agents.push(AgentTransition {
            agent: ev.agent.clone(),
            kind: ev.kind,
            at: ev.ts,
            before,
            after,
            late,
        });
    }

    /// The transitions from a call's record at the old clock (`None`: a new call) to its
    /// record at the current one.
    fn diff(
        &mut self,
        book: &CallBook,
        call: u32,
        before: Option<(&CallState, Millis)>,
        after: &CallState,
    ) {
        let fresh = CallState::default();
        let (b, b_rec) = match before {
            Some((state, clock)) => (state, Some(book.record(state, clock))),
            None => (&fresh, None),
        };
        let a_rec = book.record(after, self.clock);
        let line = book.line_of(after);
        let mut emit = |at, change, replaces| {
            self.calls.push(CallTransition {
                call,
                line,
                at,
                change,
                replaces,
            });
        };
        let had = |t: Millis| (t != NONE).then_some(t);
        if b_rec.is_none_or(|r| r.anchor != a_rec.anchor || book.line_of(b) != line) {
            emit(
                a_rec.anchor,
                CallChange::Offered { line },
                b_rec.map(|r| r.anchor),
            );
        }
        if after.announcement_end != b.announcement_end {
            let replaces = had(b.announcement_end);
            emit(
                after.announcement_end,
                CallChange::AnnouncementEnd,
                replaces,
            );
        }
        if after.queued != b.queued {
            emit(after.queued, CallChange::Queued, had(b.queued));
        }
        let was = b_rec.map(|r| r.outcome);
        if b_rec.is_none_or(|r| r.outcome != a_rec.outcome || r.net_wait != a_rec.net_wait) {
            let same = |o: Outcome, t: Millis| (was == Some(o)).then_some(t).and_then(had);
            let wait = a_rec.net_wait.unwrap_or(0);
            match a_rec.outcome {
                Outcome::Answered => emit(
                    after.answered,
                    CallChange::Answered {
                        net_wait_ms: wait,
                        within_threshold: wait < self.threshold_ms,
                    },
                    same(Outcome::Answered, b.answered),
                ),
                Outcome::Abandoned => emit(
                    after.abandoned,
                    CallChange::Abandoned { net_wait_ms: wait },
                    same(Outcome::Abandoned, b.abandoned),
                ),
                Outcome::Overflow => emit(
                    after.overflow,
                    CallChange::Overflow,
                    same(Outcome::Overflow, b.overflow),
                ),
                Outcome::Unresolved => {
                    let replaces = b_rec
                        .filter(|r| r.outcome == Outcome::Unresolved)
                        .map(|r| r.anchor.saturating_add(UNRESOLVED_AFTER));
                    let t = unresolved(call, line, a_rec.anchor, replaces);
                    emit(t.at, t.change, t.replaces);
                }
                Outcome::Open if b_rec.is_some() => emit(self.clock, CallChange::Reopened, None),
                Outcome::Open => {}
            }
        }
        if after.ended != b.ended || b_rec.is_some_and(|r| r.talk != a_rec.talk) {
            let talk_ms = a_rec.talk;
            emit(after.ended, CallChange::Ended { talk_ms }, had(b.ended));
        }
        if after.bookings != b.bookings {
            let bookings = after.bookings;
            emit(self.clock, CallChange::Booking { bookings }, None);
        }
    }
}

fn unresolved(call: u32, line: LineId, anchor: Millis, replaces: Option<Millis>) -> CallTransition {
    CallTransition {
        call,
        line,
        at: anchor.saturating_add(UNRESOLVED_AFTER),
        change: CallChange::Unresolved,
        replaces,
    }
}

#[cfg(test)]
mod tests {
    //! Differential over random streams: replaying the transitions gives each call's
    //! record, the open-call index equals a scan, timeouts fire at anchor + 6 h.
    use super::*;
    use crate::calendar::ServiceCalendar;
    use crate::callbook::Fold;
    use crate::cells::Cells;
    use crate::event::EventType::{self, *};
    use crate::random_edits::Rng;
    use crate::time::{HOUR, SECOND};

    const T: Millis = 140_000;
    const BASE: Millis = 1_560_000_000_000;
    const LINES: [&str; 3] = ["cup", "prelievi", "zeta"];
    const AGENTS: [&str; 3] = ["op1", "op2", "op3"];

    /// A book with its cells and transitions, driven as the engine drives them.
    struct Live {
        book: CallBook,
        cells: Cells,
        tr: Transitions,
        key: u128,
        out: Vec<CallTransition>,
        agents: Vec<AgentTransition>,
    }

    impl Live {
        fn new() -> Self {
            let mut book = CallBook::new([3; 16]);
            book.track_agents();
            let cells = Cells::build(&book, &ServiceCalendar::default(), T);
            let tr = Transitions::new(&book, T);
            Self {
                book,
                cells,
                tr,
                key: 0,
                out: Vec::new(),
                agents: Vec::new(),
            }
        }

        /// Applies one event; `resend` gives it the key of the previous one (a duplicate).
        fn apply(
            &mut self,
            kind: EventType,
            ts: Millis,
            call: u32,
            name: Option<&str>,
            resend: bool,
        ) {
            if !resend || self.key == 0 {
                self.key += 1;
            }
            let agent = kind.is_agent_event();
            let fold = Fold {
                kind,
                ts,
                call: (!agent).then_some(u128::from(call) + 1),
                line: name.filter(|_| !agent).map(str::as_bytes),
                agent: name.filter(|_| agent).map(str::as_bytes),
            };
            self.book.apply_fold(fold, self.key);
        }

        fn commit(&mut self) {
            let changes = self.book.take_changes().expect("tracked");
            self.tr
                .derive(&self.book, &changes, self.cells.open_calls());
            self.cells.settle(&self.book, changes);
            self.drain();
        }

        /// Between commits, as the engine calls it.
        fn timeout(&mut self, now: Millis) {
            self.commit();
            self.tr
                .handle_timeout(now, &self.book, self.cells.open_calls());
            self.drain();
        }

        fn drain(&mut self) {
            let (calls, agents) = self.tr.drain();
            self.out.extend(calls);
            self.agents.extend(agents);
        }

        fn line(&self, name: &str) -> LineId {
            self.book.line_id(name).expect("line")
        }
    }

    /// A call's record as its transitions tell it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Replayed {
        anchor: Millis,
        line: LineId,
        outcome: Outcome,
        net_wait: Option<Millis>,
        talk: Option<Millis>,
        bookings: u32,
    }

    fn replay(ts: &[CallTransition]) -> HashMap<u32, Replayed> {
        let mut calls = HashMap::new();
        for t in ts {
            let r = calls.entry(t.call).or_insert(Replayed {
                anchor: NONE,
                line: LineId::MAX,
                outcome: Outcome::Open,
                net_wait: None,
                talk: None,
                bookings: 0,
            });
            match t.change {
                CallChange::Offered { line } => (r.anchor, r.line) = (t.at, line),
                CallChange::AnnouncementEnd | CallChange::Queued => {}
                CallChange::Answered {
                    net_wait_ms,
                    within_threshold,
                } => {
                    assert_eq!(within_threshold, net_wait_ms < T);
                    (r.outcome, r.net_wait) = (Outcome::Answered, Some(net_wait_ms));
                }
                CallChange::Abandoned { net_wait_ms } => {
                    (r.outcome, r.net_wait) = (Outcome::Abandoned, Some(net_wait_ms));
                }
                CallChange::Overflow => (r.outcome, r.net_wait) = (Outcome::Overflow, None),
                CallChange::Unresolved => {
                    assert_eq!(t.at, r.anchor + UNRESOLVED_AFTER, "fires at anchor + 6 h");
                    (r.outcome, r.net_wait) = (Outcome::Unresolved, None);
                }
                CallChange::Reopened => (r.outcome, r.net_wait) = (Outcome::Open, None),
                CallChange::Ended { talk_ms } => r.talk = talk_ms,
                CallChange::Booking { bookings } => r.bookings = bookings,
            }
            assert_eq!(r.line, t.line, "a transition carries the call's line");
        }
        calls
    }

    fn check(live: &Live, seed: u64) {
        let (book, clock) = (&live.book, live.tr.clock());
        let replayed = replay(&live.out);
        assert_eq!(replayed.len(), book.calls(), "seed {seed}: every call told");
        for (i, state) in book.states().iter().enumerate() {
            let rec = book.record(state, clock);
            let want = Replayed {
                anchor: rec.anchor,
                line: book.line_of(state),
                outcome: rec.outcome,
                net_wait: rec.net_wait,
                talk: rec.talk,
                bookings: rec.bookings,
            };
            assert_eq!(
                replayed.get(&(i as u32)),
                Some(&want),
                "seed {seed} call {i}"
            );
        }
        // The open-call index equals a scan of the book.
        let mut next = None::<Millis>;
        for name in book.line_names() {
            let line = live.line(name);
            let open = live.cells.open_calls();
            let got: Vec<_> = live.tr.open_calls(line, book, open).collect();
            let mut want: Vec<_> = (0u32..)
                .zip(book.states().iter())
                .filter(|(_, s)| book.line_of(s) == line)
                .filter(|(_, s)| book.record(s, clock).outcome == Outcome::Open)
                .map(|(call, s)| OpenCall {
                    call,
                    anchor: s.anchor(),
                    wait_start: s.wait_start(),
                })
                .collect();
            want.sort_by_key(|c| (c.anchor, c.call));
            for c in &want {
                let t = c.anchor + UNRESOLVED_AFTER;
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            assert_eq!(got, want, "seed {seed} line {name}");
        }
        assert_eq!(
            live.tr.next_timeout(live.cells.open_calls()),
            next,
            "seed {seed}"
        );
    }

    fn random_stream(rng: &mut Rng) -> Vec<(EventType, Millis, u32, Option<&'static str>)> {
        let mut evs = Vec::new();
        for call in 0..(3 + rng.below(40) as u32) {
            let anchor = BASE + rng.below(10) as Millis * HOUR + rng.below(3600) as Millis * SECOND;
            let line = Some(*rng.pick(&LINES)).filter(|_| rng.below(4) > 0);
            if rng.below(8) > 0 {
                evs.push((Offered, anchor, call, line));
            }
            if rng.below(6) == 0 {
                let shift = [0, 5 * SECOND, -2 * HOUR, 3 * HOUR][rng.below(4)];
                evs.push((Offered, anchor + shift, call, Some(*rng.pick(&LINES))));
            }
            let start = anchor + 40 * SECOND;
            match rng.below(4) {
                0 => evs.push((AnnouncementEnd, start, call, None)),
                1 => evs.push((Queued, start - SECOND, call, None)),
                2 => {
                    evs.push((Queued, start - SECOND, call, None));
                    evs.push((AnnouncementEnd, start, call, None));
                }
                _ => {}
            }
            let end = start + [0, 999, 139_999, 140_000, 400_000][rng.below(5)];
            for _ in 0..rng.below(3) {
                let kind = *rng.pick(&[Answered, Abandoned, Overflow, Ended]);
                let at = end + [-60 * SECOND, 0, 30 * SECOND][rng.below(3)];
                evs.push((kind, at, call, None));
            }
            for _ in 0..rng.below(3) {
                evs.push((Booking, end + rng.below(100) as Millis * SECOND, call, None));
            }
        }
        for _ in 0..rng.below(8) {
            let kind = *rng.pick(&[AgentLogin, AgentLogout, AgentPause, AgentResume]);
            let at = BASE + rng.below(20) as Millis * HOUR;
            evs.push((kind, at, 0, Some(*rng.pick(&AGENTS))));
        }
        for i in (1..evs.len()).rev() {
            let j = rng.below(i + 1);
            evs.swap(i, j);
        }
        evs
    }

    #[test]
    fn replayed_transitions_give_every_record_and_the_index_equals_a_scan() {
        for seed in 1..=300 {
            let mut rng = Rng::new(seed);
            let mut live = Live::new();
            for (kind, ts, call, name) in random_stream(&mut rng) {
                live.apply(kind, ts, call, name, rng.below(10) == 0);
                if rng.below(4) == 0 {
                    live.commit();
                    check(&live, seed);
                }
                if rng.below(6) == 0 {
                    // The wall clock: sometimes behind the book's clock, often ahead.
                    let now = live.tr.clock().max(BASE) + [-HOUR, 0, HOUR, 5 * HOUR][rng.below(4)];
                    live.timeout(now);
                    check(&live, seed);
                }
            }
            live.commit();
            check(&live, seed);
            // Presence is the state of each operator's latest event, whatever the order.
            for agent in AGENTS {
                let latest = live
                    .agents
                    .iter()
                    .filter(|t| &*t.agent == agent)
                    .max_by_key(|t| (t.at, rank(t.kind)));
                let want = latest.map_or(Presence::LoggedOut, |t| presence_after(t.kind));
                assert_eq!(live.tr.presence(agent), want, "seed {seed} {agent}");
                let told = live.agents.iter().rev().find(|t| &*t.agent == agent);
                assert_eq!(told.map_or(Presence::LoggedOut, |t| t.after), want);
            }
        }
    }

    #[test]
    fn a_timeout_fires_exactly_six_hours_after_the_anchor_and_a_late_event_resolves_it() {
        let mut live = Live::new();
        live.apply(Offered, BASE, 1, Some("prelievi"), false);
        live.apply(AnnouncementEnd, BASE + 40 * SECOND, 1, None, false);
        live.commit();
        let line = live.line("prelievi");
        let waiting: Vec<_> = live
            .tr
            .open_calls(line, &live.book, live.cells.open_calls())
            .collect();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].wait_start, BASE + 40 * SECOND);
        let due = BASE + UNRESOLVED_AFTER;
        assert_eq!(live.tr.next_timeout(live.cells.open_calls()), Some(due));
        let told = live.out.len();
        live.timeout(due - 1);
        assert_eq!(live.out.len(), told, "nothing before anchor + 6 h");
        live.timeout(due);
        let t = live.out.last().copied().expect("timed out");
        assert_eq!((t.call, t.at, t.change), (0, due, CallChange::Unresolved));
        assert_eq!(live.tr.next_timeout(live.cells.open_calls()), None);
        let open = live.cells.open_calls();
        assert_eq!(live.tr.open_calls(line, &live.book, open).count(), 0);
        // A late answer still resolves it; a later earlier one replaces it.
        live.apply(Answered, BASE + 200 * SECOND, 1, None, false);
        live.commit();
        let t = live.out.last().copied().expect("answered");
        let answered = |w| CallChange::Answered {
            net_wait_ms: w,
            within_threshold: w < T,
        };
        assert_eq!(
            (t.at, t.change, t.replaces),
            (BASE + 200 * SECOND, answered(160_000), None)
        );
        live.apply(Answered, BASE + 100 * SECOND, 1, None, false);
        live.commit();
        let t = live.out.last().copied().expect("answered earlier");
        assert_eq!(
            (t.at, t.change, t.replaces),
            (
                BASE + 100 * SECOND,
                answered(60_000),
                Some(BASE + 200 * SECOND)
            )
        );
        // An earlier announcement end moves the wait start: the answer is told again.
        live.apply(AnnouncementEnd, BASE + 30 * SECOND, 1, None, false);
        live.commit();
        let n = live.out.len();
        assert_eq!(live.out[n - 2].change, CallChange::AnnouncementEnd);
        assert_eq!(live.out[n - 2].replaces, Some(BASE + 40 * SECOND));
        assert_eq!(live.out[n - 1].change, answered(70_000));
    }

    #[test]
    fn the_clock_moved_by_an_event_times_out_the_open_calls() {
        let mut live = Live::new();
        live.apply(Offered, BASE, 1, None, false);
        live.apply(Offered, BASE + HOUR, 2, None, false);
        live.commit();
        live.apply(AgentLogin, BASE + UNRESOLVED_AFTER, 0, Some("op1"), false);
        live.commit();
        let last = live.out.last().copied().expect("timed out");
        assert_eq!((last.call, last.change), (0, CallChange::Unresolved));
        assert_eq!(
            live.tr.next_timeout(live.cells.open_calls()),
            Some(BASE + 7 * HOUR)
        );
        assert_eq!(live.agents.len(), 1);
        assert_eq!(live.agents[0].after, Presence::Available);
    }

    #[test]
    fn agent_presence_follows_the_latest_event_and_late_ones_change_nothing() {
        let mut live = Live::new();
        for (kind, min) in [
            (AgentLogin, 0),
            (AgentPause, 10),
            (AgentLogout, 30),
            (AgentResume, 20),
        ] {
            live.apply(kind, BASE + min * 60 * SECOND, 0, Some("op1"), false);
        }
        live.commit();
        let got: Vec<_> = live
            .agents
            .iter()
            .map(|t| (t.before, t.after, t.late))
            .collect();
        use Presence::*;
        assert_eq!(
            got,
            [
                (LoggedOut, Available, false),
                (Available, Paused, false),
                (Paused, LoggedOut, false),
                (LoggedOut, LoggedOut, true),
            ]
        );
        assert_eq!(live.tr.presence("op1"), LoggedOut);
        assert_eq!(live.tr.presence("op2"), LoggedOut);
        // A duplicate (same key) is not an event: nothing is told.
        live.apply(AgentLogin, BASE + HOUR, 0, Some("op1"), true);
        live.commit();
        assert_eq!(live.agents.len(), 4);
    }

    /// Presence kept at some point and restored, then the later events recalled (in any
    /// order), is the presence of every event recalled; damaged bytes are refused.
    #[test]
    fn presence_restored_then_recalled_equals_recalling_everything() {
        let book = CallBook::new([7; 16]);
        let ev = |kind, min: i64, agent: &str| AgentEvent {
            kind,
            ts: BASE + min * 60 * SECOND,
            agent: agent.into(),
        };
        let events = [
            ev(AgentLogin, 0, "op1"),
            ev(AgentPause, 10, "op2"),
            ev(AgentLogin, 5, "op2"),
            ev(AgentLogout, 30, "op1"),
            ev(AgentResume, 20, "op1"),
            ev(AgentLogin, 30, "op1"),
            ev(AgentLogin, 40, "op3"),
        ];
        let mut whole = Transitions::new(&book, 140_000);
        for e in &events {
            whole.recall_agent(e);
        }
        for cut in 0..=events.len() {
            let mut first = Transitions::new(&book, 140_000);
            for e in &events[..cut] {
                first.recall_agent(e);
            }
            let mut kept = Vec::new();
            first.encode_presence(&mut kept);
            let mut back = Transitions::new(&book, 140_000);
            assert!(back.restore_presence(&kept), "cut {cut}");
            for e in events[cut..].iter().rev() {
                back.recall_agent(e);
            }
            assert_eq!(back.present(), whole.present(), "cut {cut}");
            assert_eq!(back.presence, whole.presence, "cut {cut}");
            if !kept.is_empty() {
                let mut short = kept.clone();
                short.pop();
                assert!(!Transitions::new(&book, 140_000).restore_presence(&short));
            }
        }
    }
}
