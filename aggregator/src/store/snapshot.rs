//! Encoding of a [`CallBook`] as a checkpoint, so that opening a store replays only the
//! log written after it.

use crate::domain::call::CallState;
use crate::domain::callbook::CallBook;
use crate::domain::dedupe::KeySet;
use crate::domain::time::Millis;

const MAGIC: &[u8; 4] = b"NWS1";

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
    fn str(&mut self) -> Option<Box<str>> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok().map(Into::into)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes the whole book (CRC-checked).
pub fn encode(book: &CallBook) -> Vec<u8> {
    let p = book.parts();
    let mut out = Vec::with_capacity(64 + p.seen.len() * 16 + p.calls.len() * 96);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&p.newest_ts.unwrap_or(i64::MIN).to_le_bytes());
    out.extend_from_slice(&(p.lines.len() as u32).to_le_bytes());
    for l in p.lines {
        put_str(&mut out, l);
    }
    out.extend_from_slice(&(p.calls.len() as u64).to_le_bytes());
    for (id, s) in p.calls {
        put_str(&mut out, id);
        for v in [
            s.first_event,
            s.offered,
            s.announcement_end,
            s.queued,
            s.answered,
            s.ended,
            s.abandoned,
            s.overflow,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&s.line.to_le_bytes());
        out.extend_from_slice(&s.bookings.to_le_bytes());
    }
    out.extend_from_slice(&(p.seen.len() as u64).to_le_bytes());
    for k in p.seen {
        out.extend_from_slice(&k.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a checkpoint; `None` when it is damaged (the caller then replays the log).
pub fn decode(bytes: &[u8], dedupe_secret: [u8; 16]) -> Option<CallBook> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc || !body.starts_with(MAGIC) {
        return None;
    }
    let mut r = Reader { b: body, at: 4 };
    let newest = r.i64()?;
    let newest_ts: Option<Millis> = (newest != i64::MIN).then_some(newest);
    let n_lines = r.u32()?;
    let lines = (0..n_lines).map(|_| r.str()).collect::<Option<Vec<_>>>()?;
    let n_calls = usize::try_from(r.u64()?).ok()?;
    let mut calls = Vec::with_capacity(n_calls.min(body.len() / 72));
    for _ in 0..n_calls {
        let id = r.str()?;
        let mut v = [0i64; 8];
        for x in &mut v {
            *x = r.i64()?;
        }
        let line = r.u32()?;
        let bookings = r.u32()?;
        if line as usize >= lines.len() {
            return None;
        }
        calls.push((
            id,
            CallState {
                first_event: v[0],
                offered: v[1],
                announcement_end: v[2],
                queued: v[3],
                answered: v[4],
                ended: v[5],
                abandoned: v[6],
                overflow: v[7],
                line,
                bookings,
            },
        ));
    }
    let n_seen = usize::try_from(r.u64()?).ok()?;
    let mut seen =
        KeySet::with_capacity_and_hasher(n_seen.min(body.len() / 16), Default::default());
    for _ in 0..n_seen {
        seen.insert(u128::from_le_bytes(r.take(16)?.try_into().ok()?));
    }
    (r.at == body.len()).then(|| CallBook::from_parts(dedupe_secret, seen, calls, lines, newest_ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::privacy::Pseudonymizer;
    use crate::domain::validate::validate_line;

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
        let bytes = encode(&book);
        let mut back = decode(&bytes, [2; 16]).expect("decodes");
        let mut a: Vec<_> = book.records(10).collect();
        let mut b: Vec<_> = back.records(10).collect();
        a.sort_by_key(|r| r.anchor);
        b.sort_by_key(|r| r.anchor);
        assert_eq!(a, b);
        assert_eq!(back.newest_ts(), Some(7000));
        let again = validate_line(lines[1].as_bytes(), &p).expect("valid");
        assert_eq!(
            back.apply(&again),
            crate::domain::callbook::Applied::Duplicate
        );
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(decode(&bad, [2; 16]).is_none());
    }
}
