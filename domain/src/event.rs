//! The canonical call event of spec §1, once validated.

use super::time::Millis;
use std::borrow::Cow;

/// Event `type` (spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventType {
    Offered = 0,
    AnnouncementEnd = 1,
    Queued = 2,
    Answered = 3,
    Ended = 4,
    Abandoned = 5,
    Overflow = 6,
    Booking = 7,
    AgentLogin = 8,
    AgentLogout = 9,
    AgentPause = 10,
    AgentResume = 11,
}

impl EventType {
    pub const ALL: [EventType; 12] = [
        Self::Offered,
        Self::AnnouncementEnd,
        Self::Queued,
        Self::Answered,
        Self::Ended,
        Self::Abandoned,
        Self::Overflow,
        Self::Booking,
        Self::AgentLogin,
        Self::AgentLogout,
        Self::AgentPause,
        Self::AgentResume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::AnnouncementEnd => "announcement_end",
            Self::Queued => "queued",
            Self::Answered => "answered",
            Self::Ended => "ended",
            Self::Abandoned => "abandoned",
            Self::Overflow => "overflow",
            Self::Booking => "booking",
            Self::AgentLogin => "agent_login",
            Self::AgentLogout => "agent_logout",
            Self::AgentPause => "agent_pause",
            Self::AgentResume => "agent_resume",
        }
    }

    /// Exact, case-sensitive match of the spec's names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "offered" => Self::Offered,
            "announcement_end" => Self::AnnouncementEnd,
            "queued" => Self::Queued,
            "answered" => Self::Answered,
            "ended" => Self::Ended,
            "abandoned" => Self::Abandoned,
            "overflow" => Self::Overflow,
            "booking" => Self::Booking,
            "agent_login" => Self::AgentLogin,
            "agent_logout" => Self::AgentLogout,
            "agent_pause" => Self::AgentPause,
            "agent_resume" => Self::AgentResume,
            _ => return None,
        })
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// Operator presence events carry no `call_id`.
    pub fn is_agent_event(self) -> bool {
        matches!(
            self,
            Self::AgentLogin | Self::AgentLogout | Self::AgentPause | Self::AgentResume
        )
    }
}

/// `booking` field of a `booking` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BookingKind {
    Book = 0,
    Cancel = 1,
    Move = 2,
}

impl BookingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Book => "book",
            Self::Cancel => "cancel",
            Self::Move => "move",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "book" => Some(Self::Book),
            "cancel" => Some(Self::Cancel),
            "move" => Some(Self::Move),
            _ => None,
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::Book, Self::Cancel, Self::Move]
            .get(usize::from(v))
            .copied()
    }
}

/// Keyed hash of a calling number: the clear number never gets past validation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerHash(pub [u8; 16]);

impl std::fmt::Debug for CallerHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The default service line when `offered` has none (spec §1).
pub const DEFAULT_LINE: &str = "cup";

/// A valid event (spec §1). Strings borrow from the input line where no escape was decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: EventType,
    pub ts: Millis,
    pub call_id: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    pub line: Option<Cow<'a, str>>,
    pub agent: Option<Cow<'a, str>>,
    pub booking: Option<BookingKind>,
    pub reason: Option<Cow<'a, str>>,
    pub caller: Option<CallerHash>,
}

impl Event<'_> {
    pub fn into_owned(self) -> Event<'static> {
        fn own(s: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            s.map(|s| Cow::Owned(s.into_owned()))
        }
        Event {
            kind: self.kind,
            ts: self.ts,
            call_id: own(self.call_id),
            event_id: own(self.event_id),
            line: own(self.line),
            agent: own(self.agent),
            booking: self.booking,
            reason: own(self.reason),
            caller: self.caller,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip_and_are_case_sensitive() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(EventType::from_u8(t as u8), Some(t));
        }
        assert_eq!(EventType::parse("Offered"), None);
        assert_eq!(EventType::parse("hangup"), None);
        assert!(EventType::AgentPause.is_agent_event());
        assert!(!EventType::Booking.is_agent_event());
    }
}
