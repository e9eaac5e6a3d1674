//! Encoding of a [`CallBook`] as a checkpoint, so that opening a store replays only the
//! log written after it.

use crate::domain::call::{CallState, NONE};
use crate::domain::callbook::FoldState;
use crate::domain::callbook::{BookParts, CallBook};
use crate::domain::dedupe::KeySet;
use crate::domain::time::Millis;
use crate::store::RunId;
use std::io::Write;

/// Version 4 of the query part.
const MAGIC: &[u8; 4] = b"NWS4";
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
}

impl Sealed {
    const BLOCK: usize = 1 << 16;

    fn new(magic: &[u8; 4]) -> Self {
        let mut block = Vec::with_capacity(Self::BLOCK + 1024);
        block.extend_from_slice(magic);
        Self {
            block,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Where to append the next item (a state is at most 89 bytes, a line name 516); a
    /// full block is passed on first.
    fn room(&mut self, out: &mut dyn Write) -> std::io::Result<&mut Vec<u8>> {
        if self.block.len() >= Self::BLOCK {
            self.crc.update(&self.block);
            out.write_all(&self.block)?;
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

/// Writes the query part: newest `ts`, the line names, the call states. (What folding
/// needs is in the fold part and its runs, see `store::runs`.)
pub fn write_query(p: &BookParts<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    let mut w = Sealed::new(MAGIC);
    w.room(out)?
        .extend_from_slice(&p.newest_ts.unwrap_or(i64::MIN).to_le_bytes());
    w.room(out)?
        .extend_from_slice(&(p.lines.len() as u32).to_le_bytes());
    for l in p.lines {
        put_str(w.room(out)?, l);
    }
    w.room(out)?
        .extend_from_slice(&(p.states.len() as u64).to_le_bytes());
    for s in p.states {
        put_state(w.room(out)?, s);
    }
    w.finish(out)
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

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.len] = (v as u8) | 0x80;
            self.len += 1;
            v >>= 7;
        }
        self.buf[self.len] = v as u8;
        self.len += 1;
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
        b.varint(((d << 1) ^ (d >> 63)) as u64);
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
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.b.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn state(&mut self) -> Option<CallState> {
        let first_event = self.i64()?;
        let mask = *self.take(1)?.first()?;
        let mut times = [NONE; 7];
        for (i, t) in times.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                let z = self.varint()?;
                let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
                *t = first_event.wrapping_add(d);
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
            line: u32::try_from(self.varint()?).ok()?,
            bookings: u32::try_from(self.varint()?).ok()?,
        })
    }
}

/// Decodes a checkpoint's query part, with what folding needs when given (loaded from
/// the fold part and its runs); `None` when it is damaged or does not match the fold
/// state (the caller then replays the log). Without a fold state the book is read-only.
pub fn decode(
    query: &[u8],
    fold_state: Option<FoldState>,
    dedupe_secret: [u8; 16],
) -> Option<CallBook> {
    let body = unseal(query, MAGIC)?;
    let mut r = Reader { b: body, at: 4 };
    let newest = r.i64()?;
    let newest_ts: Option<Millis> = (newest != i64::MIN).then_some(newest);
    let n_lines = r.u32()?;
    let lines = (0..n_lines).map(|_| r.str()).collect::<Option<Vec<_>>>()?;
    let n_calls = usize::try_from(r.u64()?).ok()?;
    // At least 10 bytes a state: a damaged count cannot make us allocate much. A book
    // that folds more gets room for an eighth more calls (address space, untouched
    // until used): a small import then does not copy every state into a vector twice
    // the size (a 10-year book holds 1.8 M states, 130 MB).
    let room = if fold_state.is_some() {
        n_calls / 8 + 1024
    } else {
        0
    };
    let mut states = Vec::with_capacity(n_calls.min(body.len() / 10) + room);
    for _ in 0..n_calls {
        states.push(r.state()?);
    }
    if r.at != body.len() {
        return None;
    }
    if states.iter().any(|s| s.line as usize >= lines.len()) {
        return None;
    }
    // Every call is in the index once, and only calls are.
    if fold_state
        .as_ref()
        .is_some_and(|(_, index, _)| index.len() != n_calls)
    {
        return None;
    }
    Some(CallBook::from_parts(
        dedupe_secret,
        lines,
        states,
        newest_ts,
        fold_state,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::privacy::Pseudonymizer;
    use crate::domain::validate::validate_line;

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
            assert_eq!(r.state(), Some(st));
            assert_eq!(r.at, out.len());
        }
    }

    #[test]
    fn round_trip_gives_the_same_figures_and_dedupe() {
        let p = Pseudonymizer::new([0; 32]);
        let mut book = CallBook::new([2; 16]);
        let lines = [
            r#"{"call_id":"a","type":"offered","ts":1000,"line":"prelievi"}"#,
            r#"{"call_id":"a","type":"answered","ts":5000,"agent":"x"}"#,
            r#"{"call_id":"b","type":"queued","ts":7000}"#,
        ];
        for l in lines {
            book.apply(&validate_line(l.as_bytes(), &p).expect("valid"));
        }
        let parts = book.parts();
        let mut query = Vec::new();
        write_query(&parts, &mut query).expect("to a vec");
        let fold_state = (
            parts.seen.clone(),
            parts.index.clone(),
            parts.dead_letters.clone(),
        );
        let read_only = decode(&query, None, [2; 16]).expect("decodes");
        assert!(read_only.is_read_only());
        let mut back = decode(&query, Some(fold_state.clone()), [2; 16]).expect("decodes");
        let mut a: Vec<_> = book.records(10).collect();
        let mut b: Vec<_> = back.records(10).collect();
        a.sort_by_key(|r| r.anchor);
        b.sort_by_key(|r| r.anchor);
        assert_eq!(a, b);
        let mut c: Vec<_> = read_only.records(10).collect();
        c.sort_by_key(|r| r.anchor);
        assert_eq!(a, c);
        assert_eq!(back.newest_ts(), Some(7000));
        let again = validate_line(lines[1].as_bytes(), &p).expect("valid");
        assert_eq!(
            back.apply(&again),
            crate::domain::callbook::Applied::Duplicate
        );
        // A fold state of another book is refused.
        let other = (KeySet::default(), Default::default(), KeySet::default());
        assert!(decode(&query, Some(other), [2; 16]).is_none());
        let mut bad = query.clone();
        bad[10] ^= 1;
        assert!(decode(&bad, None, [2; 16]).is_none());
    }
}
