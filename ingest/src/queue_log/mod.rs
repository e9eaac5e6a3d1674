//! Asterisk `queue_log` (both layouts) to canonical events. The rules, listed in the
//! README, are issue 13's: a callid is a call; its earliest ENTERQUEUE makes its
//! `offered` (at the callid's epoch prefix when that is not later), `queued` and
//! `announcement_end`; CONNECT answers, COMPLETE*/transfers end, ABANDON/EXITWITHKEY
//! abandon, the refusals and exits overflow (verb as reason; a call that never joined
//! gets its `offered` from its earliest refusal); member and agent verbs are presence
//! events; everything else is skipped. Rules that look across rows (the earliest
//! ENTERQUEUE, the DID of a call) look across every input decoded together.

pub mod follow;
pub mod rows;
pub mod verb;

use crate::decoded::{Unit, derived_id, text};
use netwait_aggregator::domain::event::EventType;
use netwait_aggregator::domain::json_line::{RawEvent, RawValue};
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::time::{Millis, SECOND};
use rows::{Item, Row};
use std::collections::HashMap;
use verb::Verb;

/// When the information message the net wait counts from ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Announcement {
    /// Played before `Queue()`: it ends when the call joins the queue (default).
    #[default]
    BeforeQueue,
    /// Played inside the queue: it ends this long after the call joins.
    InQueue(Millis),
}

/// The queue_log part of the configuration (`[queue_log]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueLogConfig {
    pub announcement: Announcement,
    /// Queue name -> service line (a queue not listed is its own line).
    pub queue_lines: HashMap<String, String>,
    /// Number dialled (a DID row's data1) -> service line; wins over the queue's.
    pub did_lines: HashMap<String, String>,
}

/// What the rows of one callid say across all inputs: which row makes its `offered`,
/// and the line a DID gives it. Earliest by time, then by row text, so that neither the
/// order of the files nor of the rows changes the choice.
#[derive(Default)]
struct CallFacts<'r> {
    first_enter: Option<(Millis, &'r str)>,
    first_refusal: Option<(Millis, &'r str)>,
    did: Option<(Millis, &'r str, &'r str)>,
}

/// What the rules that look across rows say of one row.
#[derive(Debug, Clone, Copy, Default)]
struct RowFacts<'f> {
    /// The row is its call's earliest ENTERQUEUE: it makes the call's `offered`.
    first_enter: bool,
    /// The row is the earliest refusal of a call that never joined: it makes its `offered`.
    first_refusal_never_joined: bool,
    /// The line a DID row gave the call.
    did_line: Option<&'f str>,
}

impl CallFacts<'_> {
    fn of_row(&self, row: &Row<'_>) -> RowFacts<'_> {
        let is = |slot: Option<(Millis, &str)>| slot == Some((row.ms, row.text.as_ref()));
        RowFacts {
            first_enter: is(self.first_enter),
            first_refusal_never_joined: self.first_enter.is_none() && is(self.first_refusal),
            did_line: self.did.map(|(_, _, line)| line),
        }
    }
}

fn earlier<'r>(slot: &mut Option<(Millis, &'r str)>, row: &'r Row<'_>) {
    if slot.is_none_or(|(ms, text)| (row.ms, row.text.as_ref()) < (ms, text)) {
        *slot = Some((row.ms, &row.text));
    }
}

/// Maps the rows of several inputs (read with [`rows`]) to units, input by input.
pub fn decode<'a>(
    inputs: Vec<Vec<Item<'a>>>,
    cfg: &QueueLogConfig,
    pseudo: &Pseudonymizer,
) -> Vec<Vec<Unit<'a>>> {
    let mut facts: HashMap<&str, CallFacts<'_>> = HashMap::new();
    for item in inputs.iter().flatten() {
        let Item::Row(row) = item else { continue };
        let f = || CallFacts::default();
        match Verb::of(&row.verb) {
            Verb::EnterQueue => earlier(
                &mut facts.entry(&row.callid).or_insert_with(f).first_enter,
                row,
            ),
            Verb::Overflow => earlier(
                &mut facts.entry(&row.callid).or_insert_with(f).first_refusal,
                row,
            ),
            Verb::Did => {
                if let Some(line) = cfg.did_lines.get(row.data1.as_ref()) {
                    let slot = &mut facts.entry(&row.callid).or_insert_with(f).did;
                    if slot.is_none_or(|(ms, text, _)| (row.ms, row.text.as_ref()) < (ms, text)) {
                        *slot = Some((row.ms, &row.text, line));
                    }
                }
            }
            _ => {}
        }
    }
    inputs
        .iter()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match item {
                    Item::Damaged(unit) => Some(Unit {
                        line: unit.line,
                        span: unit.span.clone(),
                        decoded: unit.decoded.clone(),
                    }),
                    Item::Row(row) => {
                        let facts = facts
                            .get(row.callid.as_ref())
                            .map(|f| f.of_row(row))
                            .unwrap_or_default();
                        let events = row_events(row, facts, cfg, pseudo);
                        (!events.is_empty()).then(|| Unit {
                            line: row.line,
                            span: row.span.clone(),
                            decoded: Ok(events),
                        })
                    }
                })
                .collect()
        })
        .collect()
}

/// The `offered` instant of a call: the epoch prefix of its callid
/// (`1658129428.1048` -> 1658129428 s) when it reads and is not after `ms`, else `ms`.
fn offered_ms(callid: &str, ms: Millis) -> Millis {
    let prefix = callid.split('.').next().unwrap_or("");
    match prefix.parse::<i64>() {
        Ok(s) if !prefix.starts_with(['+', '-']) && (0..=ms / SECOND).contains(&s) => s * SECOND,
        _ => ms,
    }
}

/// The canonical events a row implies (none for skipped rows).
fn row_events<'a>(
    row: &Row<'a>,
    facts: RowFacts<'_>,
    cfg: &QueueLogConfig,
    pseudo: &Pseudonymizer,
) -> Vec<RawEvent<'a>> {
    let event = |kind: EventType, ms: Millis| RawEvent {
        call_id: (!kind.is_agent_event()).then(|| RawValue::Str(row.callid.clone())),
        kind: text(kind.as_str()),
        ts: Some(RawValue::Int(ms)),
        event_id: text(derived_id(
            &format!("ql:{}", kind.as_str()),
            &row.text,
            pseudo,
        )),
        ..RawEvent::default()
    };
    let offered = || {
        let line = facts
            .did_line
            .map(str::to_owned)
            .or_else(|| cfg.queue_lines.get(row.queue.as_ref()).cloned())
            .unwrap_or_else(|| row.queue.to_string());
        RawEvent {
            line: text(line),
            caller: row
                .caller
                .clone()
                .filter(|c| !c.is_empty())
                .map(RawValue::Str),
            ..event(EventType::Offered, offered_ms(&row.callid, row.ms))
        }
    };
    match Verb::of(&row.verb) {
        Verb::EnterQueue if facts.first_enter => {
            let message_end = match cfg.announcement {
                Announcement::BeforeQueue => row.ms,
                Announcement::InQueue(ms) => row.ms + ms,
            };
            vec![
                offered(),
                event(EventType::Queued, row.ms),
                event(EventType::AnnouncementEnd, message_end),
            ]
        }
        Verb::Connect => vec![RawEvent {
            agent: Some(RawValue::Str(row.agent.clone())).filter(|_| !row.agent.is_empty()),
            ..event(EventType::Answered, row.ms)
        }],
        Verb::End => vec![event(EventType::Ended, row.ms)],
        Verb::Abandon => vec![event(EventType::Abandoned, row.ms)],
        Verb::Overflow => {
            let overflow = RawEvent {
                reason: Some(RawValue::Str(row.verb.clone())),
                ..event(EventType::Overflow, row.ms)
            };
            if facts.first_refusal_never_joined {
                vec![offered(), overflow]
            } else {
                vec![overflow]
            }
        }
        // A presence row without an operator says nothing.
        Verb::Agent(kind) if !matches!(row.agent.as_ref(), "" | "NONE") => vec![RawEvent {
            agent: Some(RawValue::Str(row.agent.clone())),
            ..event(kind, row.ms)
        }],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
