//! Protobuf `CallEvent`s as the domain's raw fields (validated by the same rules as a
//! JSON line), and as JSON for the dead letter of a rejected one. Used by every path
//! taking protobuf events: the gRPC push and Kafka messages.

use netwait_aggregator::domain::json_line::{RawEvent, RawValue};
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
            Some(netwait_aggregator::domain::json_line::RawValue::Str(
                Cow::Owned("a\"b\\c\u{1}é".into())
            ))
        );
        assert_eq!(
            parsed.ts,
            Some(netwait_aggregator::domain::json_line::RawValue::Int(5))
        );
    }
}
