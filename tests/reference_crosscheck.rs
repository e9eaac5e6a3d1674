//! Cross-check against an independent reference: `tests/tools/reference.py` implements
//! ../shared/spec/metrics.md on its own (Python standard library, written from the spec
//! without reading netwait's code); `tests/tools/adversarial_gen.py` writes shuffled,
//! duplicated, malformed streams. netwait's figures must equal the reference's, key by
//! key, for several periods, lines and thresholds, and for the SLA year views.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn tool(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
        .display()
        .to_string()
}

fn reference(file: &str, args: &[&str], now_ms: &str) -> Value {
    let out = Command::new("python3")
        .arg(tool("reference.py"))
        .arg(file)
        .args(args)
        .args(["--now-ms", now_ms])
        .output()
        .expect("python3 runs the reference");
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference prints JSON")
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            _ => a == b,
        },
    }
}

/// The reference's keys (those of the spec) must match netwait's.
fn check(netwait: &Value, reference: &Value, what: &str) {
    assert!(
        same(reference, netwait),
        "{what}\nreference: {reference}\nnetwait:   {netwait}"
    );
}

#[test]
fn figures_equal_the_independent_reference() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for seed in ["7", "20261125"] {
        let file = tmp.path().join(format!("adv-{seed}.ndjson"));
        let f = file.to_str().expect("path");
        let status = Command::new("python3")
            .args([
                &tool("adversarial_gen.py"),
                f,
                "--seed",
                seed,
                "--calls",
                "1500",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("python3 runs the generator");
        assert!(status.success());
        let data = tmp.path().join(format!("data-{seed}"));
        let d = data.to_str().expect("path");
        netwait(&["import", "--data", d, f]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_millis())
            .to_string();
        let table_queries: [&[&str]; 7] = [
            &["--from", "2019-01-01", "--to", "2027-01-01"],
            &[
                "--from",
                "2019-01-01",
                "--to",
                "2027-01-01",
                "--line",
                "prelievi",
            ],
            &[
                "--from",
                "2019-01-01",
                "--to",
                "2027-01-01",
                "--line",
                "cup",
            ],
            &["--from", "2019-03-31", "--to", "2019-04-01"],
            &["--from", "2019-10-27", "--to", "2019-10-29"],
            &[
                "--from",
                "2019-01-01",
                "--to",
                "2020-01-01",
                "--threshold",
                "60",
            ],
            &[
                "--from",
                "2026-01-01",
                "--to",
                "2027-01-01",
                "--threshold",
                "1",
            ],
        ];
        for q in table_queries {
            let mut args = vec!["stats", "table1", "--data", d];
            args.extend_from_slice(q);
            let got = json(&args);
            let mut rargs = vec!["table1"];
            rargs.extend_from_slice(q);
            check(
                &got,
                &reference(f, &rargs, &now),
                &format!("seed {seed} table1 {q:?}"),
            );
        }
        for year in ["2019", "2026"] {
            let got = json(&["stats", "sla", "--data", d, "--year", year]);
            let want = reference(f, &["sla", "--year", year], &now);
            check(&got, &want, &format!("seed {seed} sla {year}"));
        }
    }
}
