//! The staging of sequentially decoded formats (queue_log, call records): each input
//! record (a row, a call record) is a [`Unit`] holding the raw events it implies, or the
//! reason it could not be read. Every event goes through the same validation as an
//! NDJSON line (`domain::validate`), and every unit becomes records of the same
//! [`EncodedChunk`]s the NDJSON pipeline stages: same dedupe keys, same dead letters
//! (redacted by `domain::privacy`), same commits.

use crate::bom::UTF8_BOM;
use crate::cdr;
use crate::format::Format;
use crate::parse::{dead_letter, encode_chunk_into};
use crate::queue_log::{self, QueueLogConfig};
use jiff::tz::TimeZone;
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::raw_event::RawEvent;
use netwait_aggregator::domain::reject::Reject;
use netwait_aggregator::domain::validate::validate;
use netwait_aggregator::engine::{EncodedChunk, Engine, IngestSummary};
use netwait_aggregator::store::StoreError;
use std::borrow::Cow;
use std::ops::Range;

/// One input record and what it became.
#[derive(Debug)]
pub struct Unit<'a> {
    /// Line of the input the record starts on (1-based): the dead letter's position.
    pub line: u64,
    /// Bytes of the input the record spans (its line end not included).
    pub span: Range<usize>,
    /// Its events, or why it was refused. A record whose events are not all valid is
    /// refused whole (with the first event's reason), so a record counts all or nothing.
    pub decoded: Result<Vec<RawEvent<'a>>, Reject>,
}

/// A string field value.
pub fn text<'a>(
    s: impl Into<Cow<'a, str>>,
) -> Option<netwait_aggregator::domain::raw_event::RawValue<'a>> {
    Some(netwait_aggregator::domain::raw_event::RawValue::Str(
        s.into(),
    ))
}

/// An event id derived from what identifies an event of an input (`what`): a keyed hash
/// (the data directory's caller key), since `what` may hold a calling number. The same
/// input read again gets the same ids, so it changes nothing.
pub fn derived_id(prefix: &str, what: &str, pseudo: &Pseudonymizer) -> String {
    format!("{prefix}:{:?}", pseudo.hash(what))
}

/// Units per staged chunk (a commit of the engine takes several).
const UNITS_PER_CHUNK: usize = 50_000;

/// Validates and encodes the units of one input (`bytes`, named `source`).
pub fn encode_units(
    units: &[Unit<'_>],
    bytes: &[u8],
    source: &str,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) -> Vec<EncodedChunk> {
    let mut chunks = Vec::with_capacity(units.len() / UNITS_PER_CHUNK + 1);
    for part in units.chunks(UNITS_PER_CHUNK) {
        let mut out = EncodedChunk::default();
        for unit in part {
            let raw = &bytes[unit.span.clone()];
            encode_unit(
                &mut out,
                unit,
                raw,
                Some(unit.span.start),
                source,
                pseudo,
                hasher,
            );
        }
        chunks.push(out);
    }
    chunks
}

/// Validates and encodes one unit into `out`: its events, or a dead letter of `raw` at
/// the unit's line (its reason says `at_byte` when the input has byte offsets).
pub fn encode_unit(
    out: &mut EncodedChunk,
    unit: &Unit<'_>,
    raw: &[u8],
    at_byte: Option<usize>,
    source: &str,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) {
    let validated = match &unit.decoded {
        Ok(events) => events
            .iter()
            .map(|raw| validate(raw.clone(), pseudo))
            .collect::<Result<Vec<_>, _>>(),
        Err(reject) => Err(reject.clone()),
    };
    match validated {
        Ok(events) => events.iter().for_each(|ev| out.push_event(ev, hasher)),
        Err(reject) => {
            let mut dead = dead_letter(&reject, raw, source, unit.line, pseudo);
            if let Some(at) = at_byte {
                // The offset is ours, not the input's: it is not masked.
                dead.reason = Cow::Owned(format!("at byte {at}: {}", dead.reason));
            }
            out.push_dead_letter(&dead);
        }
    }
}

/// What decoding needs besides the bytes.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    pub queue_log: QueueLogConfig,
    /// The zone local date-times of an input are read in (the queue_log CSV export).
    pub timezone: TimeZone,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        Self {
            queue_log: QueueLogConfig::default(),
            timezone: TimeZone::get("Europe/Rome").unwrap_or(TimeZone::UTC),
        }
    }
}

/// A whole input of a sequentially decoded format.
pub struct Decodable {
    pub name: String,
    pub format: Format,
    pub bytes: Vec<u8>,
}

/// Decodes, validates and encodes whole inputs, in order (queue_log inputs together:
/// their rules look across files, e.g. a call's earliest ENTERQUEUE may be in an older
/// rotated file).
pub fn decode_inputs(
    inputs: &[Decodable],
    settings: &DecodeSettings,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) -> Vec<Vec<EncodedChunk>> {
    let queue_logs: Vec<usize> = (0..inputs.len())
        .filter(|&i| matches!(inputs[i].format, Format::QueueLog | Format::QueueLogCsv))
        .collect();
    let rows = queue_logs
        .iter()
        .map(|&i| match inputs[i].format {
            Format::QueueLogCsv => {
                queue_log::rows::read_csv_layout(&inputs[i].bytes, &settings.timezone)
            }
            _ => queue_log::rows::read_file_layout(&inputs[i].bytes),
        })
        .collect();
    let mut mapped = queue_log::decode(rows, &settings.queue_log, pseudo).into_iter();
    inputs
        .iter()
        .map(|input| {
            let units = match input.format {
                Format::QueueLog | Format::QueueLogCsv => mapped.next().unwrap_or_default(),
                Format::Cdr if input.bytes.trim_ascii_start().starts_with(b"{") => {
                    cdr::decode_ndjson(&input.bytes, pseudo)
                }
                Format::Cdr => cdr::decode_csv(&input.bytes, pseudo),
                Format::Ndjson => {
                    let mut out = EncodedChunk::default();
                    let bytes = input.bytes.strip_prefix(UTF8_BOM).unwrap_or(&input.bytes);
                    encode_chunk_into(&mut out, bytes, &input.name, pseudo, hasher);
                    return vec![out];
                }
            };
            encode_units(&units, &input.bytes, &input.name, pseudo, hasher)
        })
        .collect()
}

/// Stages the encoded chunks of one input and commits them (a checkpoint after with
/// `checkpoint`); returns its counts once durable.
pub fn stage(
    engine: &mut Engine,
    chunks: Vec<EncodedChunk>,
    checkpoint: bool,
) -> Result<IngestSummary, StoreError> {
    engine.stage_stream(chunks.into_iter(), 1 << 19, checkpoint, None, &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::domain::raw_event::RawValue;
    use netwait_aggregator::store::codec::Decoder;
    use netwait_aggregator::store::record::Record;

    #[test]
    fn a_unit_with_an_invalid_event_is_refused_whole_with_its_offset() {
        let p = Pseudonymizer::new([3; 32]);
        let bytes = b"row one\nrow two 3331234567\n";
        let good = RawEvent {
            call_id: text("c"),
            kind: text("offered"),
            ts: Some(RawValue::Int(1_000)),
            ..RawEvent::default()
        };
        let bad = RawEvent {
            kind: text("answered"), // no agent
            ..good.clone()
        };
        let units = [
            Unit {
                line: 1,
                span: 0..7,
                decoded: Ok(vec![good.clone()]),
            },
            Unit {
                line: 2,
                span: 8..26,
                decoded: Ok(vec![good, bad]),
            },
        ];
        let chunks = encode_units(&units, bytes, "f", &p, &KeyHasher::new([0; 16]));
        let recs: Vec<_> = Decoder::new(&chunks[0].bytes)
            .map(|r| r.expect("decodes"))
            .collect();
        assert_eq!(recs.len(), 2, "one event, one dead letter: {recs:?}");
        let Record::DeadLetter(d) = &recs[1] else {
            panic!("dead letter expected");
        };
        assert_eq!((d.position, d.code.as_ref()), (2, "missing_field"));
        assert!(d.reason.starts_with("at byte 8: "), "{}", d.reason);
        assert!(!String::from_utf8_lossy(&d.raw).contains("3331234567"));
    }
}
