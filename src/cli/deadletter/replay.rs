//! `netwait deadletter replay`: the selected dead letters' raw lines validated again, as
//! `import` validates, and the events of those that now pass imported through the
//! engine (its dedupe decides what is new), in one commit; then each is marked replayed
//! (`letters::Marks`). The dead letters themselves stay as they are.
//!
//! A dead letter is replayed whole or not at all: a payload of several lines (a Kafka
//! message with an unknown content type) passes only when every line does. What cannot
//! pass as it is stored is said so: a raw line kept in part (too long), a PBX row (its
//! call is decoded from its neighbours: import the corrected file again). Corrected
//! lines come with `--from-file`: the JSON of `deadletter list --json`, its `raw` edited;
//! the dead letters it names by `id` are replayed with the file's `raw`.
//!
//! Calling numbers: a stored raw line holds the keyed hash of its caller
//! (`"caller":"redacted:<hash>"`), which a replayed event keeps as its caller, as if it
//! had been accepted the first time.

use super::letters::{Marks, each_of_engine, parse_id};
use super::{Filter, escape_all};
use crate::cli::StoreArgs;
use crate::cli::config::{Use, open_engine};
use anyhow::{Context, bail};
use clap::Args;
use netwait_aggregator::domain::dedupe::DedupeKey;
use netwait_aggregator::domain::event::{CallerHash, Event};
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::domain::privacy::{Pseudonymizer, mask_digit_runs_str};
use netwait_aggregator::domain::validate::validate_scanned;
use netwait_aggregator::engine::{CheckpointMoment, EncodedChunk};
use netwait_aggregator::store::record::DeadLetter;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone, Default)]
pub struct ReplayArgs {
    #[command(flatten)]
    filter: Filter,
    /// Corrected raw lines: `deadletter list --json` output (one object a line), each
    /// object's `raw` edited; only the dead letters it names by `id` are replayed, each
    /// with the `raw` of the file.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Validate and count, import and mark nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The codes of the PBX formats' rows (queue_log, call records): replayed by importing
/// the corrected file again, not line by line.
const PBX_CODES: [&str; 6] = [
    "nul_bytes",
    "truncated",
    "field_count",
    "bad_time",
    "no_instant",
    "bad_list",
];

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    replayed: u64,
    /// Events of the replayed dead letters new to the store, and already in it.
    accepted: u64,
    duplicate: u64,
    /// Still rejected, per reason.
    rejected: BTreeMap<String, u64>,
    already: u64,
}

/// One dead letter to replay: its id and the raw bytes to validate.
struct Picked {
    id: DedupeKey,
    code: String,
    raw: Vec<u8>,
    /// The raw bytes are the first of a longer input (and not corrected).
    cut: Option<u64>,
}

pub fn run(store: &StoreArgs, args: &ReplayArgs) -> anyhow::Result<()> {
    let corrections = args
        .from_file
        .as_deref()
        .map(read_corrections)
        .transpose()?;
    // The store's one writer, as `import` (refused while a server or an aggregator
    // writes to it).
    let (mut engine, pseudo) = open_engine(store, Use::Ingest)?;
    let marks = Marks::of(store)?;
    let done = marks.load()?;
    let mut picked = Vec::new();
    let mut already = 0;
    let mut named = 0;
    each_of_engine(&mut engine, &mut |d, id| {
        let corrected = match &corrections {
            Some(c) => match c.get(&id) {
                Some(raw) => Some(raw),
                None => return,
            },
            None => None,
        };
        named += 1;
        if !args.filter.matches(d) {
            return;
        }
        if done.contains_key(&id) {
            already += 1;
            return;
        }
        picked.push(pick(d, id, corrected));
    })?;
    if let Some(c) = &corrections
        && named < c.len()
    {
        eprintln!(
            "netwait: warning: {} id(s) of {} name no dead letter of this store",
            c.len() - named,
            args.from_file.as_deref().unwrap_or(Path::new("")).display()
        );
    }
    let hasher = engine.key_hasher();
    let mut chunk = EncodedChunk::default();
    let mut outcome = Outcome {
        already,
        ..Outcome::default()
    };
    let mut replayed = Vec::new();
    // The event records of each replayed dead letter (in chunk order).
    let mut events_of = Vec::new();
    for p in &picked {
        match validate(p, &pseudo) {
            Ok(events) => {
                for ev in &events {
                    chunk.push_event(ev, &hasher);
                }
                events_of.push(events.len());
                replayed.push(p.id);
            }
            Err(reason) => *outcome.rejected.entry(reason).or_default() += 1,
        }
    }
    outcome.replayed = replayed.len() as u64;
    if args.dry_run {
        outcome.accepted = events_of.iter().sum::<usize>() as u64;
        print_outcome(&outcome, true);
        std::mem::forget(engine);
        return Ok(());
    }
    if !replayed.is_empty() {
        let sum = engine.stage(chunk)?;
        engine.commit()?;
        engine.checkpoint_at(CheckpointMoment::Stopping);
        outcome.accepted = sum.accepted;
        outcome.duplicate = sum.duplicate;
        // Marked once their events are durable: a replay cut short in between is done
        // again, and its events are then duplicates.
        marks.add(&replayed, wall_ms())?;
    }
    print_outcome(&outcome, false);
    std::mem::forget(engine);
    Ok(())
}

fn pick(d: &DeadLetter<'_>, id: DedupeKey, corrected: Option<&Vec<u8>>) -> Picked {
    Picked {
        id,
        code: d.code.to_string(),
        raw: corrected.cloned().unwrap_or_else(|| d.raw.to_vec()),
        cut: d.truncated_from.filter(|_| corrected.is_none()),
    }
}

/// The events of a dead letter's raw lines when every one passes, else why not (its
/// first failing line's reason, as the store keeps reasons).
fn validate<'a>(p: &'a Picked, pseudo: &Pseudonymizer) -> Result<Vec<Event<'a>>, String> {
    if let Some(size) = p.cut {
        return Err(format!(
            "kept in part only (the first {} of {size} bytes): correct it with --from-file",
            p.raw.len()
        ));
    }
    if PBX_CODES.contains(&p.code.as_str()) {
        return Err(format!(
            "a PBX row ({}): import the corrected file again",
            p.code
        ));
    }
    let mut events = Vec::new();
    for line in scan_lines(&p.raw) {
        let bytes = line.bytes();
        match validate_scanned(line, pseudo) {
            Ok(mut ev) => {
                if let Some(hash) = redacted_caller(bytes) {
                    ev.caller = Some(hash);
                }
                events.push(ev);
            }
            Err(r) => {
                return Err(format!(
                    "{}: {}",
                    r.code(),
                    mask_digit_runs_str(&r.to_string())
                ));
            }
        }
    }
    if events.is_empty() {
        return Err("empty: no line to replay".into());
    }
    Ok(events)
}

/// The caller's keyed hash that a stored raw line holds in place of the number
/// (`privacy::redact_rejected`).
fn redacted_caller(line: &[u8]) -> Option<CallerHash> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let hex = v.get("caller")?.as_str()?.strip_prefix("redacted:")?;
    let bytes = netwait_aggregator::store::secrets::unhex::<16>(hex)?;
    Some(CallerHash(bytes))
}

/// `--from-file`: the raw bytes to replay, by dead letter id.
fn read_corrections(path: &Path) -> anyhow::Result<HashMap<DedupeKey, Vec<u8>>> {
    use base64::Engine as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{} line {}", path.display(), n + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: not a JSON object of `deadletter list --json`", at()))?;
        let Some(id) = v.get("id").and_then(|i| i.as_str()).and_then(parse_id) else {
            bail!("{}: no dead letter `id` (32 hex digits)", at());
        };
        let raw = match (v.get("raw").and_then(|r| r.as_str()), v.get("raw_base64")) {
            (Some(raw), _) => raw.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().unwrap_or_default())
                .with_context(|| format!("{}: raw_base64", at()))?,
            (None, None) => bail!("{}: no `raw` line", at()),
        };
        out.insert(id, raw);
    }
    Ok(out)
}

fn print_outcome(o: &Outcome, dry_run: bool) {
    let rejected: u64 = o.rejected.values().sum();
    let would = if dry_run {
        " (--dry-run: nothing written)"
    } else {
        ""
    };
    if dry_run {
        println!(
            "would replay: {} dead letter(s), {} event(s){would}",
            o.replayed, o.accepted
        );
    } else {
        println!(
            "replayed: {} dead letter(s) (events: accepted {} duplicate {})",
            o.replayed, o.accepted, o.duplicate
        );
    }
    println!("still rejected: {rejected} dead letter(s)");
    let mut rows: Vec<_> = o.rejected.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (reason, n) in rows {
        println!("  {n:>9}  {}", escape_all(reason));
    }
    println!("already replayed: {} dead letter(s)", o.already);
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::super::letters::id_text;
    use super::*;

    fn picked(raw: &str, code: &str, cut: Option<u64>) -> Picked {
        Picked {
            id: 1,
            code: code.into(),
            raw: raw.as_bytes().to_vec(),
            cut,
        }
    }

    #[test]
    fn a_dead_letter_passes_whole_or_says_why_not() {
        let p = Pseudonymizer::new([7; 32]);
        let good = r#"{"type":"offered","call_id":"c1","ts":"2019-03-04T09:00:00+01:00","caller":"redacted:000102030405060708090a0b0c0d0e0f"}"#;
        let one = picked(good, "bad_ts", None);
        let events = validate(&one, &p).expect("passes");
        assert_eq!(events.len(), 1);
        // The stored caller hash is kept, not hashed again.
        let want: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(events[0].caller, Some(CallerHash(want)));
        let bad = r#"{"type":"offered","call_id":"c2","ts":"2019-03-04 09:00"}"#;
        let two = picked(&format!("{good}\n{bad}\n"), "bad_content_type", None);
        let why = validate(&two, &p).expect_err("one line fails");
        assert!(why.starts_with("bad_ts: "), "{why}");
        let cut = picked(good, "too_long", Some(70_000));
        assert!(validate(&cut, &p).expect_err("cut").contains("--from-file"));
        let row = picked("1566;x;y", "field_count", None);
        assert!(validate(&row, &p).expect_err("pbx").contains("PBX row"));
        assert!(validate(&picked("", "empty", None), &p).is_err());
    }

    #[test]
    fn corrections_are_read_by_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("fixed.ndjson");
        std::fs::write(
            &f,
            format!(
                "{{\"id\":\"{}\",\"raw\":\"{{}}\"}}\n\n{{\"id\":\"{}\",\"raw_base64\":\"/wA=\"}}\n",
                id_text(5),
                id_text(6)
            ),
        )
        .expect("write");
        let c = read_corrections(&f).expect("read");
        assert_eq!(c[&5], b"{}");
        assert_eq!(c[&6], b"\xff\x00");
        std::fs::write(&f, "{\"raw\":\"x\"}\n").expect("write");
        assert!(read_corrections(&f).is_err());
    }
}
