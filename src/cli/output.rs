//! How figures are printed: `--json` (exactly the spec's keys) or a readable table in the
//! seed's layout, with the Italian row labels of seed §1.2.

use netwait_proto::v1 as pb;
use serde_json::{Value, json};

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "null".to_owned(), |x| format!("{x:.decimals$}"))
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
    println!(
        "Table 1 — {} .. {} (to exclusive, Europe/Rome), line: {}",
        t.from,
        t.to,
        t.line.as_deref().unwrap_or("all")
    );
    println!(
        "Threshold T = {} s on the net wait. {}",
        t.threshold_s, t.band_mapping
    );
    println!();
    let t_s = t.threshold_s;
    let rows: [(&str, String, String); 14] = [
        (
            "Totale chiamate ricevute",
            "calls_received".into(),
            t.calls_received.to_string(),
        ),
        (
            "Chiamate risposte",
            "answered".into(),
            t.answered.to_string(),
        ),
        (
            "Chiamate dissuase",
            "overflow".into(),
            t.overflow.to_string(),
        ),
        (
            "Chiamate abbandonate",
            "abandoned".into(),
            t.abandoned.to_string(),
        ),
        (
            "Risposte senza attesa in coda",
            "answered_without_wait (net < 1 s)".into(),
            t.answered_without_wait.to_string(),
        ),
        (
            "Risposte con attesa oltre soglia 40 s",
            format!("answered_wait_within_threshold (1 s <= net < {t_s} s)"),
            t.answered_wait_within_threshold.to_string(),
        ),
        (
            "Risposte con attesa oltre soglia 180 s",
            format!("answered_wait_over_threshold (net >= {t_s} s)"),
            t.answered_wait_over_threshold.to_string(),
        ),
        (
            "Tempo massimo d'attesa (s)",
            "max_wait_s".into(),
            opt(t.max_wait_s, 3),
        ),
        (
            "Tempo medio d'attesa (s)",
            "avg_wait_s".into(),
            opt(t.avg_wait_s, 3),
        ),
        (
            "Tempo medio di conversazione (s)",
            "avg_talk_s".into(),
            opt(t.avg_talk_s, 3),
        ),
        (
            "Prenotazioni effettuate",
            "bookings".into(),
            t.bookings.to_string(),
        ),
        ("—", "out_of_hours".into(), t.out_of_hours.to_string()),
        ("—", "unresolved".into(), t.unresolved.to_string()),
        ("", String::new(), String::new()),
    ];
    for (it, key, value) in rows.iter().filter(|r| !r.1.is_empty()) {
        println!("{it:<40} {key:<52} {value:>12}");
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
            },
        }));
    }
    println!(
        "SLA {} — line: {} — share answered with net wait < {} s; target {}, grave floor {}; contract policy: {}",
        y.year,
        y.line.as_deref().unwrap_or("all"),
        y.threshold_s,
        y.target,
        y.grave_floor,
        y.policy
    );
    println!();
    println!(
        "{:<8} {:>8} {:>10} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9}  status",
        "month",
        "sla",
        "answered",
        "ans.<T",
        "abandoned",
        "overflow",
        "p:ans",
        "p:ans+ab",
        "p:offer"
    );
    let pct = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |x| format!("{:.2}%", x * 100.0));
    for m in &y.months {
        let pol = m.policies.unwrap_or_default();
        println!(
            "{:<8} {:>8} {:>10} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9}  {}",
            m.month,
            pct(m.sla),
            m.answered,
            m.answered_within_threshold,
            m.abandoned,
            m.overflow,
            pct(pol.answered),
            pct(pol.answered_and_abandoned),
            pct(pol.offered),
            m.status
        );
    }
    println!();
    println!(
        "months below target (incl. grave): {}   termination risk: {}",
        y.months_below_target, y.termination_risk
    );
    println!(
        "penalties (upper bounds): {} deficient month(s) x {}% of the monthly fee, {} grave month(s) x {}% of the annual fee",
        p.deficient_months, p.monthly_penalty_pct, p.grave_months, p.grave_penalty_pct
    );
    match (p.max_penalty_eur, p.max_penalty_pct_of_annual) {
        (Some(eur), Some(pct)) => println!(
            "  up to EUR {eur:.2} = {pct:.2}% of the annual amount; termination right (>= 10%): {}",
            p.penalty_termination_right
        ),
        _ => println!(
            "  amounts: set [penalties] monthly_fee_eur and annual_fee_eur in the configuration"
        ),
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
