//! The Grafana dashboard of `deploy/grafana/` and its queries as Grafana's ClickHouse
//! data source would send them (its macros and the `line` variable expanded).

use serde_json::Value;
use std::path::Path;

pub fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/netwait.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Each panel's title and query, then the `line` variable's query, for the panel time
/// range `from`..`to` (dates, midnight UTC) and the service line `line`.
pub fn queries(from: &str, to: &str, line: &str) -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for panel in d["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title").to_owned();
        for target in panel["targets"].as_array().expect("targets") {
            let sql = target["rawSql"].as_str().expect("rawSql");
            out.push((title.clone(), expand(sql, from, to, line)));
        }
    }
    for var in d["templating"]["list"].as_array().expect("variables") {
        let sql = var["query"].as_str().expect("a query variable");
        out.push((
            format!("variable {}", var["name"]),
            expand(sql, from, to, line),
        ));
    }
    out
}

/// The plugin's macros as it expands them (`$__dateFilter(c)`: `c >= toDate('from') AND
/// c <= toDate('to')`; `$__timeFilter(c)`: the same in epoch seconds, `toDateTime`).
fn expand(sql: &str, from: &str, to: &str, line: &str) -> String {
    let epoch = |date: &str| {
        netwait_aggregator::domain::time::parse_rfc3339(&format!("{date}T00:00:00Z"))
            .expect("a date")
            / 1000
    };
    let mut out = sql.replace("${line}", line);
    for (name, filter) in [
        (
            "$__dateFilter(",
            format!("{{c}} >= toDate('{from}') AND {{c}} <= toDate('{to}')"),
        ),
        (
            "$__timeFilter(",
            format!(
                "{{c}} >= toDateTime({}) AND {{c}} <= toDateTime({})",
                epoch(from),
                epoch(to)
            ),
        ),
    ] {
        while let Some(at) = out.find(name) {
            let rest = &out[at + name.len()..];
            let close = rest.find(')').expect("a macro's closing parenthesis");
            let column = rest[..close].trim().to_owned();
            let expanded = filter.replace("{c}", &column);
            out.replace_range(at..at + name.len() + close + 1, &expanded);
        }
    }
    assert!(
        !out.contains('$'),
        "a macro or variable left unexpanded: {out}"
    );
    out
}
