//! Encoding of a [`CallBook`] as a checkpoint, so that opening a store replays only the
//! log written after it.
//!
//! The call states are kept in segments, one per chunk of the book's states (see
//! `domain::state_chunks`), each checksummed, packed into runs (one new pack per
//! checkpoint, holding the chunks changed since the last one); the query part names the
//! pack of each chunk. The per-interval cells, when the book has them, are kept the same
//! way, one segment per UTC day (see `domain::cells::stored`), their head in the query
//! part with the pack of each day.

use crate::domain::call::{CallState, NONE};
use crate::domain::cells::{Cells, CellsHead};
use crate::domain::dedupe::KeySet;
use crate::domain::state_chunks::CHUNK;
use crate::domain::time::Millis;
use crate::domain::varint;
use crate::store::RunId;
use std::io::Write;

/// Version 6 of the query part: version 5, then the cells' head and their days' packs.
const MAGIC: &[u8; 4] = b"NWS6";
/// Version 5 of the query part (the chunks' packs, no cells), still read.
const MAGIC_V5: &[u8; 4] = b"NWS5";
/// Version 4 of the query part (the states written in it), still read: the next
/// checkpoint writes version 5.
const MAGIC_V4: &[u8; 4] = b"NWS4";
/// A pack of state segments.
const PACK_MAGIC: &[u8; 4] = b"NWP1";
/// Version 6 of the fold part: the runs holding the dedupe keys and the call index, then
/// the dead letters' keys. An older fold part (all keys written in it) is not used: the
/// log is replayed once, and the next checkpoint is of this version.
const FOLD_MAGIC: &[u8; 4] = b"NWF6";

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<Box<str>> {
        std::str::from_utf8(self.bytes()?).ok().map(Into::into)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// One checkpoint part on its way out: bytes gather in a block, which is passed on to
/// the output with the part's CRC kept up to date; [`Self::finish`] appends the CRC.
/// The output is given at each step, so that a part can be written in several sittings.
#[derive(Debug)]
struct Sealed {
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    /// Bytes passed on to the output.
    passed: usize,
}

impl Sealed {
    const BLOCK: usize = 1 << 16;

    fn new(magic: &[u8; 4]) -> Self {
        let mut block = Vec::with_capacity(Self::BLOCK + 1024);
        block.extend_from_slice(magic);
        Self {
            block,
            crc: crc32fast::Hasher::new(),
            passed: 0,
        }
    }

    /// Bytes of the part so far.
    fn written(&self) -> usize {
        self.passed + self.block.len()
    }

    /// Whether [`Self::room`] passes the block on first.
    fn is_full(&self) -> bool {
        self.block.len() >= Self::BLOCK
    }

    /// Where to append the next item (a state is at most 89 bytes, a line name 516); a
    /// full block is passed on first.
    fn room(&mut self, out: &mut dyn Write) -> std::io::Result<&mut Vec<u8>> {
        if self.is_full() {
            self.crc.update(&self.block);
            out.write_all(&self.block)?;
            self.passed += self.block.len();
            self.block.clear();
        }
        Ok(&mut self.block)
    }

    fn finish(mut self, out: &mut dyn Write) -> std::io::Result<()> {
        self.crc.update(&self.block);
        let crc = self.crc.finalize();
        self.block.extend_from_slice(&crc.to_le_bytes());
        out.write_all(&self.block)
    }
}

/// Which table a run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Dedupe keys (no values).
    Keys = 0,
    /// The call index: call key -> state index.
    Calls = 1,
    /// A pack of call-state segments (`keys`: segments written in it, `slots`: 0).
    States = 2,
    /// A pack of days of cells (`keys`: days written in it, `slots`: 0).
    Cells = 3,
}

/// A run as a checkpoint names it: which file, and what it must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunMeta {
    pub kind: RunKind,
    pub id: RunId,
    pub keys: u64,
    pub slots: u64,
}

/// The fold part: the runs that hold the dedupe keys and the call index (see
/// `store::runs`), then the dead letters' keys. After the magic: the number of runs
/// (`u32`), each as kind (`u8`), id, keys and slots (`u64` each), the number of
/// dead-letter keys (`u64`) and the keys (16 bytes each), then the CRC.
pub fn write_fold(
    runs: &[RunMeta],
    dead_letters: &KeySet,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut w = Sealed::new(FOLD_MAGIC);
    w.room(out)?
        .extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for r in runs {
        let room = w.room(out)?;
        room.push(r.kind as u8);
        for n in [r.id, r.keys, r.slots] {
            room.extend_from_slice(&n.to_le_bytes());
        }
    }
    w.room(out)?
        .extend_from_slice(&(dead_letters.len() as u64).to_le_bytes());
    for k in dead_letters.iter() {
        w.room(out)?.extend_from_slice(&k.to_le_bytes());
    }
    w.finish(out)
}

/// The runs and the dead letters' keys of a fold part; `None` when damaged or of
/// another version.
pub fn decode_fold(fold: &[u8]) -> Option<(Vec<RunMeta>, KeySet)> {
    let body = unseal(fold, FOLD_MAGIC)?;
    let mut r = Reader { b: body, at: 4 };
    let n_runs = r.u32()? as usize;
    let mut runs = Vec::with_capacity(n_runs.min(body.len() / 25));
    for _ in 0..n_runs {
        let kind = match r.take(1)?.first()? {
            0 => RunKind::Keys,
            1 => RunKind::Calls,
            2 => RunKind::States,
            3 => RunKind::Cells,
            _ => return None,
        };
        runs.push(RunMeta {
            kind,
            id: r.u64()?,
            keys: r.u64()?,
            slots: r.u64()?,
        });
    }
    let n_dead = usize::try_from(r.u64()?).ok()?;
    let keys = r.take(n_dead.checked_mul(16)?)?;
    if r.at != body.len() {
        return None;
    }
    let mut dead = KeySet::with_capacity(n_dead);
    for k in keys.as_chunks::<16>().0 {
        dead.insert(u128::from_le_bytes(*k));
    }
    Some((runs, dead))
}

fn unseal<'a>(bytes: &'a [u8], magic: &[u8; 4]) -> Option<&'a [u8]> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    (crc32fast::hash(body).to_le_bytes() == crc && body.starts_with(magic)).then_some(body)
}

/// What a query part holds besides the line names and the newest `ts`.
#[derive(Debug, PartialEq, Eq)]
pub enum StoredStates {
    /// The pack holding each chunk of `calls` states, in chunk order.
    Packs { calls: usize, packs: Vec<RunId> },
    /// The states themselves (a query part of version 4).
    Inline(Vec<CallState>),
}

/// The cells a query part names: their head, and the pack of each of its days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCells {
    pub head: CellsHead,
    pub packs: Vec<RunId>,
}

/// A decoded query part.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryPart {
    pub newest_ts: Option<Millis>,
    pub lines: Vec<Box<str>>,
    pub states: StoredStates,
    pub cells: Option<StoredCells>,
}

/// Writes the query part: newest `ts`, the line names, the number of calls, then the
/// pack of each chunk of their states (`packs`, one per chunk), then whether cells are
/// kept (`u8`) and if so their head (threshold, calendar, clock, the open calls as
/// anchor, line and call, then each day with its pack).
pub fn write_query(
    newest_ts: Option<Millis>,
    lines: &[Box<str>],
    calls: usize,
    packs: &[RunId],
    cells: Option<&StoredCells>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut w = Sealed::new(MAGIC);
    w.room(out)?
        .extend_from_slice(&newest_ts.unwrap_or(i64::MIN).to_le_bytes());
    w.room(out)?
        .extend_from_slice(&(lines.len() as u32).to_le_bytes());
    for l in lines {
        put_str(w.room(out)?, l);
    }
    w.room(out)?
        .extend_from_slice(&(calls as u64).to_le_bytes());
    for id in packs {
        w.room(out)?.extend_from_slice(&id.to_le_bytes());
    }
    let Some(StoredCells { head, packs }) = cells else {
        w.room(out)?.push(0);
        return w.finish(out);
    };
    let room = w.room(out)?;
    room.push(1);
    room.extend_from_slice(&head.threshold_ms.to_le_bytes());
    put_str(room, &head.calendar);
    room.extend_from_slice(&head.clock.to_le_bytes());
    room.extend_from_slice(&(head.open.len() as u32).to_le_bytes());
    for &(anchor, line, call) in &head.open {
        let room = w.room(out)?;
        room.extend_from_slice(&anchor.to_le_bytes());
        room.extend_from_slice(&line.to_le_bytes());
        room.extend_from_slice(&call.to_le_bytes());
    }
    w.room(out)?
        .extend_from_slice(&(head.days.len() as u32).to_le_bytes());
    for (day, id) in head.days.iter().zip(packs) {
        let room = w.room(out)?;
        room.extend_from_slice(&day.to_le_bytes());
        room.extend_from_slice(&id.to_le_bytes());
    }
    w.finish(out)
}

impl Reader<'_> {
    /// The cells section of a query part of version 6.
    fn cells(&mut self) -> Option<Option<StoredCells>> {
        match *self.take(1)?.first()? {
            0 => return Some(None),
            1 => {}
            _ => return None,
        }
        let threshold_ms = self.i64()?;
        let calendar = self.str()?.into();
        let clock = self.i64()?;
        let n_open = self.u32()? as usize;
        let mut open = Vec::with_capacity(n_open.min(self.b.len() / 16));
        for _ in 0..n_open {
            open.push((self.i64()?, self.u32()?, self.u32()?));
        }
        let n_days = self.u32()? as usize;
        let mut days = Vec::with_capacity(n_days.min(self.b.len() / 16));
        let mut packs = Vec::with_capacity(days.capacity());
        for _ in 0..n_days {
            let day = self.i64()?;
            // In order, each once: as `Cells::head` writes them.
            if days.last().is_some_and(|&d| d >= day) {
                return None;
            }
            days.push(day);
            packs.push(self.u64()?);
        }
        let head = CellsHead {
            threshold_ms,
            calendar,
            clock,
            open,
            days,
        };
        Some(Some(StoredCells { head, packs }))
    }
}

/// Decodes a query part (of version 6, 5 or 4); `None` when damaged or foreign.
pub fn decode_query(query: &[u8]) -> Option<QueryPart> {
    let (body, version) = match (unseal(query, MAGIC), unseal(query, MAGIC_V5)) {
        (Some(body), _) => (body, 6),
        (None, Some(body)) => (body, 5),
        (None, None) => (unseal(query, MAGIC_V4)?, 4),
    };
    let v4 = version == 4;
    let mut r = Reader { b: body, at: 4 };
    let newest = r.i64()?;
    let newest_ts: Option<Millis> = (newest != i64::MIN).then_some(newest);
    let n_lines = r.u32()?;
    let lines = (0..n_lines).map(|_| r.str()).collect::<Option<Vec<_>>>()?;
    let calls = usize::try_from(r.u64()?).ok()?;
    let states = if v4 {
        // At least 10 bytes a state: a damaged count cannot make us allocate much.
        let mut states = Vec::with_capacity(calls.min(body.len() / 10));
        for _ in 0..calls {
            states.push(r.state(lines.len())?);
        }
        StoredStates::Inline(states)
    } else {
        let chunks = calls.div_ceil(CHUNK);
        let ids = r.take(chunks.checked_mul(8)?)?;
        let packs = ids
            .as_chunks::<8>()
            .0
            .iter()
            .map(|b| u64::from_le_bytes(*b))
            .collect();
        StoredStates::Packs { calls, packs }
    };
    let cells = if version == 6 { r.cells()? } else { None };
    (r.at == body.len()).then_some(QueryPart {
        newest_ts,
        lines,
        states,
        cells,
    })
}

/// One segment of a pack on its way out: items appended to the pack, with the
/// segment's CRC kept up to date.
struct SegmentOut<'a> {
    w: &'a mut Sealed,
    out: &'a mut dyn Write,
    crc: crc32fast::Hasher,
    /// Where the segment's bytes not hashed yet start in the block: they are hashed a
    /// block at a time (a state is some 20 bytes, and a CRC of a few bytes is slow).
    from: usize,
}

impl<'a> SegmentOut<'a> {
    fn new(w: &'a mut Sealed, out: &'a mut dyn Write) -> Self {
        let from = w.block.len();
        Self {
            w,
            out,
            crc: crc32fast::Hasher::new(),
            from,
        }
    }

    /// Appends what `put` writes (one item: see [`Sealed::room`]).
    fn item(&mut self, put: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        if self.w.is_full() {
            // The block is passed on by `room`: its part of the segment is hashed first.
            self.crc.update(&self.w.block[self.from..]);
            self.from = 0;
        }
        put(self.w.room(self.out)?);
        Ok(())
    }

    /// The segment's CRC-32.
    fn finish(mut self) -> u32 {
        self.crc.update(&self.w.block[self.from..]);
        self.crc.finalize()
    }
}

/// Writes a pack of state segments: each of `chunks` (its number and states) as a
/// segment, then the table of segments (chunk number `u32`, offset `u64`, length and
/// CRC-32 `u32`), their count (`u32`), and the CRC-32 of the whole pack. A segment is
/// the number of states (`u32`) then each state, compactly.
pub fn write_pack<'a>(
    chunks: impl Iterator<Item = (usize, &'a [CallState])>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    write_segments(
        chunks.map(|(c, states)| {
            (c, move |seg: &mut SegmentOut<'_>| {
                seg.item(|b| b.extend_from_slice(&(states.len() as u32).to_le_bytes()))?;
                states
                    .iter()
                    .try_for_each(|s| seg.item(|b| put_state(b, s)))
            })
        }),
        out,
    )
}

/// Writes a pack of the days `days` of `cells` (each in memory: see
/// [`Cells::dirty_days`]), as [`write_pack`] writes chunks, each segment numbered by its
/// day (days since 1970, from 0) and holding what [`Cells::encode_day`] writes.
pub fn write_cells_pack(cells: &Cells, days: &[i64], out: &mut dyn Write) -> std::io::Result<()> {
    write_segments(
        days.iter().map(|&day| {
            (day_number(day), move |seg: &mut SegmentOut<'_>| {
                let mut held = true;
                seg.item(|b| held = cells.encode_day(day, b))?;
                held.then_some(()).ok_or_else(|| {
                    std::io::Error::other(format!("day {day} of cells not in memory"))
                })
            })
        }),
        out,
    )
}

/// The segment number of a day of cells (days since 1970: none before it, see
/// `domain::limits`).
pub fn day_number(day: i64) -> usize {
    usize::try_from(day).unwrap_or(usize::MAX)
}

fn write_segments<F>(
    segments: impl Iterator<Item = (usize, F)>,
    out: &mut dyn Write,
) -> std::io::Result<()>
where
    F: FnOnce(&mut SegmentOut<'_>) -> std::io::Result<()>,
{
    let mut w = Sealed::new(PACK_MAGIC);
    let mut table = Vec::new();
    for (c, body) in segments {
        let start = w.written();
        let number = u32::try_from(c).map_err(std::io::Error::other)?;
        let mut seg = SegmentOut::new(&mut w, &mut *out);
        body(&mut seg)?;
        let crc = seg.finish();
        let len = u32::try_from(w.written() - start).map_err(std::io::Error::other)?;
        table.push((number, start as u64, len, crc));
    }
    for &(c, at, len, crc) in &table {
        let room = w.room(out)?;
        room.extend_from_slice(&c.to_le_bytes());
        room.extend_from_slice(&at.to_le_bytes());
        room.extend_from_slice(&len.to_le_bytes());
        room.extend_from_slice(&crc.to_le_bytes());
    }
    w.room(out)?
        .extend_from_slice(&(table.len() as u32).to_le_bytes());
    w.finish(out)
}

/// Where a segment lies in its pack, and its CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub at: usize,
    pub len: usize,
    pub crc: u32,
}

/// The table of a pack: chunk number -> segment, sorted; `None` when it is not a pack
/// or its table is damaged (the segments are checked when read: [`decode_segment`]).
pub fn pack_table(pack: &[u8]) -> Option<Vec<(usize, Segment)>> {
    let body = pack.get(..pack.len().checked_sub(4)?)?;
    if !body.starts_with(PACK_MAGIC) {
        return None;
    }
    let n = u32::from_le_bytes(*body.last_chunk::<4>()?) as usize;
    let table_at = body.len().checked_sub(4)?.checked_sub(n.checked_mul(20)?)?;
    let mut r = Reader {
        b: body,
        at: table_at,
    };
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let c = r.u32()? as usize;
        let at = usize::try_from(r.u64()?).ok()?;
        let len = r.u32()? as usize;
        let crc = r.u32()?;
        (at >= 4 && at.checked_add(len)? <= table_at).then_some(())?;
        table.push((c, Segment { at, len, crc }));
    }
    table.sort_unstable_by_key(|&(c, _)| c);
    Some(table)
}

/// The bytes of one segment, when its CRC holds.
pub fn segment_bytes(pack: &[u8], seg: Segment) -> Option<&[u8]> {
    let bytes = pack.get(seg.at..seg.at.checked_add(seg.len)?)?;
    (crc32fast::hash(bytes) == seg.crc).then_some(bytes)
}

/// The states of one segment, when its CRC holds, it holds `calls` states and each names
/// a line below `lines`.
pub fn decode_segment(
    pack: &[u8],
    seg: Segment,
    calls: usize,
    lines: usize,
) -> Option<Vec<CallState>> {
    let bytes = segment_bytes(pack, seg)?;
    let mut r = Reader { b: bytes, at: 0 };
    if r.u32()? as usize != calls {
        return None;
    }
    let mut states = Vec::with_capacity(calls);
    for _ in 0..calls {
        states.push(r.state(lines)?);
    }
    (r.at == bytes.len()).then_some(states)
}

/// Bytes written in place at the end of a buffer grown by their most: no copy from a
/// stack buffer, no capacity check per byte.
struct Tail<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Tail<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn varint(&mut self, v: u64) {
        self.len += varint::put_in(&mut self.buf[self.len..], v);
    }
}

/// The most bytes [`put_state`] writes: 8 + 1 + 7 varints of 10 + 2 of 5.
const STATE_MAX: usize = 89;

/// A call state, compactly: `first_event`, a presence mask, then each present time as a
/// zigzag varint delta from `first_event` (events of a call are minutes apart), then the
/// line and the bookings. About 25 bytes for an answered call instead of 72.
fn put_state(out: &mut Vec<u8>, s: &CallState) {
    let at = out.len();
    out.resize(at + STATE_MAX, 0);
    let mut b = Tail {
        buf: &mut out[at..],
        len: 0,
    };
    b.put(&s.first_event.to_le_bytes());
    let times = state_times(s);
    let mask = times
        .iter()
        .enumerate()
        .fold(0u8, |m, (i, t)| if *t == NONE { m } else { m | 1 << i });
    b.put(&[mask]);
    for t in times.into_iter().filter(|t| *t != NONE) {
        let d = t.wrapping_sub(s.first_event);
        b.varint(varint::zigzag(d));
    }
    b.varint(u64::from(s.line));
    b.varint(u64::from(s.bookings));
    let len = b.len;
    out.truncate(at + len);
}

fn state_times(s: &CallState) -> [i64; 7] {
    [
        s.offered,
        s.announcement_end,
        s.queued,
        s.answered,
        s.ended,
        s.abandoned,
        s.overflow,
    ]
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        varint::read(self.b, &mut self.at)
    }

    /// A state naming a line below `lines`.
    fn state(&mut self, lines: usize) -> Option<CallState> {
        let first_event = self.i64()?;
        let mask = *self.take(1)?.first()?;
        let mut times = [NONE; 7];
        for (i, t) in times.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *t = first_event.wrapping_add(varint::unzigzag(self.varint()?));
            }
        }
        let [
            offered,
            announcement_end,
            queued,
            answered,
            ended,
            abandoned,
            overflow,
        ] = times;
        Some(CallState {
            first_event,
            offered,
            announcement_end,
            queued,
            answered,
            ended,
            abandoned,
            overflow,
            line: u32::try_from(self.varint()?)
                .ok()
                .filter(|&l| (l as usize) < lines)?,
            bookings: u32::try_from(self.varint()?).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_part_round_trips_and_damage_is_refused() {
        let runs = [
            RunMeta {
                kind: RunKind::Keys,
                id: 4,
                keys: 10,
                slots: 14,
            },
            RunMeta {
                kind: RunKind::Calls,
                id: 5,
                keys: 3,
                slots: 5,
            },
        ];
        let mut dead = KeySet::default();
        dead.insert(77);
        let mut fold = Vec::new();
        write_fold(&runs, &dead, &mut fold).expect("to a vec");
        let (back, dead_back) = decode_fold(&fold).expect("decodes");
        assert_eq!(back, runs);
        assert!(dead_back.contains(77) && dead_back.len() == 1);
        for at in [0, 5, fold.len() - 1] {
            let mut bad = fold.clone();
            bad[at] ^= 1;
            assert!(decode_fold(&bad).is_none(), "byte {at}");
        }
        assert!(decode_fold(&fold[..fold.len() - 3]).is_none());
    }

    #[test]
    fn compact_states_round_trip_extremes() {
        let states = [
            CallState::default(),
            CallState {
                first_event: 0,
                offered: 0,
                announcement_end: crate::domain::limits::END_TS - 1,
                queued: 5,
                answered: 4_133_980_799_999,
                ended: NONE,
                abandoned: 1,
                overflow: NONE,
                line: u32::MAX,
                bookings: 7,
            },
        ];
        for st in states {
            let mut out = Vec::new();
            put_state(&mut out, &st);
            let mut r = Reader { b: &out, at: 0 };
            assert_eq!(r.state(usize::MAX), Some(st));
            assert_eq!(r.at, out.len());
        }
    }

    #[test]
    fn query_parts_and_packs_round_trip_and_damage_is_refused() {
        let lines: Vec<Box<str>> = vec!["cup".into(), "prelievi".into()];
        let mut query = Vec::new();
        write_query(Some(7), &lines, CHUNK + 1, &[8, 12], None, &mut query).expect("to a vec");
        let want = QueryPart {
            newest_ts: Some(7),
            lines: lines.clone(),
            states: StoredStates::Packs {
                calls: CHUNK + 1,
                packs: vec![8, 12],
            },
            cells: None,
        };
        assert_eq!(decode_query(&query), Some(want));
        let mut bad = query.clone();
        bad[9] ^= 1;
        assert_eq!(decode_query(&bad), None);
        // One pack id short for the calls.
        let mut short = Vec::new();
        write_query(None, &lines, CHUNK + 1, &[8], None, &mut short).expect("to a vec");
        assert_eq!(decode_query(&short), None);

        let a: Vec<CallState> = (0..5)
            .map(|i| CallState {
                first_event: i,
                offered: i,
                line: (i % 2) as u32,
                ..CallState::default()
            })
            .collect();
        let b = vec![CallState::default(); 3];
        let mut pack = Vec::new();
        write_pack([(3, &a[..]), (1, &b[..])].into_iter(), &mut pack).expect("to a vec");
        let table = pack_table(&pack).expect("a pack");
        assert_eq!(table.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [1, 3]);
        let (seg_b, seg_a) = (table[0].1, table[1].1);
        assert_eq!(decode_segment(&pack, seg_a, 5, 2), Some(a.clone()));
        assert_eq!(decode_segment(&pack, seg_b, 3, 2), Some(b));
        assert_eq!(decode_segment(&pack, seg_a, 4, 2), None, "wrong count");
        assert_eq!(decode_segment(&pack, seg_a, 5, 1), None, "unknown line");
        let mut bad = pack.clone();
        bad[seg_a.at + 6] ^= 1;
        assert_eq!(decode_segment(&bad, seg_a, 5, 2), None);
    }

    #[test]
    fn a_query_part_with_cells_round_trips_and_one_of_version_5_still_reads() {
        let lines: Vec<Box<str>> = vec!["cup".into()];
        let cells = StoredCells {
            head: CellsHead {
                threshold_ms: 140_000,
                calendar: "cal".into(),
                clock: 99,
                open: vec![(90, 0, 3), (95, 1, 4)],
                days: vec![17_000, 17_002],
            },
            packs: vec![40, 44],
        };
        let mut query = Vec::new();
        write_query(Some(99), &lines, 5, &[8], Some(&cells), &mut query).expect("to a vec");
        let part = decode_query(&query).expect("decodes");
        assert_eq!(part.cells, Some(cells.clone()));
        // Days out of order are refused.
        let mut swapped = cells.clone();
        swapped.head.days.reverse();
        let mut bad = Vec::new();
        write_query(Some(99), &lines, 5, &[8], Some(&swapped), &mut bad).expect("to a vec");
        assert_eq!(decode_query(&bad), None);
        // Version 5: the same without the cells section.
        let mut w = Sealed::new(MAGIC_V5);
        let mut v5 = Vec::new();
        let b = w.room(&mut v5).expect("vec");
        b.extend_from_slice(&99i64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        put_str(b, "cup");
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(&8u64.to_le_bytes());
        w.finish(&mut v5).expect("vec");
        let old = decode_query(&v5).expect("decodes");
        assert_eq!(old.cells, None);
        assert_eq!(
            old.states,
            StoredStates::Packs {
                calls: 5,
                packs: vec![8]
            }
        );
    }

    #[test]
    fn a_version_4_query_part_still_reads() {
        let states = [
            CallState::default(),
            CallState {
                first_event: 5,
                answered: 9,
                ..CallState::default()
            },
        ];
        let mut w = Sealed::new(MAGIC_V4);
        let mut out = Vec::new();
        let b = w.room(&mut out).expect("vec");
        b.extend_from_slice(&100i64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        put_str(b, "cup");
        b.extend_from_slice(&2u64.to_le_bytes());
        for st in &states {
            put_state(w.room(&mut out).expect("vec"), st);
        }
        w.finish(&mut out).expect("vec");
        let part = decode_query(&out).expect("decodes");
        assert_eq!(part.newest_ts, Some(100));
        assert_eq!(part.states, StoredStates::Inline(states.to_vec()));
    }
}
