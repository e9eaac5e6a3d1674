//! The `[live]` section of the configuration: alert thresholds, the staffing plan and
//! the webhook, with defaults from the seed (§1.4: the expected operators by time of day;
//! a call waiting 120 s is warned of before it breaks the 140 s threshold).

use netwait_aggregator::domain::time::{Millis, SECOND};
use serde::Deserialize;

/// The knobs of the live state and its alerts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// A line's longest current net wait at or above this raises `long_wait`.
    pub long_wait_s: f64,
    /// The last 15 minutes' abandoned (overflow) share of closed calls above this raises
    /// `abandon_share` (`overflow_share`)...
    pub abandon_share: f64,
    pub overflow_share: f64,
    /// ...once that many calls closed in those 15 minutes.
    pub share_min_calls: u64,
    /// A ratio alert clears only this far back on the good side (hysteresis).
    pub clear_margin: f64,
    /// No event for this many minutes in service hours raises `ingest_stalled`.
    pub stalled_min: u64,
    /// Operators fewer than the plan must last this long before `understaffed` is raised
    /// (a login a few seconds late is not an alert).
    pub staffing_hold_s: u64,
    /// The staffing plan: from each local time of day (`HH:MM`), the operators expected.
    pub staffing: Vec<(String, u32)>,
    /// Alerts raised and cleared are POSTed here as JSON (`http://` only).
    pub webhook_url: Option<String>,
    /// Live streams open at once on the whole server (`Live.WatchQueue` and the
    /// wallboard's server-sent events together); one more is refused
    /// (RESOURCE_EXHAUSTED / 503) until one ends.
    pub max_streams: usize,
}

/// Default of [`LiveConfig::max_streams`]: many wallboards and watchers, each a task and
/// a connection, far from what a 2-core server can hold.
pub const DEFAULT_MAX_STREAMS: usize = 256;

impl Default for LiveConfig {
    fn default() -> Self {
        let plan = [
            ("08:00", 3),
            ("08:30", 4),
            ("09:00", 6),
            ("12:00", 3),
            ("13:00", 2),
            ("14:00", 4),
            ("16:00", 3),
            ("16:30", 2),
        ];
        Self {
            long_wait_s: 120.0,
            abandon_share: 0.15,
            overflow_share: 0.10,
            share_min_calls: 10,
            clear_margin: 0.02,
            stalled_min: 10,
            staffing_hold_s: 60,
            staffing: plan.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect(),
            webhook_url: None,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// A refused `[live]` setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("[live] {0}")]
pub struct LiveConfigError(String);

/// The plan as (ms since local midnight, operators), by time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaffingPlan(Vec<(Millis, u32)>);

impl StaffingPlan {
    /// The operators expected at `ms_of_day` (0 before the first step).
    pub fn at(&self, ms_of_day: Millis) -> u32 {
        self.0
            .iter()
            .take_while(|(from, _)| *from <= ms_of_day)
            .last()
            .map_or(0, |s| s.1)
    }
}

/// [`LiveConfig`] checked, in the units the live state uses.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRules {
    pub long_wait_ms: Millis,
    pub abandon_share: f64,
    pub overflow_share: f64,
    pub share_min_calls: u64,
    pub clear_margin: f64,
    pub stalled_ms: Millis,
    pub staffing_hold_ms: Millis,
    pub staffing: StaffingPlan,
    pub webhook_url: Option<String>,
    pub max_streams: usize,
}

impl Default for LiveRules {
    fn default() -> Self {
        LiveConfig::default()
            .rules()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

fn share(name: &str, v: f64) -> Result<f64, LiveConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(LiveConfigError(format!(
            "{name} = {v}: a share from 0 to 1"
        )))
    }
}

fn time_of_day(text: &str) -> Option<Millis> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && text.len() == 5)
        .then_some((h * 60 + m) * 60 * SECOND)
}

impl LiveConfig {
    /// Checks every knob.
    pub fn rules(&self) -> Result<LiveRules, LiveConfigError> {
        if !(self.long_wait_s > 0.0 && self.long_wait_s <= 86_400.0) {
            return Err(LiveConfigError(format!(
                "long_wait_s = {}: from above 0 to 86400 s",
                self.long_wait_s
            )));
        }
        let mut staffing = Vec::with_capacity(self.staffing.len());
        for (at, n) in &self.staffing {
            let ms = time_of_day(at).ok_or_else(|| {
                LiveConfigError(format!("staffing time {at:.16?}: expected HH:MM"))
            })?;
            if staffing.last().is_some_and(|(prev, _)| *prev >= ms) {
                return Err(LiveConfigError(format!(
                    "staffing time {at}: the steps must go forward in time"
                )));
            }
            staffing.push((ms, *n));
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits.
        if self.max_streams == 0 || self.max_streams > 1 << 20 {
            return Err(LiveConfigError(format!(
                "max_streams = {}: from 1 to {}",
                self.max_streams,
                1 << 20
            )));
        }
        if let Some(url) = &self.webhook_url
            && !url.starts_with("http://")
        {
            return Err(LiveConfigError(format!(
                "webhook_url {url:.64?}: an http:// URL"
            )));
        }
        Ok(LiveRules {
            long_wait_ms: (self.long_wait_s * 1000.0).round() as Millis,
            abandon_share: share("abandon_share", self.abandon_share)?,
            overflow_share: share("overflow_share", self.overflow_share)?,
            share_min_calls: self.share_min_calls,
            clear_margin: share("clear_margin", self.clear_margin)?,
            stalled_ms: self.stalled_min as Millis * 60 * SECOND,
            staffing_hold_ms: self.staffing_hold_s as Millis * SECOND,
            staffing: StaffingPlan(staffing),
            webhook_url: self.webhook_url.clone(),
            max_streams: self.max_streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_is_the_seeds_and_bad_knobs_are_refused() {
        let r = LiveRules::default();
        let at = |h: i64, m: i64| r.staffing.at((h * 60 + m) * 60 * SECOND);
        assert_eq!(
            [
                at(7, 59),
                at(8, 0),
                at(8, 29),
                at(8, 30),
                at(9, 0),
                at(12, 30),
                at(13, 0),
                at(14, 0),
                at(16, 0),
                at(17, 59)
            ],
            [0, 3, 3, 4, 6, 3, 2, 4, 3, 2]
        );
        assert_eq!(r.long_wait_ms, 120_000);
        let bad = |f: fn(&mut LiveConfig)| {
            let mut c = LiveConfig::default();
            f(&mut c);
            c.rules().is_err()
        };
        assert!(bad(|c| c.long_wait_s = 0.0));
        assert!(bad(|c| c.abandon_share = 1.5));
        assert!(bad(|c| c.staffing = vec![("9:00".into(), 1)]));
        assert!(bad(
            |c| c.staffing = vec![("09:00".into(), 1), ("08:00".into(), 2)]
        ));
        assert!(bad(|c| c.webhook_url = Some("https://x".into())));
        assert!(bad(|c| c.max_streams = 0));
        assert_eq!(r.max_streams, DEFAULT_MAX_STREAMS);
        let parsed: LiveConfig =
            toml::from_str("long_wait_s = 90\nstaffing = [[\"08:00\", 1]]").expect("toml");
        assert_eq!(parsed.rules().expect("valid").long_wait_ms, 90_000);
    }
}
