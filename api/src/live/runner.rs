//! The live side's thread: folds what the writer drains into the [`Tracker`], judges
//! the alert rules, and publishes a [`LiveState`] every second and at once when an
//! alert is raised or cleared (or when a call's wait crosses the long-wait threshold,
//! at that instant). Readers take the latest from a `watch` channel, so a slow one
//! never holds up this thread, nor the writer, which only sends into an unbounded
//! channel.

use super::alerts::{Alert, Alerts, Check, Rule, Severity};
use super::clock::Clock;
use super::config::LiveRules;
use super::past::{PastDays, PastView};
use super::tracker::Tracker;
use super::view::{DaySla, LineLive, LiveSla, LiveState, Operators};
use super::webhook::Webhook;
use netwait_aggregator::domain::call::LineId;
use netwait_aggregator::domain::time::{Millis, RomeClock, SECOND, local_date};
use netwait_aggregator::domain::transitions::{OpenCall, Presence};
use netwait_aggregator::engine::TransitionBatch;
use netwait_aggregator::published::{Answers, Snapshot};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// What the writer hands the live side.
#[derive(Debug)]
pub enum LiveInput {
    /// Start again from the calls open now and the operators logged in (at the start,
    /// after a rebuilt book).
    Seed {
        lines: Vec<String>,
        open: Vec<(LineId, OpenCall)>,
        agents: Vec<(Box<str>, Presence)>,
    },
    /// What one piece of work drained (`lines`: the book's lines by id).
    Batch {
        lines: Vec<String>,
        batch: TransitionBatch,
    },
    /// Judge and publish now (a test moved its clock).
    Poke,
    /// Whether the source the live state follows (the Kafka brokers) is reachable: while
    /// it is not, the `source_unreachable` alert is open.
    Source { reachable: bool },
}

/// The writer's end.
#[derive(Debug, Clone)]
pub struct LiveFeed(Sender<LiveInput>);

impl LiveFeed {
    pub fn send(&self, input: LiveInput) {
        // The live thread gone (it panicked) must not stop ingest.
        let _ = self.0.send(input);
    }
}

/// The readers' end.
#[derive(Debug, Clone)]
pub struct LiveHandle {
    updates: watch::Receiver<Arc<LiveState>>,
    feed: LiveFeed,
    /// One permit per live stream open (server-wide), `max_streams` in all.
    streams: Arc<Semaphore>,
    max_streams: usize,
}

/// A live stream was refused: `max_streams` are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} live streams are open, the server's limit ([live] max_streams): try again when one ends"
)]
pub struct StreamsFull(pub usize);

impl LiveHandle {
    /// The latest update.
    pub fn latest(&self) -> Arc<LiveState> {
        Arc::clone(&self.updates.borrow())
    }

    /// A receiver of the updates, to await the next one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<LiveState>> {
        self.updates.clone()
    }

    /// A permit for one more live stream, held while it is open.
    pub fn open_stream(&self) -> Result<OwnedSemaphorePermit, StreamsFull> {
        Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| StreamsFull(self.max_streams))
    }

    /// Makes the live thread judge and publish now.
    pub fn poke(&self) {
        self.feed.send(LiveInput::Poke);
    }
}

/// Starts the live thread; `snapshots` are the engine's publications (the SLA figures
/// come from their cells); with `past`, the days of the month before today come from
/// it, today from the snapshots (see [`super::past`]).
pub fn start(
    rules: LiveRules,
    clock: Arc<dyn Clock>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    past: Option<PastDays>,
) -> std::io::Result<(LiveFeed, LiveHandle)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let webhook = rules.webhook_url.clone().map(Webhook::start).transpose()?;
    let max_streams = rules.max_streams;
    let mut live = Live {
        rules,
        now: clock.now_ms(),
        clock,
        snapshots,
        tracker: Tracker::default(),
        alerts: Alerts::default(),
        sla: Vec::new(),
        sla_at: None,
        past,
        unreachable_since: None,
        last_ingest: 0,
        seq: 0,
        webhook,
    };
    live.last_ingest = live.now;
    let first = live.update();
    let (publish, updates) = watch::channel(Arc::new(first));
    std::thread::Builder::new()
        .name("netwait-live".into())
        .spawn(move || live.run(&rx, &publish))?;
    let feed = LiveFeed(tx);
    let handle = LiveHandle {
        updates,
        feed: feed.clone(),
        streams: Arc::new(Semaphore::new(max_streams)),
        max_streams,
    };
    Ok((feed, handle))
}

/// Per line: today, month to date, and the month's days.
type LineSla = (LiveSla, LiveSla, Vec<DaySla>);

struct Live {
    rules: LiveRules,
    clock: Arc<dyn Clock>,
    now: Millis,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    tracker: Tracker,
    alerts: Alerts,
    /// By line (as [`Self::lines`] lists them), as of `sla_at`.
    sla: Vec<LineSla>,
    sla_at: Option<SlaAt>,
    /// The days before today, when they come from elsewhere than the snapshots.
    past: Option<PastDays>,
    /// Since when the followed source is unreachable.
    unreachable_since: Option<Millis>,
    /// When the writer last committed something (the live clock).
    last_ingest: Millis,
    seq: u64,
    webhook: Option<Webhook>,
}

const TICK: Millis = SECOND;

/// What the SLA figures were counted from: the snapshot's position, the local day, the
/// past days' read and the lines.
#[derive(Debug, PartialEq)]
struct SlaAt {
    position: netwait_aggregator::store::LogPosition,
    day: i64,
    past: Option<u64>,
    lines: Vec<String>,
}

impl Live {
    fn run(mut self, inputs: &Receiver<LiveInput>, publish: &watch::Sender<Arc<LiveState>>) {
        let mut next_tick = self.clock.now_ms() + TICK;
        loop {
            let now = self.clock.now_ms();
            let crossing = self.tracker.next_crossing(now, self.rules.long_wait_ms);
            let due = crossing.map_or(next_tick, |c| c.min(next_tick));
            let wait = Duration::from_millis((due - now).clamp(0, TICK) as u64);
            let forced = match inputs.recv_timeout(wait) {
                Ok(input) => {
                    let mut poked = self.take(input);
                    while let Ok(more) = inputs.try_recv() {
                        poked |= self.take(more);
                    }
                    poked
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.now = self.clock.now_ms();
            let ticked = self.now >= next_tick || self.now >= due;
            if self.now >= next_tick {
                next_tick = self.now + TICK;
                self.tracker.prune(self.now);
            }
            let before = self.alerts.open().count();
            let changed = self.judge();
            if ticked || forced || !changed.is_empty() || before != self.alerts.open().count() {
                let state = self.update();
                publish.send_replace(Arc::new(state));
            }
        }
    }

    /// Folds one input; true when it asks for an update at once.
    fn take(&mut self, input: LiveInput) -> bool {
        match input {
            LiveInput::Seed {
                lines,
                open,
                agents,
            } => self.tracker.seed(lines, open, agents),
            LiveInput::Batch { lines, batch } => {
                self.tracker.set_lines(lines);
                self.tracker.apply(&batch);
                self.last_ingest = self.clock.now_ms();
            }
            LiveInput::Poke => return true,
            LiveInput::Source { reachable } => {
                let now = self.clock.now_ms();
                match (reachable, self.unreachable_since) {
                    (true, _) => self.unreachable_since = None,
                    (false, None) => self.unreachable_since = Some(now),
                    (false, Some(_)) => {}
                }
                return true;
            }
        }
        false
    }

    /// The service lines: the tracker's (by line id), then those only the past days have
    /// (no call of them in the live book).
    fn lines(&self, past: Option<&PastView>) -> Vec<String> {
        let mut lines = self.tracker.lines().to_vec();
        for l in past.map(|p| p.lines.as_slice()).unwrap_or_default() {
            if !lines.contains(l) {
                lines.push(l.clone());
            }
        }
        lines
    }

    /// The SLA figures of every line, recounted from the snapshot's cells when it or
    /// the local day changed (at most once a tick: a busy ingest publishes far more).
    fn refresh_sla(&mut self, day: i64) {
        let snapshot = Arc::clone(&self.snapshots.borrow());
        let past = self.past.as_ref().map(|p| p.of_day(day));
        let names = self.lines(past.as_ref().and_then(Option::as_deref));
        let at = SlaAt {
            position: snapshot.position(),
            day,
            past: past.as_ref().map(|p| p.as_ref().map_or(0, |v| v.version)),
            lines: names,
        };
        if self.sla_at.as_ref() == Some(&at) {
            return;
        }
        let names = &at.lines;
        let policy = snapshot.config().policy;
        let today = local_date(day);
        let first = today.first_of_month();
        let next = |d: jiff::civil::Date| d.tomorrow().unwrap_or(d);
        let figures_of = |from, to, line: &str| {
            snapshot
                .table1(self.now, from, to, Some(line.to_owned()), None)
                .figures
        };
        let sla_of = |from, to, line: &str| LiveSla::of(&figures_of(from, to, line), policy);
        let sla = names
            .iter()
            .map(|line| match &past {
                // The days before today from the store, today from the live book.
                Some(view) => {
                    let today_figures = figures_of(today, next(today), line);
                    let Some(view) = view else {
                        // Not read for today yet: only today is known.
                        return (
                            LiveSla::of(&today_figures, policy),
                            LiveSla::default(),
                            Vec::new(),
                        );
                    };
                    let (mut month, days) = view.of(line);
                    let mut daily: Vec<DaySla> = (0..)
                        .zip(&days)
                        .map(|(i, f)| DaySla {
                            date: first
                                .checked_add(jiff::Span::new().days(i))
                                .unwrap_or(first)
                                .to_string(),
                            sla: LiveSla::of(f, policy).sla,
                        })
                        .collect();
                    let today_sla = LiveSla::of(&today_figures, policy);
                    daily.push(DaySla {
                        date: today.to_string(),
                        sla: today_sla.sla,
                    });
                    month.merge(&today_figures);
                    (today_sla, LiveSla::of(&month, policy), daily)
                }
                None => {
                    let mut daily = Vec::new();
                    let mut d = first;
                    while d <= today {
                        daily.push(DaySla {
                            date: d.to_string(),
                            sla: sla_of(d, next(d), line).sla,
                        });
                        d = next(d);
                        if d == first {
                            break;
                        }
                    }
                    (
                        sla_of(today, next(today), line),
                        sla_of(first, next(today), line),
                        daily,
                    )
                }
            })
            .collect();
        self.sla = sla;
        self.sla_at = Some(at);
    }

    /// The lines the SLA figures were counted for (see [`Self::lines`]).
    fn sla_lines(&self) -> &[String] {
        self.sla_at
            .as_ref()
            .map(|a| a.lines.as_slice())
            .unwrap_or_default()
    }

    fn local_now(&self) -> (i64, Millis) {
        RomeClock::default().local_day(self.now)
    }

    fn in_service(&self, day: i64, ms_of_day: Millis) -> bool {
        let snapshot = self.snapshots.borrow();
        snapshot
            .config()
            .calendar
            .hours_on(local_date(day))
            .is_some_and(|h| h.contains(ms_of_day))
    }

    /// Judges every rule now; sends what was raised or cleared to the webhook.
    fn judge(&mut self) -> Vec<Alert> {
        let (day, ms_of_day) = self.local_now();
        self.refresh_sla(day);
        let checks = self.checks(day, ms_of_day);
        let changed = self.alerts.evaluate(self.now, &checks);
        for a in &changed {
            netwait_aggregator::observe::emit(netwait_aggregator::observe::AlertChanged {
                id: &a.id,
                rule: a.rule.as_str(),
                severity: a.severity.as_str(),
                line: a.line.as_deref(),
                raised: a.cleared_ms.is_none(),
                message: &a.message,
            });
            if let Some(hook) = &self.webhook {
                hook.send(a);
            }
        }
        changed
    }

    fn checks(&self, day: i64, ms_of_day: Millis) -> Vec<Check> {
        let r = &self.rules;
        let snapshot = Arc::clone(&self.snapshots.borrow());
        let config = snapshot.config();
        let queues = self.tracker.queues(self.now);
        let mut out = Vec::new();
        let check = |rule, line: Option<&str>, severity, raise: bool, clear: bool, message| Check {
            rule,
            line: line.map(str::to_owned),
            severity,
            raise,
            clear: clear && !raise,
            hold_ms: 0,
            message,
        };
        let pct = |x: f64| format!("{:.1} %", x * 100.0);
        for (id, name) in self.sla_lines().iter().enumerate() {
            let q = queues.get(id).cloned().unwrap_or_default();
            let line = Some(name.as_str());
            let longest = q.longest_wait_ms.unwrap_or(0);
            let long = q.longest_wait_ms.is_some_and(|w| w >= r.long_wait_ms);
            out.push(check(
                Rule::LongWait,
                line,
                Severity::Warning,
                long,
                !long,
                format!(
                    "{name}: a caller has waited {} s (alert at {} s, SLA threshold {} s); {} waiting",
                    longest / SECOND,
                    r.long_wait_ms / SECOND,
                    config.threshold_ms / SECOND,
                    q.waiting
                ),
            ));
            let mtd = self.sla.get(id).and_then(|s| s.1.sla);
            for (rule, floor, severity, what) in [
                (
                    Rule::SlaBelowTarget,
                    config.target,
                    Severity::Warning,
                    "target",
                ),
                (
                    Rule::SlaGrave,
                    config.grave_floor,
                    Severity::Critical,
                    "grave floor",
                ),
            ] {
                let raise = mtd.is_some_and(|s| s < floor);
                let clear = mtd.is_none_or(|s| s >= floor + r.clear_margin);
                let message = format!(
                    "{name}: month-to-date SLA {} under the {what} {}",
                    mtd.map_or_else(|| "-".to_owned(), pct),
                    pct(floor)
                );
                out.push(check(rule, line, severity, raise, clear, message));
            }
            let w = q.window;
            for (rule, n, limit, what) in [
                (
                    Rule::AbandonShare,
                    w.abandoned,
                    r.abandon_share,
                    "abandoned",
                ),
                (
                    Rule::OverflowShare,
                    w.overflow,
                    r.overflow_share,
                    "overflowed",
                ),
            ] {
                let closed = w.closed();
                let share = (closed > 0).then(|| n as f64 / closed as f64);
                let enough = closed >= r.share_min_calls.max(1);
                let raise = enough && share.is_some_and(|s| s > limit);
                let clear = !enough || share.is_none_or(|s| s <= limit - r.clear_margin);
                let message = format!(
                    "{name}: {n} of {closed} calls {what} in the last 15 minutes ({}, limit {})",
                    share.map_or_else(|| "-".to_owned(), pct),
                    pct(limit)
                );
                out.push(check(rule, line, Severity::Warning, raise, clear, message));
            }
        }
        let in_service = self.in_service(day, ms_of_day);
        let ops = self.tracker.operators();
        let planned = if in_service {
            r.staffing.at(ms_of_day)
        } else {
            0
        };
        let few = in_service && ops.logged_in > 0 && ops.logged_in < planned;
        let mut c = check(
            Rule::Understaffed,
            None,
            Severity::Warning,
            few,
            !few,
            format!("{} operators logged in, {planned} planned", ops.logged_in),
        );
        c.hold_ms = r.staffing_hold_ms;
        out.push(c);
        let none = in_service && ops.logged_in == 0;
        let mut c = check(
            Rule::NoOperator,
            None,
            Severity::Critical,
            none,
            !none,
            "no operator logged in during service hours".to_owned(),
        );
        c.hold_ms = r.staffing_hold_ms;
        out.push(c);
        let cut = self.unreachable_since.map(|since| self.now - since);
        out.push(check(
            Rule::SourceUnreachable,
            None,
            Severity::Critical,
            cut.is_some(),
            cut.is_none(),
            format!(
                "the Kafka brokers have been unreachable for {} s: the live state is not updated",
                cut.unwrap_or(0) / SECOND
            ),
        ));
        let idle = self.now - self.last_ingest;
        let stalled = in_service && r.stalled_ms > 0 && idle >= r.stalled_ms;
        out.push(check(
            Rule::IngestStalled,
            None,
            Severity::Critical,
            stalled,
            !stalled,
            format!(
                "no events for {} minutes in service hours",
                idle / (60 * SECOND)
            ),
        ));
        out
    }

    fn update(&mut self) -> LiveState {
        self.seq += 1;
        let (day, ms_of_day) = self.local_now();
        self.refresh_sla(day);
        let snapshot = Arc::clone(&self.snapshots.borrow());
        let config = snapshot.config();
        let in_service = self.in_service(day, ms_of_day);
        let queues = self.tracker.queues(self.now);
        let ops = self.tracker.operators();
        let lines = self
            .sla_lines()
            .iter()
            .enumerate()
            .map(|(id, name)| {
                let q = queues.get(id).cloned().unwrap_or_default();
                let (today, month_to_date, daily) = self.sla.get(id).cloned().unwrap_or_default();
                LineLive {
                    line: name.clone(),
                    waiting: q.waiting,
                    longest_wait_s: q.longest_wait_ms.map(|w| w as f64 / 1000.0),
                    last_15m: q.window,
                    today,
                    month_to_date,
                    daily,
                }
            })
            .collect();
        LiveState {
            seq: self.seq,
            at_ms: self.now,
            in_service,
            threshold_s: config.threshold_ms as f64 / 1000.0,
            long_wait_s: self.rules.long_wait_ms as f64 / 1000.0,
            target: config.target,
            grave_floor: config.grave_floor,
            policy: config.policy.as_str(),
            lines,
            operators: Operators {
                logged_in: ops.logged_in,
                busy: ops.busy,
                paused: ops.paused,
                planned: if in_service {
                    self.rules.staffing.at(ms_of_day)
                } else {
                    0
                },
            },
            open_alerts: self.alerts.open().cloned().collect(),
            recent_alerts: self.alerts.recent().cloned().collect(),
            last_event_ms: self.tracker.last_event(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::clock::ManualClock;
    use netwait_aggregator::domain::config::MetricsConfig;
    use netwait_aggregator::domain::figures::Figures;
    use netwait_aggregator::domain::privacy::Pseudonymizer;
    use netwait_aggregator::domain::time::parse_rfc3339;
    use netwait_aggregator::domain::validate::validate_line;
    use netwait_aggregator::engine::Engine;
    use netwait_aggregator::store::memory::MemoryStore;
    use netwait_aggregator::store::record::Record;
    use std::collections::HashMap;

    /// The latest update after `seq`.
    fn next_after(handle: &LiveHandle, seq: u64) -> Arc<LiveState> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = handle.latest();
            if s.seq > seq {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "no update");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn with_past_days_the_month_to_date_is_their_month_and_the_snapshots_today() {
        let now = parse_rfc3339("2019-03-04T10:00:00+01:00").expect("ts");
        let mut engine = Engine::open(
            Box::new(MemoryStore::new()),
            [1; 16],
            MetricsConfig::default(),
        )
        .expect("engine");
        let p = Pseudonymizer::new([0; 32]);
        let lines = [
            r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00","line":"cup"}"#,
            r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:00:20+01:00","agent":"op"}"#,
        ];
        engine
            .ingest(
                lines
                    .iter()
                    .map(|l| Record::Event(validate_line(l.as_bytes(), &p).expect("valid"))),
            )
            .expect("ingest");
        engine.watch_transitions().expect("watch");
        let (_published, snapshots) = watch::channel(Arc::new(engine.publish()));
        let past = PastDays::default();
        let (day, _) = RomeClock::default().local_day(now);
        let month = Figures {
            answered: 2,
            answered_within_threshold: 1,
            ..Figures::default()
        };
        let day1 = Figures {
            answered: 2,
            answered_within_threshold: 1,
            ..Figures::default()
        };
        past.set(PastView {
            day,
            version: 1,
            lines: vec!["cup".into(), "prelievi".into()],
            month: HashMap::from([(
                "cup".to_owned(),
                (month, vec![day1, Figures::default(), Figures::default()]),
            )]),
        });
        let clock = ManualClock::new(now);
        let (feed, handle) = start(
            LiveRules::default(),
            Arc::new(clock),
            snapshots,
            Some(past.clone()),
        )
        .expect("start");
        let seq = handle.latest().seq;
        feed.send(crate::state::seed_of(&engine));
        handle.poke();
        let state = next_after(&handle, seq);
        let names: Vec<&str> = state.lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(names, ["cup", "prelievi"], "a line only the past days have");
        let cup = &state.lines[0];
        assert_eq!(cup.today.answered, Some(1.0), "today: the snapshot's call");
        assert_eq!(
            cup.month_to_date.answered,
            Some(2.0 / 3.0),
            "the store's month + today"
        );
        let daily: Vec<_> = cup.daily.iter().map(|d| (d.date.as_str(), d.sla)).collect();
        assert_eq!(
            daily,
            [
                ("2019-03-01", Some(0.5)),
                ("2019-03-02", None),
                ("2019-03-03", None),
                ("2019-03-04", Some(1.0)),
            ]
        );
        // A view of another day is not used: the month to date is unknown.
        past.set(PastView {
            day: day - 1,
            version: 2,
            ..PastView::default()
        });
        let seq = handle.latest().seq;
        handle.poke();
        let state = next_after(&handle, seq);
        assert_eq!(state.lines[0].month_to_date.answered, None);
        assert_eq!(state.lines[0].today.answered, Some(1.0));
    }
}
