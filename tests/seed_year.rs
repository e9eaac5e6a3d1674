//! The seed's 2019 column of Table 1, from a year of events generated to match it
//! (../shared/tools/gen_seed2019.py), through import and through a server.

mod common;
use common::*;
use serde_json::{Value, json};

/// Seed §1.2, year 2019.
fn seed_2019() -> Value {
    json!({
        "calls_received": 181_795, "answered": 97_385, "overflow": 47_154, "abandoned": 37_256,
        "answered_without_wait": 13_745, "answered_wait_within_threshold": 31_358,
        "answered_wait_over_threshold": 52_282, "bookings": 88_210,
        "max_wait_s": 1240.0, "avg_wait_s": 229.0, "avg_talk_s": 184.0,
        "out_of_hours": 0, "unresolved": 0,
    })
}

fn assert_seed(t: &Value) {
    for (k, want) in seed_2019().as_object().expect("object") {
        let got = &t[k];
        match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{k}: got {g}, want {w}"),
            _ => panic!("{k}: got {got}, want {want}"),
        }
    }
}

#[test]
fn seed_year_exact_through_import_and_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf-8 path");
    let out = netwait(&["import", "--data", data_s, seed.to_str().expect("path")]);
    let lines = std::fs::read_to_string(&seed)
        .expect("seed")
        .lines()
        .count();
    assert_eq!(
        stdout(&out).trim(),
        format!("total: accepted {lines} duplicate 0 rejected 0")
    );

    let t = table1(["--data", data_s], "2019-01-01", "2020-01-01", &[]);
    assert_seed(&t);
    assert_eq!(t["threshold_s"], json!(140.0));
    assert_eq!(t["line"], Value::Null);
    let keys: Vec<&str> = t
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 17, "exactly the spec's keys: {keys:?}");
    manager_table(data_s);

    // The same through the gRPC server, with the line filter of the seed's only line.
    let server = Server::start(&data);
    let at = ["--server", server.addr.as_str()];
    let t = table1(at, "2019-01-01", "2020-01-01", &["--line", "cup"]);
    assert_seed(&t);
    // A line the store has not seen is an error naming the ones it has, not zeros.
    let out = std::process::Command::new(BIN)
        .args([
            "stats",
            "table1",
            at[0],
            at[1],
            "--from",
            "2019-01-01",
            "--to",
            "2020-01-01",
        ])
        .args(["--line", "prelievi"])
        .output()
        .expect("run netwait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(r#"lines in the store: "cup""#),
        "{err}"
    );
    // An empty period is zeros and nulls, not an error.
    let empty = table1(at, "2019-03-01", "2019-03-01", &[]);
    assert_eq!(empty["answered"], json!(0));
    assert_eq!(empty["max_wait_s"], Value::Null);
    assert_eq!(empty["avg_wait_s"], Value::Null, "empty averages are null");

    // The SLA year adds up to the same answered calls, month by month.
    let y = json(&["stats", "sla", "--server", &server.url(), "--year", "2019"]);
    let months = y["months"].as_array().expect("months");
    assert_eq!(months.len(), 12);
    let answered: u64 = months
        .iter()
        .map(|m| m["answered"].as_u64().unwrap_or(0))
        .sum();
    let within: u64 = months
        .iter()
        .map(|m| m["answered_within_threshold"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(answered, 97_385);
    assert_eq!(within, 13_745 + 31_358);
    for m in months {
        let a = m["answered"].as_f64().unwrap_or(0.0);
        let w = m["answered_within_threshold"].as_f64().unwrap_or(0.0);
        // serde_json's default float parser may be 1 ulp off; the printed value is exact.
        let sla = m["sla"].as_f64().expect("sla");
        assert!((sla - w / a).abs() < 1e-12, "{sla} vs {}", w / a);
        assert_eq!(m["policies"]["answered"], m["sla"]);
    }
    let v = json(&[
        "stats",
        "volume",
        "--server",
        &server.addr,
        "--half",
        "2019-H1",
    ]);
    assert_eq!(v["index"], json!(68_000.0));
    assert!(matches!(
        v["verdict"].as_str(),
        Some("unchanged" | "renegotiable")
    ));
    assert!(server.stop().success(), "graceful shutdown exits 0");
}

/// The README's example: `gen_seed2019.py --prelievi 0.25` keeps the seed's totals and
/// puts a quarter of the calls on line prelievi.
#[test]
fn seed_year_with_two_lines_keeps_the_totals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("two-lines.ndjson");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/gen_seed2019.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg(&file)
        .args(["--prelievi", "0.25"])
        .status()
        .expect("python3 runs the seed generator");
    assert!(status.success());
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf-8 path");
    netwait(&["import", "--data", data_s, file.to_str().expect("path")]);
    let at = ["--data", data_s];
    assert_seed(&table1(at, "2019-01-01", "2020-01-01", &[]));
    let cup = table1(at, "2019-01-01", "2020-01-01", &["--line", "cup"]);
    let prelievi = table1(at, "2019-01-01", "2020-01-01", &["--line", "prelievi"]);
    for key in ["calls_received", "answered", "bookings"] {
        let (c, p) = (cup[key].as_u64(), prelievi[key].as_u64());
        assert_eq!(
            c.zip(p).map(|(c, p)| c + p),
            seed_2019()[key].as_u64(),
            "{key}"
        );
    }
    let share = prelievi["calls_received"].as_f64().unwrap_or(0.0) / 181_795.0;
    assert!((0.24..0.26).contains(&share), "prelievi share {share}");
}

/// The text Table 1 and SLA year as a manager reads them: the seed's row order and number
/// format, threshold rows labelled gross from the T asked, 80 columns.
fn manager_table(data_s: &str) {
    let text = |extra: &[&str]| {
        let mut args = vec!["stats", "table1", "--data", data_s];
        args.extend_from_slice(&["--from", "2019-01-01", "--to", "2020-01-01"]);
        args.extend_from_slice(extra);
        stdout(&netwait(&args))
    };
    let fits = |out: &str| {
        for l in out.lines() {
            assert!(l.chars().count() <= 80, "wider than 80 columns: {l:?}");
        }
    };
    let out = text(&[]);
    fits(&out);
    let value_of = |out: &str, label: &str| -> String {
        let row = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no row {label:?} in {out}"));
        row.rsplit(' ').next().unwrap_or_default().to_owned()
    };
    let seed_rows = [
        ("Totale chiamate ricevute", "181.795"),
        ("Chiamate risposte", "97.385"),
        ("Chiamate dissuase", "47.154"),
        ("Chiamate abbandonate", "37.256"),
        ("Risposte senza attesa in coda", "13.745"),
        ("Risposte con attesa oltre soglia 180 s", "52.282"),
        ("Risposte con attesa oltre soglia 40 s", "31.358"),
        ("Tempo massimo d'attesa", "1.240"),
        ("Tempo medio d'attesa", "229"),
        ("Tempo medio di conversazione", "184"),
        ("Prenotazioni effettuate", "88.210"),
    ];
    let mut last = 0;
    for (label, value) in seed_rows {
        assert_eq!(value_of(&out, label), value, "{label}");
        let at = out.find(label).expect("row");
        assert!(at > last, "{label} out of the seed's order in {out}");
        last = at;
    }
    let out = text(&["--threshold", "120"]);
    fits(&out);
    assert!(out.contains("oltre soglia 160 s"), "{out}");
    assert!(!out.contains("180 s"), "{out}");
    let sla = stdout(&netwait(&[
        "stats", "sla", "--data", data_s, "--year", "2019",
    ]));
    fits(&sla);
    assert!(sla.contains("A+Ab = answered + abandoned"), "legend: {sla}");
}
