//! One input item -> one encoded record: a valid event, or a dead letter with its reason.

use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::event::Event;
use netwait_aggregator::domain::limits::MAX_LINE_BYTES;
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::domain::privacy::{Pseudonymizer, mask_digit_runs_str, redact_rejected};
use netwait_aggregator::domain::raw_event::RawEvent;
use netwait_aggregator::domain::reject::Reject;
use netwait_aggregator::domain::validate::{validate, validate_line, validate_scanned};
use netwait_aggregator::engine::EncodedChunk;
use netwait_aggregator::store::record::DeadLetter;
use std::borrow::Cow;

/// The dead letter of a rejected input (raw kept, caller redacted, size capped).
pub(crate) fn dead_letter<'a>(
    reject: &Reject,
    raw: &'a [u8],
    source: &'a str,
    position: u64,
    pseudo: &Pseudonymizer,
) -> DeadLetter<'a> {
    // Cut here already (before redaction) when oversized: the size is the input's.
    let truncated_from = (raw.len() > MAX_LINE_BYTES + 1).then_some(raw.len() as u64);
    let raw = &raw[..raw.len().min(MAX_LINE_BYTES + 1)];
    DeadLetter {
        source: Cow::Borrowed(source),
        position,
        code: Cow::Borrowed(reject.code()),
        reason: Cow::Owned(mask_digit_runs_str(&reject.to_string()).into_owned()),
        raw: redact_rejected(raw, pseudo),
        // The store keeps the first bytes only (`codec::RAW_KEPT`), and the size.
        truncated_from,
        received_ms: Some(wall_ms()),
    }
}

/// Wall clock in epoch ms: when a dead letter was received (read for rejected inputs
/// only, never for valid lines).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Adds a validation result to `out`: the event (with its dedupe key and fold view), or a
/// dead letter of `raw` (rendered only when needed).
fn push_result<'e>(
    out: &mut EncodedChunk,
    result: &Result<Event<'e>, Reject>,
    raw: impl FnOnce() -> Cow<'e, [u8]>,
    source: &str,
    position: u64,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) {
    match result {
        Ok(ev) => out.push_event(ev, hasher),
        Err(r) => out.push_dead_letter(&dead_letter(r, &raw(), source, position, pseudo)),
    }
}

/// Validates one NDJSON line into `out`.
pub fn encode_line(
    out: &mut EncodedChunk,
    line: &[u8],
    source: &str,
    position: u64,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) {
    let result = validate_line(line, pseudo);
    push_result(
        out,
        &result,
        || line.into(),
        source,
        position,
        pseudo,
        hasher,
    );
}

/// Validates structured fields (a protobuf message) into `out`; `raw` renders the input
/// for the dead letter when it is rejected.
pub fn encode_fields(
    out: &mut EncodedChunk,
    fields: RawEvent<'_>,
    raw: impl FnOnce() -> Vec<u8>,
    source: &str,
    position: u64,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) {
    let result = validate(fields, pseudo);
    push_result(
        out,
        &result,
        || raw().into(),
        source,
        position,
        pseudo,
        hasher,
    );
}

/// Encodes every line of `bytes` (whole lines) into `out` (an empty chunk, e.g. one of spent buffers),
/// in order, with what folding needs of each event (its dedupe key, its fold view), so
/// that the threads folding events in decode nothing.
pub fn encode_chunk_into(
    out: &mut EncodedChunk,
    bytes: &[u8],
    source: &str,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) {
    // Room for lines of 32 bytes or more (untouched room costs no memory).
    out.reserve(bytes.len() / 2, bytes.len() / 32);
    // One pass splits the lines and locates each plain line's quotes. Lines are numbered
    // within the chunk; the in-order stage makes dead letters' numbers the stream's.
    let mut lines = 0;
    for (scanned, n) in scan_lines(bytes).zip(1..) {
        let line = scanned.bytes();
        let result = validate_scanned(scanned, pseudo);
        push_result(out, &result, || line.into(), source, n, pseudo, hasher);
        lines = n;
    }
    out.set_lines(lines);
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::store::codec::Decoder;
    use netwait_aggregator::store::record::Record;

    #[test]
    fn valid_and_rejected_lines_keep_order_and_position() {
        let before = wall_ms();
        let p = Pseudonymizer::new([0; 32]);
        let bytes = b"{\"call_id\":\"a\",\"type\":\"offered\",\"ts\":0}\nnot json\r\n{\"type\":\"x\",\"caller\":\"3331234567\"}";
        let mut out = EncodedChunk::default();
        encode_chunk_into(&mut out, bytes, "f.ndjson", &p, &KeyHasher::new([0; 16]));
        assert_eq!((out.events(), out.lines()), (1, 3));
        // Numbered within the chunk, then as lines 10 to 12 of the stream.
        let first = |out: &EncodedChunk| match Decoder::new(&out.bytes).nth(1) {
            Some(Ok(Record::DeadLetter(d))) => d.position,
            other => panic!("dead letter expected, got {other:?}"),
        };
        assert_eq!(first(&out), 2);
        out.rebase_positions(9);
        let recs: Vec<_> = Decoder::new(&out.bytes)
            .map(|r| r.expect("decodes"))
            .collect();
        assert!(matches!(recs[0], Record::Event(_)));
        let Record::DeadLetter(d) = &recs[1] else {
            panic!("dead letter expected")
        };
        assert_eq!(
            (d.position, d.source.as_ref(), d.raw.as_ref()),
            (11, "f.ndjson", &b"not json"[..])
        );
        assert_eq!(d.code, "invalid_json");
        // Stamped when received.
        let received = d.received_ms.expect("a received time");
        assert!((before..=wall_ms()).contains(&received));
        let Record::DeadLetter(d) = &recs[2] else {
            panic!("dead letter expected")
        };
        assert_eq!((d.position, d.code.as_ref()), (12, "bad_type"));
        assert!(!String::from_utf8_lossy(&d.raw).contains("3331234567"));
    }
}
