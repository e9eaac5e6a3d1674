//! Call detail records (one record per call, NDJSON objects or CSV with a header row)
//! to the canonical events they imply: each `*_at` instant is one event, each booking
//! one `booking` event. Event ids derive from the call id, type and instant (and a
//! booking's kind), so a record pushed again changes nothing, a more complete version of
//! it adds only its new events, and bookings of one kind at one instant count once.

use crate::bom::UTF8_BOM;
use crate::decoded::{Unit, derived_id, text};
use netwait_aggregator::domain::event::EventType;
use netwait_aggregator::domain::limits::MAX_LINE_BYTES;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::raw_event::{RawEvent, RawValue};
use netwait_aggregator::domain::reject::Reject;
use netwait_aggregator::domain::validate::instant;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

/// The instants of a record and the event each one is.
const INSTANTS: [(&str, EventType); 7] = [
    ("offered_at", EventType::Offered),
    ("announcement_end_at", EventType::AnnouncementEnd),
    ("queued_at", EventType::Queued),
    ("answered_at", EventType::Answered),
    ("ended_at", EventType::Ended),
    ("abandoned_at", EventType::Abandoned),
    ("overflow_at", EventType::Overflow),
];

/// A record's fields as read, before validation (absent and empty are the same).
#[derive(Default)]
struct Record<'a> {
    fields: HashMap<&'a str, RawValue<'a>>,
    /// (kind, at) of each booking.
    bookings: Vec<(RawValue<'a>, RawValue<'a>)>,
}

impl<'a> Record<'a> {
    fn get(&self, name: &str) -> Option<RawValue<'a>> {
        self.fields.get(name).cloned()
    }

    /// The events the record implies.
    fn events(&self, pseudo: &Pseudonymizer) -> Result<Vec<RawEvent<'a>>, Reject> {
        let call_id = self.get("call_id");
        let event = |kind: EventType, at: RawValue<'a>, booking: Option<RawValue<'a>>| {
            let id = match (&call_id, instant(&at), &booking) {
                (Some(RawValue::Str(c)), Ok(ms), b) => {
                    let b = match b {
                        Some(RawValue::Str(b)) => b.as_ref(),
                        _ => "",
                    };
                    text(derived_id(
                        "cdr",
                        &format!("{c}\u{1f}{}\u{1f}{ms}\u{1f}{b}", kind.as_str()),
                        pseudo,
                    ))
                }
                _ => None,
            };
            RawEvent {
                call_id: call_id.clone(),
                kind: text(kind.as_str()),
                ts: Some(at),
                event_id: id,
                booking,
                ..RawEvent::default()
            }
        };
        let mut out = Vec::new();
        for (name, kind) in INSTANTS {
            let Some(at) = self.get(name) else { continue };
            let mut ev = event(kind, at, None);
            match kind {
                EventType::Offered => {
                    ev.line = self.get("line");
                    ev.caller = self.get("caller");
                }
                EventType::Answered => ev.agent = self.get("agent"),
                EventType::Overflow => ev.reason = self.get("overflow_reason"),
                _ => {}
            }
            out.push(ev);
        }
        for (kind, at) in &self.bookings {
            out.push(event(EventType::Booking, at.clone(), Some(kind.clone())));
        }
        if out.is_empty() {
            return Err(Reject::NoInstant);
        }
        Ok(out)
    }
}

/// A JSON value as a field value (`null` is absent).
fn json_value(v: &serde_json::Value) -> Option<RawValue<'_>> {
    use serde_json::Value;
    Some(match v {
        Value::Null => return None,
        Value::String(s) => RawValue::Str(Cow::Borrowed(s)),
        Value::Number(n) => n
            .as_i64()
            .map_or(RawValue::Other("a number with a fraction"), RawValue::Int),
        Value::Bool(_) => RawValue::Other("a boolean"),
        Value::Array(_) => RawValue::Other("an array"),
        Value::Object(_) => RawValue::Other("an object"),
    })
}

fn ndjson_record<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
) -> Result<Record<'a>, Reject> {
    let mut rec = Record::default();
    for (k, v) in obj {
        if k == "bookings" {
            let list = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::Array(list) => list,
                _ => return Err(Reject::BadList("bookings")),
            };
            for b in list {
                let (Some(kind), Some(at)) = (
                    b.get("kind").and_then(json_value),
                    b.get("at").and_then(json_value),
                ) else {
                    return Err(Reject::BadList("bookings"));
                };
                rec.bookings.push((kind, at));
            }
        } else if let Some(value) = json_value(v) {
            rec.fields.insert(k, value);
        }
    }
    Ok(rec)
}

/// Records as NDJSON, one object a line.
pub fn decode_ndjson<'a>(bytes: &'a [u8], pseudo: &Pseudonymizer) -> Vec<Unit<'a>> {
    let mut units = Vec::new();
    let mut at = if bytes.starts_with(UTF8_BOM) { 3 } else { 0 };
    let mut line = 0;
    while at < bytes.len() {
        line += 1;
        let (mut end, next) = match memchr::memchr(b'\n', &bytes[at..]) {
            Some(p) => (at + p, at + p + 1),
            None => (bytes.len(), bytes.len()),
        };
        if end > at && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        let raw = &bytes[at..end];
        let decoded = if raw.len() > MAX_LINE_BYTES {
            Err(Reject::TooLong)
        } else if raw.iter().all(u8::is_ascii_whitespace) {
            Err(Reject::Empty)
        } else {
            match serde_json::from_slice::<serde_json::Value>(raw) {
                Ok(serde_json::Value::Object(obj)) => ndjson_record(&obj)
                    .and_then(|r| r.events(pseudo))
                    .map(|evs| evs.into_iter().map(owned).collect()),
                Ok(_) => Err(Reject::NotObject),
                Err(_) if std::str::from_utf8(raw).is_err() => Err(Reject::NotUtf8),
                Err(e) => Err(Reject::Json {
                    at: e.column().saturating_sub(1),
                    what: "not a JSON object of call record fields",
                }),
            }
        };
        units.push(Unit {
            line,
            span: at..end,
            decoded,
        });
        at = next;
    }
    units
}

/// Events that outlive the parsed JSON they borrow from.
fn owned(ev: RawEvent<'_>) -> RawEvent<'static> {
    fn own(v: Option<RawValue<'_>>) -> Option<RawValue<'static>> {
        v.map(|v| match v {
            RawValue::Str(s) => RawValue::Str(Cow::Owned(s.into_owned())),
            RawValue::Int(i) => RawValue::Int(i),
            RawValue::Other(o) => RawValue::Other(o),
        })
    }
    RawEvent {
        call_id: own(ev.call_id),
        kind: own(ev.kind),
        ts: own(ev.ts),
        event_id: own(ev.event_id),
        line: own(ev.line),
        agent: own(ev.agent),
        booking: own(ev.booking),
        reason: own(ev.reason),
        caller: own(ev.caller),
    }
}

/// A CSV instant: integer epoch milliseconds, else RFC 3339 text.
fn csv_instant(cell: &str) -> RawValue<'_> {
    match cell.parse::<i64>() {
        Ok(ms) if cell.bytes().all(|b| b.is_ascii_digit()) => RawValue::Int(ms),
        _ => RawValue::Str(Cow::Borrowed(cell)),
    }
}

/// Records as CSV: a header row of the field names; `bookings` a `;`-separated list of
/// `kind@ts`.
pub fn decode_csv<'a>(bytes: &'a [u8], pseudo: &Pseudonymizer) -> Vec<Unit<'a>> {
    let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let base = bytes.len() - body.len();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(body);
    let mut record = csv::StringRecord::new();
    let mut header: Option<Vec<String>> = None;
    let mut units = Vec::new();
    loop {
        let start = base + reader.position().byte() as usize;
        let line = reader.position().line();
        let read = reader.read_record(&mut record);
        let mut end = base + reader.position().byte() as usize;
        while end > start && matches!(bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let span: Range<usize> = start..end;
        let decoded = match read {
            Ok(false) => break,
            Err(_) => Err(Reject::NotUtf8),
            Ok(true) => match &header {
                None => {
                    header = Some(record.iter().map(|h| h.trim().to_owned()).collect());
                    continue;
                }
                Some(_) if record.iter().all(str::is_empty) => continue,
                Some(names) if names.len() != record.len() => Err(Reject::FieldCount {
                    got: record.len(),
                    want: "as many as the header",
                }),
                Some(names) => csv_record(names, &record)
                    .and_then(|r| r.events(pseudo))
                    .map(|evs| evs.into_iter().map(owned).collect()),
            },
        };
        units.push(Unit {
            line,
            span,
            decoded,
        });
    }
    units
}

fn csv_record<'a>(
    names: &'a [String],
    record: &'a csv::StringRecord,
) -> Result<Record<'a>, Reject> {
    let mut rec = Record::default();
    for (name, cell) in names.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        if name == "bookings" {
            for entry in cell.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                let (kind, at) = entry.split_once('@').ok_or(Reject::BadList("bookings"))?;
                rec.bookings
                    .push((RawValue::Str(Cow::Borrowed(kind)), csv_instant(at)));
            }
        } else if name.ends_with("_at") {
            rec.fields.insert(name, csv_instant(cell));
        } else {
            rec.fields.insert(name, RawValue::Str(Cow::Borrowed(cell)));
        }
    }
    Ok(rec)
}

#[cfg(test)]
mod tests;
