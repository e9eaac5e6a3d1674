//! An event's known fields as found on the wire (a JSON line, a protobuf message, a PBX
//! row), before validation turns them into an [`Event`](super::event::Event).

use std::borrow::Cow;

/// A field's value before validation. `null` is not represented: it counts as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue<'a> {
    Str(Cow<'a, str>),
    /// A JSON number without fraction or exponent that fits in i64.
    Int(i64),
    /// Any other JSON value, by its kind name (for the reject reason).
    Other(&'static str),
}

/// The known fields of an event as found on the wire (JSON or protobuf).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawEvent<'a> {
    pub call_id: Option<RawValue<'a>>,
    pub kind: Option<RawValue<'a>>,
    pub ts: Option<RawValue<'a>>,
    pub event_id: Option<RawValue<'a>>,
    pub line: Option<RawValue<'a>>,
    pub agent: Option<RawValue<'a>>,
    pub booking: Option<RawValue<'a>>,
    pub reason: Option<RawValue<'a>>,
    pub caller: Option<RawValue<'a>>,
}

impl<'a> RawEvent<'a> {
    /// The field of slot `index` (see [`super::limits::field_slot`]).
    pub(crate) fn slot(&mut self, index: usize) -> &mut Option<RawValue<'a>> {
        match index {
            0 => &mut self.call_id,
            1 => &mut self.kind,
            2 => &mut self.ts,
            3 => &mut self.event_id,
            4 => &mut self.line,
            5 => &mut self.agent,
            6 => &mut self.booking,
            7 => &mut self.reason,
            _ => &mut self.caller,
        }
    }
}
