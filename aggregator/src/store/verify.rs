//! The whole log, frame by frame: what `netwait check` reports and `netwait repair`
//! salvages. Unlike opening, which stops at the first bad frame, a survey goes on past
//! damage to the next intact commit, so that every intact commit is found.

use super::LogPosition;
use super::codec::Decoder;
use super::log::{HEADER, MAGIC, ends_early, frame_at, is_torn_tail};

/// An intact commit: a frame whose checksum holds and whose records all decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub at: LogPosition,
    /// Frame bytes, header included.
    pub bytes: u64,
    pub events: u64,
    pub dead_letters: u64,
}

impl Commit {
    pub fn end(&self) -> LogPosition {
        self.at + self.bytes
    }
}

/// Bytes that are neither intact commits nor an unfinished last write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub at: LogPosition,
    pub end: LogPosition,
    /// Commits lost, when their frame headers can still be read (one frame failing its
    /// checksum); `None` when the damage hides how many there were.
    pub commits: Option<u64>,
    /// Records readable in the damaged bytes before the damage stops the decoder (a
    /// lower bound of what was lost, none of them kept).
    pub records_readable: u64,
    pub what: String,
}

/// Everything in a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    pub log_bytes: u64,
    pub commits: Vec<Commit>,
    pub damage: Vec<Damage>,
    /// An unfinished last write (position, bytes): not damage, a writer's open cuts it.
    pub torn_tail: Option<(LogPosition, u64)>,
}

impl Survey {
    pub fn is_damaged(&self) -> bool {
        !self.damage.is_empty()
    }

    /// Events and dead letters in the intact commits.
    pub fn records(&self) -> (u64, u64) {
        self.commits
            .iter()
            .fold((0, 0), |(e, d), c| (e + c.events, d + c.dead_letters))
    }
}

/// A log's committed bytes, mapped (see `EmbeddedStore::map_committed`): surveyed later,
/// on another thread, while the writer appends after them.
#[derive(Default)]
pub struct CommittedLog {
    map: Option<memmap2::Mmap>,
}

impl CommittedLog {
    pub(crate) fn new(map: memmap2::Mmap) -> Self {
        Self { map: Some(map) }
    }

    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn survey(&self) -> Survey {
        self.map.as_deref().map_or_else(Survey::default, survey)
    }
}

/// Events and dead letters of a payload; `Err` with the offset of the first record that
/// does not decode.
fn count_records(payload: &[u8]) -> Result<(u64, u64), usize> {
    let (mut events, mut dead) = (0, 0);
    let mut records = Decoder::new(payload);
    loop {
        let at = records.position();
        match records.skip_record() {
            None => return Ok((events, dead)),
            Some(Ok(true)) => events += 1,
            Some(Ok(false)) => dead += 1,
            Some(Err(_)) => return Err(at),
        }
    }
}

/// Records that decode before the first one that does not.
fn readable_records(payload: &[u8]) -> u64 {
    let mut records = Decoder::new(payload);
    std::iter::from_fn(|| records.skip_record())
        .take_while(Result::is_ok)
        .count() as u64
}

/// The intact commit starting at `at`, if there is one.
fn commit_at(log: &[u8], at: usize) -> Option<Commit> {
    let len = frame_at(&log[at..])?;
    let (events, dead_letters) = count_records(&log[at + HEADER..at + HEADER + len]).ok()?;
    Some(Commit {
        at: at as u64,
        bytes: (HEADER + len) as u64,
        events,
        dead_letters,
    })
}

/// The damage starting at `at` (no intact commit there, not a torn tail): up to the next
/// intact commit, or the end.
fn damage_at(log: &[u8], at: usize) -> Damage {
    let rest = &log[at..];
    // A readable header whose frame ends where an intact commit starts (or at the end of
    // the log): one commit, lost.
    if rest[..4] == MAGIC {
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = at + HEADER + len;
        if end == log.len() || (end < log.len() && commit_at(log, end).is_some()) {
            let payload = &log[at + HEADER..end];
            let what = match count_records(payload) {
                Err(bad) if frame_at(rest).is_some() => {
                    format!(
                        "a commit whose checksum holds but whose record at byte {bad} of it does not decode"
                    )
                }
                _ => format!("a complete commit of {len} bytes failing its checksum"),
            };
            return Damage {
                at: at as u64,
                end: end as u64,
                commits: Some(1),
                records_readable: readable_records(payload),
                what,
            };
        }
    }
    let end = memchr::memmem::find_iter(&rest[1..], &MAGIC)
        .map(|i| at + 1 + i)
        .find(|&c| commit_at(log, c).is_some())
        .unwrap_or(log.len());
    Damage {
        at: at as u64,
        end: end as u64,
        commits: None,
        records_readable: 0,
        what: format!("{} bytes that are not an intact commit", end - at),
    }
}

/// Surveys a whole log.
pub fn survey(log: &[u8]) -> Survey {
    let mut s = Survey {
        log_bytes: log.len() as u64,
        ..Survey::default()
    };
    let mut at = 0;
    while at < log.len() {
        if let Some(c) = commit_at(log, at) {
            s.commits.push(c);
            at = c.end() as usize;
            continue;
        }
        let rest = &log[at..];
        let head = &rest[..rest.len().min(HEADER)];
        let zeros = || rest.iter().all(|&b| b == 0);
        let early = |crc| ends_early(rest.get(HEADER..).unwrap_or_default(), crc);
        if is_torn_tail(head, rest.len() as u64, zeros, early) {
            s.torn_tail = Some((at as u64, rest.len() as u64));
            break;
        }
        let d = damage_at(log, at);
        at = d.end as usize;
        s.damage.push(d);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::{DeadLetter, encode_dead_letter};

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC);
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn dead_letters(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for position in 1..=n {
            encode_dead_letter(
                &mut out,
                &DeadLetter {
                    source: "f".into(),
                    position,
                    code: "empty".into(),
                    reason: "empty line".into(),
                    raw: (&b""[..]).into(),
                    truncated_from: None,
                    received_ms: None,
                },
            );
        }
        out
    }

    #[test]
    fn a_flipped_byte_loses_one_commit_and_keeps_the_others() {
        let (a, b, c) = (
            frame(&dead_letters(2)),
            frame(&dead_letters(3)),
            frame(&dead_letters(4)),
        );
        let mut log = [a.clone(), b.clone(), c.clone()].concat();
        let clean = survey(&log);
        assert_eq!(clean.commits.len(), 3);
        assert_eq!(clean.records(), (0, 9));
        assert!(!clean.is_damaged());
        log[a.len() + HEADER + 5] ^= 0x40;
        let s = survey(&log);
        assert_eq!(s.records(), (0, 6));
        assert_eq!(s.damage.len(), 1);
        let d = &s.damage[0];
        assert_eq!((d.at, d.end), (a.len() as u64, (a.len() + b.len()) as u64));
        assert_eq!(d.commits, Some(1));
        assert!(d.what.contains("checksum"), "{}", d.what);
        // The last commit too: complete, so damage, not a torn tail.
        let mut log = [a.clone(), b.clone()].concat();
        let n = log.len();
        log[n - 1] ^= 1;
        let s = survey(&log);
        assert_eq!(s.torn_tail, None);
        assert_eq!(s.damage[0].at, a.len() as u64);
        assert_eq!(s.commits.len(), 1);
    }

    #[test]
    fn garbage_and_torn_tails() {
        let a = frame(&dead_letters(1));
        let garbage = [a.clone(), b"0123456789abcdef".to_vec()].concat();
        let s = survey(&garbage);
        assert_eq!(s.commits.len(), 1);
        assert_eq!(s.damage[0].at, a.len() as u64);
        assert_eq!(s.damage[0].end, garbage.len() as u64);
        // Garbage between two commits ends where the next intact commit starts.
        let between = [a.clone(), b"junk!junk!junk!".to_vec(), a.clone()].concat();
        let s = survey(&between);
        assert_eq!(s.commits.len(), 2);
        assert_eq!(s.damage[0].end, (a.len() + 15) as u64);
        // A frame cut short is a torn tail.
        let b = frame(&dead_letters(2));
        let torn = [a.clone(), b[..b.len() - 3].to_vec()].concat();
        let s = survey(&torn);
        assert!(!s.is_damaged());
        assert_eq!(s.torn_tail, Some((a.len() as u64, (b.len() - 3) as u64)));
    }
}
