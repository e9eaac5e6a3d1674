//! How figures are printed: `--json` (exactly the spec's keys) or a readable table in the
//! seed's layout, with the Italian row labels of seed §1.2.

use super::number_format as nf;
use netwait_proto::v1 as pb;
use serde_json::{Value, json};

/// Text output fits a terminal of this many columns.
const WIDTH: usize = 80;
/// Columns of Table 1's label and value (one less than [`WIDTH`]).
const LABEL: usize = 67;
const VALUE: usize = 12;

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn table1(t: &pb::Table1, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return print_json(&json!({
            "from": t.from,
            "to": t.to,
            "line": t.line,
            "threshold_s": t.threshold_s,
            "calls_received": t.calls_received,
            "answered": t.answered,
            "overflow": t.overflow,
            "abandoned": t.abandoned,
            "answered_without_wait": t.answered_without_wait,
            "answered_wait_within_threshold": t.answered_wait_within_threshold,
            "answered_wait_over_threshold": t.answered_wait_over_threshold,
            "max_wait_s": t.max_wait_s,
            "avg_wait_s": t.avg_wait_s,
            "avg_talk_s": t.avg_talk_s,
            "bookings": t.bookings,
            "out_of_hours": t.out_of_hours,
            "unresolved": t.unresolved,
        }));
    }
    let line = t.line.as_deref().unwrap_or("all");
    println!(
        "Table 1 — {} .. {} (to exclusive, Europe/Rome) — line: {line}",
        t.from, t.to
    );
    println!();
    let gross = |net: f64| nf::secs(net + t.message_s);
    // The seed's rows, in its order (seed §1.2, Tabella 1).
    let rows = [
        (
            "Totale chiamate ricevute".to_owned(),
            nf::count(t.calls_received),
        ),
        ("Chiamate risposte".to_owned(), nf::count(t.answered)),
        (
            "Chiamate dissuase (overflow)".to_owned(),
            nf::count(t.overflow),
        ),
        ("Chiamate abbandonate".to_owned(), nf::count(t.abandoned)),
        (
            "Risposte senza attesa in coda".to_owned(),
            nf::count(t.answered_without_wait),
        ),
        (
            format!(
                "Risposte con attesa oltre soglia {} s",
                gross(t.threshold_s)
            ),
            nf::count(t.answered_wait_over_threshold),
        ),
        (
            format!("Risposte con attesa oltre soglia {} s", gross(0.0)),
            nf::count(t.answered_wait_within_threshold),
        ),
        (
            "Tempo massimo d'attesa (s)".to_owned(),
            nf::whole_secs(t.max_wait_s),
        ),
        (
            "Tempo medio d'attesa (s)".to_owned(),
            nf::whole_secs(t.avg_wait_s),
        ),
        (
            "Tempo medio di conversazione (s)".to_owned(),
            nf::whole_secs(t.avg_talk_s),
        ),
        ("Prenotazioni effettuate".to_owned(), nf::count(t.bookings)),
        (
            "Fuori orario di servizio".to_owned(),
            nf::count(t.out_of_hours),
        ),
        (
            "Non risolte (aperte oltre 6 h)".to_owned(),
            nf::count(t.unresolved),
        ),
    ];
    for (label, value) in &rows {
        println!("{label:<LABEL$}{value:>VALUE$}");
    }
    println!();
    let (m, net_t) = (nf::secs(t.message_s), nf::secs(t.threshold_s));
    let legend = format!(
        "Waits are net: from the end of the {m} s information message; T = {net_t} s. \
         The thresholds of the labels are gross (net + {m} s): without wait = net < 1 s; \
         over {} s = 1 s <= net < {net_t} s; over {} s = net >= {net_t} s. \
         Times are of answered calls, in whole seconds; — = no answered call. \
         --json gives every figure unrounded.",
        gross(0.0),
        gross(t.threshold_s),
    );
    for l in nf::wrap(&legend, WIDTH) {
        println!("{l}");
    }
    Ok(())
}

pub fn sla(y: &pb::SlaYear, as_json: bool) -> anyhow::Result<()> {
    let p = y.penalties.unwrap_or_default();
    if as_json {
        let months: Vec<Value> = y
            .months
            .iter()
            .map(|m| {
                let pol = m.policies.unwrap_or_default();
                json!({
                    "month": m.month,
                    "sla": m.sla,
                    "policies": {
                        "answered": pol.answered,
                        "answered_and_abandoned": pol.answered_and_abandoned,
                        "offered": pol.offered,
                    },
                    "status": m.status,
                    "answered": m.answered,
                    "answered_within_threshold": m.answered_within_threshold,
                    "abandoned": m.abandoned,
                    "overflow": m.overflow,
                })
            })
            .collect();
        return print_json(&json!({
            "year": y.year,
            "line": y.line,
            "threshold_s": y.threshold_s,
            "target": y.target,
            "grave_floor": y.grave_floor,
            "policy": y.policy,
            "months": months,
            "months_below_target": y.months_below_target,
            "termination_risk": y.termination_risk,
            "penalties": {
                "deficient_months": p.deficient_months,
                "grave_months": p.grave_months,
                "deficient_month_pct_of_monthly_fee": p.monthly_penalty_pct,
                "grave_month_pct_of_annual_fee": p.grave_penalty_pct,
                "monthly_fee_eur": p.monthly_fee_eur,
                "annual_fee_eur": p.annual_fee_eur,
                "max_penalty_eur": p.max_penalty_eur,
                "max_penalty_pct_of_annual": p.max_penalty_pct_of_annual,
                "termination_right": p.penalty_termination_right,
                "termination_pct": p.termination_pct,
            },
        }));
    }
    let line = y.line.as_deref().unwrap_or("all");
    println!(
        "SLA {} — line: {line} — T = {} s, target {}, grave floor {}",
        y.year,
        nf::secs(y.threshold_s),
        nf::percent(Some(y.target)),
        nf::percent(Some(y.grave_floor)),
    );
    println!();
    // The contract's policy is marked: its column is the month's SLA and status.
    let mark = |p: &str| if p == y.policy { "*" } else { "" };
    println!(
        "{:<7} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6}  status",
        "month",
        "answered",
        "ans. <T",
        "abandon.",
        "overflow",
        format!("{}A", mark("answered")),
        format!("{}A+Ab", mark("answered_and_abandoned")),
        format!("{}Off", mark("offered")),
    );
    for m in &y.months {
        let pol = m.policies.unwrap_or_default();
        println!(
            "{:<7} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6}  {}",
            m.month,
            nf::count(m.answered),
            nf::count(m.answered_within_threshold),
            nf::count(m.abandoned),
            nf::count(m.overflow),
            nf::percent(pol.answered),
            nf::percent(pol.answered_and_abandoned),
            nf::percent(pol.offered),
            m.status
        );
    }
    println!();
    let legend = format!(
        "ans. <T: answered with net wait < {} s. SLA by policy, answered < T over: \
         A = answered; A+Ab = answered + abandoned; Off = answered + abandoned + overflow. \
         * = the contract's policy ({}), which gives the status: ok at or above the \
         target, below_target under it, grave under the grave floor.",
        nf::secs(y.threshold_s),
        y.policy,
    );
    for l in nf::wrap(&legend, WIDTH) {
        println!("{l}");
    }
    println!();
    println!(
        "Months below target (grave included): {}; termination risk: {}",
        y.months_below_target,
        if y.termination_risk { "yes" } else { "no" }
    );
    let penalties = format!(
        "Penalties (upper bounds): {} deficient month(s) x {}% of the monthly fee, \
         {} grave month(s) x {}% of the annual fee.",
        p.deficient_months,
        nf::secs(p.monthly_penalty_pct),
        p.grave_months,
        nf::secs(p.grave_penalty_pct),
    );
    let amounts = match (p.max_penalty_eur, p.max_penalty_pct_of_annual) {
        (Some(eur), Some(pct)) => format!(
            "Up to EUR {} = {}% of the annual amount; termination right (at {}%): {}.",
            nf::secs((eur * 100.0).round() / 100.0),
            nf::secs((pct * 100.0).round() / 100.0),
            nf::secs(p.termination_pct),
            if p.penalty_termination_right {
                "yes"
            } else {
                "no"
            },
        ),
        _ => "Amounts: set [penalties] monthly_fee_eur and annual_fee_eur in the \
              configuration."
            .to_owned(),
    };
    for l in nf::wrap(&format!("{penalties} {amounts}"), WIDTH) {
        println!("{l}");
    }
    Ok(())
}

pub fn volume(v: &pb::VolumeCheck, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return print_json(&json!({
            "half": v.half,
            "from": v.from,
            "to": v.to,
            "bookings": v.bookings,
            "index": v.index,
            "deviation_pct": v.deviation_pct,
            "tolerance_pct": v.tolerance_pct,
            "verdict": v.verdict,
        }));
    }
    println!(
        "Volume check {} ({} .. {}, to exclusive)",
        v.half, v.from, v.to
    );
    println!(
        "bookings {} vs index {} -> deviation {:+.2}% (tolerance ±{}%): {}",
        v.bookings, v.index, v.deviation_pct, v.tolerance_pct, v.verdict
    );
    Ok(())
}

/// The columns of one interval, for `--json` and `--csv` alike.
fn interval_fields(i: &pb::IntervalStats) -> Vec<(&'static str, Value)> {
    let sla = i.sla.unwrap_or_default();
    vec![
        ("start", json!(i.start)),
        ("end", json!(i.end)),
        ("offered", json!(i.offered)),
        ("answered", json!(i.answered)),
        ("abandoned", json!(i.abandoned)),
        ("overflow", json!(i.overflow)),
        (
            "answered_within_threshold",
            json!(i.answered_within_threshold),
        ),
        ("answered_without_wait", json!(i.answered_without_wait)),
        (
            "answered_wait_within_threshold",
            json!(i.answered_wait_within_threshold),
        ),
        (
            "answered_wait_over_threshold",
            json!(i.answered_wait_over_threshold),
        ),
        ("sla_answered", json!(sla.answered)),
        (
            "sla_answered_and_abandoned",
            json!(sla.answered_and_abandoned),
        ),
        ("sla_offered", json!(sla.offered)),
        ("max_wait_s", json!(i.max_wait_s)),
        ("avg_wait_s", json!(i.avg_wait_s)),
        ("avg_talk_s", json!(i.avg_talk_s)),
        ("bookings", json!(i.bookings)),
        ("out_of_hours", json!(i.out_of_hours)),
        ("unresolved", json!(i.unresolved)),
        ("wait_sum_ms", json!(i.wait_sum_ms)),
        ("talk_sum_ms", json!(i.talk_sum_ms)),
        ("talked", json!(i.talked)),
    ]
}

pub fn intervals(r: &pb::Intervals, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        let rows: Vec<Value> = r
            .intervals
            .iter()
            .map(|i| {
                Value::Object(
                    interval_fields(i)
                        .into_iter()
                        .map(|(k, v)| (k.into(), v))
                        .collect(),
                )
            })
            .collect();
        return print_json(&json!({
            "from": r.from,
            "to": r.to,
            "line": r.line,
            "threshold_s": r.threshold_s,
            "every_minutes": r.every_minutes,
            "policy": r.policy,
            "intervals": rows,
        }));
    }
    let line = r.line.as_deref().unwrap_or("all");
    println!(
        "Intervals of {} min — {} .. {} (to exclusive, Europe/Rome) — line: {line} — T = {} s",
        r.every_minutes,
        r.from,
        r.to,
        nf::secs(r.threshold_s)
    );
    println!();
    println!(
        "{:<25} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>5}",
        "start", "offered", "answer.", "aband.", "overfl.", "SLA", "avg w", "max w", "talk"
    );
    for i in &r.intervals {
        let sla = i.sla.unwrap_or_default();
        let share = match r.policy.as_str() {
            "answered_and_abandoned" => sla.answered_and_abandoned,
            "offered" => sla.offered,
            _ => sla.answered,
        };
        println!(
            "{:<25} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>5}",
            i.start,
            nf::count(i.offered),
            nf::count(i.answered),
            nf::count(i.abandoned),
            nf::count(i.overflow),
            nf::percent(share),
            nf::whole_secs(i.avg_wait_s),
            nf::whole_secs(i.max_wait_s),
            nf::whole_secs(i.avg_talk_s),
        );
    }
    println!();
    let legend = format!(
        "start: the interval's local start with its UTC offset (a day has 96 quarter hours, \
         92 when daylight saving starts, 100 when it ends). offered = answered + abandoned \
         + overflow in service hours (Table 1's calls received). SLA: answered with net \
         wait < {} s under the contract's policy ({}); waits and talk in whole seconds; \
         — = none. --json or --csv give every figure unrounded, all three policies.",
        nf::secs(r.threshold_s),
        r.policy
    );
    for l in nf::wrap(&legend, WIDTH) {
        println!("{l}");
    }
    Ok(())
}

/// One CSV row per interval, with a header row; empty figures are empty fields.
pub fn intervals_csv(r: &pb::Intervals) -> anyhow::Result<()> {
    // Written whole, then printed (through the crate's closed-pipe-safe `print!`).
    let mut w = csv::Writer::from_writer(Vec::new());
    let empty = pb::IntervalStats::default();
    w.write_record(interval_fields(&empty).iter().map(|(k, _)| *k))?;
    for i in &r.intervals {
        w.write_record(interval_fields(i).iter().map(|(_, v)| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }))?;
    }
    let text = String::from_utf8(w.into_inner()?)?;
    print!("{text}");
    Ok(())
}
