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

const STATE_BYTES: usize = 8 * 8 + 4 + 4;

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    (crc32fast::hash(body).to_le_bytes() == crc && body.starts_with(MAGIC)).then_some(body)
}

/// Encodes the book in two CRC-checked parts: what queries need (lines and the call
/// states as fixed-size records), and what folding more events needs (call ids, dedupe
/// keys). A query-only open reads the first part alone. The two are encoded on two
/// threads.
pub fn encode(book: &CallBook) -> (Vec<u8>, Vec<u8>) {
    std::thread::scope(|s| {
        let fold = s.spawn(|| encode_fold(book));
        let query = encode_query(book);
        let fold = fold.join().unwrap_or_else(|_| encode_fold(book));
        (query, fold)
    })
}

fn encode_query(book: &CallBook) -> Vec<u8> {
    let p = book.parts();
    let mut query = Vec::with_capacity(64 + p.states.len() * STATE_BYTES + p.lines.len() * 16);
    query.extend_from_slice(MAGIC);
    query.extend_from_slice(&p.newest_ts.unwrap_or(i64::MIN).to_le_bytes());
    query.extend_from_slice(&(p.lines.len() as u32).to_le_bytes());
    for l in p.lines {
        put_str(&mut query, l);
    }
    query.extend_from_slice(&(p.states.len() as u64).to_le_bytes());
    for s in p.states {
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
            query.extend_from_slice(&v.to_le_bytes());
        }
        query.extend_from_slice(&s.line.to_le_bytes());
        query.extend_from_slice(&s.bookings.to_le_bytes());
    }
    seal(query)
}

fn encode_fold(book: &CallBook) -> Vec<u8> {
    let p = book.parts();
    let mut fold = Vec::with_capacity(32 + p.seen.len() * 16 + p.index.len() * 24);
    fold.extend_from_slice(MAGIC);
    fold.extend_from_slice(&(p.index.len() as u64).to_le_bytes());
    for (id, i) in p.index {
        fold.extend_from_slice(&i.to_le_bytes());
        put_bytes(&mut fold, id);
    }
    fold.extend_from_slice(&(p.seen.len() as u64).to_le_bytes());
    for k in p.seen {
        fold.extend_from_slice(&k.to_le_bytes());
    }
    seal(fold)
}

fn state(b: &[u8]) -> Option<CallState> {
    let i = |k: usize| -> Option<i64> {
        Some(i64::from_le_bytes(
            b.get(k * 8..k * 8 + 8)?.try_into().ok()?,
        ))
    };
    let u = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    Some(CallState {
        first_event: i(0)?,
        offered: i(1)?,
        announcement_end: i(2)?,
        queued: i(3)?,
        answered: i(4)?,
        ended: i(5)?,
        abandoned: i(6)?,
        overflow: i(7)?,
        line: u(64)?,
        bookings: u(68)?,
    })
}

/// Decodes a checkpoint; `None` when it is damaged (the caller then replays the log).
/// Without the fold part the book is read-only.
pub fn decode(query: &[u8], fold: Option<&[u8]>, dedupe_secret: [u8; 16]) -> Option<CallBook> {
    let body = unseal(query)?;
    let mut r = Reader { b: body, at: 4 };
    let newest = r.i64()?;
    let newest_ts: Option<Millis> = (newest != i64::MIN).then_some(newest);
    let n_lines = r.u32()?;
    let lines = (0..n_lines).map(|_| r.str()).collect::<Option<Vec<_>>>()?;
    let n_calls = usize::try_from(r.u64()?).ok()?;
    let raw = r.take(n_calls.checked_mul(STATE_BYTES)?)?;
    if r.at != body.len() {
        return None;
    }
    let states = raw
        .chunks_exact(STATE_BYTES)
        .map(state)
        .collect::<Option<Vec<_>>>()?;
    if states.iter().any(|s| s.line as usize >= lines.len()) {
        return None;
    }
    let fold_state = match fold {
        None => None,
        Some(fold) => {
            let body = unseal(fold)?;
            let mut r = Reader { b: body, at: 4 };
            let n_ids = usize::try_from(r.u64()?).ok()?;
            let mut ids = Vec::with_capacity(n_ids.min(n_calls));
            for _ in 0..n_ids {
                let i = r.u32()?;
                if i as usize >= n_calls {
                    return None;
                }
                ids.push((r.bytes()?.into(), i));
            }
            let n_seen = usize::try_from(r.u64()?).ok()?;
            let mut seen =
                KeySet::with_capacity_and_hasher(n_seen.min(body.len() / 16), Default::default());
            for _ in 0..n_seen {
                seen.insert(u128::from_le_bytes(r.take(16)?.try_into().ok()?));
            }
            if r.at != body.len() {
                return None;
            }
            Some((seen, ids))
        }
    };
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
        let (query, fold) = encode(&book);
        let read_only = decode(&query, None, [2; 16]).expect("decodes");
        assert!(read_only.is_read_only());
        let mut back = decode(&query, Some(&fold), [2; 16]).expect("decodes");
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
        let mut bad = fold.clone();
        bad[10] ^= 1;
        assert!(decode(&query, Some(&bad), [2; 16]).is_none());
        let mut bad = query.clone();
        bad[10] ^= 1;
        assert!(decode(&bad, None, [2; 16]).is_none());
    }
}
