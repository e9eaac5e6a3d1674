//! Alerts with hysteresis: a rule raises an alert when its condition holds (for its hold
//! time, when it has one) and clears it only once its clear condition holds, which sits
//! on the good side of the raise condition (a margin), so a value hovering around a
//! threshold raises once and clears once. Pure: the caller passes `now`.

use netwait_aggregator::domain::time::Millis;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// How many raised or cleared alerts are kept for the views.
pub const RECENT: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    LongWait,
    SlaBelowTarget,
    SlaGrave,
    AbandonShare,
    OverflowShare,
    Understaffed,
    NoOperator,
    IngestStalled,
    SourceUnreachable,
}

impl Rule {
    pub const ALL: [Self; 9] = [
        Self::LongWait,
        Self::SlaBelowTarget,
        Self::SlaGrave,
        Self::AbandonShare,
        Self::OverflowShare,
        Self::Understaffed,
        Self::NoOperator,
        Self::IngestStalled,
        Self::SourceUnreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LongWait => "long_wait",
            Self::SlaBelowTarget => "sla_below_target",
            Self::SlaGrave => "sla_grave",
            Self::AbandonShare => "abandon_share",
            Self::OverflowShare => "overflow_share",
            Self::Understaffed => "understaffed",
            Self::NoOperator => "no_operator",
            Self::IngestStalled => "ingest_stalled",
            Self::SourceUnreachable => "source_unreachable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One alert, open (`cleared_ms` none) or cleared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: String,
    pub rule: Rule,
    pub severity: Severity,
    pub line: Option<String>,
    pub raised_ms: Millis,
    pub cleared_ms: Option<Millis>,
    pub message: String,
}

/// One rule's verdict for one line (or the whole centre) now.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub rule: Rule,
    pub line: Option<String>,
    pub severity: Severity,
    /// The raise condition holds.
    pub raise: bool,
    /// The clear condition holds (never together with `raise`).
    pub clear: bool,
    /// How long `raise` must hold before the alert is raised.
    pub hold_ms: Millis,
    pub message: String,
}

type Key = (Rule, Option<String>);

/// The open alerts and what was raised or cleared lately.
#[derive(Debug, Default)]
pub struct Alerts {
    next_id: u64,
    open: BTreeMap<Key, Alert>,
    /// Since when a held rule's raise condition holds.
    pending: BTreeMap<Key, Millis>,
    recent: VecDeque<Alert>,
}

impl Alerts {
    /// Applies this moment's checks (every rule for every line it watches: a check
    /// that cannot be judged now, e.g. staffing outside service hours, says `clear`);
    /// returns the alerts raised or cleared now.
    pub fn evaluate(&mut self, now: Millis, checks: &[Check]) -> Vec<Alert> {
        let mut changed = Vec::new();
        for c in checks {
            let key = (c.rule, c.line.clone());
            if let Some(open) = self.open.get_mut(&key) {
                if c.clear {
                    let mut done = open.clone();
                    done.cleared_ms = Some(now);
                    self.open.remove(&key);
                    changed.push(done);
                } else {
                    open.message.clone_from(&c.message);
                }
                continue;
            }
            if !c.raise {
                self.pending.remove(&key);
                continue;
            }
            let since = *self.pending.entry(key.clone()).or_insert(now);
            if now - since < c.hold_ms {
                continue;
            }
            self.pending.remove(&key);
            self.next_id += 1;
            let alert = Alert {
                id: format!("A{}", self.next_id),
                rule: c.rule,
                severity: c.severity,
                line: c.line.clone(),
                raised_ms: now,
                cleared_ms: None,
                message: c.message.clone(),
            };
            self.open.insert(key, alert.clone());
            changed.push(alert);
        }
        for a in &changed {
            self.recent.push_front(a.clone());
        }
        self.recent.truncate(RECENT);
        changed
    }

    pub fn open(&self) -> impl Iterator<Item = &Alert> {
        self.open.values()
    }

    /// Newest first.
    pub fn recent(&self) -> impl Iterator<Item = &Alert> {
        self.recent.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raise: bool, clear: bool, hold_ms: Millis) -> Check {
        Check {
            rule: Rule::SlaBelowTarget,
            line: Some("cup".into()),
            severity: Severity::Warning,
            raise,
            clear,
            hold_ms,
            message: "m".into(),
        }
    }

    #[test]
    fn raised_once_and_cleared_once_across_the_margin() {
        let mut a = Alerts::default();
        // A value going under the target, hovering between target and target + margin
        // (neither raise nor clear), then back above the margin.
        let path = [
            (false, true),
            (true, false),
            (false, false),
            (true, false),
            (false, false),
            (false, true),
            (false, true),
        ];
        let mut told = Vec::new();
        for (t, (raise, clear)) in path.into_iter().enumerate() {
            told.extend(a.evaluate(t as Millis, &[check(raise, clear, 0)]));
        }
        assert_eq!(told.len(), 2);
        assert_eq!((told[0].raised_ms, told[0].cleared_ms), (1, None));
        assert_eq!((told[1].id.as_str(), told[1].cleared_ms), ("A1", Some(5)));
        assert_eq!(a.open().count(), 0);
        assert_eq!(a.recent().count(), 2);
    }

    #[test]
    fn a_held_rule_waits_for_its_hold_time_and_a_gap_starts_it_again() {
        let mut a = Alerts::default();
        assert!(a.evaluate(0, &[check(true, false, 60)]).is_empty());
        assert!(a.evaluate(30, &[check(false, true, 60)]).is_empty());
        assert!(a.evaluate(40, &[check(true, false, 60)]).is_empty());
        assert!(a.evaluate(99, &[check(true, false, 60)]).is_empty());
        let raised = a.evaluate(100, &[check(true, false, 60)]);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].raised_ms, 100);
    }
}
