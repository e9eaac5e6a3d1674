//! The dedupe key of spec §1 and the set of keys already seen.
//!
//! A key is a 128-bit SipHash-1-3 of the key fields under a secret key kept in the data
//! directory: with a secret key nobody can craft two events that collide, and the chance
//! of an accidental collision among n events is about n² / 2¹²⁹ (1e-21 for 10⁹ events).

use super::event::Event;
use super::key_runs::{FrozenTable, Layered};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

pub type DedupeKey = u128;

/// A call's identity inside the engine: a keyed 128-bit hash of its `call_id`, so that
/// the call index holds fixed-size keys (the same collision argument as dedupe keys).
pub type CallKey = u128;

/// Computes dedupe keys under a secret.
#[derive(Clone)]
pub struct KeyHasher {
    k0: u64,
    k1: u64,
}

fn put(h: &mut SipHasher13, field: Option<&str>) {
    // Length-prefixed, with presence: ("ab","c") and ("a","bc") never hash alike.
    match field {
        None => h.write_u8(0),
        Some(s) => {
            h.write_u8(1);
            h.write_u64(s.len() as u64);
            h.write(s.as_bytes());
        }
    }
}

impl KeyHasher {
    pub fn new(secret: [u8; 16]) -> Self {
        let (a, b) = secret.split_at(8);
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        Self {
            k0: word(a),
            k1: word(b),
        }
    }

    /// `event_id` when present, else `call_id` + `type` + `ts` (the instant) + `agent` + `booking`.
    pub fn key(&self, ev: &Event<'_>) -> DedupeKey {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        match &ev.event_id {
            Some(id) => {
                h.write_u8(b'E');
                put(&mut h, Some(id));
            }
            None => {
                h.write_u8(b'K');
                put(&mut h, ev.call_id.as_deref());
                h.write_u8(ev.kind as u8);
                h.write_i64(ev.ts);
                put(&mut h, ev.agent.as_deref());
                h.write_u8(ev.booking.map_or(0xff, |b| b as u8));
            }
        }
        h.finish128().as_u128()
    }

    /// The identity of a stored dead letter: its source as named (the path as given to
    /// `import`, `stdin`, a push message's source), its position there, and its raw bytes
    /// as stored with the input's size. The same bad line of the same file sent again is
    /// the same dead letter; another line at that position (the file was rewritten) is not.
    pub fn dead_letter_key(&self, source: &str, position: u64, raw: &[u8], size: u64) -> DedupeKey {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(b'D');
        put(&mut h, Some(source));
        h.write_u64(position);
        h.write_u64(size);
        h.write_u64(raw.len() as u64);
        h.write(raw);
        h.finish128().as_u128()
    }

    /// The [`CallKey`] of a `call_id`.
    pub fn call_key(&self, call_id: &[u8]) -> CallKey {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(b'C');
        h.write_u64(call_id.len() as u64);
        h.write(call_id);
        h.finish128().as_u128()
    }
}

/// The [`CallKey`]s of the call ids met last, for whoever hashes a stream of events: the
/// events of a call come close together, so most of a stream's call ids were hashed a
/// few events before (SipHash is the dearest part of an event's key work). A call id is
/// compared whole, and only keys of the same hasher are reused: a miss costs one hash,
/// nothing else changes.
#[derive(Clone)]
pub struct CallKeyCache {
    hasher: (u64, u64),
    slots: Box<[CachedCall; CACHED_CALLS]>,
}

/// Slots of a [`CallKeyCache`] (a power of two): more than the calls a booking line has
/// under way within a few minutes, small enough to stay in the first-level cache.
const CACHED_CALLS: usize = 64;
/// Longest call id kept (longer ones are hashed every time).
const CACHED_ID: usize = 31;

#[derive(Clone, Copy)]
struct CachedCall {
    /// 0 for an empty slot (call ids are never empty).
    len: u8,
    id: [u8; CACHED_ID],
    key: CallKey,
}

impl Default for CallKeyCache {
    fn default() -> Self {
        let empty = CachedCall {
            len: 0,
            id: [0; CACHED_ID],
            key: 0,
        };
        Self {
            hasher: (0, 0),
            slots: Box::new([empty; CACHED_CALLS]),
        }
    }
}

impl std::fmt::Debug for CallKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallKeyCache")
    }
}

impl CallKeyCache {
    /// `hasher.call_key(call_id)`, from the cache when `call_id` was met last in its slot.
    pub fn key(&mut self, hasher: &KeyHasher, call_id: &[u8]) -> CallKey {
        let len = call_id.len();
        if len == 0 || len > CACHED_ID {
            return hasher.call_key(call_id);
        }
        if self.hasher != (hasher.k0, hasher.k1) {
            *self = Self {
                hasher: (hasher.k0, hasher.k1),
                ..Self::default()
            };
        }
        let slot = &mut self.slots[slot_of(call_id)];
        if usize::from(slot.len) == len && slot.id[..len] == *call_id {
            return slot.key;
        }
        let key = hasher.call_key(call_id);
        slot.len = len as u8;
        slot.id[..len].copy_from_slice(call_id);
        slot.key = key;
        key
    }
}

/// The slot of a call id (1..=31 bytes): a multiplicative hash of its last 8 bytes (where
/// the ids of one source differ) and its length.
fn slot_of(id: &[u8]) -> usize {
    let mut tail = [0u8; 8];
    let n = id.len().min(8);
    tail[..n].copy_from_slice(&id[id.len() - n..]);
    let word = u64::from_le_bytes(tail) ^ (id.len() as u64) << 59;
    (word.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - CACHED_CALLS.trailing_zeros())) as usize
}

/// The dedupe keys seen: frozen runs of a long history and the keys added since (see
/// [`Layered`]).
#[derive(Debug, Clone, Default)]
pub struct KeySet(Layered<()>);

/// How many keys ahead [`KeySet::insert_all`] prefetches.
const PREFETCH_AHEAD: usize = 32;

impl KeySet {
    pub fn with_capacity(n: usize) -> Self {
        let mut set = Self::default();
        set.reserve(n);
        set
    }

    /// A set of the keys of `runs` (distinct runs, as a checkpoint wrote them).
    pub fn with_runs(runs: Vec<FrozenTable<()>>) -> Self {
        Self(Layered::with_runs(runs))
    }

    /// The runs and the keys added since they were written.
    pub fn layers(&self) -> &Layered<()> {
        &self.0
    }

    /// See [`Layered::freeze`].
    pub fn freeze(&mut self, runs: Vec<FrozenTable<()>>) {
        self.0.freeze(runs);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn reserve(&mut self, more: usize) {
        self.0.reserve(more);
    }

    /// True when the key was not in the set.
    pub fn insert(&mut self, key: DedupeKey) -> bool {
        self.0.get_or_insert(key, ()).1
    }

    /// Inserts keys in order, pushing for each whether it was new (a key repeated within
    /// `keys` is new only the first time).
    pub fn insert_all(&mut self, keys: &[DedupeKey], out: &mut Vec<bool>) {
        self.0.reserve(keys.len());
        out.reserve(keys.len());
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = keys.get(i + PREFETCH_AHEAD) {
                self.0.prefetch(ahead);
            }
            out.push(self.0.get_or_insert_reserved(key, ()).1);
        }
    }

    pub fn contains(&self, key: DedupeKey) -> bool {
        self.0.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = DedupeKey> + '_ {
        self.0.iter().map(|(k, ())| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BookingKind, EventType};
    use std::borrow::Cow;

    fn ev(call: &str, ts: i64) -> Event<'static> {
        Event {
            kind: EventType::Booking,
            ts,
            call_id: Some(Cow::Owned(call.into())),
            event_id: None,
            line: None,
            agent: None,
            booking: Some(BookingKind::Book),
            reason: None,
            caller: None,
        }
    }

    #[test]
    fn key_fields_and_only_those() {
        let h = KeyHasher::new([3; 16]);
        let a = ev("c1", 10);
        let mut b = a.clone();
        b.line = Some(Cow::Borrowed("prelievi"));
        b.reason = Some(Cow::Borrowed("x"));
        assert_eq!(
            h.key(&a),
            h.key(&b),
            "line and reason are not part of the key"
        );
        assert_ne!(h.key(&a), h.key(&ev("c1", 11)));
        assert_ne!(h.key(&a), h.key(&ev("c2", 10)));
        let mut c = a.clone();
        c.booking = Some(BookingKind::Move);
        assert_ne!(h.key(&a), h.key(&c));
        let mut d = a.clone();
        d.agent = Some(Cow::Borrowed("op1"));
        assert_ne!(h.key(&a), h.key(&d));
    }

    #[test]
    fn cached_call_keys_are_the_hashers_own() {
        let (h, other) = (KeyHasher::new([3; 16]), KeyHasher::new([4; 16]));
        let mut cache = CallKeyCache::default();
        // Ids that share slots, repeated, of every cached length and beyond.
        let ids: Vec<Vec<u8>> = (0..500u32)
            .map(|i| format!("c19-{:06}", i % 150).into_bytes())
            .chain((1..=40).map(|n| vec![b'x'; n]))
            .chain([b"\x00".to_vec(), vec![0; 31], vec![0; 30]])
            .collect();
        for round in 0..2 {
            for id in &ids {
                assert_eq!(cache.key(&h, id), h.call_key(id), "{id:?} round {round}");
            }
        }
        for id in &ids {
            assert_eq!(cache.key(&other, id), other.call_key(id), "{id:?}");
        }
        assert_eq!(cache.key(&h, b""), h.call_key(b""));
    }

    #[test]
    fn event_id_is_global_and_wins() {
        let h = KeyHasher::new([3; 16]);
        let mut a = ev("c1", 10);
        a.event_id = Some(Cow::Borrowed("e1"));
        let mut b = ev("c2", 99);
        b.event_id = Some(Cow::Borrowed("e1"));
        assert_eq!(h.key(&a), h.key(&b));
        assert_ne!(KeyHasher::new([4; 16]).key(&a), h.key(&a));
    }
}

#[cfg(test)]
mod key_set_tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn agrees_with_a_hash_set_including_key_zero_and_collisions() {
        let mut set = KeySet::default();
        let mut reference = HashSet::new();
        let mut out = Vec::new();
        // Keys with equal low bits collide on purpose; 0 is a key like any other.
        let keys: Vec<u128> = (0..5_000u128)
            .map(|i| (i % 1_700) << 64 | (i % 3))
            .chain([0, 0, u128::MAX, 1 << 127])
            .collect();
        for batch in keys.chunks(333) {
            out.clear();
            set.insert_all(batch, &mut out);
            let want: Vec<bool> = batch.iter().map(|&k| reference.insert(k)).collect();
            assert_eq!(out, want);
        }
        assert!(!set.insert(5 << 64));
        assert!(set.insert(99_999 << 64));
        reference.insert(99_999 << 64);
        assert_eq!(set.len(), reference.len());
        let mut all: Vec<u128> = set.iter().collect();
        all.sort_unstable();
        let mut want: Vec<u128> = reference.iter().copied().collect();
        want.sort_unstable();
        assert_eq!(all, want);
        assert!(set.contains(0) && set.contains(1_699 << 64 | 1) && !set.contains(7));
    }
}
