//! Protobuf `CallEvent`s as the domain's raw fields (validated by the same rules as a
//! JSON line), and as JSON for the dead letter of a rejected one; protobuf call detail
//! records as the CDR object the one CDR decoder maps. Used by every path
//! taking protobuf events: the gRPC push and Kafka messages.

use netwait_aggregator::domain::raw_event::{RawEvent, RawValue};
use netwait_proto::v1 as pb;
use std::borrow::Cow;

/// A protobuf event as raw fields, validated by the same rules as a JSON line.
pub fn raw_event(e: &pb::CallEvent) -> RawEvent<'_> {
    fn s(v: &Option<String>) -> Option<RawValue<'_>> {
        v.as_deref().map(|x| RawValue::Str(Cow::Borrowed(x)))
    }
    RawEvent {
        call_id: s(&e.call_id),
        // proto3 cannot tell an empty `type` from an absent one.
        kind: (!e.r#type.is_empty()).then_some(RawValue::Str(Cow::Borrowed(e.r#type.as_str()))),
        ts: e.ts.as_ref().map(|ts| match ts {
            pb::call_event::Ts::TsMs(ms) => RawValue::Int(*ms),
            pb::call_event::Ts::TsText(t) => RawValue::Str(Cow::Borrowed(t.as_str())),
        }),
        event_id: s(&e.event_id),
        line: s(&e.line),
        agent: s(&e.agent),
        booking: s(&e.booking),
        reason: s(&e.reason),
        caller: s(&e.caller),
    }
}

/// A JSON string literal.
fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON rendering of a protobuf event for the dead-letter store (the caller is
/// redacted afterwards like any raw line).
pub fn render_event(e: &pb::CallEvent) -> Vec<u8> {
    let mut out = String::from("{");
    let field = |out: &mut String, key: &str, v: Option<&str>| {
        if let Some(v) = v {
            if out.len() > 1 {
                out.push(',');
            }
            json_string(out, key);
            out.push(':');
            json_string(out, v);
        }
    };
    field(&mut out, "call_id", e.call_id.as_deref());
    field(&mut out, "type", Some(e.r#type.as_str()));
    match &e.ts {
        Some(pb::call_event::Ts::TsMs(ms)) => out.push_str(&format!(",\"ts\":{ms}")),
        Some(pb::call_event::Ts::TsText(t)) => field(&mut out, "ts", Some(t)),
        None => {}
    }
    field(&mut out, "event_id", e.event_id.as_deref());
    field(&mut out, "line", e.line.as_deref());
    field(&mut out, "agent", e.agent.as_deref());
    field(&mut out, "booking", e.booking.as_deref());
    field(&mut out, "reason", e.reason.as_deref());
    field(&mut out, "caller", e.caller.as_deref());
    out.push('}');
    out.into_bytes()
}

/// A protobuf call detail record as the CDR NDJSON object of the same fields, so that it
/// is mapped by the one CDR decoder of every path (and kept as such when rejected).
pub fn render_call_detail(d: &pb::CallDetail) -> Vec<u8> {
    use serde_json::{Map, Value};
    fn instant(i: &pb::Instant) -> Value {
        match &i.at {
            Some(pb::instant::At::Ms(ms)) => Value::from(*ms),
            Some(pb::instant::At::Text(t)) => Value::from(t.as_str()),
            None => Value::Null,
        }
    }
    let mut o = Map::new();
    let texts = [
        ("call_id", &d.call_id),
        ("line", &d.line),
        ("caller", &d.caller),
        ("agent", &d.agent),
        ("overflow_reason", &d.overflow_reason),
    ];
    for (k, v) in texts {
        if let Some(v) = v {
            o.insert(k.into(), Value::from(v.as_str()));
        }
    }
    let instants = [
        ("offered_at", &d.offered_at),
        ("announcement_end_at", &d.announcement_end_at),
        ("queued_at", &d.queued_at),
        ("answered_at", &d.answered_at),
        ("ended_at", &d.ended_at),
        ("abandoned_at", &d.abandoned_at),
        ("overflow_at", &d.overflow_at),
    ];
    for (k, v) in instants {
        if let Some(v) = v {
            o.insert(k.into(), instant(v));
        }
    }
    if !d.bookings.is_empty() {
        let list = d.bookings.iter().map(|b| {
            let mut m = Map::new();
            m.insert("kind".into(), Value::from(b.kind.as_str()));
            m.insert("at".into(), b.at.as_ref().map_or(Value::Null, instant));
            Value::Object(m)
        });
        o.insert("bookings".into(), Value::Array(list.collect()));
    }
    Value::Object(o).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_events_are_json_the_line_parser_accepts() {
        let e = pb::CallEvent {
            call_id: Some("a\"b\\c\u{1}é".into()),
            r#type: "offered".into(),
            ts: Some(pb::call_event::Ts::TsMs(5)),
            ..Default::default()
        };
        let raw = render_event(&e);
        let parsed = netwait_aggregator::domain::json_line::parse_line(&raw).expect("valid JSON");
        assert_eq!(
            parsed.call_id,
            Some(netwait_aggregator::domain::raw_event::RawValue::Str(
                Cow::Owned("a\"b\\c\u{1}é".into())
            ))
        );
        assert_eq!(
            parsed.ts,
            Some(netwait_aggregator::domain::raw_event::RawValue::Int(5))
        );
    }
}
