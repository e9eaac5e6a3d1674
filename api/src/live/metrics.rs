//! The live state's gauges on `/metrics`: per line the calls waiting now, the longest
//! current net wait and the last 15 minutes' calls; the operators logged in, busy and
//! paused against the plan; the open alerts by rule. Rendered from the latest
//! publication at each scrape (nothing is kept twice). The counters of alerts raised
//! and cleared are the observability vocabulary's ([`observe::AlertChanged`]).

use super::LiveHandle;
use super::alerts::Rule;
use super::view::LiveState;
use netwait_aggregator::observe::{self, MetricSource, escape_label};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Once};

/// The live side whose gauges `/metrics` shows (the latest started: one per server).
static CURRENT: Mutex<Option<LiveHandle>> = Mutex::new(None);

struct LiveMetrics;

impl MetricSource for LiveMetrics {
    fn render(&self, out: &mut String) {
        let live = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(live) = live {
            render(&live.latest(), out);
        }
    }
}

/// Makes `/metrics` show `live`'s gauges.
pub fn expose(live: &LiveHandle) {
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(live.clone());
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| observe::register(Arc::new(LiveMetrics)));
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
}

/// The gauges of one live state, in the Prometheus text format.
pub fn render(state: &LiveState, out: &mut String) {
    let lines: Vec<(String, &super::view::LineLive)> = state
        .lines
        .iter()
        .map(|l| (escape_label(&l.line), l))
        .collect();
    family(out, "netwait_live_waiting", "calls waiting now, by line");
    for (name, l) in &lines {
        let _ = writeln!(out, "netwait_live_waiting{{line=\"{name}\"}} {}", l.waiting);
    }
    family(
        out,
        "netwait_live_longest_wait_seconds",
        "the longest current net wait, by line (0 when none waits)",
    );
    for (name, l) in &lines {
        let wait = l.longest_wait_s.unwrap_or(0.0);
        let _ = writeln!(
            out,
            "netwait_live_longest_wait_seconds{{line=\"{name}\"}} {wait}"
        );
    }
    family(
        out,
        "netwait_live_last_15m_calls",
        "calls of the last 15 minutes, by line and what became of them",
    );
    for (name, l) in &lines {
        let w = l.last_15m;
        for (outcome, n) in [
            ("offered", w.offered),
            ("answered", w.answered),
            ("abandoned", w.abandoned),
            ("overflow", w.overflow),
        ] {
            let _ = writeln!(
                out,
                "netwait_live_last_15m_calls{{line=\"{name}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    let ops = state.operators;
    family(
        out,
        "netwait_live_operators",
        "operators now: logged in (paused included), busy (in conversation), paused",
    );
    for (what, n) in [
        ("logged_in", ops.logged_in),
        ("busy", ops.busy),
        ("paused", ops.paused),
    ] {
        let _ = writeln!(out, "netwait_live_operators{{state=\"{what}\"}} {n}");
    }
    family(
        out,
        "netwait_live_operators_planned",
        "operators the staffing plan expects now (0 outside service hours)",
    );
    let _ = writeln!(out, "netwait_live_operators_planned {}", ops.planned);
    family(out, "netwait_alerts_open", "live alerts open now, by rule");
    for rule in Rule::ALL {
        let n = state.open_alerts.iter().filter(|a| a.rule == rule).count();
        let _ = writeln!(out, "netwait_alerts_open{{rule=\"{}\"}} {n}", rule.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::alerts::{Alert, Severity};
    use crate::live::view::{LineLive, Operators};

    #[test]
    fn gauges_of_a_state_with_an_awkward_line_name() {
        let state = LiveState {
            lines: vec![LineLive {
                line: "cup \"a\"".into(),
                waiting: 2,
                longest_wait_s: Some(121.5),
                ..LineLive::default()
            }],
            operators: Operators {
                logged_in: 3,
                busy: 1,
                paused: 1,
                planned: 4,
            },
            open_alerts: vec![Alert {
                id: "1".into(),
                rule: Rule::LongWait,
                severity: Severity::Warning,
                line: Some("cup \"a\"".into()),
                raised_ms: 0,
                cleared_ms: None,
                message: String::new(),
            }],
            ..LiveState::default()
        };
        let mut out = String::new();
        render(&state, &mut out);
        for want in [
            "netwait_live_waiting{line=\"cup \\\"a\\\"\"} 2\n",
            "netwait_live_longest_wait_seconds{line=\"cup \\\"a\\\"\"} 121.5\n",
            "netwait_live_operators{state=\"paused\"} 1\n",
            "netwait_live_operators_planned 4\n",
            "netwait_alerts_open{rule=\"long_wait\"} 1\n",
            "netwait_alerts_open{rule=\"no_operator\"} 0\n",
        ] {
            assert!(out.contains(want), "{want} in {out}");
        }
    }
}
