//! An adversarial stream built from a known truth: every call's outcome, waits, line and
//! service-hours status are chosen first, the expected figures are computed from that
//! truth by the rules of ../shared/spec/metrics.md (independently of netwait's code),
//! then the events are written in every `ts` form, shuffled, duplicated, with missing
//! events, agent events and malformed lines mixed in.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Local dates with what the test itself knows of them: UTC offset (hours) and hours of
/// service (None = closed all day: Sunday or holiday).
/// (local date, UTC offset in hours, service hours from/to or closed).
type Day = (&'static str, i64, Option<(i64, i64)>);

const DAYS: &[Day] = &[
    ("2019-03-29", 1, Some((8, 18))), // Friday
    ("2019-03-30", 1, Some((8, 12))), // Saturday
    ("2019-03-31", 2, None),          // Sunday, DST starts (times used are after 03:00)
    ("2019-04-01", 2, Some((8, 18))), // Monday in CEST
    ("2019-04-22", 2, None),          // Easter Monday
    ("2019-04-25", 2, None),          // Liberation Day
    ("2019-10-26", 2, Some((8, 12))), // Saturday, last day of CEST
    ("2019-10-28", 1, Some((8, 18))), // Monday back in CET
    ("2019-12-24", 1, Some((8, 18))), // Tuesday
    ("2019-12-26", 1, None),          // St Stephen
    ("2026-10-02", 2, Some((8, 18))), // Friday
    ("2026-10-03", 2, Some((8, 12))), // Saturday
    ("2026-10-05", 2, Some((8, 18))), // Monday
];

const H: i64 = 3_600_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn date_parts(date: &str) -> (i64, i64, i64) {
    let p: Vec<i64> = date.split('-').map(|x| x.parse().unwrap_or(0)).collect();
    (p[0], p[1], p[2])
}

#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Answered,
    Abandoned,
    Overflow,
    Open,
}

struct Call {
    date: &'static str,
    line: &'static str,
    outcome: Outcome,
    in_hours: bool,
    net_wait: i64,
    talk: Option<i64>,
    bookings: u64,
}

/// Renders an instant in one of the spec's `ts` forms (all denote the same millisecond).
fn ts(rng: &mut Rng, ms: i64, offset_h: i64) -> String {
    let form = rng.below(7);
    if form == 0 {
        return ms.to_string();
    }
    let (off, sign_off) = match form {
        1 | 2 => (0, "Z".to_owned()),
        3 => (0, "z".to_owned()),
        _ => (offset_h, format!("+{offset_h:02}:00")),
    };
    let local = ms + off * H;
    let d = local.div_euclid(86_400_000);
    let t = local.rem_euclid(86_400_000);
    // civil from days (inverse of `days`)
    let z = d + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let sep = *rng.pick(&["T", "t", " "]);
    let frac = match rng.below(3) {
        0 => format!(".{:03}", t % 1000),
        // extra digits are dropped, never rounded
        1 => format!(".{:03}999", t % 1000),
        _ => format!(".{:03}0", t % 1000),
    };
    format!(
        "\"{year:04}-{month:02}-{day:02}{sep}{:02}:{:02}:{:02}{frac}{sign_off}\"",
        t / H,
        t / 60_000 % 60,
        t / 1000 % 60
    )
}

fn build(seed: u64, n_calls: usize) -> (Vec<String>, Vec<String>, Vec<Call>, usize) {
    let mut rng = Rng(seed);
    let mut lines = Vec::new();
    let mut late = Vec::new(); // lines that must arrive after the others
    let mut calls = Vec::new();
    let waits = [
        0, 999, 1_000, 1_001, 139_999, 140_000, 140_001, 61_250, 600_000,
    ];
    for i in 0..n_calls {
        let &(date, off, hours) = rng.pick(DAYS);
        let (y, m, d) = date_parts(date);
        // Local time of the anchor: edges of the hours and ordinary times.
        let local_ms = match rng.below(8) {
            0 => 8 * H - 1,
            1 => 8 * H,
            2 => 12 * H - 1,
            3 => 12 * H,
            4 => 18 * H - 1,
            5 => 18 * H,
            6 => 20 * H,
            _ => 8 * H + rng.below(10 * H as u64) as i64,
        };
        let in_hours = hours.is_some_and(|(a, b)| a * H <= local_ms && local_ms < b * H);
        let anchor = days(y, m, d) * 86_400_000 + local_ms - off * H;
        let line = *rng.pick(&["cup", "prelievi", ""]);
        let outcome = *rng.pick(&[
            Outcome::Answered,
            Outcome::Answered,
            Outcome::Abandoned,
            Outcome::Overflow,
            Outcome::Open,
        ]);
        let id = format!("a{i}");
        let mut evs: Vec<(String, i64, String)> = Vec::new(); // (type, ts, extra fields)
        // How the wait is anchored: announcement_end, else queued, else the anchor.
        let start_kind = rng.below(3);
        let wait_start = anchor + 40_000;
        let has_offered = rng.below(10) != 0;
        if has_offered {
            let l = if line.is_empty() {
                if rng.below(2) == 0 {
                    String::new()
                } else {
                    ",\"line\":null".into()
                }
            } else {
                format!(",\"line\":\"{line}\"")
            };
            evs.push(("offered".into(), anchor, l));
        }
        if !has_offered {
            // The earliest event anchors the call: a `queued` at the anchor, which is then
            // also the earliest `queued` (so it starts the wait unless a message ended).
            evs.push(("queued".into(), anchor, String::new()));
        }
        let ws = match start_kind {
            0 => {
                evs.push(("announcement_end".into(), wait_start, String::new()));
                // a queued after the message does not move the wait start
                evs.push(("queued".into(), wait_start + 500, String::new()));
                wait_start
            }
            1 => {
                evs.push(("queued".into(), wait_start, String::new()));
                if has_offered { wait_start } else { anchor }
            }
            _ => anchor,
        };
        let mut net_wait = 0;
        let mut talk = None;
        let mut bookings = 0;
        match outcome {
            Outcome::Answered => {
                net_wait = *rng.pick(&waits);
                let at = ws + net_wait;
                evs.push(("answered".into(), at, ",\"agent\":\"op1\"".into()));
                // a second, later answer does not count
                evs.push(("answered".into(), at + 5_000, ",\"agent\":\"op2\"".into()));
                if rng.below(4) != 0 {
                    let t = rng.below(400_000) as i64;
                    talk = Some(t);
                    evs.push(("ended".into(), at + t, String::new()));
                }
                bookings = rng.below(4);
                for b in 0..bookings {
                    let kind = rng.pick(&["book", "cancel", "move"]);
                    evs.push((
                        "booking".into(),
                        at + 1_000 + b as i64,
                        format!(",\"booking\":\"{kind}\""),
                    ));
                }
            }
            Outcome::Abandoned => {
                evs.push(("abandoned".into(), ws + 30_000, String::new()));
                if rng.below(2) == 0 {
                    // an overflow at the same instant: the tie goes to abandoned
                    evs.push((
                        "overflow".into(),
                        ws + 30_000,
                        ",\"reason\":\"queue_full\"".into(),
                    ));
                }
            }
            Outcome::Overflow => {
                evs.push((
                    "overflow".into(),
                    ws + 100,
                    ",\"reason\":\"max_wait\"".into(),
                ));
                evs.push(("abandoned".into(), ws + 200, String::new()));
            }
            Outcome::Open => {}
        }
        for (k, (kind, t, extra)) in evs.iter().enumerate() {
            let with_id = rng.below(2) == 0;
            let eid = if with_id {
                format!(",\"event_id\":\"{id}-{k}\"")
            } else {
                String::new()
            };
            let line = format!(
                "{{\"call_id\":\"{id}\",\"type\":\"{kind}\",\"ts\":{}{extra}{eid},\"x-extra\":{{\"n\":[1,2]}}}}",
                ts(&mut rng, *t, off)
            );
            lines.push(line);
            // The same event again in another ts form: a duplicate by key.
            if rng.below(5) == 0 {
                lines.push(format!(
                    "{{\"type\":\"{kind}\",\"call_id\":\"{id}\",\"ts\":{}{extra}{eid}}}",
                    ts(&mut rng, *t, off)
                ));
            }
            // Same event_id, other content, received later: ignored.
            if with_id && rng.below(6) == 0 {
                late.push(format!(
                    "{{\"call_id\":\"{id}\",\"type\":\"booking\",\"booking\":\"book\",\"ts\":{}{eid}}}",
                    t + 1
                ));
            }
        }
        calls.push(Call {
            date,
            line: if line.is_empty() || !has_offered {
                "cup"
            } else {
                line
            },
            outcome,
            in_hours,
            net_wait,
            talk,
            bookings,
        });
    }
    // Agent events anywhere (they move the clock only).
    for i in 0..50 {
        lines.push(format!(
            "{{\"type\":\"agent_pause\",\"agent\":\"op{i}\",\"ts\":1553000000000,\"call_id\":null}}"
        ));
    }
    let malformed = [
        String::new(),
        "not json".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":\"2019-03-29T10:00:00+0100\"}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":\"2019-03-29T10:00:00,5+01:00\"}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":\"2019-03-29T10:00:00\"}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":\"2019-03-29T10:00+01:00\"}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":\"2019-03-29T23:59:60Z\"}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":1553850000000.0}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":1e12}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":true}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":\"1969-12-31T23:59:59Z\"}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":4133980800000}".into(),
        "{\"call_id\":\"m\",\"type\":\"Offered\",\"ts\":1553850000000}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":1553850000000,\"ts\":1553850000001}".into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":1553850000000,\"booking\":\"steal\"}"
            .into(),
        "{\"call_id\":7,\"type\":\"agent_login\",\"agent\":\"x\",\"ts\":1553850000000}".into(),
        "{\"call_id\":\"m\",\"type\":\"answered\",\"ts\":1553850000000}".into(),
        "{\"call_id\":\"m\",\"type\":\"booking\",\"ts\":1553850000000}".into(),
        "{\"call_id\":\"\",\"type\":\"offered\",\"ts\":1553850000000}".into(),
        format!(
            "{{\"call_id\":\"{}\",\"type\":\"offered\",\"ts\":1553850000000}}",
            "x".repeat(129)
        ),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":1553850000000,\"reason\":\"\\ud800\"}"
            .into(),
        "{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":1553850000000,\"x\":[\"\\udc00\"]}".into(),
        format!(
            "{{\"call_id\":\"m\",\"type\":\"offered\",\"ts\":1553850000000,\"pad\":\"{}\"}}",
            "p".repeat(65_536)
        ),
        "[1,2,3]".into(),
    ];
    let n_bad = malformed.len();
    lines.extend(malformed);
    // Shuffle everything but the late lines (Fisher-Yates).
    for i in (1..lines.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        lines.swap(i, j);
    }
    (lines, late, calls, n_bad)
}

/// Table 1 from the truth, by the spec's definitions.
fn expected(
    calls: &[Call],
    from: &str,
    to: &str,
    line: Option<&str>,
    t: i64,
) -> BTreeMap<&'static str, Value> {
    let mut c: BTreeMap<&'static str, i64> = BTreeMap::new();
    let (mut max, mut wsum, mut tsum, mut tn) = (None::<i64>, 0i64, 0i64, 0i64);
    for k in [
        "answered",
        "abandoned",
        "overflow",
        "answered_without_wait",
        "answered_wait_within_threshold",
        "answered_wait_over_threshold",
        "bookings",
        "out_of_hours",
        "unresolved",
    ] {
        c.insert(k, 0);
    }
    for call in calls {
        if call.date < from || call.date >= to || line.is_some_and(|l| l != call.line) {
            continue;
        }
        let inc = |c: &mut BTreeMap<&'static str, i64>, k, by| *c.entry(k).or_default() += by;
        if !call.in_hours {
            inc(&mut c, "out_of_hours", 1);
            continue;
        }
        match call.outcome {
            Outcome::Open => inc(&mut c, "unresolved", 1),
            Outcome::Abandoned => inc(&mut c, "abandoned", 1),
            Outcome::Overflow => inc(&mut c, "overflow", 1),
            Outcome::Answered => {
                inc(&mut c, "answered", 1);
                let w = call.net_wait;
                let band = if w < 1000 {
                    "answered_without_wait"
                } else if w < t {
                    "answered_wait_within_threshold"
                } else {
                    "answered_wait_over_threshold"
                };
                inc(&mut c, band, 1);
                inc(&mut c, "bookings", call.bookings as i64);
                max = Some(max.map_or(w, |m: i64| m.max(w)));
                wsum += w;
                if let Some(x) = call.talk {
                    tsum += x;
                    tn += 1;
                }
            }
        }
    }
    let mut out: BTreeMap<&'static str, Value> =
        c.iter().map(|(k, v)| (*k, Value::from(*v))).collect();
    let answered = c["answered"];
    out.insert(
        "calls_received",
        Value::from(answered + c["abandoned"] + c["overflow"]),
    );
    out.insert(
        "max_wait_s",
        max.map_or(Value::Null, |m| Value::from(m as f64 / 1000.0)),
    );
    out.insert(
        "avg_wait_s",
        if answered > 0 {
            Value::from(wsum as f64 / answered as f64 / 1000.0)
        } else {
            Value::Null
        },
    );
    out.insert(
        "avg_talk_s",
        if tn > 0 {
            Value::from(tsum as f64 / tn as f64 / 1000.0)
        } else {
            Value::Null
        },
    );
    out
}

fn assert_table(got: &Value, want: &BTreeMap<&'static str, Value>, what: &str) {
    for (k, w) in want {
        let g = &got[*k];
        let same = match (g.as_f64(), w.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            _ => g == w,
        };
        assert!(same, "{what}: {k}: got {g}, want {w}");
    }
}

#[test]
fn adversarial_stream_gives_the_spec_figures() {
    let (lines, late, calls, n_bad) = build(0x5eed_2019, 3_000);
    let mut text = String::new();
    for (i, l) in lines.iter().chain(late.iter()).enumerate() {
        // Mixed line ends.
        let _ = write!(text, "{l}{}", if i % 3 == 0 { "\r\n" } else { "\n" });
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("adversarial.ndjson");
    std::fs::write(&file, &text).expect("write");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("path");
    let out = stdout(&netwait(&[
        "import",
        "--data",
        d,
        file.to_str().expect("path"),
    ]));
    let rejected: usize = out
        .split("rejected ")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .expect("counts line");
    assert_eq!(rejected, n_bad, "{out}");

    let periods = [
        ("2019-01-01", "2027-01-01"),
        ("2019-03-31", "2019-04-01"),
        ("2019-03-30", "2019-04-02"),
        ("2019-10-26", "2019-10-29"),
        ("2026-01-01", "2027-01-01"),
    ];
    for (from, to) in periods {
        for line in [None, Some("cup"), Some("prelievi")] {
            for t in [140_000, 60_000] {
                let ts = (t / 1000).to_string();
                let mut extra = vec!["--threshold", ts.as_str()];
                if let Some(l) = line {
                    extra.extend(["--line", l]);
                }
                let got = table1(["--data", d], from, to, &extra);
                let want = expected(&calls, from, to, line, t);
                assert_table(&got, &want, &format!("{from}..{to} {line:?} T={t}"));
            }
        }
    }

    // The same stream pushed to a server in small messages gives the same figures.
    let data2 = tmp.path().join("data2");
    let server = Server::start(&data2);
    netwait(&[
        "push",
        "--batch",
        "37",
        "--server",
        &server.addr,
        file.to_str().expect("path"),
    ]);
    let got = table1(["--server", &server.addr], "2019-01-01", "2027-01-01", &[]);
    assert_table(
        &got,
        &expected(&calls, "2019-01-01", "2027-01-01", None, 140_000),
        "pushed",
    );
    // SLA months from the truth (answered policy).
    let y = json(&["stats", "sla", "--server", &server.addr, "--year", "2019"]);
    for m in y["months"].as_array().expect("months") {
        let month = m["month"].as_str().expect("month");
        let (yy, mm) = (&month[..4], &month[5..]);
        let from = format!("{yy}-{mm}-01");
        let to = if mm == "12" {
            format!("{}-01-01", 2020)
        } else {
            format!("{yy}-{:02}-01", mm.parse::<u32>().unwrap_or(0) + 1)
        };
        let want = expected(&calls, &from, &to, None, 140_000);
        let answered = want["answered"].as_i64().unwrap_or(0);
        let within = want["answered_without_wait"].as_i64().unwrap_or(0)
            + want["answered_wait_within_threshold"].as_i64().unwrap_or(0);
        assert_eq!(m["answered"].as_i64(), Some(answered), "{month}");
        assert_eq!(
            m["answered_within_threshold"].as_i64(),
            Some(within),
            "{month}"
        );
        if answered == 0 {
            assert_eq!(m["status"], "no_traffic", "{month}");
        } else {
            let sla = m["sla"].as_f64().expect("sla");
            assert!(
                (sla - within as f64 / answered as f64).abs() < 1e-12,
                "{month}"
            );
        }
    }
    assert!(server.stop().success());
}
