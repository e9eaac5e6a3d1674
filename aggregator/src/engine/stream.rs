//! Staging a stream of chunks: duplicates decided, events applied and batches written
//! on three threads, each commit with the source positions it covers.

use crate::observe;
use crate::store::codec::encode_positions;
use crate::store::positions::{CheckpointDelta, SourceCheckpoint};
use crate::store::{Batch, LogPosition, PartPool, StoreError};

use super::chunk::apply_chunk;
use super::{CheckpointMoment, EncodedChunk, Engine, IngestSummary, Spares};

impl Engine {
    /// Stages a stream of encoded chunks (with their keys) on three threads: the calling
    /// thread decides duplicates (in input order), a second applies the accepted events
    /// to the call states, a third commits the batches behind them, so that disk writes
    /// overlap with folding. Returns once all of it is durable.
    ///
    /// With `checkpoint`, also writes a checkpoint at the end (of what is new since the
    /// last one); failing to write it is logged, not returned (the events are durable;
    /// the next open replays the log).
    ///
    /// Each commit is made when `commit_bytes` are staged, or after a chunk that asks
    /// for it ([`EncodedChunk::commit_after`]); it holds the source positions of its
    /// chunks, and once it is durable `durable` is told where the sources stand (on the
    /// writer thread: it should only hand the news on).
    pub fn stage_stream(
        &mut self,
        chunks: impl Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        checkpoint: bool,
        spares: Option<Spares>,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if self.book.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        // Whatever was staged before goes first.
        self.commit()?;
        if self.derived.is_some() {
            return self.stage_each(chunks, commit_bytes, durable);
        }
        let hasher = self.key_hasher();
        let store = &mut self.store;
        let sources = &mut self.sources;
        let mut pending = sources.clone();
        let mut refused = None;
        let (mut dedupe, mut calls) = self.book.split_fold();
        let (to_writer, from_apply) = std::sync::mpsc::sync_channel::<(Batch, CheckpointDelta)>(2);
        // Committed batches go back to the applier, whose next parts reuse their buffers.
        let (spent_tx, spent_rx) = std::sync::mpsc::sync_channel::<Batch>(4);
        let (to_apply, from_dedupe) = std::sync::mpsc::sync_channel::<(EncodedChunk, Vec<bool>)>(4);
        let result = std::thread::scope(|s| {
            // The end of the log, and the bytes committed.
            let writer = s.spawn(move || -> Result<(LogPosition, u64), StoreError> {
                let (mut end, mut bytes) = (None, 0);
                for (batch, delta) in from_apply {
                    let started = std::time::Instant::now();
                    end = Some(store.commit(&batch)?);
                    bytes += batch.len() as u64;
                    observe::emit(observe::CommitDurable {
                        records: u64::from(batch.record_count()),
                        bytes: batch.len() as u64,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    let _ = spent_tx.try_send(batch);
                    if !delta.is_empty() {
                        sources.apply(&delta);
                        durable(sources);
                    }
                }
                let end = end.map_or_else(|| store.commit(&Batch::default()), Ok)?;
                Ok((end, bytes))
            });
            let applier = s.spawn(move || -> Result<IngestSummary, StoreError> {
                let mut sum = IngestSummary::default();
                let mut batch = Batch::default();
                let mut delta = CheckpointDelta::default();
                let mut pool = PartPool::new(commit_bytes);
                // The batch and the positions it covers, as the last record of its commit.
                let sealed = |batch: &mut Batch, delta: &mut CheckpointDelta| {
                    let delta = std::mem::take(delta);
                    if !delta.is_empty() {
                        let mut part = Vec::new();
                        encode_positions(&mut part, &delta);
                        batch.append(part, 1);
                    }
                    (std::mem::take(batch), delta)
                };
                for (mut chunk, accepted) in from_dedupe {
                    while let Ok(spent) = spent_rx.try_recv() {
                        pool.give(spent);
                    }
                    delta
                        .extend(std::mem::take(&mut chunk.delta))
                        .map_err(StoreError::from)?;
                    let commit_now = chunk.commit_after;
                    // With spares, the bytes are copied into the batch (in reused
                    // parts) and the chunk goes back whole for the workers to reuse.
                    let copy = spares.is_some().then_some(&mut pool);
                    sum += apply_chunk(&mut calls, &mut batch, &mut chunk, &accepted, copy)?;
                    if let Some(spares) = &spares {
                        let _ = spares.try_send(chunk);
                    }
                    let due = batch.len() >= commit_bytes
                        || (commit_now && !(batch.is_empty() && delta.is_empty()));
                    if due && to_writer.send(sealed(&mut batch, &mut delta)).is_err() {
                        break; // the writer failed: its error is reported by the caller
                    }
                }
                if !batch.is_empty() || !delta.is_empty() {
                    let _ = to_writer.send(sealed(&mut batch, &mut delta));
                }
                Ok(sum)
            });
            for mut chunk in chunks {
                // A source that skips input is refused before anything of it is staged.
                if let Err(e) = pending.check(&chunk.delta) {
                    refused = Some(e);
                    break;
                }
                pending.apply(&chunk.delta);
                let mut accepted = Vec::new();
                dedupe.first_seen_all(&chunk.keys, &mut accepted);
                chunk.flag_dead_letters(&hasher, |k| dedupe.first_dead_letter(k));
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
            Ok((_, (end, bytes))) if refused.is_some() => {
                // What came before the refused chunk is durable; nothing after it staged.
                self.position = end;
                self.unsaved += bytes;
                self.settle_cells();
                Err(refused.map_or(StoreError::Poisoned, StoreError::from))
            }
            Ok((sum, (end, bytes))) => {
                self.position = end;
                self.unsaved += bytes;
                self.settle_cells();
                if checkpoint {
                    self.checkpoint_at(CheckpointMoment::Stopping);
                }
                Ok(sum)
            }
            Err(e) => {
                // The book may hold events the log does not.
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// [`Self::stage_stream`] on one thread, for a store that is handed the derived rows
    /// of each commit: each commit's rows are settled from the book before it is written.
    fn stage_each(
        &mut self,
        chunks: impl Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        let mut sum = IngestSummary::default();
        let mut commit = |engine: &mut Self| -> Result<(), StoreError> {
            let moved = !engine.staged_delta.is_empty();
            engine.commit()?;
            if moved {
                durable(&engine.sources);
            }
            Ok(())
        };
        for chunk in chunks {
            let commit_now = chunk.commit_after;
            sum += self.stage(chunk)?;
            if self.batch.len() >= commit_bytes
                || (commit_now && !(self.batch.is_empty() && self.staged_delta.is_empty()))
            {
                commit(self)?;
            }
        }
        commit(self)?;
        Ok(sum)
    }
}
