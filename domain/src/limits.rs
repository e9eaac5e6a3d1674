//! The limits of spec §1 and the event's field table, in one place: the JSON parser, the
//! plain-line fast path, the codec, the protobuf conversion and the argument rules all
//! read them from here.

use super::time::Millis;

/// Longest text field (`call_id`, `line`, `agent`, ...), in code points.
pub const MAX_TEXT_CHARS: usize = 128;
/// Longest text field in bytes (UTF-8 takes at most 4 bytes a code point).
pub const MAX_TEXT_BYTES: usize = 4 * MAX_TEXT_CHARS;
/// Longest accepted input line, terminator not counted.
pub const MAX_LINE_BYTES: usize = 65_536;

/// Years an instant or a query may fall in.
pub const YEARS: std::ops::RangeInclusive<i16> = 1970..=2100;
/// 1970-01-01T00:00Z: the first valid instant (the start of [`YEARS`]).
pub const MIN_TS: Millis = 0;
/// 2101-01-01T00:00Z: the first instant past the valid range (the end of [`YEARS`]).
pub const END_TS: Millis = 4_133_980_800_000;

/// The event's fields by their wire names, in slot order (see [`field_slot`]).
pub const FIELDS: [&str; 9] = [
    "call_id", "type", "ts", "event_id", "line", "agent", "booking", "reason", "caller",
];

/// Slot index of a field's wire name (its place in [`FIELDS`]).
pub fn field_slot(key: &str) -> Option<usize> {
    Some(match key {
        "call_id" => 0,
        "type" => 1,
        "ts" => 2,
        "event_id" => 3,
        "line" => 4,
        "agent" => 5,
        "booking" => 6,
        "reason" => 7,
        "caller" => 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{DAY, days_from_civil};

    #[test]
    fn the_instant_range_is_the_years_range() {
        assert_eq!(
            MIN_TS,
            days_from_civil(i64::from(*YEARS.start()), 1, 1) * DAY
        );
        assert_eq!(
            END_TS,
            days_from_civil(i64::from(*YEARS.end()) + 1, 1, 1) * DAY
        );
    }

    #[test]
    fn every_field_has_its_slot() {
        for (i, name) in FIELDS.iter().enumerate() {
            assert_eq!(field_slot(name), Some(i));
        }
        assert_eq!(field_slot("Call_id"), None);
    }
}
