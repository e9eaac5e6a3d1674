//! Domain <-> protobuf conversions.

use netwait_aggregator::domain::reports::{self, IntervalReport, SlaYear, Table1, VolumeCheck};
use netwait_aggregator::domain::time::rome_rfc3339;
use netwait_proto::v1 as pb;

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

pub fn table1(t: &Table1) -> pb::Table1 {
    let f = &t.figures;
    pb::Table1 {
        from: t.from.to_string(),
        to: t.to.to_string(),
        line: t.line.clone(),
        threshold_s: secs(t.threshold_ms),
        calls_received: f.calls_received(),
        answered: f.answered,
        overflow: f.overflow,
        abandoned: f.abandoned,
        answered_without_wait: f.answered_without_wait,
        answered_wait_within_threshold: f.answered_wait_within_threshold,
        answered_wait_over_threshold: f.answered_wait_over_threshold,
        max_wait_s: f.max_wait_s(),
        avg_wait_s: f.avg_wait_s(),
        avg_talk_s: f.avg_talk_s(),
        bookings: f.bookings,
        out_of_hours: f.out_of_hours,
        unresolved: f.unresolved,
        band_mapping: reports::band_mapping(t.threshold_ms, t.message_ms),
        message_s: t.message_ms as f64 / 1000.0,
    }
}

pub fn intervals(r: &IntervalReport) -> pb::Intervals {
    let intervals = r
        .rows
        .iter()
        .map(|row| {
            let f = &row.figures;
            let [answered, answered_and_abandoned, offered] = reports::sla_shares(f);
            pb::IntervalStats {
                start: rome_rfc3339(row.start),
                end: rome_rfc3339(row.end),
                start_ms: row.start,
                offered: f.calls_received(),
                answered: f.answered,
                abandoned: f.abandoned,
                overflow: f.overflow,
                answered_within_threshold: f.answered_within_threshold,
                answered_without_wait: f.answered_without_wait,
                answered_wait_within_threshold: f.answered_wait_within_threshold,
                answered_wait_over_threshold: f.answered_wait_over_threshold,
                sla: Some(pb::SlaPolicies {
                    answered,
                    answered_and_abandoned,
                    offered,
                }),
                max_wait_s: f.max_wait_s(),
                avg_wait_s: f.avg_wait_s(),
                avg_talk_s: f.avg_talk_s(),
                bookings: f.bookings,
                out_of_hours: f.out_of_hours,
                unresolved: f.unresolved,
                // Sums of whole milliseconds: a year of waits fits 64 bits many times.
                wait_sum_ms: u64::try_from(f.wait_sum_ms).unwrap_or(u64::MAX),
                talk_sum_ms: u64::try_from(f.talk_sum_ms).unwrap_or(u64::MAX),
                talked: f.talk_count,
            }
        })
        .collect();
    pb::Intervals {
        from: r.from.to_string(),
        to: r.to.to_string(),
        line: r.line.clone(),
        threshold_s: secs(r.threshold_ms),
        every_minutes: r.every.minutes(),
        policy: r.policy.as_str().into(),
        intervals,
    }
}

pub fn sla_year(y: &SlaYear) -> pb::SlaYear {
    let months = y
        .months
        .iter()
        .map(|m| {
            let [answered, answered_and_abandoned, offered] = m.policies;
            pb::SlaMonth {
                month: m.label(),
                sla: m.sla,
                policies: Some(pb::SlaPolicies {
                    answered,
                    answered_and_abandoned,
                    offered,
                }),
                status: m.status.as_str().into(),
                answered: m.figures.answered,
                answered_within_threshold: m.figures.answered_within_threshold,
                abandoned: m.figures.abandoned,
                overflow: m.figures.overflow,
            }
        })
        .collect();
    let p = &y.penalties;
    pb::SlaYear {
        year: i32::from(y.year),
        line: y.line.clone(),
        threshold_s: secs(y.threshold_ms),
        target: y.target,
        grave_floor: y.grave_floor,
        policy: y.policy.as_str().into(),
        months,
        months_below_target: y.months_below_target,
        termination_risk: y.termination_risk,
        penalties: Some(pb::Penalties {
            deficient_months: p.deficient_months,
            grave_months: p.grave_months,
            monthly_penalty_pct: p.deficient_month_pct,
            grave_penalty_pct: p.grave_month_pct,
            monthly_fee_eur: p.monthly_fee_eur,
            annual_fee_eur: p.annual_fee_eur,
            max_penalty_eur: p.max_penalty_eur,
            max_penalty_pct_of_annual: p.max_penalty_pct_of_annual,
            penalty_termination_right: p.termination_right,
            termination_pct: p.termination_pct,
        }),
    }
}

pub fn volume(v: &VolumeCheck) -> pb::VolumeCheck {
    let (from, to) = v.half.range();
    pb::VolumeCheck {
        half: v.half.label(),
        from: from.to_string(),
        to: to.to_string(),
        bookings: v.bookings,
        index: v.index,
        deviation_pct: v.deviation_pct,
        tolerance_pct: v.tolerance_pct,
        verdict: v.verdict().into(),
    }
}
