//! The aggregator engine: the domain's [`CallBook`] kept in step with a durable
//! [`EventStore`]. Ingest folds events in and commits them; queries read the book.

use crate::domain::callbook::{CallBook, CallsHalf};
use crate::domain::config::MetricsConfig;
use crate::domain::dedupe::{DedupeKey, KeyHasher};
use crate::domain::reports::{self, Half, SlaQuery, SlaYear, Table1, VolumeCheck};
use crate::domain::time::Millis;
use crate::store::codec::{DeadLetter, Decoder, Record, encode_record};
use crate::store::{Batch, EventStore, LogPosition, StoreError, snapshot};
use jiff::civil::Date;

/// Encoded input records (see `codec`) with the dedupe key of each event record, in order.
#[derive(Debug, Default)]
pub struct EncodedChunk {
    pub bytes: Vec<u8>,
    pub keys: Vec<DedupeKey>,
}

/// Counts of one ingest call (or of a whole import).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

impl std::ops::AddAssign for IngestSummary {
    fn add_assign(&mut self, o: Self) {
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.rejected += o.rejected;
    }
}

pub struct Engine {
    book: CallBook,
    store: Box<dyn EventStore>,
    config: MetricsConfig,
    /// Log position covered by the book.
    position: LogPosition,
    /// Position of the last checkpoint written or loaded.
    checkpointed: LogPosition,
    poisoned: bool,
    batch: Batch,
}

impl Engine {
    /// Opens the engine on a store: loads its checkpoint, replays the rest of its log.
    pub fn open(
        store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
    ) -> Result<Self, StoreError> {
        Self::open_with(store, dedupe_secret, config, true)
    }

    /// Opens for queries only: when the checkpoint covers the whole log, the dedupe keys
    /// and call ids are not loaded (much faster); otherwise this is [`Self::open`].
    /// [`Self::stage`] fails on such an engine.
    pub fn open_for_queries(
        store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
    ) -> Result<Self, StoreError> {
        Self::open_with(store, dedupe_secret, config, false)
    }

    fn open_with(
        mut store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
        for_folding: bool,
    ) -> Result<Self, StoreError> {
        let fresh = || (CallBook::new(dedupe_secret), 0);
        let (mut book, from) = match store.load_checkpoint(for_folding)? {
            None => fresh(),
            Some(cp) if for_folding && cp.fold.is_none() => {
                tracing::warn!("checkpoint incomplete; replaying the whole log");
                fresh()
            }
            Some(cp) => match snapshot::decode(&cp.query, cp.fold.as_deref(), dedupe_secret) {
                Some(book) => (book, cp.position),
                None => {
                    tracing::warn!("checkpoint damaged; replaying the whole log");
                    fresh()
                }
            },
        };
        let mut replayed = 0u64;
        let position = if book.is_read_only() {
            // Events after the checkpoint need dedupe: fall back to a full open.
            let end = store.replay(from, &mut |rec| {
                if let Record::Event(_) = rec {
                    replayed += 1;
                }
            })?;
            if replayed > 0 {
                return Self::open_with(store, dedupe_secret, config, true);
            }
            end
        } else {
            store.replay(from, &mut |rec| {
                if let Record::Event(ev) = rec {
                    book.apply(&ev);
                    replayed += 1;
                }
            })?
        };
        tracing::info!(
            calls = book.calls(),
            events = book.distinct_events(),
            replayed,
            read_only = book.is_read_only(),
            "store opened"
        );
        Ok(Self {
            book,
            store,
            config,
            position,
            checkpointed: from,
            poisoned: false,
            batch: Batch::default(),
        })
    }

    /// Makes room for about `events` more events.
    pub fn reserve(&mut self, events: usize) {
        if !self.book.is_read_only() {
            self.book.reserve(events);
        }
    }

    /// True after a failed commit: the book may hold events the log does not, so
    /// neither ingest nor queries should use it until a restart rebuilds it from the log.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn book(&self) -> &CallBook {
        &self.book
    }

    /// Folds items in (first received wins) and commits them as one durable batch.
    pub fn ingest<'a>(
        &mut self,
        items: impl IntoIterator<Item = Record<'a>>,
    ) -> Result<IngestSummary, StoreError> {
        let mut encoded = Vec::new();
        for item in items {
            encode_record(&mut encoded, &item);
        }
        let sum = self.stage(&encoded)?;
        self.commit()?;
        Ok(sum)
    }

    /// Folds encoded input records (see `codec`) into the book and the pending commit:
    /// accepted events and dead letters are staged, duplicates dropped. Nothing is
    /// durable before [`Self::commit`].
    pub fn stage(&mut self, encoded: &[u8]) -> Result<IngestSummary, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if self.book.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        let keys = event_keys(&self.book, encoded)?;
        let (mut dedupe, mut calls) = self.book.split_fold();
        let mut accepted = Vec::new();
        dedupe.first_seen_all(&keys, &mut accepted);
        apply_chunk(&mut calls, &mut self.batch, encoded.to_vec(), &accepted)
    }

    /// The dedupe key function of this engine: parse workers compute the keys of
    /// [`EncodedChunk`]s with it.
    pub fn key_hasher(&self) -> KeyHasher {
        self.book.key_hasher().clone()
    }

    /// Stages a stream of encoded chunks (with their keys) on three threads: the calling
    /// thread decides duplicates (in input order), a second applies the accepted events
    /// to the call states, a third commits the batches behind them, so that disk writes
    /// overlap with folding. Returns once all of it is durable.
    pub fn stage_stream(
        &mut self,
        chunks: impl Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
    ) -> Result<IngestSummary, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if self.book.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        // Whatever was staged before goes first.
        self.commit()?;
        let store = &mut self.store;
        let (mut dedupe, mut calls) = self.book.split_fold();
        let (to_writer, from_apply) = std::sync::mpsc::sync_channel::<Batch>(2);
        let (to_apply, from_dedupe) = std::sync::mpsc::sync_channel::<(EncodedChunk, Vec<bool>)>(4);
        let result = std::thread::scope(|s| {
            let writer = s.spawn(move || -> Result<LogPosition, StoreError> {
                let mut end = None;
                for batch in from_apply {
                    end = Some(store.commit(&batch)?);
                }
                end.map_or_else(|| store.commit(&Batch::default()), Ok)
            });
            let applier = s.spawn(move || -> Result<IngestSummary, StoreError> {
                let mut sum = IngestSummary::default();
                let mut batch = Batch::default();
                for (chunk, accepted) in from_dedupe {
                    sum += apply_chunk(&mut calls, &mut batch, chunk.bytes, &accepted)?;
                    if batch.len() >= commit_bytes
                        && to_writer.send(std::mem::take(&mut batch)).is_err()
                    {
                        break; // the writer failed: its error is reported by the caller
                    }
                }
                if !batch.is_empty() {
                    let _ = to_writer.send(batch);
                }
                Ok(sum)
            });
            for chunk in chunks {
                let mut accepted = Vec::new();
                dedupe.first_seen_all(&chunk.keys, &mut accepted);
                if to_apply.send((chunk, accepted)).is_err() {
                    break; // the applier failed: its error is reported below
                }
            }
            drop(to_apply);
            let panicked = |what: &str| StoreError::Corrupt {
                path: format!("<{what}>"),
                what: format!("{what} thread panicked"),
            };
            let applied = applier.join().unwrap_or_else(|_| Err(panicked("applier")));
            let written = writer.join().unwrap_or_else(|_| Err(panicked("writer")));
            applied.and_then(|sum| written.map(|end| (sum, end)))
        });
        match result {
            Ok((sum, end)) => {
                self.position = end;
                Ok(sum)
            }
            Err(e) => {
                // The book may hold events the log does not.
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Makes everything staged durable.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        match self.store.commit(&self.batch) {
            Ok(pos) => {
                self.position = pos;
                self.batch.clear();
                Ok(())
            }
            Err(e) => {
                // The book already holds events the log does not: refuse further work
                // until a restart rebuilds the book from the log.
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Writes a checkpoint when the log grew since the last one.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        if self.poisoned || self.book.is_read_only() || self.position == self.checkpointed {
            return Ok(());
        }
        let (query, fold) = snapshot::encode(&self.book);
        self.store.save_checkpoint(self.position, &query, &fold)?;
        self.checkpointed = self.position;
        Ok(())
    }

    /// Log bytes written since the last checkpoint.
    pub fn uncheckpointed(&self) -> u64 {
        self.position.saturating_sub(self.checkpointed)
    }

    /// Visits every dead letter ever stored, oldest first.
    pub fn dead_letters(
        &mut self,
        visit: &mut dyn FnMut(&DeadLetter<'_>),
    ) -> Result<(), StoreError> {
        self.store.replay(0, &mut |rec| {
            if let Record::DeadLetter(d) = rec {
                visit(&d);
            }
        })?;
        Ok(())
    }

    pub fn table1(
        &self,
        wall: Millis,
        from: Date,
        to: Date,
        line: Option<String>,
        threshold_ms: Option<Millis>,
    ) -> Table1 {
        let now = self.book.clock(wall);
        reports::table1(
            self.book.records(now),
            &self.config,
            from,
            to,
            line,
            threshold_ms.unwrap_or(self.config.threshold_ms),
        )
    }

    pub fn sla_year(
        &self,
        wall: Millis,
        year: i16,
        line: Option<String>,
        threshold_ms: Option<Millis>,
        target: Option<f64>,
    ) -> SlaYear {
        let now = self.book.clock(wall);
        let q = SlaQuery {
            year,
            line,
            threshold_ms: threshold_ms.unwrap_or(self.config.threshold_ms),
            target: target.unwrap_or(self.config.target),
        };
        reports::sla_year(self.book.records(now), &self.config, q)
    }

    pub fn volume(&self, wall: Millis, half: Half) -> VolumeCheck {
        let now = self.book.clock(wall);
        reports::volume_check(self.book.records(now), &self.config, half)
    }
}

/// The dedupe key of every event record of `encoded`, in order (decoding each event).
fn event_keys(book: &CallBook, encoded: &[u8]) -> Result<Vec<DedupeKey>, StoreError> {
    let mut keys = Vec::new();
    for rec in Decoder::new(encoded) {
        match rec {
            Ok(Record::Event(ev)) => keys.push(book.key(&ev)),
            Ok(Record::DeadLetter(_)) => {}
            Err(e) => return Err(corrupt_input(e.to_string())),
        }
    }
    Ok(keys)
}

fn corrupt_input(what: String) -> StoreError {
    StoreError::Corrupt {
        path: "<staged input>".into(),
        what,
    }
}

/// Applies the accepted events of `encoded` (`accepted`: one flag per event record, in
/// order) and appends what is kept (accepted events, dead letters, in input order) to
/// `batch`. When everything is kept (the usual case) the input itself becomes the part.
fn apply_chunk(
    calls: &mut CallsHalf<'_>,
    batch: &mut Batch,
    encoded: Vec<u8>,
    accepted: &[bool],
) -> Result<IngestSummary, StoreError> {
    let mut flags = accepted.iter();
    let mut sum = IngestSummary::default();
    // Kept bytes, copied only from the first dropped record on.
    let mut filtered: Option<Vec<u8>> = None;
    let mut kept = 0u32;
    let mut records = Decoder::new(&encoded);
    let mut start = 0;
    while let Some(rec) = records.next_fold() {
        let rec = rec.map_err(|e| corrupt_input(e.to_string()))?;
        let end = records.position();
        let keep = match rec {
            Some(fold) => {
                let first = *flags
                    .next()
                    .ok_or_else(|| corrupt_input("fewer keys than events".into()))?;
                if first {
                    calls.apply(fold);
                    sum.accepted += 1;
                } else {
                    sum.duplicate += 1;
                }
                first
            }
            None => {
                sum.rejected += 1;
                true
            }
        };
        match (&mut filtered, keep) {
            (Some(f), true) => f.extend_from_slice(&encoded[start..end]),
            (None, false) => filtered = Some(encoded[..start].to_vec()),
            _ => {}
        }
        kept += u32::from(keep);
        start = end;
    }
    let part = filtered.unwrap_or(encoded);
    if !part.is_empty() {
        batch.parts.push(part);
        batch.records += kept;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::privacy::Pseudonymizer;
    use crate::domain::validate::validate_line;
    use crate::store::embedded::EmbeddedStore;

    const LINES: [&str; 4] = [
        r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#,
        r#"{"call_id":"a","type":"announcement_end","ts":"2019-03-04T09:00:40+01:00"}"#,
        r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:01:40+01:00","agent":"op"}"#,
        r#"{"call_id":"a","type":"booking","ts":"2019-03-04T09:02:00+01:00","booking":"book"}"#,
    ];

    fn items(p: &Pseudonymizer) -> Vec<Record<'static>> {
        LINES
            .iter()
            .map(|l| Record::Event(validate_line(l.as_bytes(), p).expect("valid")))
            .collect()
    }

    fn open(dir: &std::path::Path) -> Engine {
        let store = EmbeddedStore::open(dir).expect("store");
        Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine")
    }

    #[test]
    fn figures_survive_reopen_with_and_without_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let d = |s| crate::domain::time::parse_date(s).expect("date");
        let mut e = open(dir.path());
        let s = e.ingest(items(&p)).expect("ingest");
        assert_eq!(
            s,
            IngestSummary {
                accepted: 4,
                duplicate: 0,
                rejected: 0
            }
        );
        let t = e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
        assert_eq!((t.figures.answered, t.figures.bookings), (1, 1));
        assert_eq!(t.figures.avg_wait_s(), Some(60.0));
        drop(e);
        let mut e = open(dir.path());
        assert_eq!(e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
        let again = e.ingest(items(&p)).expect("ingest");
        assert_eq!(again.duplicate, 4);
        e.checkpoint().expect("checkpoint");
        drop(e);
        let e = open(dir.path());
        assert_eq!(e.uncheckpointed(), 0);
        assert_eq!(e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
        drop(e);
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let mut q = Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
            .expect("engine");
        assert!(q.book().is_read_only());
        assert_eq!(q.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
        assert!(matches!(q.ingest(items(&p)), Err(StoreError::ReadOnly)));
        drop(q);
        // A log tail past the checkpoint makes a query-only open fold it in.
        let mut e = open(dir.path());
        let extra = r#"{"call_id":"b","type":"overflow","ts":"2019-03-05T09:00:00+01:00"}"#;
        e.ingest([Record::Event(
            validate_line(extra.as_bytes(), &p).expect("valid"),
        )])
        .expect("ingest");
        drop(e);
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let q = Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
            .expect("engine");
        assert!(!q.book().is_read_only());
        let t2 = q.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
        assert_eq!(t2.figures.overflow, 1);
    }

    #[test]
    fn a_batch_with_duplicates_logs_exactly_the_kept_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let mut e = open(dir.path());
        let first: Vec<_> = items(&p).into_iter().take(2).collect();
        e.ingest(first).expect("ingest");
        // Old, new, old, dead letter, new: the log must get only the new ones in order.
        let all = items(&p);
        let mixed = vec![
            all[0].clone(),
            all[2].clone(),
            all[1].clone(),
            Record::DeadLetter(DeadLetter {
                source: "t".into(),
                position: 9,
                code: "empty".into(),
                reason: "empty line".into(),
                raw: (&b""[..]).into(),
            }),
            all[3].clone(),
        ];
        let sum = e.ingest(mixed).expect("ingest");
        assert_eq!(
            sum,
            IngestSummary {
                accepted: 2,
                duplicate: 2,
                rejected: 1
            }
        );
        drop(e);
        // No checkpoint was written: reopening replays the log alone.
        let mut e = open(dir.path());
        assert_eq!(e.book().distinct_events(), 4);
        let mut dead = Vec::new();
        e.dead_letters(&mut |d| dead.push(d.position))
            .expect("dead letters");
        assert_eq!(dead, vec![9]);
    }
}
