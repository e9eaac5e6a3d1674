//! [`LiveState`]: what the live side publishes after each update, read by the gRPC
//! stream, the wallboard's server-sent events and the metrics.

use super::alerts::Alert;
use super::tracker::Window;
use netwait_aggregator::domain::config::SlaPolicy;
use netwait_aggregator::domain::figures::Figures;
use netwait_aggregator::domain::reports::{sla_share, sla_shares};
use netwait_aggregator::domain::time::Millis;
use netwait_proto::v1 as pb;
use serde::Serialize;

/// SLA shares under the three policies and the configured one (spec §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LiveSla {
    pub answered: Option<f64>,
    pub answered_and_abandoned: Option<f64>,
    pub offered: Option<f64>,
    pub sla: Option<f64>,
}

impl LiveSla {
    pub fn of(f: &Figures, policy: SlaPolicy) -> Self {
        let [answered, answered_and_abandoned, offered] = sla_shares(f);
        Self {
            answered,
            answered_and_abandoned,
            offered,
            sla: sla_share(f, policy),
        }
    }

    fn to_proto(self) -> pb::LiveSla {
        pb::LiveSla {
            answered: self.answered,
            answered_and_abandoned: self.answered_and_abandoned,
            offered: self.offered,
            sla: self.sla,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySla {
    /// Europe/Rome date, `YYYY-MM-DD`.
    pub date: String,
    pub sla: Option<f64>,
}

/// One line now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LineLive {
    pub line: String,
    pub waiting: u32,
    pub longest_wait_s: Option<f64>,
    pub last_15m: Window,
    pub today: LiveSla,
    pub month_to_date: LiveSla,
    /// The month's days so far.
    pub daily: Vec<DaySla>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Operators {
    pub logged_in: u32,
    pub busy: u32,
    pub paused: u32,
    /// The staffing plan now (0 outside service hours).
    pub planned: u32,
}

/// The live state at one update.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveState {
    /// One more per update published.
    pub seq: u64,
    pub at_ms: Millis,
    pub in_service: bool,
    pub threshold_s: f64,
    pub long_wait_s: f64,
    pub target: f64,
    pub grave_floor: f64,
    pub policy: &'static str,
    pub lines: Vec<LineLive>,
    pub operators: Operators,
    pub open_alerts: Vec<Alert>,
    /// Newest first.
    pub recent_alerts: Vec<Alert>,
    pub last_event_ms: Option<Millis>,
}

fn alert_proto(a: &Alert) -> pb::LiveAlert {
    pb::LiveAlert {
        id: a.id.clone(),
        rule: a.rule.as_str().to_owned(),
        severity: a.severity.as_str().to_owned(),
        line: a.line.clone(),
        raised_ms: a.raised_ms,
        cleared_ms: a.cleared_ms,
        message: a.message.clone(),
    }
}

impl LiveState {
    /// The update for a watcher of `line` (all lines when `None`: the centre-wide alerts
    /// go to every watcher), who skipped `missed` updates.
    pub fn to_proto(&self, line: Option<&str>, missed: u64) -> pb::QueueUpdate {
        let wanted = |l: Option<&str>| line.is_none() || l.is_none() || l == line;
        let alerts = |list: &[Alert]| {
            list.iter()
                .filter(|a| wanted(a.line.as_deref()))
                .map(alert_proto)
                .collect()
        };
        pb::QueueUpdate {
            seq: self.seq,
            missed,
            at_ms: self.at_ms,
            in_service: self.in_service,
            lines: self
                .lines
                .iter()
                .filter(|l| wanted(Some(&l.line)))
                .map(|l| pb::LiveLine {
                    line: l.line.clone(),
                    waiting: l.waiting,
                    longest_wait_s: l.longest_wait_s,
                    last_15m: Some(pb::LiveWindow {
                        offered: l.last_15m.offered,
                        answered: l.last_15m.answered,
                        abandoned: l.last_15m.abandoned,
                        overflow: l.last_15m.overflow,
                    }),
                    today: Some(l.today.to_proto()),
                    month_to_date: Some(l.month_to_date.to_proto()),
                    daily: l
                        .daily
                        .iter()
                        .map(|d| pb::LiveDaySla {
                            date: d.date.clone(),
                            sla: d.sla,
                        })
                        .collect(),
                })
                .collect(),
            operators: Some(pb::LiveOperators {
                logged_in: self.operators.logged_in,
                busy: self.operators.busy,
                paused: self.operators.paused,
                planned: self.operators.planned,
            }),
            open_alerts: alerts(&self.open_alerts),
            recent_alerts: alerts(&self.recent_alerts),
            threshold_s: self.threshold_s,
            target: self.target,
            grave_floor: self.grave_floor,
            policy: self.policy.to_owned(),
            last_event_ms: self.last_event_ms,
            long_wait_s: self.long_wait_s,
        }
    }
}
