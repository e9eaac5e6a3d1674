//! The reports of spec §4 (Table 1), §5 (monthly SLA, year view, penalties) and §6
//! (volume check), built from [`Figures`] only.

use super::cells::INTERVAL;
use super::config::{MetricsConfig, SlaPolicy};
use super::figures::{CallSource, Figures, IntervalGrid, LineFilter};
use super::time::{Millis, rome_midnight};
use jiff::civil::Date;

/// How the seed's Table 1 rows map to netwait's bands, stated with every Table 1.
pub fn band_mapping(threshold_ms: Millis, message_ms: Millis) -> String {
    let secs = |ms: Millis| ms as f64 / 1000.0;
    let (t, m) = (secs(threshold_ms), secs(message_ms));
    let gross_t = secs(threshold_ms + message_ms);
    format!(
        "net wait = answer time - end of the {m} s information message; bands are disjoint: \
         without wait: net < 1 s | within threshold: 1 s <= net < {t} s | over threshold: net >= {t} s \
         (the seed's gross {m} s / {gross_t} s = net 0 s / {t} s)"
    )
}

/// Table 1 of seed §1.2 for `[from, to)` and an optional line.
#[derive(Debug, Clone, PartialEq)]
pub struct Table1 {
    pub from: Date,
    pub to: Date,
    pub line: Option<String>,
    pub threshold_ms: Millis,
    /// [`MetricsConfig::message_ms`], for the gross thresholds of the seed's row labels.
    pub message_ms: Millis,
    pub figures: Figures,
}

pub fn table1(
    source: &(impl CallSource + ?Sized),
    cfg: &MetricsConfig,
    from: Date,
    to: Date,
    line: Option<String>,
    threshold_ms: Millis,
) -> Table1 {
    let filter = LineFilter(line);
    let mut out = [Figures::default()];
    source.tally(
        &filter,
        &cfg.calendar,
        threshold_ms,
        (from, to),
        &|_| Some(0),
        &mut out,
    );
    Table1 {
        from,
        to,
        line: filter.0,
        threshold_ms,
        message_ms: cfg.message_ms,
        figures: out[0],
    }
}

/// Status of a month (spec §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthStatus {
    Ok,
    BelowTarget,
    Grave,
    NoTraffic,
}

impl MonthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BelowTarget => "below_target",
            Self::Grave => "grave",
            Self::NoTraffic => "no_traffic",
        }
    }
}

/// The SLA share of `f` under `policy` (spec §5); `None` on an empty denominator.
pub fn sla_share(f: &Figures, policy: SlaPolicy) -> Option<f64> {
    let den = match policy {
        SlaPolicy::Answered => f.answered,
        SlaPolicy::AnsweredAndAbandoned => f.answered + f.abandoned,
        SlaPolicy::Offered => f.answered + f.abandoned + f.overflow,
    };
    (den > 0).then(|| f.answered_within_threshold as f64 / den as f64)
}

/// The shares under every policy, in [`SlaPolicy::ALL`] order.
pub fn sla_shares(f: &Figures) -> [Option<f64>; 3] {
    SlaPolicy::ALL.map(|p| sla_share(f, p))
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlaMonth {
    pub year: i16,
    pub month: i8,
    /// Share under each policy, in [`SlaPolicy::ALL`] order; `None` on an empty denominator.
    pub policies: [Option<f64>; 3],
    pub sla: Option<f64>,
    pub status: MonthStatus,
    pub figures: Figures,
}

impl SlaMonth {
    fn new(year: i16, month: i8, f: Figures, policy: SlaPolicy, target: f64, floor: f64) -> Self {
        let policies = sla_shares(&f);
        let sla = sla_share(&f, policy);
        let status = match sla {
            None => MonthStatus::NoTraffic,
            Some(s) if s < floor => MonthStatus::Grave,
            Some(s) if s < target => MonthStatus::BelowTarget,
            Some(_) => MonthStatus::Ok,
        };
        Self {
            year,
            month,
            policies,
            sla,
            status,
            figures: f,
        }
    }

    pub fn label(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

/// Penalty exposure of a year (seed §1.5): upper bounds, the fees being configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Penalties {
    pub deficient_months: u32,
    pub grave_months: u32,
    pub deficient_month_pct: f64,
    pub grave_month_pct: f64,
    pub monthly_fee_eur: Option<f64>,
    pub annual_fee_eur: Option<f64>,
    pub max_penalty_eur: Option<f64>,
    pub max_penalty_pct_of_annual: Option<f64>,
    /// Penalties reaching this percent of the annual amount give the termination right.
    pub termination_pct: f64,
    pub termination_right: bool,
}

/// Deficient months in a calendar year that allow termination (seed §1.5 a.1).
pub const DEFICIENT_MONTHS_FOR_TERMINATION: u32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct SlaYear {
    pub year: i16,
    pub line: Option<String>,
    pub threshold_ms: Millis,
    pub target: f64,
    pub grave_floor: f64,
    pub policy: SlaPolicy,
    pub months: Vec<SlaMonth>,
    /// Months `below_target` or `grave`.
    pub months_below_target: u32,
    pub termination_risk: bool,
    pub penalties: Penalties,
}

/// Parameters of a year view that a query may override.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaQuery {
    pub year: i16,
    pub line: Option<String>,
    pub threshold_ms: Millis,
    pub target: f64,
}

pub fn sla_year(source: &(impl CallSource + ?Sized), cfg: &MetricsConfig, q: SlaQuery) -> SlaYear {
    let filter = LineFilter(q.line);
    let mut by_month = [Figures::default(); 12];
    let (from, to) = year_range(q.year);
    source.tally(
        &filter,
        &cfg.calendar,
        q.threshold_ms,
        (from, to),
        &|d| Some((d.month() - 1) as usize),
        &mut by_month,
    );
    let months: Vec<SlaMonth> = by_month
        .iter()
        .zip(1i8..)
        .map(|(f, m)| SlaMonth::new(q.year, m, *f, cfg.policy, q.target, cfg.grave_floor))
        .collect();
    let count = |s: MonthStatus| months.iter().filter(|m| m.status == s).count() as u32;
    let (below, grave) = (count(MonthStatus::BelowTarget), count(MonthStatus::Grave));
    let p = &cfg.penalties;
    let max_penalty_eur = match (p.monthly_fee_eur, p.annual_fee_eur) {
        (Some(m), Some(a)) => Some(
            f64::from(below) * m * p.deficient_month_pct / 100.0
                + f64::from(grave) * a * p.grave_month_pct / 100.0,
        ),
        _ => None,
    };
    let max_penalty_pct_of_annual = match (max_penalty_eur, p.annual_fee_eur) {
        (Some(e), Some(a)) if a > 0.0 => Some(e / a * 100.0),
        _ => None,
    };
    SlaYear {
        year: q.year,
        line: filter.0,
        threshold_ms: q.threshold_ms,
        target: q.target,
        grave_floor: cfg.grave_floor,
        policy: cfg.policy,
        months_below_target: below + grave,
        // Seed §1.5 a.1 (three deficient months in the year) or a.2 (a grave month).
        termination_risk: below + grave >= DEFICIENT_MONTHS_FOR_TERMINATION || grave > 0,
        penalties: Penalties {
            deficient_months: below,
            grave_months: grave,
            deficient_month_pct: p.deficient_month_pct,
            grave_month_pct: p.grave_month_pct,
            monthly_fee_eur: p.monthly_fee_eur,
            annual_fee_eur: p.annual_fee_eur,
            max_penalty_eur,
            max_penalty_pct_of_annual,
            termination_pct: p.termination_pct,
            termination_right: max_penalty_pct_of_annual.is_some_and(|x| x >= p.termination_pct),
        },
        months,
    }
}

/// How long the buckets of an interval report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Min15,
    Min30,
    Min60,
}

impl Every {
    /// From minutes: 15, 30 or 60.
    pub fn from_minutes(m: u32) -> Option<Self> {
        match m {
            15 => Some(Self::Min15),
            30 => Some(Self::Min30),
            60 => Some(Self::Min60),
            _ => None,
        }
    }

    pub fn minutes(self) -> u32 {
        match self {
            Self::Min15 => 15,
            Self::Min30 => 30,
            Self::Min60 => 60,
        }
    }

    /// Cells ([`INTERVAL`]s of 15 minutes) per bucket.
    fn cells(self) -> i64 {
        i64::from(self.minutes() / 15)
    }
}

/// One bucket of an interval report: `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    pub start: Millis,
    pub end: Millis,
    pub figures: Figures,
}

/// The figures of every interval of `[from, to)` (Europe/Rome local dates, as Table 1),
/// one row per interval whether or not it had calls. Local midnights are whole UTC
/// hours (see [`super::cells`]), so every bucket is whole and a day has 96 quarter hours
/// (92 when daylight saving starts, 100 when it ends); a call counts in the bucket of
/// its anchor, so the rows of a period sum to its Table 1.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalReport {
    pub from: Date,
    pub to: Date,
    pub line: Option<String>,
    pub threshold_ms: Millis,
    pub every: Every,
    pub policy: SlaPolicy,
    pub rows: Vec<IntervalRow>,
}

pub fn intervals(
    source: &(impl CallSource + ?Sized),
    cfg: &MetricsConfig,
    (from, to): (Date, Date),
    line: Option<String>,
    threshold_ms: Millis,
    every: Every,
) -> IntervalReport {
    let filter = LineFilter(line);
    let (start, end) = (
        rome_midnight(from),
        rome_midnight(to).max(rome_midnight(from)),
    );
    let per_bucket = every.cells();
    let grid = IntervalGrid {
        first: start.div_euclid(INTERVAL),
        per_bucket,
        buckets: ((end - start) / (INTERVAL * per_bucket)) as usize,
    };
    let mut out = vec![Figures::default(); grid.buckets];
    source.tally_intervals(&filter, &cfg.calendar, threshold_ms, grid, &mut out);
    let rows = out
        .into_iter()
        .enumerate()
        .map(|(k, figures)| IntervalRow {
            start: grid.start_of(k),
            end: grid.start_of(k + 1),
            figures,
        })
        .collect();
    IntervalReport {
        from,
        to,
        line: filter.0,
        threshold_ms,
        every,
        policy: cfg.policy,
        rows,
    }
}

/// `[from, to)` local dates of a calendar year.
fn year_range(year: i16) -> (Date, Date) {
    let d = |y: i16| Date::new(y, 1, 1).unwrap_or(Date::MIN);
    (d(year), d(year.saturating_add(1)))
}

/// Half of a year (seed §1.6 checks on 30 June and 31 December).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Half {
    pub year: i16,
    pub second: bool,
}

impl Half {
    pub fn label(self) -> String {
        format!("{}-H{}", self.year, if self.second { 2 } else { 1 })
    }

    /// `[from, to)` local dates.
    pub fn range(self) -> (Date, Date) {
        let d = |y: i16, m: i8| Date::new(y, m, 1).unwrap_or(Date::MIN);
        if self.second {
            (d(self.year, 7), d(self.year + 1, 1))
        } else {
            (d(self.year, 1), d(self.year, 7))
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeCheck {
    pub half: Half,
    pub bookings: u64,
    pub index: f64,
    pub deviation_pct: f64,
    pub tolerance_pct: f64,
    pub within_tolerance: bool,
}

impl VolumeCheck {
    pub fn verdict(&self) -> &'static str {
        if self.within_tolerance {
            "unchanged"
        } else {
            "renegotiable"
        }
    }
}

/// Bookings of the half-year (Table 1's `bookings`) against the pro-rated index.
pub fn volume_check(
    source: &(impl CallSource + ?Sized),
    cfg: &MetricsConfig,
    half: Half,
) -> VolumeCheck {
    let (from, to) = half.range();
    let t = table1(source, cfg, from, to, None, cfg.threshold_ms);
    let index = cfg.volume.annual_index as f64 / 2.0;
    let deviation_pct = if index > 0.0 {
        (t.figures.bookings as f64 - index) / index * 100.0
    } else {
        0.0
    };
    VolumeCheck {
        half,
        bookings: t.figures.bookings,
        index,
        deviation_pct,
        tolerance_pct: cfg.volume.tolerance_pct,
        within_tolerance: deviation_pct.abs() <= cfg.volume.tolerance_pct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{CallRecord, Outcome};
    use crate::time::parse_rfc3339;

    fn rec(ts: &str, outcome: Outcome, wait: Millis, line: &'static str) -> CallRecord<'static> {
        CallRecord {
            anchor: parse_rfc3339(ts).expect("ts"),
            line,
            outcome,
            net_wait: matches!(outcome, Outcome::Answered | Outcome::Abandoned).then_some(wait),
            talk: None,
            bookings: 1,
        }
    }

    #[test]
    fn table1_period_is_local_and_half_open() {
        let cfg = MetricsConfig::default();
        let recs = [
            // 2019-03-31 is a Sunday: out of hours, but in the period.
            rec("2019-03-31T10:00:00+02:00", Outcome::Answered, 0, "cup"),
            // Monday 2019-04-01 08:30 local = 06:30Z: in April.
            rec("2019-04-01T06:30:00Z", Outcome::Answered, 2_000, "cup"),
            rec(
                "2019-04-01T09:00:00+02:00",
                Outcome::Abandoned,
                2_000,
                "prelievi",
            ),
            // 2019-03-29 Friday 23:30Z is Saturday 00:30 local: out of hours.
            rec("2019-03-29T23:30:00Z", Outcome::Overflow, 0, "cup"),
        ];
        let from = jiff::civil::date(2019, 3, 30);
        let to = jiff::civil::date(2019, 4, 2);
        let t = table1(&recs[..], &cfg, from, to, None, 140_000);
        assert_eq!(t.figures.calls_received(), 2);
        assert_eq!(t.figures.out_of_hours, 2);
        let t = table1(&recs[..], &cfg, from, to, Some("prelievi".into()), 140_000);
        assert_eq!((t.figures.abandoned, t.figures.answered), (1, 0));
        let t = table1(
            &recs[..],
            &cfg,
            from,
            jiff::civil::date(2019, 4, 1),
            None,
            140_000,
        );
        assert_eq!(t.figures.calls_received(), 0);
        assert_eq!(t.figures.avg_wait_s(), None);
    }

    fn month_with(
        answered_ok: usize,
        answered_late: usize,
        abandoned: usize,
    ) -> Vec<CallRecord<'static>> {
        let mut v = Vec::new();
        for _ in 0..answered_ok {
            v.push(rec(
                "2019-05-06T10:00:00+02:00",
                Outcome::Answered,
                139_999,
                "cup",
            ));
        }
        for _ in 0..answered_late {
            v.push(rec(
                "2019-05-06T10:00:00+02:00",
                Outcome::Answered,
                140_000,
                "cup",
            ));
        }
        for _ in 0..abandoned {
            v.push(rec(
                "2019-05-06T10:00:00+02:00",
                Outcome::Abandoned,
                0,
                "cup",
            ));
        }
        v
    }

    fn year(recs: Vec<CallRecord<'static>>, cfg: &MetricsConfig) -> SlaYear {
        sla_year(
            &recs[..],
            cfg,
            SlaQuery {
                year: 2019,
                line: None,
                threshold_ms: 140_000,
                target: 0.60,
            },
        )
    }

    #[test]
    fn status_edges_and_policies() {
        let cfg = MetricsConfig::default();
        let y = year(month_with(3, 2, 0), &cfg);
        let may = &y.months[4];
        assert_eq!(may.sla, Some(0.6));
        assert_eq!(may.status, MonthStatus::Ok, "exactly 0.60 is ok");
        let y = year(month_with(2, 3, 0), &cfg);
        assert_eq!(
            y.months[4].status,
            MonthStatus::BelowTarget,
            "exactly 0.40 is below target"
        );
        let y = year(month_with(3, 2, 5), &cfg);
        assert_eq!(y.months[4].policies, [Some(0.6), Some(0.3), Some(0.3)]);
        assert_eq!(y.months[0].status, MonthStatus::NoTraffic);
        assert_eq!(y.months[0].sla, None);
        assert_eq!(y.months_below_target, 0);
        let mut strict = cfg.clone();
        strict.policy = SlaPolicy::AnsweredAndAbandoned;
        let y = year(month_with(3, 2, 5), &strict);
        assert_eq!(y.months[4].status, MonthStatus::Grave);
        assert!(y.termination_risk, "a grave month gives termination risk");
    }

    #[test]
    fn three_deficient_months_and_penalties() {
        let mut cfg = MetricsConfig::default();
        cfg.penalties.monthly_fee_eur = Some(10_000.0);
        cfg.penalties.annual_fee_eur = Some(120_000.0);
        let mut recs = Vec::new();
        for m in ["2019-01-07", "2019-02-04", "2019-03-04"] {
            for w in [0, 0, 200_000, 200_000] {
                recs.push(CallRecord {
                    anchor: parse_rfc3339(&format!("{m}T10:00:00+01:00")).expect("ts"),
                    ..rec("2019-01-07T10:00:00+01:00", Outcome::Answered, w, "cup")
                });
            }
        }
        let y = year(recs, &cfg);
        assert_eq!(y.months_below_target, 3);
        assert!(y.termination_risk);
        assert_eq!(y.penalties.max_penalty_eur, Some(450.0));
        assert!(!y.penalties.termination_right);
    }

    #[test]
    fn volume_check_verdicts() {
        let cfg = MetricsConfig::default();
        let half = crate::arguments::half("2019-H1").expect("half");
        assert_eq!(half.range().1, jiff::civil::date(2019, 7, 1));
        let recs = [rec(
            "2019-05-06T10:00:00+02:00",
            Outcome::Overflow,
            0,
            "cup",
        )];
        let v = volume_check(&recs[..], &cfg, half);
        assert_eq!(v.bookings, 1);
        assert_eq!(v.index, 68_000.0);
        assert_eq!(v.verdict(), "renegotiable");
        assert!(crate::arguments::half("2019-H3").is_err());
    }
}
