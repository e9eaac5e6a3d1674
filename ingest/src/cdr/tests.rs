//! Call records to events, on an engine: what is new counts, what was seen does not.

use super::*;
use crate::decoded::{encode_units, stage};
use netwait_aggregator::domain::config::MetricsConfig;
use netwait_aggregator::domain::time::parse_date;
use netwait_aggregator::engine::{Engine, IngestSummary};
use netwait_aggregator::published::Answers;
use netwait_aggregator::store::embedded::EmbeddedStore;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let engine = Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
    (dir, engine)
}

fn push(engine: &mut Engine, text: &str, csv: bool) -> IngestSummary {
    let p = Pseudonymizer::new([5; 32]);
    let units = if csv {
        decode_csv(text.as_bytes(), &p)
    } else {
        decode_ndjson(text.as_bytes(), &p)
    };
    let chunks = encode_units(&units, text.as_bytes(), "cdr", &p, &engine.key_hasher());
    stage(engine, chunks, false).expect("staged")
}

fn sum(accepted: u64, duplicate: u64, rejected: u64) -> IngestSummary {
    IngestSummary {
        accepted,
        duplicate,
        rejected,
    }
}

/// (answered, abandoned, bookings, avg talk s) on 2019-03-04 (a Monday).
fn figures(engine: &Engine) -> (u64, u64, u64, Option<f64>) {
    let d = |s| parse_date(s).expect("date");
    let t = engine
        .table1(0, d("2019-03-04"), d("2019-03-05"), None, None)
        .figures;
    (t.answered, t.abandoned, t.bookings, t.avg_talk_s())
}

#[test]
fn ndjson_records_again_and_more_complete_add_only_what_is_new() {
    let (_dir, mut e) = engine();
    let first = r#"{"call_id":"c1","line":"cup","caller":"+393331234567","offered_at":"2019-03-04T09:00:00+01:00","queued_at":"2019-03-04T09:00:40+01:00","bookings":[{"kind":"book","at":"2019-03-04T09:03:00+01:00"},{"kind":"book","at":1551686580000}]}"#;
    // Two bookings of one kind at one instant (as text and as epoch ms) count once.
    assert_eq!(push(&mut e, first, false), sum(3, 1, 0));
    assert_eq!(push(&mut e, first, false), sum(0, 4, 0));
    let complete = r#"{"call_id":"c1","line":"cup","offered_at":1551686400000,"queued_at":"2019-03-04T09:00:40+01:00","answered_at":"2019-03-04T09:01:00+01:00","agent":"op1","ended_at":"2019-03-04T09:05:00+01:00","bookings":[{"kind":"book","at":"2019-03-04T09:03:00+01:00"},{"kind":"cancel","at":"2019-03-04T09:03:00+01:00"}]}"#;
    assert_eq!(push(&mut e, complete, false), sum(3, 3, 0));
    assert_eq!(figures(&e), (1, 0, 2, Some(240.0)));
}

#[test]
fn csv_records_with_a_header_and_bookings_lists() {
    let (_dir, mut e) = engine();
    let text = "call_id,line,offered_at,answered_at,agent,ended_at,abandoned_at,bookings\n\
        c1,cup,2019-03-04T09:00:00+01:00,2019-03-04T09:00:30+01:00,op1,2019-03-04T09:02:30+01:00,,book@2019-03-04T09:01:00+01:00;move@1551686460000\n\
        c2,,2019-03-04T10:00:00+01:00,,,,2019-03-04T10:01:00+01:00,\n";
    assert_eq!(push(&mut e, text, true), sum(7, 0, 0));
    assert_eq!(push(&mut e, text, true), sum(0, 7, 0));
    assert_eq!(figures(&e), (1, 1, 2, Some(120.0)));
}

#[test]
fn records_without_an_instant_or_with_a_bad_one_are_rejected_whole() {
    let (_dir, mut e) = engine();
    let text = "{\"call_id\":\"c9\",\"line\":\"cup\",\"agent\":\"op1\"}\n\
        {\"call_id\":\"c8\",\"offered_at\":\"2019-03-04T09:00:00+01:00\",\"answered_at\":\"yesterday\",\"agent\":\"op1\"}\n\
        {\"call_id\":\"c7\",\"offered_at\":0,\"bookings\":[\"book\"]}\n\
        not json\n";
    assert_eq!(push(&mut e, text, false), sum(0, 0, 4));
    let mut codes = Vec::new();
    e.dead_letters(&mut |d| codes.push((d.position, d.code.to_string())))
        .expect("dead letters");
    assert_eq!(
        codes,
        [
            (1, "no_instant"),
            (2, "bad_ts"),
            (3, "bad_list"),
            (4, "invalid_json")
        ]
        .map(|(n, c)| (n, c.to_owned()))
    );
    let csv = "call_id,offered_at\nc6,\nc5\n";
    assert_eq!(push(&mut e, csv, true), sum(0, 0, 2));
}
