//! A store in memory, durable for nothing: the home of an engine that only mirrors a
//! stream someone else stores (the api role's live book of the events it follows in
//! Kafka, `netwait serve --role api --kafka`). Its commits are kept as they came, so
//! that the engine can read them back (the operators' presence when it starts watching
//! transitions); the owner bounds them by replacing the engine and its store.

use super::codec::Decoder;
use super::record::Record;
use super::{Batch, EventStore, LogPosition, StoreError};

/// See the module doc.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Each commit's encoded records, in commit order.
    commits: Vec<(LogPosition, Vec<u8>)>,
    end: LogPosition,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl EventStore for MemoryStore {
    fn replay(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<LogPosition, StoreError> {
        for (at, bytes) in self.commits.iter().filter(|(at, _)| *at >= from) {
            for rec in Decoder::new(bytes) {
                let rec = rec.map_err(|e| StoreError::Corrupt {
                    path: "<memory>".into(),
                    what: format!("the commit at {at} holds a {e}"),
                })?;
                visit(rec);
            }
        }
        Ok(self.end)
    }

    fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError> {
        if batch.is_empty() {
            return Ok(self.end);
        }
        let bytes = batch.parts().concat();
        let at = self.end;
        self.end += bytes.len() as u64;
        self.commits.push((at, bytes));
        Ok(self.end)
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::MetricsConfig;
    use crate::engine::Engine;

    #[test]
    fn an_engine_on_it_folds_and_reads_back_what_it_committed() {
        let mut engine = Engine::open(
            Box::new(MemoryStore::new()),
            [7; 16],
            MetricsConfig::default(),
        )
        .expect("open");
        let lines = [
            r#"{"type":"agent_login","ts":"2019-03-04T08:00:00+01:00","agent":"op1"}"#,
            r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#,
            r#"{"call_id":"a","type":"abandoned","ts":"2019-03-04T09:01:00+01:00"}"#,
        ];
        let p = crate::domain::privacy::Pseudonymizer::new([0; 32]);
        let records = || {
            lines.iter().map(|l| {
                Record::Event(
                    crate::domain::validate::validate_line(l.as_bytes(), &p).expect("valid"),
                )
            })
        };
        let sum = engine.ingest(records()).expect("ingest");
        assert_eq!(sum.accepted, 3);
        // The agent event is read back: presence is recalled from the store.
        engine.watch_transitions().expect("watch");
        assert_eq!(engine.presence().len(), 1);
        let again = engine.ingest(records()).expect("ingest again");
        assert_eq!((again.accepted, again.duplicate), (0, 3));
    }
}
