//! From raw fields (JSON line or protobuf message) to a valid [`Event`] (spec §1).

use super::event::{BookingKind, Event, EventType};
use super::json_line::{parse_line, parse_line_str};
use super::limits::MAX_TEXT_CHARS;
use super::line_scan::ScannedLine;
use super::plain_line::validate_plain_with;
use super::privacy::Pseudonymizer;
use super::raw_event::{RawEvent, RawValue};
use super::reject::Reject;
use super::time::{Millis, TsError, in_range, parse_rfc3339};
use std::borrow::Cow;

/// Parses and validates one NDJSON line. The clear `caller` is hashed here and dropped.
pub fn validate_line<'a>(line: &'a [u8], pseudo: &Pseudonymizer) -> Result<Event<'a>, Reject> {
    validate(parse_line(line)?, pseudo)
}

/// [`validate_line`] for a line found by [`super::line_scan::scan_lines`]: a plain line
/// takes the fast path with the quotes the scan located, without a UTF-8 check when the
/// scan saw only ASCII; the others, and all rejects, the general path.
pub fn validate_scanned<'a>(
    scanned: ScannedLine<'a>,
    pseudo: &Pseudonymizer,
) -> Result<Event<'a>, Reject> {
    let (line, quotes, ascii) = scanned.into_parts();
    let Some(quotes) = quotes else {
        return validate_line(line, pseudo);
    };
    let text = if ascii {
        // SAFETY: every byte of `line` is below 0x80 (the scan that made `scanned` checked
        // these very bytes: its fields are private), and ASCII is UTF-8.
        unsafe { std::str::from_utf8_unchecked(line) }
    } else {
        match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(_) => return validate_line(line, pseudo),
        }
    };
    match validate_plain_with(text, quotes, pseudo) {
        Some(ev) => Ok(ev),
        None => validate(parse_line_str(text)?, pseudo),
    }
}

/// Validates the known fields of an event, whatever wire form they came in.
pub fn validate<'a>(raw: RawEvent<'a>, pseudo: &Pseudonymizer) -> Result<Event<'a>, Reject> {
    let kind = match text(raw.kind, "type")? {
        None => return Err(Reject::Missing("type")),
        Some(t) => EventType::parse(&t).ok_or(Reject::BadType)?,
    };
    let ts = match &raw.ts {
        None => return Err(Reject::Missing("ts")),
        Some(v) => instant(v)?,
    };
    let call_id = text(raw.call_id, "call_id")?;
    let event_id = text(raw.event_id, "event_id")?;
    let line = text(raw.line, "line")?;
    let agent = text(raw.agent, "agent")?;
    let reason = text(raw.reason, "reason")?;
    let caller = text(raw.caller, "caller")?;
    let booking = match text(raw.booking, "booking")? {
        None => None,
        Some(b) => Some(BookingKind::parse(&b).ok_or(Reject::BadBooking)?),
    };
    check_required(kind, call_id.is_some(), agent.is_some(), booking.is_some())?;
    Ok(Event {
        kind,
        ts,
        call_id,
        event_id,
        line,
        agent,
        booking,
        reason,
        caller: caller.map(|c| pseudo.hash(&c)),
    })
}

/// The instant a `ts` value stands for (spec §1: RFC 3339 text or epoch milliseconds, in
/// range), as validation reads it: formats that derive ids from instants use this too.
pub fn instant(v: &RawValue<'_>) -> Result<Millis, Reject> {
    match v {
        RawValue::Int(ms) if in_range(*ms) => Ok(*ms),
        RawValue::Int(_) => Err(Reject::TsOutOfRange),
        RawValue::Str(s) => parse_rfc3339(s).map_err(|e| match e {
            TsError::Syntax => Reject::BadTs,
            TsError::OutOfRange => Reject::TsOutOfRange,
        }),
        RawValue::Other(got) => Err(Reject::WrongType {
            field: "ts",
            expected: "an RFC 3339 string or an integer",
            got,
        }),
    }
}

/// The fields an event type cannot do without (spec §1), given which are present.
pub(crate) fn check_required(
    kind: EventType,
    call_id: bool,
    agent: bool,
    booking: bool,
) -> Result<(), Reject> {
    if !kind.is_agent_event() && !call_id {
        return Err(Reject::Missing("call_id"));
    }
    if (kind == EventType::Answered || kind.is_agent_event()) && !agent {
        return Err(Reject::Missing("agent"));
    }
    if kind == EventType::Booking && !booking {
        return Err(Reject::Missing("booking"));
    }
    Ok(())
}

/// A string field: absent, or 1..=128 Unicode code points.
fn text<'a>(v: Option<RawValue<'a>>, field: &'static str) -> Result<Option<Cow<'a, str>>, Reject> {
    match v {
        None => Ok(None),
        Some(RawValue::Str(s)) => {
            // chars <= bytes, so the count is needed only for long non-ASCII strings.
            let ok =
                !s.is_empty() && (s.len() <= MAX_TEXT_CHARS || s.chars().count() <= MAX_TEXT_CHARS);
            if ok {
                Ok(Some(s))
            } else {
                Err(Reject::BadLength(field))
            }
        }
        Some(RawValue::Int(_)) => Err(Reject::WrongType {
            field,
            expected: "a string",
            got: "a number",
        }),
        Some(RawValue::Other(got)) => Err(Reject::WrongType {
            field,
            expected: "a string",
            got,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str) -> Result<Event<'_>, Reject> {
        validate_line(line.as_bytes(), &Pseudonymizer::new([7; 32]))
    }

    #[test]
    fn accepts_minimal_events_of_each_family() {
        let e = check(r#"{"call_id":"c","type":"offered","ts":"2019-03-04T08:00:05.250+01:00"}"#)
            .expect("valid");
        assert_eq!(e.ts, 1_551_682_805_250);
        assert_eq!(e.kind, EventType::Offered);
        assert!(check(r#"{"type":"agent_login","ts":0,"agent":"op1"}"#).is_ok());
        assert!(check(r#"{"call_id":"c","type":"booking","ts":0,"booking":"move"}"#).is_ok());
        assert!(
            check(r#"{"call_id":"c","type":"answered","ts":0,"agent":"a","unknown":[1]}"#).is_ok()
        );
    }

    #[test]
    fn required_fields() {
        assert_eq!(
            check(r#"{"type":"offered","ts":0}"#),
            Err(Reject::Missing("call_id"))
        );
        assert_eq!(
            check(r#"{"call_id":null,"type":"offered","ts":0}"#),
            Err(Reject::Missing("call_id"))
        );
        assert_eq!(
            check(r#"{"call_id":"c","ts":0}"#),
            Err(Reject::Missing("type"))
        );
        assert_eq!(
            check(r#"{"call_id":"c","type":"offered"}"#),
            Err(Reject::Missing("ts"))
        );
        assert_eq!(
            check(r#"{"call_id":"c","type":"answered","ts":0}"#),
            Err(Reject::Missing("agent"))
        );
        assert_eq!(
            check(r#"{"type":"agent_pause","ts":0}"#),
            Err(Reject::Missing("agent"))
        );
        assert_eq!(
            check(r#"{"call_id":"c","type":"booking","ts":0}"#),
            Err(Reject::Missing("booking"))
        );
    }

    #[test]
    fn field_types_and_lengths_on_every_type() {
        assert!(matches!(
            check(r#"{"call_id":5,"type":"agent_login","ts":0,"agent":"a"}"#),
            Err(Reject::WrongType {
                field: "call_id",
                ..
            })
        ));
        assert_eq!(
            check(r#"{"call_id":"c","type":"offered","ts":0,"booking":"steal"}"#),
            Err(Reject::BadBooking)
        );
        assert_eq!(
            check(r#"{"call_id":"","type":"offered","ts":0}"#),
            Err(Reject::BadLength("call_id"))
        );
        let max = "é".repeat(128);
        assert!(check(&format!(r#"{{"call_id":"{max}","type":"offered","ts":0}}"#)).is_ok());
        let long = "a".repeat(129);
        assert_eq!(
            check(&format!(
                r#"{{"call_id":"c","type":"offered","ts":0,"reason":"{long}"}}"#
            )),
            Err(Reject::BadLength("reason"))
        );
        assert_eq!(
            check(r#"{"call_id":"c","type":"Offered","ts":0}"#),
            Err(Reject::BadType)
        );
        assert!(matches!(
            check(r#"{"call_id":"c","type":1,"ts":0}"#),
            Err(Reject::WrongType { field: "type", .. })
        ));
        assert!(matches!(
            check(r#"{"call_id":"c","type":"offered","ts":0,"caller":3901234}"#),
            Err(Reject::WrongType {
                field: "caller",
                ..
            })
        ));
    }

    #[test]
    fn ts_forms_and_range() {
        let base = |ts: &str| format!(r#"{{"call_id":"c","type":"offered","ts":{ts}}}"#);
        assert!(matches!(
            check(&base("1.5")),
            Err(Reject::WrongType { field: "ts", .. })
        ));
        assert!(matches!(
            check(&base("1e3")),
            Err(Reject::WrongType { field: "ts", .. })
        ));
        assert!(matches!(
            check(&base("true")),
            Err(Reject::WrongType { field: "ts", .. })
        ));
        assert_eq!(check(&base("-1")), Err(Reject::TsOutOfRange));
        assert_eq!(check(&base("4133980800000")), Err(Reject::TsOutOfRange));
        assert_eq!(
            check(&base("4133980799999")).map(|e| e.ts),
            Ok(4_133_980_799_999)
        );
        assert_eq!(
            check(&base("\"2019-03-04T08:00:05+0100\"")),
            Err(Reject::BadTs)
        );
        assert_eq!(
            check(&base("\"1969-12-31T23:59:59Z\"")),
            Err(Reject::TsOutOfRange)
        );
    }

    #[test]
    fn caller_is_hashed_not_kept() {
        let e = check(r#"{"call_id":"c","type":"offered","ts":0,"caller":"+390364111222"}"#)
            .expect("valid");
        let h = e.caller.expect("hashed");
        assert_eq!(h, Pseudonymizer::new([7; 32]).hash("+390364111222"));
        assert!(!format!("{e:?}").contains("390364111222"));
    }
}
