//! The engine's tests: ingest, commits, recovery, transitions, checkpoints.

use super::*;
use crate::domain::privacy::Pseudonymizer;
use crate::domain::validate::validate_line;
use crate::store::codec::{Decoder, encode_dead_letter};
use crate::store::embedded::EmbeddedStore;

const LINES: [&str; 4] = [
    r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#,
    r#"{"call_id":"a","type":"announcement_end","ts":"2019-03-04T09:00:40+01:00"}"#,
    r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:01:40+01:00","agent":"op"}"#,
    r#"{"call_id":"a","type":"booking","ts":"2019-03-04T09:02:00+01:00","booking":"book"}"#,
];

fn items(p: &Pseudonymizer) -> Vec<Record<'static>> {
    LINES
        .iter()
        .map(|l| Record::Event(validate_line(l.as_bytes(), p).expect("valid")))
        .collect()
}

fn open(dir: &std::path::Path) -> Engine {
    let store = EmbeddedStore::open(dir).expect("store");
    Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine")
}

#[test]
fn watched_transitions_come_per_stage_with_timeouts_open_calls_and_a_reset() {
    use crate::domain::transitions::CallChange;
    use crate::store::fault::{DiskSwitch, FullDisk};
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let full = DiskSwitch::default();
    let store = FullDisk {
        inner: EmbeddedStore::open(dir.path()).expect("store"),
        fault: full.clone(),
    };
    let mut e = Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
    assert_eq!(e.drain_transitions(), None, "not watched: nothing kept");
    e.ingest(items(&p)[..1].to_vec()).expect("ingest");
    e.watch_transitions().expect("watch");
    e.ingest(items(&p)[1..].to_vec()).expect("ingest");
    let batch = e.drain_transitions().expect("watched");
    let changes: Vec<_> = batch.calls.iter().map(|t| t.change).collect();
    // Call a was offered before watching: told from its announcement end on.
    assert_eq!(
        changes,
        [
            CallChange::AnnouncementEnd,
            CallChange::Answered {
                net_wait_ms: 60_000,
                within_threshold: true
            },
            CallChange::Booking { bookings: 1 },
        ]
    );
    assert!(!batch.reset && batch.agents.is_empty());
    let ev = |l: &'static str| Record::Event(validate_line(l.as_bytes(), &p).expect("valid"));
    e.ingest([
        ev(r#"{"call_id":"b","type":"offered","ts":"2019-03-04T10:00:00+01:00"}"#),
        ev(r#"{"type":"agent_login","ts":"2019-03-04T10:00:01+01:00","agent":"op7"}"#),
    ])
    .expect("ingest");
    let batch = e.drain_transitions().expect("watched");
    assert_eq!(batch.calls.len(), 1);
    assert_eq!(&*batch.agents[0].agent, "op7");
    let anchor = batch.calls[0].at;
    assert_eq!(
        e.open_calls("cup").map(|c| c.anchor).collect::<Vec<_>>(),
        [anchor]
    );
    assert_eq!(e.open_calls("nope").count(), 0);
    let due = anchor + crate::domain::call::UNRESOLVED_AFTER;
    assert_eq!(e.next_timeout(), Some(due));
    e.handle_timeout(due);
    let batch = e.drain_transitions().expect("watched");
    assert_eq!(batch.calls[0].change, CallChange::Unresolved);
    assert_eq!(e.open_calls("cup").count(), 0);
    assert_eq!(e.next_timeout(), None);
    // A failed commit: recovery rebuilds the book and says so.
    full.fill();
    assert!(
        e.ingest([ev(r#"{"call_id":"c","type":"offered","ts":1}"#)])
            .is_err()
    );
    full.free();
    e.recover().expect("recover");
    let batch = e.drain_transitions().expect("still watched");
    assert!(batch.reset && batch.calls.is_empty());
    assert!(!e.drain_transitions().expect("watched").reset);
}

#[test]
fn figures_survive_reopen_with_and_without_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let d = |s| crate::domain::time::parse_date(s).expect("date");
    let mut e = open(dir.path());
    let s = e.ingest(items(&p)).expect("ingest");
    assert_eq!(
        s,
        IngestSummary {
            accepted: 4,
            duplicate: 0,
            rejected: 0
        }
    );
    let t = e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
    assert_eq!((t.figures.answered, t.figures.bookings), (1, 1));
    assert_eq!(t.figures.avg_wait_s(), Some(60.0));
    drop(e);
    let mut e = open(dir.path());
    assert_eq!(e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
    let again = e.ingest(items(&p)).expect("ingest");
    assert_eq!(again.duplicate, 4);
    e.checkpoint().expect("checkpoint");
    drop(e);
    let e = open(dir.path());
    assert_eq!(e.uncheckpointed(), 0);
    assert_eq!(e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
    drop(e);
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let mut q = Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
        .expect("engine");
    assert!(q.book().is_read_only());
    assert_eq!(q.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
    assert!(matches!(q.ingest(items(&p)), Err(StoreError::ReadOnly)));
    drop(q);
    // A log tail past the checkpoint makes a query-only open fold it in.
    let mut e = open(dir.path());
    let extra = r#"{"call_id":"b","type":"overflow","ts":"2019-03-05T09:00:00+01:00"}"#;
    e.ingest([Record::Event(
        validate_line(extra.as_bytes(), &p).expect("valid"),
    )])
    .expect("ingest");
    drop(e);
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let q = Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
        .expect("engine");
    assert!(!q.book().is_read_only());
    let t2 = q.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
    assert_eq!(t2.figures.overflow, 1);
}

/// `n` offered events of calls `c{from}`.. in March 2019.
fn offers(p: &Pseudonymizer, from: usize, n: usize) -> Vec<Record<'static>> {
    (from..from + n)
        .map(|i| {
            let ts = 1_551_690_000_000 + i as i64 * 1_000;
            let l = format!(r#"{{"call_id":"c{i}","type":"offered","ts":{ts}}}"#);
            Record::Event(validate_line(l.as_bytes(), p).expect("valid").into_owned())
        })
        .collect()
}

/// The time `s` seconds after the first call of [`offers`].
fn at(s: i64) -> Millis {
    1_551_690_000_000 + s * 1_000
}

/// The event of a JSON line.
fn event(p: &Pseudonymizer, line: String) -> Record<'static> {
    Record::Event(
        validate_line(line.as_bytes(), p)
            .expect("valid")
            .into_owned(),
    )
}

/// An event of call `call` of type `kind` (`answered` by operator `op`) `s` seconds
/// after the first call of [`offers`].
fn call_event(p: &Pseudonymizer, call: &str, kind: &str, s: i64) -> Record<'static> {
    let agent = if kind == "answered" {
        r#","agent":"op""#
    } else {
        ""
    };
    let ts = at(s);
    event(
        p,
        format!(r#"{{"call_id":"{call}","type":"{kind}","ts":{ts}{agent}}}"#),
    )
}

/// `calls` calls offered a second apart ([`offers`]), then ten more three days later:
/// with a settle window of an hour, all but the newest states and days are settled.
fn days_apart(p: &Pseudonymizer, calls: usize) -> Vec<Record<'static>> {
    let later = (0..10).map(|i| {
        let ts = at(3 * 86_400 + i);
        event(
            p,
            format!(r#"{{"call_id":"d{i}","type":"offered","ts":{ts}}}"#),
        )
    });
    offers(p, 0, calls).into_iter().chain(later).collect()
}

fn run_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("runs"))
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn indexed_queries_follow_ingest_late_events_and_recovery() {
    use crate::store::fault::{DiskSwitch, FullDisk};
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let d = |s| crate::domain::time::parse_date(s).expect("date");
    let full = DiskSwitch::default();
    let store = FullDisk {
        inner: EmbeddedStore::open(dir.path()).expect("store"),
        fault: full.clone(),
    };
    let mut e = Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
    e.ingest(items(&p)[..2].to_vec()).expect("ingest");
    e.index_periods();
    let other = tempfile::tempdir().expect("tempdir");
    let mut scan = open(other.path());
    scan.ingest(items(&p)[..2].to_vec()).expect("ingest");
    let same = |a: &Engine, b: &Engine, wall: Millis| {
        let (from, to) = (d("2019-03-01"), d("2019-04-01"));
        for t in [None, Some(30_000)] {
            assert_eq!(
                a.table1(wall, from, to, None, t),
                b.table1(wall, from, to, None, t)
            );
            assert_eq!(
                a.sla_year(wall, 2019, None, t, None),
                b.sla_year(wall, 2019, None, t, None)
            );
        }
        let h1 = crate::domain::arguments::half("2019-H1").expect("half");
        assert_eq!(a.volume(wall, h1), b.volume(wall, h1));
        a.table1(wall, from, to, None, None).figures
    };
    // Open at the book's clock; unresolved 6 h later by the wall clock.
    assert_eq!(same(&e, &scan, 0).unresolved, 0);
    let later = crate::domain::time::parse_rfc3339("2019-03-04T16:00:00+01:00").expect("ts");
    assert_eq!(same(&e, &scan, later).unresolved, 1);
    // The rest, then a late answer (earlier than the first): the call moves bands.
    let late =
        r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:00:40.500+01:00","agent":"op"}"#;
    let mut rest = items(&p)[2..].to_vec();
    rest.push(Record::Event(
        validate_line(late.as_bytes(), &p).expect("valid"),
    ));
    for engine in [&mut e, &mut scan] {
        engine.ingest(rest.clone()).expect("ingest");
    }
    let f = same(&e, &scan, later);
    assert_eq!(
        (f.answered, f.answered_without_wait, f.unresolved),
        (1, 1, 0)
    );
    // A failed commit rebuilds the book, and its cells with it.
    full.fill();
    let extra = r#"{"call_id":"b","type":"overflow","ts":"2019-03-05T09:00:00+01:00"}"#;
    let extra = vec![Record::Event(
        validate_line(extra.as_bytes(), &p).expect("valid"),
    )];
    e.ingest(extra.clone()).expect_err("the disk is full");
    full.free();
    e.recover().expect("recovered");
    same(&e, &scan, later);
    for engine in [&mut e, &mut scan] {
        engine.ingest(extra.clone()).expect("ingest");
    }
    assert_eq!(same(&e, &scan, later).overflow, 1);
}

#[test]
fn a_durable_commit_is_counted() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let mut e = open(dir.path());
    let before = crate::observe::METRICS.commits.load(Ordering::Relaxed);
    e.ingest(items(&p)).expect("ingest");
    assert!(crate::observe::METRICS.commits.load(Ordering::Relaxed) > before);
}

#[test]
fn a_checkpoint_writes_only_what_is_new_and_the_book_maps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let mut e = open(dir.path());
    e.ingest(offers(&p, 0, 1_000)).expect("ingest");
    e.checkpoint().expect("checkpoint");
    assert_eq!(e.runs.keys.len(), 1);
    let first = run_files(dir.path());
    assert_eq!(
        first.len(),
        3,
        "one run of keys, one of calls, one pack of states"
    );
    let first_bytes: Vec<Vec<u8>> = first
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    // Ten more events, one of them a late event of an old call.
    let mut more = offers(&p, 1_000, 9);
    let late = r#"{"call_id":"c5","type":"answered","ts":1551690009000,"agent":"x"}"#;
    more.push(Record::Event(
        validate_line(late.as_bytes(), &p).expect("valid"),
    ));
    e.ingest(more).expect("ingest");
    e.checkpoint().expect("checkpoint");
    let (keys, calls) = (&e.runs.keys, &e.runs.calls);
    assert_eq!(
        (keys.len(), keys[1].keys),
        (2, 10),
        "a run of the 10 new keys"
    );
    assert_eq!(
        (calls.len(), calls[1].keys),
        (2, 9),
        "and one of the 9 new calls"
    );
    assert_eq!(e.book().parts().seen.layers().fresh().len(), 0);
    let now = run_files(dir.path());
    // The one chunk of states changed: its new pack replaced the old one.
    assert_eq!(now.len(), 5);
    assert_eq!(e.runs.states.len(), 1);
    for (f, bytes) in first.iter().zip(&first_bytes).take(2) {
        assert_eq!(
            &std::fs::read(f).expect("still there"),
            bytes,
            "old runs are not rewritten"
        );
    }
    // The mapped runs still dedupe, and reopening uses them (nothing replayed).
    let again = e.ingest(offers(&p, 990, 20)).expect("ingest");
    assert_eq!((again.accepted, again.duplicate), (1, 19));
    e.checkpoint().expect("checkpoint");
    drop(e);
    let mut e = open(dir.path());
    assert_eq!(e.uncheckpointed(), 0);
    assert_eq!(e.book().distinct_events(), 1_011);
    let again = e.ingest(offers(&p, 0, 1_010)).expect("ingest");
    assert_eq!((again.accepted, again.duplicate), (0, 1_010));
    // Small runs merge as they pile up: their number stays small.
    for i in 0..20 {
        e.ingest(offers(&p, 2_000 + i * 10, 10)).expect("ingest");
        e.checkpoint().expect("checkpoint");
    }
    assert!(e.runs.keys.len() <= 6, "{:?}", e.runs.keys);
    assert_eq!(
        run_files(dir.path()).len(),
        e.runs.keys.len() + e.runs.calls.len() + e.runs.states.len()
    );
    assert_eq!(e.book().distinct_events(), 1_211);
}

#[test]
fn a_checkpoint_writes_only_changed_chunks_of_states_and_an_open_loads_what_is_read() {
    use crate::domain::state_chunks::CHUNK;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let d = |s| crate::domain::time::parse_date(s).expect("date");
    let table = |e: &Engine| e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
    let mut e = open(dir.path());
    e.ingest(offers(&p, 0, 3 * CHUNK + 5)).expect("ingest");
    e.checkpoint().expect("checkpoint");
    assert_eq!(e.runs.states.len(), 1);
    assert_eq!(e.runs.states[0].keys, 4, "four chunks in the first pack");
    drop(e);

    // Reopened for folding: only the last chunk is in memory.
    let mut e = open(dir.path());
    assert_eq!(e.book().states().missing(), [0, 1, 2]);
    // A late event of call 5 (chunk 0) and a new call (chunk 3): chunk 0 is loaded.
    let late = r#"{"call_id":"c5","type":"abandoned","ts":1551690009000}"#;
    let mut more = offers(&p, 3 * CHUNK + 5, 1);
    more.push(Record::Event(
        validate_line(late.as_bytes(), &p).expect("valid"),
    ));
    e.ingest(more).expect("ingest");
    assert_eq!(e.book().states().missing(), [1, 2]);
    e.checkpoint().expect("checkpoint");
    let first_pack = e.runs.states[0].id;
    assert_eq!(e.runs.states.len(), 2);
    assert_eq!(
        e.runs.states[1].keys, 2,
        "the new pack holds chunks 0 and 3"
    );
    assert_eq!(
        e.runs.chunk_packs,
        [
            e.runs.states[1].id,
            first_pack,
            first_pack,
            e.runs.states[1].id
        ]
    );
    let want = table(&e);
    drop(e);

    // The first pack holds two of its four chunks: still kept. One more chunk moves
    // (a late event of call 4,100, chunk 1): then less than half of it is named, and
    // the next checkpoint takes its last chunk in.
    let mut e = open(dir.path());
    assert_eq!(table(&e), want, "the figures from the packs");
    let late = r#"{"call_id":"c4100","type":"abandoned","ts":1551694200000}"#;
    e.ingest([Record::Event(
        validate_line(late.as_bytes(), &p).expect("valid"),
    )])
    .expect("ingest");
    e.checkpoint().expect("checkpoint");
    assert!(e.runs.states.iter().any(|r| r.id == first_pack));
    e.ingest(offers(&p, 3 * CHUNK + 6, 1)).expect("ingest");
    e.checkpoint().expect("checkpoint");
    assert!(
        e.runs.states.iter().all(|r| r.id != first_pack),
        "rewritten"
    );
    assert_eq!(
        run_files(dir.path()).len(),
        e.runs.keys.len() + e.runs.calls.len() + e.runs.states.len()
    );
    let want = table(&e);
    drop(e);

    // A query-only open checks every segment of the packs and reads none; a scan reads
    // every chunk for its pass and keeps none. A damaged pack makes the open replay the
    // log, with the same figures.
    let q = Engine::open_for_queries(
        Box::new(EmbeddedStore::open_read_only(dir.path()).expect("store")),
        [1; 16],
        MetricsConfig::default(),
    )
    .expect("engine");
    assert_eq!(q.book().states().missing(), [0, 1, 2, 3]);
    assert_eq!(table(&q), want);
    assert_eq!(q.book().states().missing(), [0, 1, 2, 3], "kept none");
    assert_eq!(q.uncheckpointed(), 0);
    drop(q);
    let pack = format!("runs/{:016x}.run", {
        let e = open(dir.path());
        e.runs.chunk_packs[1]
    });
    let mut b = std::fs::read(dir.path().join(&pack)).expect("read");
    b[40] ^= 1;
    std::fs::write(dir.path().join(&pack), b).expect("write");
    for for_queries in [false, true] {
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let e = if for_queries {
            Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
        } else {
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default())
        }
        .expect("engine");
        assert!(e.uncheckpointed() > 0, "replayed");
        assert_eq!(table(&e), want);
    }
}

/// Copies a store's directory (its files and runs).
fn copy_store(from: &std::path::Path, to: &std::path::Path) {
    for sub in ["", "runs"] {
        std::fs::create_dir_all(to.join(sub)).expect("mkdir");
        for f in std::fs::read_dir(from.join(sub)).expect("list") {
            let f = f.expect("entry");
            if f.file_type().expect("type").is_file() && f.file_name() != "LOCK" {
                std::fs::copy(f.path(), to.join(sub).join(f.file_name())).expect("copy");
            }
        }
    }
}

#[test]
fn damaged_truncated_missing_or_old_checkpoint_files_replay_the_log_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let d = |s| crate::domain::time::parse_date(s).expect("date");
    let mut e = open(dir.path());
    e.ingest(offers(&p, 0, 300)).expect("ingest");
    e.checkpoint().expect("checkpoint");
    e.ingest(items(&p)).expect("ingest");
    e.checkpoint().expect("checkpoint");
    let want = e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
    drop(e);
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 5, "two runs of keys, two of calls, a pack");
    let name = |f: &std::path::Path| f.strip_prefix(dir.path()).expect("inside").to_owned();
    type Harm = Box<dyn Fn(&std::path::Path)>;
    let mut harms: Vec<(String, Harm)> = Vec::new();
    // What a power cut can leave of a file written but not synced (checkpoint files are
    // not: see `store::checkpoint_dir`): its length with no data, or nothing.
    let parts = ["checkpoint.calls", "checkpoint.keys"].map(std::path::PathBuf::from);
    for file in runs.iter().map(|r| name(r)).chain(parts) {
        let (f1, f2) = (file.clone(), file.clone());
        harms.push((
            format!("{file:?} left as zeros"),
            Box::new(move |d| {
                let len = std::fs::metadata(d.join(&f1)).expect("stat").len();
                std::fs::write(d.join(&f1), vec![0; len as usize]).expect("write");
            }),
        ));
        harms.push((
            format!("{file:?} left empty"),
            Box::new(move |d| std::fs::write(d.join(&f2), b"").expect("write")),
        ));
    }
    for run in &runs {
        let run = name(run);
        let (r1, r2, r3) = (run.clone(), run.clone(), run.clone());
        harms.push((
            format!("{run:?} flipped"),
            Box::new(move |d| {
                let mut b = std::fs::read(d.join(&r1)).expect("read");
                let mid = b.len() / 2;
                b[mid] ^= 0x40;
                std::fs::write(d.join(&r1), b).expect("write");
            }),
        ));
        harms.push((
            format!("{run:?} truncated"),
            Box::new(move |d| {
                let b = std::fs::read(d.join(&r2)).expect("read");
                std::fs::write(d.join(&r2), &b[..b.len() - 20]).expect("write");
            }),
        ));
        harms.push((
            format!("{run:?} missing"),
            Box::new(move |d| {
                std::fs::remove_file(d.join(&r3)).expect("remove");
            }),
        ));
    }
    harms.push((
        "no runs".into(),
        Box::new(|d| {
            std::fs::remove_dir_all(d.join("runs")).expect("remove");
        }),
    ));
    harms.push((
        "a fold part of the previous version".into(),
        Box::new(|d| {
            let path = d.join("checkpoint.keys");
            let mut b = std::fs::read(&path).expect("read");
            b.truncate(16); // header and position
            let mut body = b"NWF5".to_vec();
            body.extend_from_slice(&[0; 24]);
            let crc = crc32fast::hash(&body);
            b.extend_from_slice(&body);
            b.extend_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, b).expect("write");
        }),
    ));
    for (what, harm) in &harms {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_store(dir.path(), copy.path());
        harm(copy.path());
        // A query-only open reads the packs of states alone: when they are whole it
        // answers from them, else from the log; the figures are the same either way.
        let q = Engine::open_for_queries(
            Box::new(EmbeddedStore::open_read_only(copy.path()).expect("store")),
            [1; 16],
            MetricsConfig::default(),
        )
        .expect("engine");
        assert_eq!(
            q.table1(0, d("2019-03-01"), d("2019-04-01"), None, None),
            want,
            "{what}: query-only open"
        );
        drop(q);
        let mut e = open(copy.path());
        assert!(e.uncheckpointed() > 0, "{what}: the log is replayed");
        assert_eq!(e.book().distinct_events(), 304, "{what}");
        assert_eq!(
            e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None),
            want,
            "{what}"
        );
        let again = e.ingest(offers(&p, 0, 300)).expect("ingest");
        assert_eq!(again.duplicate, 300, "{what}");
        // The next checkpoint is whole again, and unnamed runs are gone.
        e.ingest(offers(&p, 300, 1)).expect("ingest");
        e.checkpoint().expect("checkpoint");
        drop(e);
        let e = open(copy.path());
        assert_eq!(e.uncheckpointed(), 0, "{what}");
        assert_eq!(e.book().distinct_events(), 305, "{what}");
        assert_eq!(run_files(copy.path()).len(), 3, "{what}");
    }
}

/// The embedded store, but its checkpoints cannot be written (a full disk, say).
struct NoCheckpoints(EmbeddedStore);

impl EventStore for NoCheckpoints {
    fn replay(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<LogPosition, StoreError> {
        self.0.replay(from, visit)
    }

    fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError> {
        self.0.commit(batch)
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        self.0.recover()
    }

    // It keeps checkpoints, and fails to write every one.
    fn checkpoints(&self) -> bool {
        true
    }

    fn load_checkpoint(
        &mut self,
        with_fold: bool,
    ) -> Result<Option<crate::store::Checkpoint>, StoreError> {
        self.0.load_checkpoint(with_fold)
    }

    fn save_checkpoint(
        &mut self,
        _position: LogPosition,
        _query: crate::store::PartWriter<'_>,
        _fold: crate::store::PartWriter<'_>,
        _runs: &[(crate::store::RunId, crate::store::PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        Err(StoreError::io(
            std::path::Path::new("checkpoint"),
            std::io::Error::other("no space left on device"),
        ))
    }
}

#[test]
fn a_failed_commit_is_recovered_without_loss_or_double_counting() {
    use crate::store::StoreErrorKind;
    use crate::store::fault::{DiskSwitch, FullDisk};
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let d = |s| crate::domain::time::parse_date(s).expect("date");
    let full = DiskSwitch::default();
    let store = FullDisk {
        inner: EmbeddedStore::open(dir.path()).expect("store"),
        fault: full.clone(),
    };
    let mut e = Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
    let all = items(&p);
    e.ingest(all[..2].to_vec()).expect("ingest");
    e.checkpoint().expect("checkpoint");
    full.fill();
    let err = e.ingest(all[2..].to_vec()).expect_err("the disk is full");
    assert_eq!(err.kind(), StoreErrorKind::Transient);
    assert!(e.is_poisoned());
    assert!(matches!(
        e.ingest(all[2..].to_vec()),
        Err(StoreError::Poisoned)
    ));
    assert_eq!(
        e.recover().expect_err("still full").kind(),
        StoreErrorKind::Transient
    );
    assert!(e.is_poisoned());
    full.free();
    e.recover().expect("space freed");
    assert!(!e.is_poisoned());
    // The failed commit's events were never acknowledged: they are not in the book,
    // and pushing them again counts them once.
    assert_eq!(e.book().distinct_events(), 2);
    let again = e.ingest(all[2..].to_vec()).expect("ingest");
    assert_eq!((again.accepted, again.duplicate), (2, 0));
    let t = e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
    drop(e);
    let other = tempfile::tempdir().expect("tempdir");
    let mut fresh = open(other.path());
    fresh.ingest(items(&p)).expect("ingest");
    assert_eq!(
        fresh.table1(0, d("2019-03-01"), d("2019-04-01"), None, None),
        t
    );
    let reopened = open(dir.path());
    assert_eq!(reopened.book().distinct_events(), 4);
}

#[test]
fn an_import_whose_checkpoint_fails_still_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let store = NoCheckpoints(EmbeddedStore::open(dir.path()).expect("store"));
    let mut e = Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
    let hasher = e.key_hasher();
    let mut chunk = EncodedChunk::default();
    for l in LINES {
        chunk.push_event(&validate_line(l.as_bytes(), &p).expect("valid"), &hasher);
    }
    let sum = e
        .stage_stream([chunk].into_iter(), 1, true, None, &mut |_| {})
        .expect("the events are committed: the import succeeds");
    assert_eq!(sum.accepted, 4);
    assert!(!e.is_poisoned());
    drop(e);
    let e = open(dir.path());
    assert!(e.uncheckpointed() > 0, "no checkpoint was written");
    assert_eq!(e.book().distinct_events(), 4);
}

#[test]
fn a_batch_with_duplicates_logs_exactly_the_kept_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let mut e = open(dir.path());
    let first: Vec<_> = items(&p).into_iter().take(2).collect();
    e.ingest(first).expect("ingest");
    // Old, new, old, dead letter, new: the log must get only the new ones in order.
    let all = items(&p);
    let mixed = vec![
        all[0].clone(),
        all[2].clone(),
        all[1].clone(),
        Record::DeadLetter(DeadLetter {
            source: "t".into(),
            position: 9,
            code: "empty".into(),
            reason: "empty line".into(),
            raw: (&b""[..]).into(),
            truncated_from: None,
            received_ms: None,
        }),
        all[3].clone(),
    ];
    let sum = e.ingest(mixed).expect("ingest");
    assert_eq!(
        sum,
        IngestSummary {
            accepted: 2,
            duplicate: 2,
            rejected: 1
        }
    );
    drop(e);
    // No checkpoint was written: reopening replays the log alone.
    let mut e = open(dir.path());
    assert_eq!(e.book().distinct_events(), 4);
    let mut dead = Vec::new();
    e.dead_letters(&mut |d| dead.push(d.position))
        .expect("dead letters");
    assert_eq!(dead, vec![9]);
}

fn dead(source: &str, position: u64, raw: &'static [u8]) -> Record<'static> {
    Record::DeadLetter(DeadLetter {
        source: source.to_owned().into(),
        position,
        code: "invalid_json".into(),
        reason: "not JSON".into(),
        raw: raw.into(),
        truncated_from: None,
        received_ms: None,
    })
}

#[test]
fn a_chunk_of_its_dead_letters_alone_keeps_them_as_encoded_and_no_event() {
    let p = Pseudonymizer::new([0; 32]);
    let hasher = KeyHasher::new([1; 16]);
    let mut chunk = EncodedChunk::default();
    let mut wanted = Vec::new();
    for (i, record) in items(&p).into_iter().enumerate() {
        let Record::Event(ev) = record else { continue };
        chunk.push_event(&ev, &hasher);
        let Record::DeadLetter(d) = dead("t", i as u64 + 1, b"not json") else {
            unreachable!()
        };
        chunk.push_dead_letter(&d);
        wanted.push(d);
    }
    chunk.set_lines(8);
    chunk.rebase_positions(100);
    let only = chunk.dead_letters_only();
    assert_eq!((only.events(), only.lines()), (0, 8));
    let got: Vec<_> = Decoder::new(&only.bytes)
        .map(|r| match r.expect("decodes") {
            Record::DeadLetter(d) => d,
            other => panic!("not a dead letter: {other:?}"),
        })
        .collect();
    let positions: Vec<u64> = got.iter().map(|d| d.position).collect();
    assert_eq!(positions, [101, 102, 103, 104], "rebased, in order");
    assert!(
        got.iter()
            .all(|d| d.raw.as_ref() == b"not json" && d.code == "invalid_json")
    );
    assert_eq!(got.len(), wanted.len());
}

fn stored_dead_letters(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut store = EmbeddedStore::open(dir).expect("store");
    store
        .replay(0, &mut |r| {
            n += usize::from(matches!(r, Record::DeadLetter(_)))
        })
        .expect("replay");
    n
}

#[test]
fn a_dead_letter_sent_again_is_stored_once_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = || vec![dead("f", 1, b"{"), dead("f", 2, b"x"), dead("g", 1, b"{")];
    let mut e = open(dir.path());
    let first = e.ingest(batch()).expect("ingest");
    assert_eq!(first.rejected, 3);
    // Sent again: still counted as rejected, not stored again.
    assert_eq!(e.ingest(batch()).expect("ingest").rejected, 3);
    drop(e);
    assert_eq!(stored_dead_letters(dir.path()), 3);
    // After a restart without a checkpoint (the log is replayed) ...
    let mut e = open(dir.path());
    e.ingest(batch()).expect("ingest");
    e.checkpoint().expect("checkpoint");
    drop(e);
    assert_eq!(stored_dead_letters(dir.path()), 3);
    // ... and from the checkpoint alone; another line at a known position is new.
    let mut e = open(dir.path());
    assert_eq!(e.uncheckpointed(), 0);
    e.ingest(batch()).expect("ingest");
    e.ingest([dead("f", 1, b"{\"other\"")]).expect("ingest");
    let mut listed = Vec::new();
    e.dead_letters(&mut |d| listed.push((d.source.to_string(), d.position)))
        .expect("list");
    assert_eq!(listed.len(), 4);
    drop(e);
    assert_eq!(stored_dead_letters(dir.path()), 4);
}

#[test]
fn dead_letters_stored_twice_before_dedupe_are_listed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = EmbeddedStore::open(dir.path()).expect("store");
    let mut bytes = Vec::new();
    for _ in 0..2 {
        let Record::DeadLetter(d) = dead("f", 7, b"{") else {
            unreachable!()
        };
        encode_dead_letter(&mut bytes, &d);
    }
    let mut batch = Batch::default();
    batch.append(bytes, 2);
    store.commit(&batch).expect("commit");
    drop(store);
    let mut e = open(dir.path());
    let mut n = 0;
    e.dead_letters(&mut |_| n += 1).expect("list");
    assert_eq!(n, 1);
}

/// Every query of the cells' kinds, at two clocks and two thresholds, on `a` and `b`.
fn same_figures(a: &impl Answers, b: &impl Answers, what: &str) {
    let d = |s| crate::domain::time::parse_date(s).expect("date");
    let later = crate::domain::time::parse_rfc3339("2019-03-05T20:00:00+01:00").expect("ts");
    let h1 = crate::domain::arguments::half("2019-H1").expect("half");
    for wall in [0, later] {
        for t in [None, Some(30_000)] {
            let (from, to) = (d("2019-03-01"), d("2019-04-01"));
            assert_eq!(
                a.table1(wall, from, to, None, t),
                b.table1(wall, from, to, None, t),
                "{what}"
            );
            assert_eq!(
                a.sla_year(wall, 2019, None, t, None),
                b.sla_year(wall, 2019, None, t, None),
                "{what}"
            );
        }
        assert_eq!(a.volume(wall, h1), b.volume(wall, h1), "{what}");
    }
}

#[test]
fn checkpointed_cells_open_lazily_are_kept_in_step_and_written_where_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let ev = |l: &str| Record::Event(validate_line(l.as_bytes(), &p).expect("valid").into_owned());
    let other_day = ev(r#"{"call_id":"b","type":"overflow","ts":"2019-03-06T09:00:00+01:00"}"#);
    let late = [
        ev(
            r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:00:40.500+01:00","agent":"op"}"#,
        ),
        ev(r#"{"call_id":"c7","type":"abandoned","ts":"2019-03-04T10:00:00+01:00"}"#),
    ];
    let mut all = offers(&p, 0, 300);
    all.extend(items(&p));
    all.push(other_day);
    // The same events, counted by a scan (no cells).
    let scan_dir = tempfile::tempdir().expect("tempdir");
    let mut scan = open(scan_dir.path());
    scan.ingest(all.clone()).expect("ingest");

    let mut e = open(dir.path());
    e.ingest(all.clone()).expect("ingest");
    e.index_periods();
    e.checkpoint().expect("checkpoint");
    assert_eq!(e.runs.cells.iter().map(|m| m.keys).collect::<Vec<_>>(), [2]);
    drop(e);

    // A writer's open leaves the days in the pack; an import settles what it touches.
    let mut e = open(dir.path());
    assert!(e.cells.as_ref().is_some_and(|c| !c.is_loaded()), "stored");
    e.ingest(late.to_vec()).expect("ingest");
    scan.ingest(late.to_vec()).expect("ingest");
    e.checkpoint().expect("checkpoint");
    // Only the day changed is written again.
    assert_eq!(
        e.runs.cells.iter().map(|m| m.keys).collect::<Vec<_>>(),
        [2, 1]
    );
    same_figures(&e, &scan, "kept in step");
    drop(e);

    // Events after the checkpoint (no checkpoint since: a server stopped at once) are
    // replayed into the book and settled into the kept cells.
    let mut e = open(dir.path());
    let tail = [ev(
        r#"{"call_id":"c9","type":"answered","ts":"2019-03-04T09:30:00+01:00","agent":"op"}"#,
    )];
    e.ingest(tail.to_vec()).expect("ingest");
    scan.ingest(tail.to_vec()).expect("ingest");
    drop(e);
    let mut e = open(dir.path());
    assert!(e.uncheckpointed() > 0 && e.cells.is_some(), "tail replayed");
    e.index_periods();
    assert!(e.cells.as_ref().is_some_and(Cells::is_loaded));
    same_figures(&e, &scan, "reopened");
    let snapshot = e.publish();
    let d = |s| crate::domain::time::parse_date(s).expect("date");
    assert_eq!(
        snapshot.table1(0, d("2019-03-01"), d("2019-04-01"), None, None),
        scan.table1(0, d("2019-03-01"), d("2019-04-01"), None, None)
    );
    drop((e, snapshot));

    // Another threshold: the kept cells are not used, new ones are built and kept.
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let config = MetricsConfig {
        threshold_ms: 95_000,
        ..MetricsConfig::default()
    };
    let e = Engine::open(Box::new(store), [1; 16], config).expect("engine");
    assert!(e.cells.is_none(), "kept for another threshold");
    drop(e);

    // A damaged pack of cells: the log is replayed, the figures are the same.
    for pack in run_files(dir.path()) {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_store(dir.path(), copy.path());
        let path = copy
            .path()
            .join("runs")
            .join(pack.file_name().expect("name"));
        let mut b = std::fs::read(&path).expect("read");
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        std::fs::write(&path, b).expect("write");
        let mut e = open(copy.path());
        assert!(e.cells.is_none() && e.uncheckpointed() > 0, "replayed");
        e.index_periods();
        same_figures(&e, &scan, "damaged");
    }
}

#[test]
fn presence_is_recalled_from_what_was_kept_aside_and_the_log_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pseudonymizer::new([0; 32]);
    let ev = |l: &str| Record::Event(validate_line(l.as_bytes(), &p).expect("valid").into_owned());
    let mut e = open(dir.path());
    e.ingest(vec![
        ev(r#"{"type":"agent_login","ts":"2019-03-04T08:00:00+01:00","agent":"op1"}"#),
        ev(r#"{"type":"agent_login","ts":"2019-03-04T08:01:00+01:00","agent":"op2"}"#),
    ])
    .expect("ingest");
    // Recalled from the whole log, then kept aside.
    e.watch_transitions().expect("watch");
    assert!(dir.path().join("presence").exists());
    // After it, not kept: the next open reads it from the log.
    e.ingest(vec![
        ev(r#"{"type":"agent_pause","ts":"2019-03-04T09:00:00+01:00","agent":"op1"}"#),
        ev(r#"{"type":"agent_logout","ts":"2019-03-04T09:00:00+01:00","agent":"op2"}"#),
        ev(r#"{"type":"agent_login","ts":"2019-03-04T09:00:00+01:00","agent":"op3"}"#),
    ])
    .expect("ingest");
    let _ = e.drain_transitions();
    let want = e.presence();
    assert_eq!(want.len(), 2, "op1 paused, op3 in");
    drop(e);
    let mut e = open(dir.path());
    e.watch_transitions().expect("watch");
    assert_eq!(e.presence(), want);
    drop(e);
    // Damaged: the whole log again.
    let path = dir.path().join("presence");
    let mut b = std::fs::read(&path).expect("read");
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(&path, b).expect("write");
    let mut e = open(dir.path());
    e.watch_transitions().expect("watch");
    assert_eq!(e.presence(), want);
}

#[test]
fn settled_states_leave_memory_at_a_checkpoint_and_late_events_still_count_once() {
    use crate::domain::state_chunks::CHUNK;
    let (dir, other) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let p = Pseudonymizer::new([0; 32]);
    let mut e = open(dir.path());
    e.settle_after(std::time::Duration::from_secs(3600));
    e.index_periods();
    let mut scan = open(other.path());
    // A call a second, then a few calls three days later: every chunk but the last,
    // and the first day's cells, end over an hour before the newest call.
    let history = days_apart(&p, 3 * CHUNK + 10);
    for engine in [&mut e, &mut scan] {
        engine.ingest(history.clone()).expect("ingest");
    }
    e.checkpoint().expect("checkpoint");
    assert_eq!(e.book().states().missing(), vec![0, 1, 2]);
    assert!(
        e.cells.as_ref().is_some_and(|c| !c.is_loaded()),
        "the first day's cells left memory"
    );
    same_figures(&e, &scan, "settled calls read back for queries");
    let late = vec![
        call_event(&p, "c5", "answered", 65),
        call_event(&p, "c6", "offered", 6),
        call_event(&p, "c5000", "abandoned", 5030),
    ];
    for engine in [&mut e, &mut scan] {
        let s = engine.ingest(late.clone()).expect("late events");
        assert_eq!((s.accepted, s.duplicate), (2, 1));
    }
    same_figures(&e, &scan, "late events for settled calls");
    e.checkpoint().expect("checkpoint");
    drop(e);
    let e = open(dir.path());
    same_figures(&e, &scan, "reopened");
}

/// What a store that derives (ClickHouse) holds of the rows it was handed, applied as it
/// applies them: a cell's and a day's latest state wins (all-zero ones are gone), call
/// rows sum by sign.
#[derive(Debug, Default, PartialEq)]
struct AppliedRows {
    cells: std::collections::BTreeMap<(i64, String), crate::domain::figures::Figures>,
    days: std::collections::BTreeMap<(i64, String), crate::domain::figures::Figures>,
    calls: std::collections::BTreeMap<String, i64>,
}

impl AppliedRows {
    fn apply(&mut self, d: &Derived) {
        use crate::domain::figures::Figures;
        for c in d.cells.values() {
            self.cells.insert((c.interval, c.line.clone()), c.figures);
        }
        for r in d.days.values() {
            self.days.insert((r.day, r.line.clone()), r.figures);
        }
        for row in &d.calls {
            let unsigned = format!(
                "{:?}",
                crate::domain::derived::CallRow {
                    sign: 1,
                    ..row.clone()
                }
            );
            *self.calls.entry(unsigned).or_default() += i64::from(row.sign);
        }
        self.cells.retain(|_, f| *f != Figures::default());
        self.days.retain(|_, f| *f != Figures::default());
        self.calls.retain(|_, n| *n != 0);
    }
}

/// The embedded store, deriving as the ClickHouse store does (see [`AppliedRows`]).
struct Deriving {
    inner: EmbeddedStore,
    rows: std::sync::Arc<std::sync::Mutex<AppliedRows>>,
}

impl EventStore for Deriving {
    fn replay(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<LogPosition, StoreError> {
        self.inner.replay(from, visit)
    }
    fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError> {
        self.commit_derived(batch, &Derived::default())
    }
    fn derives(&self) -> bool {
        true
    }
    fn commit_derived(&mut self, batch: &Batch, d: &Derived) -> Result<LogPosition, StoreError> {
        let at = self.inner.commit(batch)?;
        self.rows.lock().expect("rows").apply(d);
        Ok(at)
    }
    fn recover(&mut self) -> Result<(), StoreError> {
        self.inner.recover()
    }
    fn checkpoints(&self) -> bool {
        true
    }
    fn load_checkpoint(
        &mut self,
        with_fold: bool,
    ) -> Result<Option<crate::store::Checkpoint>, StoreError> {
        self.inner.load_checkpoint(with_fold)
    }
    fn save_checkpoint(
        &mut self,
        position: LogPosition,
        query: crate::store::PartWriter<'_>,
        fold: crate::store::PartWriter<'_>,
        runs: &[(crate::store::RunId, crate::store::PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        self.inner.save_checkpoint(position, query, fold, runs)
    }
    fn load_run(
        &mut self,
        id: crate::store::RunId,
        verify: bool,
    ) -> Result<Option<crate::store::PartBytes>, StoreError> {
        self.inner.load_run(id, verify)
    }
    fn verify_runs(&mut self, ids: &[crate::store::RunId]) -> Result<bool, StoreError> {
        self.inner.verify_runs(ids)
    }
    fn save_positions(&mut self, at: LogPosition, p: &SourceCheckpoint) -> Result<(), StoreError> {
        self.inner.save_positions(at, p)
    }
    fn load_positions(&mut self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        self.inner.load_positions()
    }
    fn retain_runs(&mut self, keep: &[crate::store::RunId]) -> Result<(), StoreError> {
        self.inner.retain_runs(keep)
    }
}

#[test]
fn a_deriving_store_reopened_on_settled_cells_gets_the_rows_of_one_that_kept_everything() {
    let (dir, other) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let p = Pseudonymizer::new([0; 32]);
    let open_deriving = |dir: &std::path::Path, rows| {
        let store = Deriving {
            inner: EmbeddedStore::open(dir).expect("store"),
            rows,
        };
        Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine")
    };
    let (settled_rows, kept_rows) = (Default::default(), Default::default());
    let mut e = open_deriving(dir.path(), std::sync::Arc::clone(&settled_rows));
    e.settle_after(std::time::Duration::from_secs(3600));
    let mut kept = open_deriving(other.path(), std::sync::Arc::clone(&kept_rows));
    let first = days_apart(&p, 5_000);
    for engine in [&mut e, &mut kept] {
        engine.ingest(first.clone()).expect("ingest");
    }
    e.checkpoint().expect("checkpoint");
    drop(e);
    // Reopened from its checkpoint: its cells stay in their packs until changes need them.
    let mut e = open_deriving(dir.path(), std::sync::Arc::clone(&settled_rows));
    e.settle_after(std::time::Duration::from_secs(3600));
    assert!(e.cells.as_ref().is_some_and(|c| !c.is_loaded()));
    // A snapshot reads the kept days where they are, and leaves them there.
    let snapshot = e.publish();
    assert!(e.cells.as_ref().is_some_and(|c| !c.is_loaded()));
    same_figures(&snapshot, &kept, "a snapshot over days left in their packs");
    let late = vec![
        call_event(&p, "c5", "answered", 65),
        call_event(&p, "c4000", "abandoned", 4030),
        call_event(&p, "d3", "answered", 3 * 86_400 + 50),
    ];
    for engine in [&mut e, &mut kept] {
        engine.ingest(late.clone()).expect("late events");
    }
    // Checkpointed again (the days touched leave memory again), then later still.
    e.checkpoint().expect("checkpoint");
    let later = vec![
        call_event(&p, "c7", "overflow", 8),
        call_event(&p, "c5", "ended", 400),
    ];
    for engine in [&mut e, &mut kept] {
        engine.ingest(later.clone()).expect("later events");
    }
    let (a, b) = (
        settled_rows.lock().expect("rows"),
        kept_rows.lock().expect("rows"),
    );
    assert!(!b.calls.is_empty() && !b.days.is_empty());
    assert_eq!(*a, *b);
}
