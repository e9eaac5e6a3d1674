//! The Grafana dashboard (`deploy/grafana/netwait.json`): its shape as Grafana and the
//! ClickHouse data source read it, and its figures against the API's on the seed year.
//! (That its queries also run alike on ClickHouse 26 is checked by `clickhouse_chdb`.)

mod common;
use common::servers::clickhouse_url;
use common::*;
use std::collections::HashSet;

#[test]
fn every_panel_queries_the_clickhouse_data_source_with_known_macros() {
    let d = grafana::dashboard();
    assert_eq!(d["__inputs"][0]["name"], "DS_CLICKHOUSE");
    assert_eq!(
        d["__inputs"][0]["pluginId"],
        "grafana-clickhouse-datasource"
    );
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 4);
    let mut ids = HashSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("an id")),
            "ids are unique"
        );
        for key in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][key].is_u64(), "{}: gridPos.{key}", p["title"]);
        }
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${DS_CLICKHOUSE}", "{}", p["title"]);
            assert_eq!(t["datasource"]["type"], "grafana-clickhouse-datasource");
            let sql = t["rawSql"].as_str().expect("rawSql");
            assert!(
                sql.contains("FROM netwait_"),
                "{}: reads a BI view",
                p["title"]
            );
            // Only the macros that grafana::queries expands (it fails on any other).
            assert!(t["format"] == 0 || t["format"] == 1, "time series or table");
        }
    }
    assert!(
        grafana::queries("2019-01-01", "2019-12-31", "cup")
            .iter()
            .any(|(_, q)| q.contains("netwait_interval_15m")),
        "the 15-minute view has a panel"
    );
}

/// The "Table 1 by month" panel over the seed year, summed, is the API's Table 1 of the
/// year; the SLA panel's "answered" share of each month is the API's monthly SLA.
#[test]
fn the_seed_year_in_the_dashboard_gives_the_api_s_figures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let db = format!("nwgrafana_{}", std::process::id());
    let ch = ["--clickhouse", clickhouse_url(), "--database", &db];
    netwait(&[&["migrate"][..], &ch].concat());
    netwait(&[&["import"][..], &ch, &[seed.to_str().expect("path")]].concat());
    let queries = grafana::queries("2019-01-01", "2019-12-31", "cup");
    let query = |title: &str| {
        let (_, sql) = queries
            .iter()
            .find(|(t, _)| t.starts_with(title))
            .unwrap_or_else(|| panic!("a panel {title}"));
        servers::clickhouse_sql(&format!(
            "{} FORMAT JSON",
            sql.replace("FROM netwait_", &format!("FROM {db}.netwait_"))
        ))
    };
    let rows = |text: String| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        v["data"].as_array().expect("data").clone()
    };
    let table1 = rows(query("Table 1 by month"));
    assert_eq!(table1.len(), 12, "a row a month");
    let sum = |key: &str| -> u64 {
        table1
            .iter()
            .map(|r| match &r[key] {
                serde_json::Value::String(s) => s.parse::<u64>().expect("a count"),
                v => v.as_u64().expect("a count"),
            })
            .sum()
    };
    let (api, api_sla) = year_2019(&ch);
    for key in [
        "calls_received",
        "answered",
        "overflow",
        "abandoned",
        "bookings",
    ] {
        assert_eq!(sum(key), api[key].as_u64().expect("a count"), "{key}");
    }
    let sla = rows(query("Monthly SLA"));
    let months = api_sla["months"].as_array().expect("months");
    assert_eq!(sla.len(), months.len());
    for (panel, m) in sla.iter().zip(months) {
        let share = panel["sla_answered"].as_f64().expect("a share");
        let want = m["policies"]["answered"].as_f64().expect("the API's SLA");
        assert!((share - want).abs() < 1e-9, "{panel} vs {m}");
    }
    servers::clickhouse_sql(&format!("DROP DATABASE {db}"));
}
