//! A Kafka message's payload into encoded records: the events it carries (validated and
//! pseudonymised exactly as an NDJSON line or a pushed `CallEvent`), and a dead letter
//! for each item refused, positioned at the message's offset.
//!
//! The `content-type` header says how a payload is encoded:
//! - absent, `application/x-ndjson` or `application/json`: NDJSON, one or many lines;
//! - `application/x-protobuf; message=netwait.v1.CallEvent`: one protobuf `CallEvent`;
//! - `application/x-protobuf` (or `message=netwait.v1.PushRequest`): a batch, the gRPC
//!   push's `PushRequest` (its `ndjson_lines`, then its `events`).

use crate::bom;
use crate::parse::dead_letter;
use crate::proto_event::{raw_event, render_event};
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::event::Event;
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::reject::Reject;
use netwait_aggregator::domain::validate::{validate, validate_line};
use netwait_aggregator::engine::EncodedChunk;
use netwait_proto::v1 as pb;
use prost::Message;
use std::borrow::Cow;

/// The header naming a payload's encoding.
pub const CONTENT_TYPE: &str = "content-type";
pub const NDJSON: &str = "application/x-ndjson";
pub const PROTOBUF: &str = "application/x-protobuf";
/// `PROTOBUF` with this parameter: one `CallEvent`.
pub const CALL_EVENT: &str = "application/x-protobuf; message=netwait.v1.CallEvent";

/// How a payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Ndjson,
    CallEvent,
    Batch,
    /// A `content-type` this source does not read: the message is a dead letter.
    Unknown,
}

impl Encoding {
    /// The encoding a `content-type` header value names (`None`: no header, NDJSON).
    pub fn of(content_type: Option<&[u8]>) -> Self {
        let Some(value) = content_type else {
            return Self::Ndjson;
        };
        let value = String::from_utf8_lossy(value).to_ascii_lowercase();
        let mut parts = value.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let message = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim() == "message")
            .map(|(_, v)| v.trim().trim_matches('"').to_owned());
        match (media, message.as_deref()) {
            ("application/x-ndjson" | "application/json" | "text/plain", _) => Self::Ndjson,
            (PROTOBUF, Some("netwait.v1.callevent")) => Self::CallEvent,
            (PROTOBUF, None | Some("netwait.v1.pushrequest")) => Self::Batch,
            _ => Self::Unknown,
        }
    }
}

/// An item of a message that was refused, for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The item within its message (1-based): its line, or its event after the lines.
    pub item: u64,
    pub code: &'static str,
    /// The reason as the store keeps it (what `netwait deadletter` shows).
    pub reason: String,
    /// The item as received (a line, a rendered event, or the whole payload when it could
    /// not be read at all).
    pub raw: Vec<u8>,
}

/// Where a message comes from, for its dead letters.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// `kafka:<topic>/<partition>`.
    pub source: &'a str,
    pub offset: i64,
    /// The message's key.
    pub key: Option<&'a [u8]>,
}

/// Validation context shared by every message.
pub struct Decoder<'a> {
    pub pseudo: &'a Pseudonymizer,
    pub hasher: &'a KeyHasher,
    /// Each call event must be in a message keyed by its call id (aggregators that share
    /// the partitions: a call's events must all be in its one partition).
    pub keyed_by_call: bool,
}

impl Decoder<'_> {
    /// Encodes one message's payload into `out`; returns the items refused.
    pub fn message(
        &self,
        out: &mut EncodedChunk,
        payload: &[u8],
        encoding: Encoding,
        origin: Origin<'_>,
    ) -> Vec<Refused> {
        let mut refused = Vec::new();
        let mut items = Items {
            decoder: self,
            out,
            origin,
            refused: &mut refused,
            next: 1,
        };
        match encoding {
            Encoding::Ndjson => items.lines(payload),
            Encoding::CallEvent => match pb::CallEvent::decode(payload) {
                Ok(ev) => items.event(&ev),
                Err(_) => items.refuse(&Reject::Protobuf("netwait.v1.CallEvent"), payload, 1),
            },
            Encoding::Batch => match pb::PushRequest::decode(payload) {
                Ok(batch) => {
                    for entry in &batch.ndjson_lines {
                        items.lines(entry);
                    }
                    for ev in &batch.events {
                        items.event(ev);
                    }
                }
                Err(_) => items.refuse(&Reject::Protobuf("netwait.v1.PushRequest"), payload, 1),
            },
            Encoding::Unknown => items.refuse(&Reject::ContentType, payload, 1),
        }
        refused
    }
}

/// The items of one message as they are encoded.
struct Items<'d, 'o> {
    decoder: &'d Decoder<'d>,
    out: &'o mut EncodedChunk,
    origin: Origin<'o>,
    refused: &'o mut Vec<Refused>,
    /// The next item's number within the message.
    next: u64,
}

impl Items<'_, '_> {
    /// NDJSON lines, split as `import` splits a file (an empty payload is one empty line).
    fn lines(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            self.line(bytes);
        }
        for scanned in scan_lines(bytes) {
            let line = scanned.bytes();
            // A producer writing a file's lines may keep its BOM on the first.
            let line = if self.next == 1 {
                bom::strip(line)
            } else {
                line
            };
            self.line(line);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let item = self.take();
        match validate_line(line, self.decoder.pseudo).and_then(|ev| self.placed(ev)) {
            Ok(ev) => self.accept(&ev),
            Err(reject) => self.refuse(&reject, line, item),
        }
    }

    fn event(&mut self, ev: &pb::CallEvent) {
        let item = self.take();
        match validate(raw_event(ev), self.decoder.pseudo).and_then(|ev| self.placed(ev)) {
            Ok(valid) => self.accept(&valid),
            Err(reject) => self.refuse(&reject, &render_event(ev), item),
        }
    }

    /// `ev` when it is in the partition of its call (see [`Decoder::keyed_by_call`]).
    fn placed<'e>(&self, ev: Event<'e>) -> Result<Event<'e>, Reject> {
        match (&ev.call_id, self.decoder.keyed_by_call) {
            (Some(call), true) if self.origin.key != Some(call.as_bytes()) => {
                Err(Reject::KeyNotCallId)
            }
            _ => Ok(ev),
        }
    }

    fn take(&mut self) -> u64 {
        let item = self.next;
        self.next += 1;
        item
    }

    fn accept(&mut self, ev: &Event<'_>) {
        self.out.push_event(ev, self.decoder.hasher);
    }

    /// A dead letter at the message's offset (negative offsets do not occur: 0 then).
    fn refuse(&mut self, reject: &Reject, raw: &[u8], item: u64) {
        let position = u64::try_from(self.origin.offset).unwrap_or(0);
        let mut dead = dead_letter(
            reject,
            raw,
            self.origin.source,
            position,
            self.decoder.pseudo,
        );
        // The item number is ours, not the input's: it is not masked.
        dead.reason = Cow::Owned(format!("item {item} of the message: {}", dead.reason));
        self.out.push_dead_letter(&dead);
        self.refused.push(Refused {
            item,
            code: reject.code(),
            reason: dead.reason.into_owned(),
            raw: raw.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::store::codec::Decoder as Records;
    use netwait_aggregator::store::record::Record;

    const OFFERED: &str = r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00","caller":"3331234567"}"#;

    fn decode(payload: &[u8], encoding: Encoding) -> (usize, Vec<(u64, String)>, Vec<Refused>) {
        decode_keyed(payload, encoding, None)
    }

    /// [`decode`] for aggregators that share the partitions, the message keyed by `key`.
    fn decode_keyed(
        payload: &[u8],
        encoding: Encoding,
        key: Option<&[u8]>,
    ) -> (usize, Vec<(u64, String)>, Vec<Refused>) {
        let pseudo = Pseudonymizer::new([0; 32]);
        let hasher = KeyHasher::new([1; 16]);
        let d = Decoder {
            pseudo: &pseudo,
            hasher: &hasher,
            keyed_by_call: key.is_some(),
        };
        let mut out = EncodedChunk::default();
        let origin = Origin {
            source: "kafka:t/2",
            offset: 41,
            key: key.filter(|k| !k.is_empty()),
        };
        let refused = d.message(&mut out, payload, encoding, origin);
        let dead = Records::new(&out.bytes)
            .filter_map(|r| match r.expect("record") {
                Record::DeadLetter(d) => {
                    assert_eq!(d.source, "kafka:t/2");
                    assert!(!String::from_utf8_lossy(&d.raw).contains("3331234567"));
                    Some((d.position, d.code.into_owned()))
                }
                Record::Event(_) | Record::Positions(_) => None,
            })
            .collect();
        (out.events(), dead, refused)
    }

    #[test]
    fn sharing_partitions_a_call_event_must_be_keyed_by_its_call_id() {
        let b = OFFERED.replace("\"a\"", "\"b\"");
        let agent = r#"{"type":"agent_login","agent":"ag1","ts":"2019-03-04T08:00:00+01:00"}"#;
        let batch = format!("{OFFERED}\n{b}\n{agent}");
        let (events, dead, refused) = decode_keyed(batch.as_bytes(), Encoding::Ndjson, Some(b"a"));
        assert_eq!((events, dead), (2, vec![(41, "key_not_call_id".into())]));
        assert_eq!(refused[0].item, 2);
        // No key at all (an empty one stands for none here): every call event refused.
        let (events, dead, _) = decode_keyed(OFFERED.as_bytes(), Encoding::Ndjson, Some(b""));
        assert_eq!((events, dead), (0, vec![(41, "key_not_call_id".into())]));
        let ev = pb::CallEvent {
            call_id: Some("c".into()),
            r#type: "offered".into(),
            ts: Some(pb::call_event::Ts::TsMs(1_000)),
            ..Default::default()
        };
        let keyed = |key: &[u8]| decode_keyed(&ev.encode_to_vec(), Encoding::CallEvent, Some(key));
        assert_eq!(keyed(b"c").0, 1);
        assert_eq!(keyed(b"a").1, vec![(41, "key_not_call_id".into())]);
        // Without sharing, the key is not looked at.
        assert_eq!(decode(b.as_bytes(), Encoding::Ndjson).0, 1);
    }

    #[test]
    fn content_types_name_encodings() {
        assert_eq!(Encoding::of(None), Encoding::Ndjson);
        assert_eq!(Encoding::of(Some(NDJSON.as_bytes())), Encoding::Ndjson);
        assert_eq!(
            Encoding::of(Some(CALL_EVENT.as_bytes())),
            Encoding::CallEvent
        );
        assert_eq!(
            Encoding::of(Some(
                b"Application/X-Protobuf; message=\"netwait.v1.CallEvent\""
            )),
            Encoding::CallEvent
        );
        assert_eq!(Encoding::of(Some(PROTOBUF.as_bytes())), Encoding::Batch);
        assert_eq!(Encoding::of(Some(b"application/avro")), Encoding::Unknown);
    }

    #[test]
    fn ndjson_messages_hold_one_or_many_lines_each_refused_line_at_the_offset() {
        let (events, dead, refused) = decode(OFFERED.as_bytes(), Encoding::Ndjson);
        assert_eq!((events, dead.len()), (1, 0));
        assert!(refused.is_empty());
        let many = format!(
            "{OFFERED}\nnot json\r\n{}\n{{\"type\":\"x\"}}",
            OFFERED.replace("\"a\"", "\"b\"")
        );
        let (events, dead, refused) = decode(many.as_bytes(), Encoding::Ndjson);
        assert_eq!(events, 2);
        assert_eq!(
            dead,
            vec![(41, "invalid_json".into()), (41, "bad_type".into())]
        );
        assert_eq!(refused[0].item, 2);
        assert_eq!(refused[0].raw, b"not json");
        assert!(
            refused[0]
                .reason
                .starts_with("item 2 of the message: invalid JSON"),
            "{}",
            refused[0].reason
        );
        assert_eq!(refused[1].item, 4);
    }

    #[test]
    fn protobuf_events_and_batches_and_wrong_protobuf() {
        let ev = pb::CallEvent {
            call_id: Some("c".into()),
            r#type: "offered".into(),
            ts: Some(pb::call_event::Ts::TsMs(1_000)),
            caller: Some("3331234567".into()),
            ..Default::default()
        };
        let (events, dead, _) = decode(&ev.encode_to_vec(), Encoding::CallEvent);
        assert_eq!((events, dead.len()), (1, 0));
        let bad = pb::CallEvent {
            r#type: "answered".into(), // no agent
            ..ev.clone()
        };
        let batch = pb::PushRequest {
            events: vec![ev.clone(), bad],
            ndjson_lines: vec![OFFERED.as_bytes().to_vec()],
            ..Default::default()
        };
        let (events, dead, refused) = decode(&batch.encode_to_vec(), Encoding::Batch);
        assert_eq!((events, dead), (2, vec![(41, "missing_field".into())]));
        assert_eq!(refused[0].item, 3);
        // The refused event is kept as a canonical JSON line (caller redacted in the store).
        assert!(refused[0].raw.starts_with(b"{\"call_id\":\"c\""));
        let (events, dead, refused) = decode(b"\xff\xff\xff not protobuf", Encoding::CallEvent);
        assert_eq!((events, dead), (0, vec![(41, "invalid_protobuf".into())]));
        assert_eq!(refused[0].raw, b"\xff\xff\xff not protobuf");
        let (_, dead, _) = decode(OFFERED.as_bytes(), Encoding::Unknown);
        assert_eq!(dead, vec![(41, "bad_content_type".into())]);
    }
}
