//! The live queue, folded from the domain's transitions only (no scan of the history):
//! per line the calls waiting now and the last 15 minutes' facts, and the operators'
//! presence. Pure: the caller passes `now`.
//!
//! A call is waiting from its anchor until an outcome (or 6 h, when it turns
//! unresolved); its net wait runs from its wait start (spec §2: the earliest
//! announcement end, else queued, else the anchor). Operators busy are the calls in
//! conversation (answered, not ended): the transitions do not name the operator.

use netwait_aggregator::domain::call::{LineId, UNRESOLVED_AFTER};
use netwait_aggregator::domain::time::Millis;
use netwait_aggregator::domain::transitions::{CallChange, CallTransition, OpenCall, Presence};
use netwait_aggregator::engine::TransitionBatch;
use std::collections::HashMap;

/// The window of the "last 15 minutes" counts.
pub const WINDOW: Millis = 15 * 60 * 1000;

/// A call in conversation longer than this without an `ended` is not counted busy.
const TALK_FORGOTTEN: Millis = 4 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Answered,
    Abandoned,
    Overflow,
    Unresolved,
}

#[derive(Debug, Clone, Copy)]
struct Call {
    line: LineId,
    anchor: Option<Millis>,
    announcement_end: Option<Millis>,
    queued: Option<Millis>,
    /// The wait start the engine gave when the call was open at the start (not the
    /// anchor): it knew facts told before the transitions were watched.
    seeded_start: Option<Millis>,
    outcome: Option<(Closed, Millis)>,
}

impl Call {
    fn new(line: LineId) -> Self {
        Self {
            line,
            anchor: None,
            announcement_end: None,
            queued: None,
            seeded_start: None,
            outcome: None,
        }
    }

    /// Its wait start while it waits at `now`.
    fn waiting(&self, now: Millis) -> Option<Millis> {
        let anchor = self.anchor?;
        if self.outcome.is_some() || anchor + UNRESOLVED_AFTER <= now {
            return None;
        }
        Some(
            self.announcement_end
                .or(self.seeded_start)
                .or(self.queued)
                .unwrap_or(anchor),
        )
    }
}

/// The last 15 minutes of one line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub overflow: u64,
}

impl Window {
    /// Calls closed by answer, abandon or overflow.
    pub fn closed(&self) -> u64 {
        self.answered + self.abandoned + self.overflow
    }
}

/// One line's queue now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineQueue {
    pub waiting: u32,
    /// The longest current net wait.
    pub longest_wait_ms: Option<Millis>,
    pub window: Window,
}

/// Operators now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorCounts {
    pub logged_in: u32,
    pub busy: u32,
    pub paused: u32,
}

/// The live queue (see the module doc).
#[derive(Debug, Default)]
pub struct Tracker {
    lines: Vec<String>,
    /// Calls waiting, or closed or offered within the window.
    calls: HashMap<u32, Call>,
    /// Calls in conversation: when they were answered.
    talking: HashMap<u32, Millis>,
    agents: HashMap<Box<str>, Presence>,
    /// The newest instant any transition told.
    last_event: Option<Millis>,
}

impl Tracker {
    /// Starts again from the calls open now and the operators logged in (the book was
    /// rebuilt or just watched).
    pub fn seed(
        &mut self,
        lines: Vec<String>,
        open: impl IntoIterator<Item = (LineId, OpenCall)>,
        agents: impl IntoIterator<Item = (Box<str>, Presence)>,
    ) {
        self.lines = lines;
        self.calls.clear();
        self.talking.clear();
        self.agents = agents.into_iter().collect();
        for (line, c) in open {
            let mut call = Call::new(line);
            call.anchor = Some(c.anchor);
            call.seeded_start = (c.wait_start != c.anchor).then_some(c.wait_start);
            self.calls.insert(c.call, call);
        }
    }

    /// The service lines by id.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub fn set_lines(&mut self, lines: Vec<String>) {
        self.lines = lines;
    }

    pub fn last_event(&self) -> Option<Millis> {
        self.last_event
    }

    /// Folds one drained batch (a reset batch must be followed by [`Self::seed`]).
    pub fn apply(&mut self, batch: &TransitionBatch) {
        for t in &batch.calls {
            self.apply_call(t);
        }
        for a in &batch.agents {
            if !a.late {
                self.agents.insert(a.agent.clone(), a.after);
            }
            self.last_event = Some(self.last_event.map_or(a.at, |l| l.max(a.at)));
        }
    }

    fn apply_call(&mut self, t: &CallTransition) {
        if !matches!(
            t.change,
            CallChange::Booking { .. } | CallChange::Unresolved
        ) {
            self.last_event = Some(self.last_event.map_or(t.at, |l| l.max(t.at)));
        }
        let call = self
            .calls
            .entry(t.call)
            .or_insert_with(|| Call::new(t.line));
        call.line = t.line;
        let close = |call: &mut Call, how| call.outcome = Some((how, t.at));
        match t.change {
            CallChange::Offered { .. } => call.anchor = Some(t.at),
            CallChange::AnnouncementEnd => call.announcement_end = Some(t.at),
            CallChange::Queued => call.queued = Some(t.at),
            CallChange::Answered { .. } => {
                close(call, Closed::Answered);
                self.talking.insert(t.call, t.at);
                return;
            }
            CallChange::Abandoned { .. } => close(call, Closed::Abandoned),
            CallChange::Overflow => close(call, Closed::Overflow),
            CallChange::Unresolved => close(call, Closed::Unresolved),
            CallChange::Reopened => call.outcome = None,
            CallChange::Ended { .. } => {}
            CallChange::Booking { .. } => return,
        }
        if matches!(
            t.change,
            CallChange::Abandoned { .. }
                | CallChange::Overflow
                | CallChange::Unresolved
                | CallChange::Reopened
                | CallChange::Ended { .. }
        ) {
            self.talking.remove(&t.call);
        }
    }

    /// Forgets the calls neither waiting nor in the window at `now`.
    pub fn prune(&mut self, now: Millis) {
        let since = now - WINDOW;
        self.calls.retain(|_, c| {
            c.waiting(now).is_some()
                || c.anchor.is_some_and(|a| a > since)
                || c.outcome.is_some_and(|(_, at)| at > since)
        });
        self.talking.retain(|_, at| *at > now - TALK_FORGOTTEN);
    }

    /// Each line's queue at `now`, by line id.
    pub fn queues(&self, now: Millis) -> Vec<LineQueue> {
        let mut out = vec![LineQueue::default(); self.lines.len()];
        let since = now - WINDOW;
        let within = |at: Millis| at > since && at <= now;
        for c in self.calls.values() {
            let Some(q) = out.get_mut(c.line as usize) else {
                continue;
            };
            if let Some(start) = c.waiting(now) {
                q.waiting += 1;
                let wait = (now - start).max(0);
                q.longest_wait_ms = Some(q.longest_wait_ms.map_or(wait, |w| w.max(wait)));
            }
            if c.anchor.is_some_and(within) {
                q.window.offered += 1;
            }
            match c.outcome {
                Some((Closed::Answered, at)) if within(at) => q.window.answered += 1,
                Some((Closed::Abandoned, at)) if within(at) => q.window.abandoned += 1,
                Some((Closed::Overflow, at)) if within(at) => q.window.overflow += 1,
                _ => {}
            }
        }
        out
    }

    /// When the next waiting call's net wait reaches `wait_ms`, after `now`.
    pub fn next_crossing(&self, now: Millis, wait_ms: Millis) -> Option<Millis> {
        self.calls
            .values()
            .filter_map(|c| c.waiting(now))
            .map(|start| start + wait_ms)
            .filter(|&at| at > now)
            .min()
    }

    pub fn operators(&self) -> OperatorCounts {
        let mut n = OperatorCounts {
            busy: self.talking.len() as u32,
            ..OperatorCounts::default()
        };
        for p in self.agents.values() {
            match p {
                Presence::Available => n.logged_in += 1,
                Presence::Paused => {
                    n.logged_in += 1;
                    n.paused += 1;
                }
                Presence::LoggedOut => {}
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::domain::event::EventType;
    use netwait_aggregator::domain::transitions::AgentTransition;

    const S: Millis = 1000;
    const T0: Millis = 1_560_000_000_000;

    fn t(call: u32, line: LineId, at: Millis, change: CallChange) -> CallTransition {
        CallTransition {
            call,
            line,
            at,
            change,
            replaces: None,
        }
    }

    fn batch(calls: Vec<CallTransition>) -> TransitionBatch {
        TransitionBatch {
            reset: false,
            calls,
            agents: Vec::new(),
        }
    }

    #[test]
    fn waiting_calls_their_longest_wait_and_the_window() {
        let mut tr = Tracker::default();
        tr.seed(
            vec!["cup".into(), "prelievi".into()],
            [(
                1,
                OpenCall {
                    call: 9,
                    anchor: T0 - 100 * S,
                    wait_start: T0 - 60 * S,
                },
            )],
            [("op".into(), Presence::Paused)],
        );
        assert_eq!(tr.operators().paused, 1, "seeded presence");
        tr.apply(&batch(vec![
            t(0, 0, T0, CallChange::Offered { line: 0 }),
            t(0, 0, T0 + 40 * S, CallChange::AnnouncementEnd),
            t(1, 0, T0 + 10 * S, CallChange::Offered { line: 0 }),
        ]));
        let now = T0 + 100 * S;
        let q = tr.queues(now);
        assert_eq!(q[0].waiting, 2);
        assert_eq!(
            q[0].longest_wait_ms,
            Some(90 * S),
            "call 1 waits from its anchor"
        );
        assert_eq!(q[0].window.offered, 2);
        assert_eq!(q[1].longest_wait_ms, Some(160 * S), "the seeded wait start");
        assert_eq!(q[1].window.offered, 1, "offered 200 s ago");
        assert_eq!(tr.next_crossing(now, 120 * S), Some(T0 + 130 * S));
        tr.apply(&batch(vec![
            t(
                1,
                0,
                now,
                CallChange::Answered {
                    net_wait_ms: 90 * S,
                    within_threshold: true,
                },
            ),
            t(
                0,
                0,
                now,
                CallChange::Abandoned {
                    net_wait_ms: 60 * S,
                },
            ),
        ]));
        let q = tr.queues(now);
        assert_eq!((q[0].waiting, q[0].longest_wait_ms), (0, None));
        let w = q[0].window;
        assert_eq!((w.answered, w.abandoned, w.closed()), (1, 1, 2));
        assert_eq!(tr.operators().busy, 1);
        tr.apply(&batch(vec![t(
            1,
            0,
            now + S,
            CallChange::Ended { talk_ms: Some(S) },
        )]));
        assert_eq!(tr.operators().busy, 0);
        // 15 minutes later only the seeded call is left (still waiting), then 6 h.
        tr.prune(now + WINDOW + S);
        assert_eq!(tr.calls.len(), 1);
        let q = tr.queues(now + WINDOW + S);
        assert_eq!((q[0].window, q[1].waiting), (Window::default(), 1));
        assert_eq!(tr.queues(T0 - 100 * S + UNRESOLVED_AFTER)[1].waiting, 0);
        // A reopened call (a late, later offered) waits again.
        tr.apply(&batch(vec![
            t(0, 0, now, CallChange::Offered { line: 0 }),
            t(0, 0, now, CallChange::Reopened),
        ]));
        assert_eq!(tr.queues(now + S)[0].waiting, 1);
    }

    #[test]
    fn operators_follow_presence_and_late_events_change_nothing() {
        let mut tr = Tracker::default();
        let ev = |agent: &str, after, late| AgentTransition {
            agent: agent.into(),
            kind: EventType::AgentLogin,
            at: T0,
            before: Presence::LoggedOut,
            after,
            late,
        };
        tr.apply(&TransitionBatch {
            reset: false,
            calls: Vec::new(),
            agents: vec![
                ev("a", Presence::Available, false),
                ev("b", Presence::Paused, false),
                ev("c", Presence::Available, false),
                ev("c", Presence::LoggedOut, false),
                ev("a", Presence::LoggedOut, true),
            ],
        });
        let n = tr.operators();
        assert_eq!((n.logged_in, n.paused, n.busy), (2, 1, 0));
        assert_eq!(tr.last_event(), Some(T0));
    }
}
