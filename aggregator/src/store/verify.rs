//! The whole log, frame by frame: what `netwait check` reports and `netwait repair`
//! salvages. Unlike opening, which stops at the first bad frame, a survey goes on past
//! damage to the next intact commit, so that every intact commit is found.
//!
//! Which frames are taken for commits (a dead letter's raw line is stored as it came,
//! so a payload can hold bytes that look like whole frames, made by anyone who can send
//! a line):
//!
//! - Where the chain of frames puts them: at byte 0, at the end of an intact commit, or
//!   at the end of a damaged frame whose tag still holds (its length is the writer's),
//!   any good frame (version 1 ones included: they stand where they were written).
//! - Past damage whose extent nothing proves (resynchronising on the next magic): only a
//!   frame whose tag holds, which no one but this store's writer can make for that
//!   position. An untagged (version 1) frame is taken there only when nothing else is
//!   possible: in the part of a log written before tags, i.e. when the log starts with
//!   the version 1 magic (a writer that tags starts every log with `NWL2`, two bit flips
//!   away) and no tagged header comes before the frame. Such commits are
//!   [`Commit::unproven`]: nothing tells them from bytes inside a damaged commit (a
//!   rejected line stored before tags), and `check` says so. A log begun before tags
//!   whose very first magic is damaged loses what follows the damage up to the first
//!   tagged frame: an untagged frame is never taken on weaker evidence.

use super::LogPosition;
use super::codec::{Decoder, RecordKind};
use super::log::{
    HEADER, HEADER_V1, Header, LogKey, MAGIC_V1, TailVerdict, frame_at, tag_holds, tagged_headers,
    tail_verdict,
};

/// An intact commit: a frame whose checksum holds and whose records all decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub at: LogPosition,
    /// Frame bytes, header included.
    pub bytes: u64,
    pub events: u64,
    pub dead_letters: u64,
    /// A version 2 frame, its tag holding (else version 1, written before tags).
    pub tagged: bool,
    /// An untagged commit found past damage whose extent is unknown (or following one
    /// such): taken because the log holds nothing better, but not proven to be a commit
    /// rather than bytes inside a damaged one.
    pub unproven: bool,
}

impl Commit {
    pub fn end(&self) -> LogPosition {
        self.at + self.bytes
    }

    /// Header bytes of its frame.
    pub fn header(&self) -> u64 {
        (if self.tagged { HEADER } else { HEADER_V1 }) as u64
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

    /// Intact commits that are [`Commit::unproven`].
    pub fn unproven(&self) -> usize {
        self.commits.iter().filter(|c| c.unproven).count()
    }
}

/// A log's committed bytes, mapped (see `EmbeddedStore::map_committed`): surveyed later,
/// on another thread, while the writer appends after them.
#[derive(Default)]
pub struct CommittedLog {
    map: Option<memmap2::Mmap>,
    key: LogKey,
}

impl CommittedLog {
    pub(crate) fn new(map: memmap2::Mmap, key: LogKey) -> Self {
        Self {
            map: Some(map),
            key,
        }
    }

    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn survey(&self) -> Survey {
        self.map
            .as_deref()
            .map_or_else(Survey::default, |log| survey(log, &self.key))
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
            Some(Ok(RecordKind::Event)) => events += 1,
            Some(Ok(RecordKind::DeadLetter)) => dead += 1,
            Some(Ok(RecordKind::Positions)) => {}
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

/// A log being surveyed, with what choosing frames past damage needs (see the module).
struct Walk<'a> {
    log: &'a [u8],
    key: &'a LogKey,
    /// Position of the first header of the log whose tag holds; looked for once, the
    /// first time it is needed (never for a log of intact commits).
    first_tagged: Option<Option<usize>>,
    /// Whether the log starts with the version 1 magic: begun by a writer before tags.
    starts_untagged: bool,
}

impl Walk<'_> {
    /// The intact commit starting at `at`, if there is one.
    fn commit_at(&self, at: usize) -> Option<Commit> {
        let f = frame_at(&self.log[at..], at as u64, self.key)?;
        let (events, dead_letters) =
            count_records(&self.log[at + f.header..at + f.bytes()]).ok()?;
        Some(Commit {
            at: at as u64,
            bytes: f.bytes() as u64,
            events,
            dead_letters,
            tagged: f.tagged,
            unproven: false,
        })
    }

    fn first_tagged(&mut self) -> Option<usize> {
        let (log, key) = (self.log, self.key);
        *self
            .first_tagged
            .get_or_insert_with(|| tagged_headers(log, 0, key).next())
    }

    /// Whether an untagged frame at `at` may be taken past damage of unknown extent:
    /// only when nothing else is possible (see the module).
    fn untagged_allowed(&mut self, at: usize) -> bool {
        self.starts_untagged && self.first_tagged().is_none_or(|first| at < first)
    }

    /// The commit at `at` that may be taken past damage of unknown extent.
    fn resync_commit(&mut self, at: usize) -> Option<Commit> {
        if matches!(
            Header::read(&self.log[at..], at as u64, self.key),
            Header::Untagged { .. }
        ) && !self.untagged_allowed(at)
        {
            return None;
        }
        self.commit_at(at)
    }

    /// Whether the bytes from `at` to the end can be an unfinished last write.
    fn is_torn_tail(&mut self, at: usize) -> bool {
        let rest = &self.log[at..];
        let head = &rest[..rest.len().min(HEADER)];
        // No tagged header before `at`: the part of the log written before tags.
        let legacy = self.first_tagged().is_none_or(|first| first > at);
        match tail_verdict(head, at as u64, rest.len() as u64, self.key, legacy) {
            TailVerdict::Torn => true,
            TailVerdict::Damage => false,
            TailVerdict::TornIfZeros => rest.iter().all(|&b| b == 0),
            TailVerdict::TornUnlessTaggedAfter => {
                tagged_headers(&rest[1..], at as u64 + 1, self.key)
                    .next()
                    .is_none()
            }
        }
    }

    /// The damage starting at `at` (no intact commit there, not a torn tail): up to the
    /// next commit that may be taken, or the end; and whether its end is proven (by the
    /// tag of the damaged frame's header).
    fn damage_at(&mut self, at: usize) -> (Damage, bool) {
        let log = self.log;
        let rest = &log[at..];
        // A header whose tag holds, whatever its magic and checksum say: the length is
        // the writer's. One commit, lost.
        if let Some((len, crc)) = tag_holds(rest, at as u64, self.key) {
            let full = at.saturating_add(HEADER).saturating_add(len);
            let end = full.min(log.len());
            let payload = &log[at + HEADER..end];
            let what = if full > log.len() {
                format!(
                    "a commit of {len} bytes whose header is damaged, cut short by the end of the log"
                )
            } else if crc32fast::hash(payload) != crc {
                format!("a complete commit of {len} bytes failing its checksum")
            } else if let Err(bad) = count_records(payload) {
                format!(
                    "a commit whose checksum holds but whose record at byte {bad} of it does not decode"
                )
            } else {
                format!("a commit of {len} bytes whose header fails its checksum (its tag holds)")
            };
            let damage = Damage {
                at: at as u64,
                end: end as u64,
                commits: Some(1),
                records_readable: readable_records(payload),
                what,
            };
            return (damage, true);
        }
        // A version 1 header whose frame ends at the end of the log, or where a commit
        // may be taken: one commit, lost (nothing proves its length).
        if let Header::Untagged { len, crc } = Header::read(rest, at as u64, self.key) {
            let end = at.saturating_add(HEADER_V1).saturating_add(len);
            if end == log.len() || (end < log.len() && self.resync_commit(end).is_some()) {
                let payload = &log[at + HEADER_V1..end];
                let what = match count_records(payload) {
                    Err(bad) if crc32fast::hash(payload) == crc => format!(
                        "a commit whose checksum holds but whose record at byte {bad} of it does not decode"
                    ),
                    _ => format!("a complete commit of {len} bytes failing its checksum"),
                };
                let damage = Damage {
                    at: at as u64,
                    end: end as u64,
                    commits: Some(1),
                    records_readable: readable_records(payload),
                    what,
                };
                return (damage, false);
            }
        }
        let end = memchr::memmem::find_iter(&rest[1..], b"NWL")
            .map(|i| at + 1 + i)
            .find(|&c| self.resync_commit(c).is_some())
            .unwrap_or(log.len());
        let damage = Damage {
            at: at as u64,
            end: end as u64,
            commits: None,
            records_readable: 0,
            what: format!("{} bytes that are not an intact commit", end - at),
        };
        (damage, false)
    }
}

/// Surveys a whole log, whose frames are tagged with `key`.
pub fn survey(log: &[u8], key: &LogKey) -> Survey {
    let mut s = Survey {
        log_bytes: log.len() as u64,
        ..Survey::default()
    };
    let mut walk = Walk {
        log,
        key,
        first_tagged: None,
        starts_untagged: false,
    };
    walk.starts_untagged = log.starts_with(&MAGIC_V1);
    let mut at = 0;
    // Whether `at` is where the writer put a frame: the chain from byte 0, or from a
    // tagged commit or header (not resynchronised onto an untagged one).
    let mut proven = true;
    while at < log.len() {
        if let Some(c) = walk.commit_at(at) {
            proven |= c.tagged;
            s.commits.push(Commit {
                unproven: !proven,
                ..c
            });
            at = c.end() as usize;
            continue;
        }
        if walk.is_torn_tail(at) {
            s.torn_tail = Some((at as u64, (log.len() - at) as u64));
            break;
        }
        let (d, end_proven) = walk.damage_at(at);
        proven = end_proven;
        at = d.end as usize;
        s.damage.push(d);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Event, EventType};
    use crate::store::codec::{encode_dead_letter, encode_event};
    use crate::store::log::{MAGIC, encode_header};
    use crate::store::record::DeadLetter;

    const KEY: LogKey = [3; 16];

    /// A log being written as a writer would (tagged), or as one before tags.
    #[derive(Default, Clone)]
    struct Log(Vec<u8>);

    impl Log {
        fn tagged(&mut self, payload: &[u8]) -> usize {
            let at = self.0.len();
            self.0.extend_from_slice(&tagged_frame(&KEY, at, payload));
            at
        }

        fn untagged(&mut self, payload: &[u8]) -> usize {
            let at = self.0.len();
            self.0.extend_from_slice(&untagged_frame(payload));
            at
        }
    }

    fn tagged_frame(key: &LogKey, at: usize, payload: &[u8]) -> Vec<u8> {
        let crc = crc32fast::hash(payload);
        let mut f = encode_header(key, at as u64, payload.len() as u32, crc).to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn untagged_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = MAGIC_V1.to_vec();
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn dead_letter(position: u64, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_dead_letter(
            &mut out,
            &DeadLetter {
                source: "f".into(),
                position,
                code: "empty".into(),
                reason: "empty line".into(),
                raw: raw.into(),
                truncated_from: None,
                received_ms: None,
            },
        );
        out
    }

    fn dead_letters(n: u64) -> Vec<u8> {
        (1..=n).flat_map(|p| dead_letter(p, b"")).collect()
    }

    /// An accepted-looking event, as a forger would put it in a frame.
    fn forged_event() -> Vec<u8> {
        let mut out = Vec::new();
        encode_event(
            &mut out,
            &Event {
                kind: EventType::Answered,
                ts: 1_551_682_805_250,
                call_id: Some("forged".into()),
                event_id: None,
                line: None,
                agent: None,
                booking: None,
                reason: None,
                caller: None,
            },
        );
        out
    }

    #[test]
    fn a_flipped_byte_loses_one_commit_and_keeps_the_others() {
        for tagged in [true, false] {
            let mut log = Log::default();
            let mut add = |p: &[u8]| {
                if tagged {
                    log.tagged(p)
                } else {
                    log.untagged(p)
                }
            };
            let (_, b, c) = (
                add(&dead_letters(2)),
                add(&dead_letters(3)),
                add(&dead_letters(4)),
            );
            let clean_bytes = log.0;
            let mut log = clean_bytes.clone();
            let clean = survey(&log, &KEY);
            assert_eq!(clean.commits.len(), 3);
            assert_eq!(clean.records(), (0, 9));
            assert!(!clean.is_damaged());
            assert_eq!(clean.commits[0].tagged, tagged);
            assert_eq!(clean.unproven(), 0);
            log[c - 7] ^= 0x40;
            let s = survey(&log, &KEY);
            assert_eq!(s.records(), (0, 6), "tagged {tagged}");
            assert_eq!(s.damage.len(), 1);
            let d = &s.damage[0];
            assert_eq!((d.at, d.end), (b as u64, c as u64));
            assert_eq!(d.commits, Some(1));
            assert!(d.what.contains("checksum"), "{}", d.what);
            // The last commit too: complete, so damage, not a torn tail.
            let mut log = clean_bytes[..c].to_vec();
            log[c - 1] ^= 1;
            let s = survey(&log, &KEY);
            assert_eq!(s.torn_tail, None);
            assert_eq!(s.damage[0].at, b as u64);
            assert_eq!(s.commits.len(), 1);
        }
    }

    #[test]
    fn a_flipped_length_bit_is_damage_not_a_torn_tail() {
        // The reproduction: three commits, bit 0 of byte 2 of the second one's length.
        let mut log = Log::default();
        let at: Vec<usize> = [1, 2, 3].map(|n| log.tagged(&dead_letters(n))).to_vec();
        for victim in [1, 2] {
            let mut bytes = log.0.clone();
            bytes[at[victim] + 4 + 2] ^= 0x01;
            let s = survey(&bytes, &KEY);
            assert_eq!(s.torn_tail, None, "frame {victim}");
            assert_eq!(s.commits.len(), 3 - 1, "frame {victim}");
            assert_eq!(s.damage.len(), 1);
            let d = &s.damage[0];
            // The tag (over the length) fails too: the survey resynchronises on the next
            // tagged frame, or the end.
            let end = at.get(victim + 1).copied().unwrap_or(bytes.len());
            assert_eq!((d.at, d.end), (at[victim] as u64, end as u64));
        }
    }

    #[test]
    fn garbage_and_torn_tails() {
        let mut log = Log::default();
        log.tagged(&dead_letters(1));
        let a = log.0.len();
        let mut garbage = log.0.clone();
        garbage.extend_from_slice(b"0123456789abcdef");
        let s = survey(&garbage, &KEY);
        assert_eq!(s.commits.len(), 1);
        assert_eq!(s.damage[0].at, a as u64);
        assert_eq!(s.damage[0].end, garbage.len() as u64);
        // Garbage between two commits ends where the next intact commit starts.
        let mut between = log.clone();
        between.0.extend_from_slice(b"junk!junk!junk!");
        between.tagged(&dead_letters(1));
        let s = survey(&between.0, &KEY);
        assert_eq!(s.commits.len(), 2);
        assert_eq!(s.damage[0].end, (a + 15) as u64);
        assert_eq!(s.unproven(), 0);
        // A frame cut short is a torn tail, inside its header or its payload.
        let mut whole = log.clone();
        whole.tagged(&dead_letters(2));
        for cut in [a + 5, a + 12, a + 23, whole.0.len() - 3] {
            let s = survey(&whole.0[..cut], &KEY);
            assert!(!s.is_damaged(), "cut at {cut}");
            assert_eq!(s.torn_tail, Some((a as u64, (cut - a) as u64)));
        }
    }

    /// Commit A; commit B holding a dead letter whose raw line is a complete frame of an
    /// event (untagged, and tagged with a guessed key at its very position); commit C.
    fn forgery(first: bool) -> (Vec<u8>, usize, usize) {
        let mut log = Log::default();
        if !first {
            log.tagged(&dead_letters(2));
        }
        let b = log.0.len();
        // The raw line ends its record: it starts after B's header and the record's head.
        let untagged = untagged_frame(&forged_event());
        let second = b + HEADER + dead_letter(1, b"").len() + untagged.len();
        let raw = [untagged, tagged_frame(&[0; 16], second, &forged_event())].concat();
        log.tagged(&dead_letter(1, &raw));
        assert_eq!(
            &log.0[second..second + 4],
            &MAGIC,
            "the forged frame's position"
        );
        let c = log.tagged(&dead_letters(1));
        (log.0, b, c)
    }

    #[test]
    fn frames_inside_a_rejected_line_are_never_taken_for_commits() {
        for first in [false, true] {
            let (clean, b, c) = forgery(first);
            assert_eq!(
                survey(&clean, &KEY).records(),
                (0, 2 + if first { 0 } else { 2 })
            );
            // B's magic flipped: its tag still gives its length, one commit lost.
            let mut log = clean.clone();
            log[b] ^= 0x01;
            let s = survey(&log, &KEY);
            assert_eq!(s.records().0, 0, "first {first}: a forged event was taken");
            assert_eq!((s.damage[0].at, s.damage[0].end), (b as u64, c as u64));
            assert_eq!(s.damage[0].commits, Some(1));
            // Its tag damaged too: resynchronising skips both forged frames.
            log[b + 15] ^= 0x01;
            let s = survey(&log, &KEY);
            assert_eq!(s.records().0, 0, "first {first}: a forged event was taken");
            assert_eq!((s.damage[0].at, s.damage[0].end), (b as u64, c as u64));
            assert_eq!(s.damage[0].commits, None);
            assert_eq!(s.commits.last().map(|c| c.at), Some(c as u64));
            // Without C, the damage runs to the end.
            let s = survey(&log[..c], &KEY);
            assert_eq!(s.records().0, 0);
            assert_eq!(s.damage[0].end, c as u64);
        }
    }

    #[test]
    fn untagged_frames_past_damage_only_in_a_log_written_before_tags() {
        // A log of version 1 frames only: nothing else is possible, the frame found past
        // the damage is taken, and said to be unproven.
        let mut log = Log::default();
        log.untagged(&dead_letters(1));
        let b = log.untagged(&dead_letter(1, &untagged_frame(&forged_event())));
        let c = log.untagged(&dead_letters(2));
        let mut bytes = log.0.clone();
        bytes[b] ^= 0x01;
        let s = survey(&bytes, &KEY);
        assert_eq!(s.records(), (1, 3));
        assert_eq!(s.unproven(), 2, "the forged frame and C after it");
        assert!(s.commits.iter().all(|x| x.unproven == (x.at > b as u64)));
        // Once upgraded, a tagged commit follows: the untagged frames before it (the
        // part written before tags) still are all there is.
        let d = log.tagged(&dead_letters(1));
        let mut bytes = log.0.clone();
        bytes[b] ^= 0x01;
        let s = survey(&bytes, &KEY);
        assert_eq!(
            s.commits.last().map(|x| (x.at, x.unproven)),
            Some((d as u64, false))
        );
        assert!(s.commits.iter().any(|x| x.at == c as u64 && x.unproven));
        // A log whose first frame is tagged was written by a tagging writer from the
        // start: an untagged frame past damage is never taken.
        let mut log = Log::default();
        log.tagged(&dead_letters(1));
        let b = log.untagged(&dead_letter(1, &untagged_frame(&forged_event())));
        log.untagged(&dead_letters(2));
        let mut bytes = log.0.clone();
        bytes[b] ^= 0x01;
        let s = survey(&bytes, &KEY);
        assert_eq!(s.records(), (0, 1));
        assert_eq!(s.damage[0].end, bytes.len() as u64);
    }
}
