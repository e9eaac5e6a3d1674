//! `netwait deadletter [list]`: what was rejected, where from, and why; filtered,
//! counted, and shown safely on a terminal (the raw line escaped and cut) or whole in
//! JSON; `netwait deadletter replay` (see `replay`): the rejected lines validated again
//! and imported once they pass. Either store: the embedded one (`--data`) or ClickHouse.

mod letters;
pub mod replay;

pub use replay::ReplayArgs;

use super::StoreArgs;
use super::terminal_text::{escape, escape_all};
use super::wall_time::{parse_since, rome_text};
use base64::Engine as _;
use clap::{Args, Subcommand};
use letters::{Letters, Marks, id_text};
use netwait_aggregator::domain::dedupe::DedupeKey;
use netwait_aggregator::store::record::DeadLetter;
use std::collections::{BTreeMap, BTreeSet};

/// `netwait deadletter list` and `replay` (bare `netwait deadletter` lists).
#[derive(Subcommand, Debug)]
pub enum Action {
    /// List the dead letters (the default), or count them per reason and source.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        clickhouse: super::clickhouse::ClickHouseArgs,
        #[command(flatten)]
        query: Query,
    },
    /// Validate the selected dead letters' raw lines again (after a fix: of the
    /// configuration, of netwait, or of the lines themselves with --from-file) and
    /// import those that pass, as `import` does; mark them replayed (the originals are
    /// kept). A second replay counts nothing twice.
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        clickhouse: super::clickhouse::ClickHouseArgs,
        #[command(flatten)]
        replay: ReplayArgs,
    },
}

/// Which dead letters: the filters of `list` and `replay`.
#[derive(Args, Debug, Clone, Default)]
pub struct Filter {
    /// Only dead letters with this reason code (`invalid_json`, `too_long`, ...; as
    /// `--summary` lists them). Repeat for several.
    #[arg(long = "code", visible_alias = "reason", value_name = "C")]
    codes: Vec<String>,
    /// Only dead letters from this source: a file's path (any spelling of it: files are
    /// stored by their absolute path), or a source name as `--summary` lists them.
    /// Repeat for several.
    #[arg(long = "source", value_name = "S", value_parser = source_arg)]
    sources: Vec<String>,
    /// Only dead letters received at or after T: RFC 3339 with an offset
    /// (2026-03-04T09:00:00+01:00) or a date YYYY-MM-DD (its midnight, Europe/Rome).
    /// Dead letters stored before netwait kept the time have none and are left out.
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<i64>,
}

impl Filter {
    fn matches(&self, d: &DeadLetter<'_>) -> bool {
        let any_of =
            |wanted: &[String], have: &str| wanted.is_empty() || wanted.iter().any(|w| w == have);
        any_of(&self.codes, &d.code)
            && any_of(&self.sources, &d.source)
            && self
                .since
                .is_none_or(|since| d.received_ms.is_some_and(|at| at >= since))
    }
}

/// Characters of a raw line shown in the text listing (`--json` has it whole).
const RAW_SHOWN: usize = 200;

#[derive(Args, Debug, Clone, Default)]
pub struct Query {
    #[command(flatten)]
    filter: Filter,
    /// Only the dead letters not replayed yet (`deadletter replay`).
    #[arg(long, conflicts_with = "replayed")]
    pending: bool,
    /// Only the dead letters replayed.
    #[arg(long)]
    replayed: bool,
    /// List at most N (the oldest first); the count of all that match follows.
    #[arg(long, value_name = "N", conflicts_with = "summary")]
    limit: Option<u64>,
    /// Counts per reason code and per source instead of the list.
    #[arg(long)]
    summary: bool,
    /// JSON instead of text: one object a dead letter, the raw line whole (`raw` when it
    /// is UTF-8, else `raw_base64`), its `id` and when it was `replayed`; with
    /// `--summary`, one object of counts.
    #[arg(long)]
    json: bool,
}

/// `--source`: an existing file stands for its absolute path, as stored.
fn source_arg(text: &str) -> Result<String, String> {
    Ok(super::inputs::source_name(
        text,
        std::path::Path::new(text).is_file(),
    ))
}

impl Query {
    fn matches(&self, d: &DeadLetter<'_>, replayed: Option<i64>) -> bool {
        self.filter.matches(d)
            && !(self.pending && replayed.is_some())
            && !(self.replayed && replayed.is_none())
    }
}

/// Counts per code and per source (of the dead letters that match).
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    by_code: BTreeMap<String, u64>,
    by_source: BTreeMap<String, u64>,
    replayed: u64,
}

impl Summary {
    fn add(&mut self, d: &DeadLetter<'_>, replayed: Option<i64>) {
        *self.by_code.entry(d.code.to_string()).or_default() += 1;
        *self.by_source.entry(d.source.to_string()).or_default() += 1;
        self.replayed += u64::from(replayed.is_some());
    }
}

/// `netwait deadletter [list]`.
pub fn list(store: &StoreArgs, q: &Query) -> anyhow::Result<()> {
    let mut letters = Letters::open(store)?;
    let marks = Marks::of(store)?.load()?;
    let mut matched = 0u64;
    let mut summary = Summary::default();
    // What the store holds, to say so when a filter matched nothing (a typo).
    let mut codes = BTreeSet::new();
    let mut sources = BTreeSet::new();
    letters.each(&mut |d, id| {
        // Needed only while nothing matched (then all are seen).
        if matched == 0 {
            codes.insert(d.code.to_string());
            sources.insert(d.source.to_string());
        }
        let replayed = marks.get(&id).copied();
        if !q.matches(d, replayed) {
            return;
        }
        if q.summary {
            summary.add(d, replayed);
        } else if q.limit.is_none_or(|n| matched < n) {
            let row = Row { d, id, replayed };
            if q.json {
                println!("{}", json_row(&row));
            } else {
                println!("{}", text_row(&row));
            }
        }
        matched += 1;
    })?;
    if q.summary {
        print_summary(&summary, matched, q.json);
    } else if !q.json {
        match q.limit {
            Some(n) if n < matched => println!("{n} of {matched} dead letter(s) shown (--limit)"),
            _ => println!("{matched} dead letter(s)"),
        }
    }
    if matched == 0 {
        note_unknown("code", &q.filter.codes, &codes);
        note_unknown("source", &q.filter.sources, &sources);
    }
    Ok(())
}

/// A dead letter as listed: with its id and when it was replayed.
struct Row<'a> {
    d: &'a DeadLetter<'a>,
    id: DedupeKey,
    replayed: Option<i64>,
}

/// A filter value that no dead letter has is most likely a typo: say what there is.
fn note_unknown(flag: &str, wanted: &[String], stored: &BTreeSet<String>) {
    let unknown: Vec<_> = wanted.iter().filter(|w| !stored.contains(*w)).collect();
    if unknown.is_empty() {
        return;
    }
    let list = |items: &mut dyn Iterator<Item = &String>| {
        items.map(|s| escape_all(s)).collect::<Vec<_>>().join(", ")
    };
    eprintln!(
        "netwait: note: no dead letter has --{flag} {}; the store has: {}",
        list(&mut unknown.into_iter()),
        if stored.is_empty() {
            "none".to_owned()
        } else {
            list(&mut stored.iter())
        }
    );
}

/// One dead letter, two lines: where, why, when, its id (and replay); the raw line
/// escaped and cut.
fn text_row(row: &Row<'_>) -> String {
    let d = row.d;
    let received = d
        .received_ms
        .map(|ms| format!(", received {}", rome_text(ms)))
        .unwrap_or_default();
    let replayed = row
        .replayed
        .map(|ms| format!(", replayed {}", rome_text(ms)))
        .unwrap_or_default();
    let (raw, used) = escape(&d.raw, RAW_SHOWN);
    let shown = if used < d.raw.len() {
        format!("… [{used} of {} bytes shown]", d.raw.len())
    } else {
        String::new()
    };
    // Only the first bytes of a long input are stored: say so, with its size.
    let cut = match d.truncated_from {
        Some(n) => format!(" [truncated: first {} of {n} bytes]", d.raw.len()),
        None => String::new(),
    };
    format!(
        "{}:{}: {} ({}){received}, id {}{replayed}\n    {raw}{shown}{cut}",
        escape_all(&d.source),
        d.position,
        escape_all(&d.reason),
        escape_all(&d.code),
        id_text(row.id),
    )
}

/// One dead letter as JSON, its raw bytes exact.
fn json_row(row: &Row<'_>) -> serde_json::Value {
    let d = row.d;
    let mut v = serde_json::json!({
        "id": id_text(row.id),
        "source": d.source,
        "position": d.position,
        "code": d.code,
        "reason": d.reason,
        "raw_size": d.truncated_from.unwrap_or(d.raw.len() as u64),
        "truncated": d.truncated_from.is_some(),
        "received": d.received_ms.map(rome_text),
        "received_ms": d.received_ms,
        "replayed": row.replayed.map(rome_text),
        "replayed_ms": row.replayed,
    });
    let (key, raw) = match std::str::from_utf8(&d.raw) {
        Ok(text) => ("raw", text.to_owned()),
        Err(_) => (
            "raw_base64",
            base64::engine::general_purpose::STANDARD.encode(&d.raw),
        ),
    };
    v[key] = raw.into();
    v
}

fn print_summary(s: &Summary, total: u64, as_json: bool) {
    if as_json {
        let v = serde_json::json!({
            "total": total,
            "by_code": s.by_code,
            "by_source": s.by_source,
            "replayed": s.replayed,
        });
        println!("{v}");
        return;
    }
    for (title, counts) in [("by code", &s.by_code), ("by source", &s.by_source)] {
        println!("{title}:");
        // The largest first; ties by name.
        let mut rows: Vec<_> = counts.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (name, n) in rows {
            println!("  {n:>9}  {}", escape_all(name));
        }
    }
    if s.replayed > 0 {
        println!("{} of them replayed", s.replayed);
    }
    println!("{total} dead letter(s)");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        q: Query,
    }

    fn query(args: &[&str]) -> Query {
        let mut all = vec!["deadletter"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").q
    }

    fn dead(source: &str, code: &str, raw: &'static [u8], at: Option<i64>) -> DeadLetter<'static> {
        DeadLetter {
            source: source.to_owned().into(),
            position: 1,
            code: code.to_owned().into(),
            reason: "why".into(),
            raw: raw.into(),
            truncated_from: None,
            received_ms: at,
        }
    }

    #[test]
    fn filters_combine_and_repeat() {
        let a = dead("a.ndjson", "invalid_json", b"x", Some(2_000));
        let b = dead("b.ndjson", "too_long", b"x", Some(1_000));
        let old = dead("a.ndjson", "invalid_json", b"x", None);
        let all = [&a, &b, &old];
        let hits = |q: &Query| all.iter().filter(|d| q.matches(d, None)).count();
        assert_eq!(hits(&query(&[])), 3);
        assert_eq!(hits(&query(&["--code", "invalid_json"])), 2);
        assert_eq!(
            hits(&query(&["--code", "invalid_json", "--code", "too_long"])),
            3
        );
        assert_eq!(
            hits(&query(&["--source", "b.ndjson", "--code", "invalid_json"])),
            0
        );
        // A time bound leaves out what has no time.
        assert_eq!(hits(&query(&["--since", "1970-01-01T00:00:01Z"])), 2);
        assert_eq!(hits(&query(&["--since", "1970-01-01T00:00:01.5Z"])), 1);
        assert!(Cli::try_parse_from(["d", "--since", "monday"]).is_err());
        assert!(Cli::try_parse_from(["d", "--limit", "1", "--summary"]).is_err());
        assert_eq!(hits(&query(&["--reason", "too_long"])), 1);
        // Replayed or not.
        let q = query(&["--pending"]);
        assert!(q.matches(&a, None) && !q.matches(&a, Some(5)));
        let q = query(&["--replayed"]);
        assert!(!q.matches(&a, None) && q.matches(&a, Some(5)));
        assert!(Cli::try_parse_from(["d", "--pending", "--replayed"]).is_err());
    }

    #[test]
    fn json_keeps_the_raw_bytes_exactly() {
        fn row<'a>(d: &'a DeadLetter<'a>) -> Row<'a> {
            Row {
                d,
                id: 0xab,
                replayed: Some(0),
            }
        }
        let d = dead("s", "c", "é\u{1b}".as_bytes(), None);
        let text = json_row(&row(&d));
        assert_eq!(text["id"], "000000000000000000000000000000ab");
        assert_eq!(text["replayed_ms"], 0);
        assert_eq!(text["raw"], "é\u{1b}");
        assert!(text.get("raw_base64").is_none());
        let d = dead("s", "c", b"\xff\x00ab", Some(0));
        let binary = json_row(&row(&d));
        assert_eq!(binary["raw_base64"], "/wBhYg==");
        assert!(binary.get("raw").is_none());
        assert_eq!(binary["received_ms"], 0);
    }

    #[test]
    fn text_is_escaped_and_cut() {
        let long: &'static [u8] = Box::leak(vec![b'z'; 1000].into_boxed_slice());
        let d = dead("s\u{1b}", "c", long, None);
        let row = text_row(&Row {
            d: &d,
            id: 1,
            replayed: None,
        });
        assert!(row.contains(&format!("{}… [200 of 1000 bytes shown]", "z".repeat(200))));
        assert!(row.starts_with(r"s\x1b:1: why (c)"), "{row}");
        assert!(
            row.contains(", id 00000000000000000000000000000001\n"),
            "{row}"
        );
        assert!(!row.contains('\u{1b}'));
    }

    #[test]
    fn summary_counts_per_code_and_source() {
        let mut s = Summary::default();
        for d in [
            dead("a", "x", b"", None),
            dead("a", "y", b"", None),
            dead("b", "x", b"", None),
        ] {
            s.add(&d, (d.code == "y").then_some(1));
        }
        assert_eq!(s.replayed, 1);
        assert_eq!(
            s.by_code,
            BTreeMap::from([("x".into(), 2), ("y".into(), 1)])
        );
        assert_eq!(
            s.by_source,
            BTreeMap::from([("a".into(), 2), ("b".into(), 1)])
        );
    }
}
