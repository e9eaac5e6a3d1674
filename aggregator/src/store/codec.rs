//! Binary encoding of the records a store keeps: accepted events and dead letters.
//! Pure functions over byte buffers; the framing and the files are in [`super::log`].

use crate::domain::event::{BookingKind, CallerHash, Event, EventType};
use crate::store::positions::CheckpointDelta;
use crate::store::record::{DeadLetter, Record};
use std::borrow::Cow;

const TAG_EVENT: u8 = 1;
const TAG_DEAD_LETTER: u8 = 2;
/// A dead letter whose raw bytes were cut to [`RAW_KEPT`]: the input's size follows the
/// reason. (Stores written before it have none; they read as ever.)
const TAG_DEAD_LETTER_CUT: u8 = 3;
/// A dead letter with the wall-clock time it was received, and always the input's size.
/// Written for every dead letter that has a time (all new ones); tags 2 and 3 are still
/// read, as dead letters of unknown time.
const TAG_DEAD_LETTER_AT: u8 = 4;
/// The source positions a commit covers (a [`CheckpointDelta`]): written as the last
/// record of a commit whose input came with positions. Logs without it read as ever.
const TAG_POSITIONS: u8 = 5;

/// Raw bytes of a rejected input kept at most: re-sent hostile input cannot grow the
/// store by 64 KiB a line.
pub const RAW_KEPT: usize = 4096;

/// What [`Decoder::skip_record`] stepped over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Event,
    DeadLetter,
    Positions,
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record at byte {0}")]
pub struct DecodeError(pub usize);

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Event fields are at most 128 code points (512 bytes); a longer text (a source
    // name, a reason) is cut at the last character boundary that fits a u16 length.
    let mut len = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(len) {
        len -= 1;
    }
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

pub fn encode_event(out: &mut Vec<u8>, ev: &Event<'_>) {
    out.push(TAG_EVENT);
    out.push(ev.kind as u8);
    let fields = [&ev.call_id, &ev.event_id, &ev.line, &ev.agent, &ev.reason];
    let mut flags = 0u8;
    for (i, f) in fields.iter().enumerate() {
        if f.is_some() {
            flags |= 1 << i;
        }
    }
    if ev.booking.is_some() {
        flags |= 1 << 5;
    }
    if ev.caller.is_some() {
        flags |= 1 << 6;
    }
    out.push(flags);
    out.extend_from_slice(&ev.ts.to_le_bytes());
    for s in fields.into_iter().flatten() {
        put_str(out, s);
    }
    if let Some(b) = ev.booking {
        out.push(b as u8);
    }
    if let Some(c) = ev.caller {
        out.extend_from_slice(&c.0);
    }
}

/// Encodes a dead letter, its raw bytes cut to [`RAW_KEPT`].
pub fn encode_dead_letter(out: &mut Vec<u8>, d: &DeadLetter<'_>) {
    let kept = &d.raw[..d.raw.len().min(RAW_KEPT)];
    let size = d.truncated_from.unwrap_or(0).max(d.raw.len() as u64);
    let cut = size > kept.len() as u64;
    out.push(match (d.received_ms, cut) {
        (Some(_), _) => TAG_DEAD_LETTER_AT,
        (None, true) => TAG_DEAD_LETTER_CUT,
        (None, false) => TAG_DEAD_LETTER,
    });
    // The position first, whatever the tag: `rebase_dead_letter` relies on it.
    out.extend_from_slice(&d.position.to_le_bytes());
    if let Some(ms) = d.received_ms {
        out.extend_from_slice(&ms.to_le_bytes());
    }
    put_str(out, &d.source);
    put_str(out, &d.code);
    put_str(out, &d.reason);
    if cut || d.received_ms.is_some() {
        out.extend_from_slice(&size.to_le_bytes());
    }
    out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
    out.extend_from_slice(kept);
}

/// Encodes the source positions of a commit.
pub fn encode_positions(out: &mut Vec<u8>, delta: &CheckpointDelta) {
    out.push(TAG_POSITIONS);
    delta.encode(out);
}

/// Adds `base` to the position of the dead letter whose record starts `record`.
pub fn rebase_dead_letter(record: &mut [u8], base: u64) {
    if let Some(
        [
            TAG_DEAD_LETTER | TAG_DEAD_LETTER_CUT | TAG_DEAD_LETTER_AT,
            rest @ ..,
        ],
    ) = record.get_mut(..9)
        && let Ok(field) = <&mut [u8; 8]>::try_from(rest)
    {
        *field = u64::from_le_bytes(*field)
            .saturating_add(base)
            .to_le_bytes();
    }
}

/// Reads records one after the other from a buffer.
pub struct Decoder<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    /// Byte offset of the next record (the end of the last one read).
    pub fn position(&self) -> usize {
        self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let s = self
            .buf
            .get(self.at..self.at + n)
            .ok_or(DecodeError(self.at))?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let at = self.at;
        self.take(N)?.try_into().map_err(|_| DecodeError(at))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.at;
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError(at))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = u16::from_le_bytes(self.array()?);
        self.take(usize::from(len))
    }

    /// Steps over the next record, saying what it was.
    pub fn skip_record(&mut self) -> Option<Result<RecordKind, DecodeError>> {
        if self.at >= self.buf.len() {
            return None;
        }
        let at = self.at;
        let r = match self.u8() {
            Ok(TAG_EVENT) => self.event_fields(at).map(|_| RecordKind::Event),
            Ok(tag @ (TAG_DEAD_LETTER | TAG_DEAD_LETTER_CUT | TAG_DEAD_LETTER_AT)) => {
                self.dead_letter(tag).map(|_| RecordKind::DeadLetter)
            }
            Ok(TAG_POSITIONS) => self.positions(at).map(|_| RecordKind::Positions),
            Ok(_) => Err(DecodeError(at)),
            Err(e) => Err(e),
        };
        if r.is_err() {
            self.at = self.buf.len();
        }
        Some(r)
    }

    /// An event record's fields, strings as bytes (after the tag).
    fn event_fields(&mut self, at: usize) -> Result<EventFields<'a>, DecodeError> {
        let kind = EventType::from_u8(self.u8()?).ok_or(DecodeError(at))?;
        let flags = self.u8()?;
        let ts = i64::from_le_bytes(self.array()?);
        let mut strings = [None; 5];
        for (bit, slot) in strings.iter_mut().enumerate() {
            if flags & (1 << bit) != 0 {
                *slot = Some(self.bytes()?);
            }
        }
        let booking = if flags & (1 << 5) != 0 {
            Some(BookingKind::from_u8(self.u8()?).ok_or(DecodeError(at))?)
        } else {
            None
        };
        let caller = if flags & (1 << 6) != 0 {
            Some(CallerHash(self.array()?))
        } else {
            None
        };
        Ok(EventFields {
            kind,
            ts,
            strings,
            booking,
            caller,
        })
    }

    /// A dead-letter record's fields (after its `tag`, which says what follows).
    fn dead_letter(&mut self, tag: u8) -> Result<DeadLetter<'a>, DecodeError> {
        let position = u64::from_le_bytes(self.array()?);
        let received_ms = if tag == TAG_DEAD_LETTER_AT {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        let source = Cow::Borrowed(self.str()?);
        let code = Cow::Borrowed(self.str()?);
        let reason = Cow::Borrowed(self.str()?);
        let size = if tag == TAG_DEAD_LETTER {
            None
        } else {
            Some(u64::from_le_bytes(self.array()?))
        };
        let len = u32::from_le_bytes(self.array()?) as usize;
        let raw = Cow::Borrowed(self.take(len)?);
        Ok(DeadLetter {
            source,
            position,
            code,
            reason,
            // Tag 4 always holds the size: the input was cut when it is larger than `raw`.
            truncated_from: size.filter(|&n| n > len as u64),
            raw,
            received_ms,
        })
    }

    fn positions(&mut self, at: usize) -> Result<CheckpointDelta, DecodeError> {
        let rest = self.buf.get(self.at..).ok_or(DecodeError(at))?;
        let (delta, used) = CheckpointDelta::decode(rest).ok_or(DecodeError(at))?;
        self.at += used;
        Ok(delta)
    }

    fn next_record(&mut self) -> Result<Record<'a>, DecodeError> {
        let at = self.at;
        match self.u8()? {
            TAG_EVENT => {
                let f = self.event_fields(at)?;
                let text = |i: usize| -> Result<Option<Cow<'a, str>>, DecodeError> {
                    f.strings[i]
                        .map(|b| std::str::from_utf8(b).map(Cow::Borrowed))
                        .transpose()
                        .map_err(|_| DecodeError(at))
                };
                Ok(Record::Event(Event {
                    kind: f.kind,
                    ts: f.ts,
                    call_id: text(0)?,
                    event_id: text(1)?,
                    line: text(2)?,
                    agent: text(3)?,
                    reason: text(4)?,
                    booking: f.booking,
                    caller: f.caller,
                }))
            }
            tag @ (TAG_DEAD_LETTER | TAG_DEAD_LETTER_CUT | TAG_DEAD_LETTER_AT) => {
                self.dead_letter(tag).map(Record::DeadLetter)
            }
            TAG_POSITIONS => self.positions(at).map(Record::Positions),
            _ => Err(DecodeError(at)),
        }
    }
}

/// An event record as stored: call_id, event_id, line, agent, reason as bytes.
struct EventFields<'a> {
    kind: EventType,
    ts: i64,
    strings: [Option<&'a [u8]>; 5],
    booking: Option<BookingKind>,
    caller: Option<CallerHash>,
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.buf.len() {
            return None;
        }
        let r = self.next_record();
        if r.is_err() {
            self.at = self.buf.len();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_texts_are_cut_on_a_character_boundary() {
        let source = "é".repeat(40_000);
        let mut buf = Vec::new();
        encode_dead_letter(
            &mut buf,
            &DeadLetter {
                source: source.as_str().into(),
                position: 1,
                code: "x".into(),
                reason: "y".into(),
                raw: (&b""[..]).into(),
                truncated_from: None,
                received_ms: None,
            },
        );
        let Some(Ok(Record::DeadLetter(d))) = Decoder::new(&buf).next() else {
            panic!("decodes");
        };
        assert!(source.starts_with(d.source.as_ref()));
        assert_eq!(d.source.len(), 65_534);
    }

    #[test]
    fn round_trip() {
        let ev = Event {
            kind: EventType::Booking,
            ts: 1_551_682_805_250,
            call_id: Some("c1".into()),
            event_id: None,
            line: Some("prelievi".into()),
            agent: Some("op1".into()),
            booking: Some(BookingKind::Cancel),
            reason: None,
            caller: Some(CallerHash([9; 16])),
        };
        let dl = DeadLetter {
            source: "file.ndjson".into(),
            position: 42,
            code: "bad_ts".into(),
            reason: "`ts` is not ...".into(),
            raw: Cow::Borrowed(b"{\"x\":\xff}"),
            truncated_from: None,
            received_ms: None,
        };
        let mut buf = Vec::new();
        encode_event(&mut buf, &ev);
        encode_dead_letter(&mut buf, &dl);
        let got: Vec<_> = Decoder::new(&buf).collect();
        assert_eq!(
            got,
            vec![
                Ok(Record::Event(ev.clone())),
                Ok(Record::DeadLetter(dl.clone()))
            ]
        );
        assert!(Decoder::new(&buf[..buf.len() - 1]).any(|r| r.is_err()));
        let delta = CheckpointDelta::single(
            "/data/a.ndjson",
            crate::store::positions::Position::offset(3),
            crate::store::positions::Position::offset(90),
        )
        .expect("delta");
        encode_positions(&mut buf, &delta);
        let got: Vec<_> = Decoder::new(&buf).collect();
        assert_eq!(
            got,
            vec![
                Ok(Record::Event(ev)),
                Ok(Record::DeadLetter(dl)),
                Ok(Record::Positions(delta))
            ]
        );
        let mut d = Decoder::new(&buf);
        assert_eq!(d.skip_record(), Some(Ok(RecordKind::Event)));
        assert_eq!(d.skip_record(), Some(Ok(RecordKind::DeadLetter)));
        assert_eq!(d.skip_record(), Some(Ok(RecordKind::Positions)));
        assert_eq!(d.skip_record(), None);
    }

    #[test]
    fn raw_bytes_are_cut_to_what_is_kept_and_the_size_recorded() {
        let long = vec![b'x'; 70_000];
        let mut dl = DeadLetter {
            source: "f".into(),
            position: 7,
            code: "too_long".into(),
            reason: "line too long".into(),
            raw: long.as_slice().into(),
            truncated_from: None,
            received_ms: None,
        };
        let mut buf = Vec::new();
        encode_dead_letter(&mut buf, &dl);
        rebase_dead_letter(&mut buf, 10);
        assert!(buf.len() < RAW_KEPT + 100);
        let Some(Ok(Record::DeadLetter(d))) = Decoder::new(&buf).next() else {
            panic!("decodes");
        };
        assert_eq!(
            (d.raw.len(), d.truncated_from, d.position),
            (RAW_KEPT, Some(70_000), 17)
        );
        // Cut before (by the parser): the size given is kept.
        dl.raw = long[..5000].to_vec().into();
        dl.truncated_from = Some(1 << 20);
        let mut buf = Vec::new();
        encode_dead_letter(&mut buf, &dl);
        let mut dec = Decoder::new(&buf);
        assert_eq!(dec.skip_record(), Some(Ok(RecordKind::DeadLetter)));
        let Some(Ok(Record::DeadLetter(d))) = Decoder::new(&buf).next() else {
            panic!("decodes");
        };
        assert_eq!(d.truncated_from, Some(1 << 20));
    }

    #[test]
    fn the_received_time_is_kept_with_the_size_and_position() {
        for (raw, cut) in [(vec![b'x'; 10], None), (vec![b'y'; 5_000], Some(5_000))] {
            let dl = DeadLetter {
                source: "f".into(),
                position: 3,
                code: "invalid_json".into(),
                reason: "not JSON".into(),
                raw: raw.as_slice().into(),
                truncated_from: None,
                received_ms: Some(1_767_225_600_123),
            };
            let mut buf = Vec::new();
            encode_dead_letter(&mut buf, &dl);
            rebase_dead_letter(&mut buf, 4);
            assert_eq!(
                Decoder::new(&buf).skip_record(),
                Some(Ok(RecordKind::DeadLetter))
            );
            let Some(Ok(Record::DeadLetter(d))) = Decoder::new(&buf).next() else {
                panic!("decodes");
            };
            assert_eq!(d.received_ms, Some(1_767_225_600_123));
            assert_eq!((d.position, d.truncated_from), (7, cut));
            assert_eq!(d.raw.len(), raw.len().min(RAW_KEPT));
        }
    }
}
