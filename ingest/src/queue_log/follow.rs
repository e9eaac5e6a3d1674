//! queue_log decoded as it grows (a followed file): the same rules as a whole import
//! ([`super::decode`]), with "earliest" read as "first seen" — a log is written in time
//! order, so the first ENTERQUEUE of a callid to arrive is its earliest. What a call's
//! earlier rows said is kept per callid (for a day after its last row: a call is
//! resolved within 6 hours), so that its rows may arrive over many batches; the call
//! book merges the events of a call across commits as ever.

use super::rows::{Item, Row};
use super::verb::Verb;
use super::{QueueLogConfig, RowFacts, row_events};
use crate::decoded::Unit;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::time::{HOUR, Millis};
use std::collections::HashMap;

/// What the rows of a call seen so far say.
#[derive(Debug, Default)]
struct Seen {
    entered: bool,
    refused: bool,
    did_line: Option<String>,
    last_ms: Millis,
}

/// A callid is forgotten this long after its last row.
const KEPT: Millis = 24 * HOUR;

/// The state of one followed queue_log.
#[derive(Debug, Default)]
pub struct Follow {
    calls: HashMap<String, Seen>,
    newest_ms: Millis,
    rows_since_prune: usize,
}

impl Follow {
    /// Learns what `items` say without making events of them: rows read before a
    /// restart, so that the rows after it are decoded as if nothing had stopped.
    pub fn learn(&mut self, items: &[Item<'_>], cfg: &QueueLogConfig) {
        for item in items {
            if let Item::Row(row) = item {
                self.facts_of(row, cfg);
            }
        }
    }

    /// The units of `items` (rows of the file in order, after those already decoded).
    pub fn decode<'a>(
        &mut self,
        items: Vec<Item<'a>>,
        cfg: &QueueLogConfig,
        pseudo: &Pseudonymizer,
    ) -> Vec<Unit<'a>> {
        let mut units = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Damaged(unit) => units.push(unit),
                Item::Row(row) => {
                    let (first_enter, first_refusal_never_joined, did_line) =
                        self.facts_of(&row, cfg);
                    let facts = RowFacts {
                        first_enter,
                        first_refusal_never_joined,
                        did_line: did_line.as_deref(),
                    };
                    let events = row_events(&row, facts, cfg, pseudo);
                    if !events.is_empty() {
                        units.push(Unit {
                            line: row.line,
                            span: row.span.clone(),
                            decoded: Ok(events),
                        });
                    }
                }
            }
        }
        self.prune();
        units
    }

    /// Notes a row; says whether it is its call's first ENTERQUEUE, its first refusal
    /// without one, and the line a DID gave the call.
    fn facts_of(&mut self, row: &Row<'_>, cfg: &QueueLogConfig) -> (bool, bool, Option<String>) {
        let seen = self.calls.entry(row.callid.to_string()).or_default();
        seen.last_ms = seen.last_ms.max(row.ms);
        self.newest_ms = self.newest_ms.max(row.ms);
        self.rows_since_prune += 1;
        let mut first_enter = false;
        let mut first_refusal = false;
        match Verb::of(&row.verb) {
            Verb::EnterQueue => {
                first_enter = !seen.entered;
                seen.entered = true;
            }
            Verb::Overflow => {
                first_refusal = !seen.entered && !seen.refused;
                seen.refused = true;
            }
            Verb::Did if seen.did_line.is_none() => {
                seen.did_line = cfg.did_lines.get(row.data1.as_ref()).cloned();
            }
            _ => {}
        }
        (first_enter, first_refusal, seen.did_line.clone())
    }

    /// Forgets the calls whose last row is a day older than the newest row.
    fn prune(&mut self) {
        if self.rows_since_prune < 10_000 {
            return;
        }
        self.rows_since_prune = 0;
        let horizon = self.newest_ms - KEPT;
        self.calls.retain(|_, s| s.last_ms >= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue_log::rows::read_file_layout;

    fn kinds(units: &[Unit<'_>]) -> Vec<String> {
        units
            .iter()
            .flat_map(|u| u.decoded.as_ref().expect("decoded").iter())
            .map(|e| match &e.kind {
                Some(netwait_aggregator::domain::json_line::RawValue::Str(s)) => s.to_string(),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn rows_split_over_batches_decode_as_the_whole_file() {
        let log = "1000|1000.1|cup|NONE|ENTERQUEUE||333|1\n\
                   1010|1000.1|cup|NONE|EXITWITHTIMEOUT|1|1|10\n\
                   1011|1000.1|other|NONE|ENTERQUEUE||333|1\n\
                   1020|1000.1|other|Agent/1|CONNECT|9|1.2|1\n\
                   1030|1000.1|other|Agent/1|COMPLETECALLER|9|10|1\n\
                   1040|1040.2|cup|NONE|FULL|\n";
        let p = Pseudonymizer::new([1; 32]);
        let cfg = QueueLogConfig::default();
        let whole = super::super::decode(vec![read_file_layout(log.as_bytes())], &cfg, &p);
        let want = kinds(&whole[0]);
        for cut in 1..6 {
            let split = log
                .match_indices('\n')
                .nth(cut - 1)
                .map_or(0, |(i, _)| i + 1);
            let mut f = Follow::default();
            let mut got = kinds(&f.decode(read_file_layout(&log.as_bytes()[..split]), &cfg, &p));
            got.extend(kinds(&f.decode(
                read_file_layout(&log.as_bytes()[split..]),
                &cfg,
                &p,
            )));
            assert_eq!(got, want, "cut after row {cut}");
            // Learning the first part (a restart) and decoding the rest gives the rest.
            let mut f = Follow::default();
            f.learn(&read_file_layout(&log.as_bytes()[..split]), &cfg);
            let rest = kinds(&f.decode(read_file_layout(&log.as_bytes()[split..]), &cfg, &p));
            assert_eq!(
                rest,
                want[want.len() - rest.len()..],
                "resumed after row {cut}"
            );
        }
        // Only the first ENTERQUEUE makes offered/queued/announcement_end.
        assert_eq!(want.iter().filter(|k| *k == "offered").count(), 2);
    }
}
