//! What each queue_log verb means for the canonical events (issue 13's mapping; the
//! README lists it).

use netwait_aggregator::domain::event::EventType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `queued` (and, for a callid's earliest, `offered` and `announcement_end`).
    EnterQueue,
    /// `answered` by the row's agent.
    Connect,
    /// `ended`: COMPLETECALLER, COMPLETEAGENT and the transfers.
    End,
    /// `abandoned`: ABANDON, EXITWITHKEY.
    Abandon,
    /// `overflow` with the verb as reason; an `offered` too when the call never joined.
    Overflow,
    /// An operator presence event.
    Agent(EventType),
    /// The number dialled: may set the line of the call (configuration), no event.
    Did,
    /// Known to carry nothing for the figures (ring attempts, restarts, outbound calls).
    Skip,
    /// Not a verb netwait knows: skipped too (never rejected).
    Unknown,
}

impl Verb {
    pub fn of(verb: &str) -> Self {
        match verb {
            "ENTERQUEUE" => Self::EnterQueue,
            "CONNECT" => Self::Connect,
            "COMPLETECALLER" | "COMPLETEAGENT" | "BLINDTRANSFER" | "ATTENDEDTRANSFER"
            | "TRANSFER" => Self::End,
            "ABANDON" | "EXITWITHKEY" => Self::Abandon,
            "EXITWITHTIMEOUT" | "EXITEMPTY" | "FULL" | "JOINEMPTY" | "JOINUNAVAIL" | "CLOSED" => {
                Self::Overflow
            }
            v if v.starts_with("DIVERT_") => Self::Overflow,
            "ADDMEMBER" | "AGENTLOGIN" | "AGENTCALLBACKLOGIN" => Self::Agent(EventType::AgentLogin),
            "REMOVEMEMBER" | "AGENTLOGOFF" | "AGENTCALLBACKLOGOFF" | "LOGOFF" => {
                Self::Agent(EventType::AgentLogout)
            }
            "PAUSE" | "PAUSEALL" => Self::Agent(EventType::AgentPause),
            "UNPAUSE" | "UNPAUSEALL" => Self::Agent(EventType::AgentResume),
            "DID" => Self::Did,
            "RINGNOANSWER" | "RINGCANCELED" | "QUEUESTART" | "CONFIGRELOAD" | "SYSCOMPAT"
            | "INFO" | "PAUSECUSTOM" | "UPDATEFIELD" | "REASON" => Self::Skip,
            v if v.starts_with("OUT") => Self::Skip,
            _ => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_map_as_the_issue_says() {
        assert_eq!(Verb::of("DIVERT_HOLDTIME"), Verb::Overflow);
        assert_eq!(Verb::of("JOINUNAVAIL"), Verb::Overflow);
        assert_eq!(Verb::of("EXITWITHKEY"), Verb::Abandon);
        assert_eq!(Verb::of("ATTENDEDTRANSFER"), Verb::End);
        assert_eq!(Verb::of("UNPAUSEALL"), Verb::Agent(EventType::AgentResume));
        assert_eq!(
            Verb::of("AGENTCALLBACKLOGOFF"),
            Verb::Agent(EventType::AgentLogout)
        );
        assert_eq!(Verb::of("OUTDIAL"), Verb::Skip);
        assert_eq!(Verb::of("RINGCANCELED"), Verb::Skip);
        assert_eq!(Verb::of("WHATEVER"), Verb::Unknown);
        assert_eq!(Verb::of("connect"), Verb::Unknown, "verbs are upper case");
    }
}
