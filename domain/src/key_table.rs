//! Tables keyed by 128-bit keyed hashes (dedupe keys, call keys): open addressing with
//! linear probing over the keys themselves (already uniform, so their low bits pick the
//! slot), at most 3/4 full, sized to the need rather than to a power of two.
//!
//! A general hash map costs a cache miss per lookup at these sizes (a million keys);
//! bulk users prefetch the slot of a key a few places ahead ([`KeyTable::prefetch`]) so
//! that the misses overlap instead of adding up. Fresh memory is the dearest part of
//! filling a table (a page fault and a kernel clear per page), hence the tight sizing.

/// 0 marks an empty slot; the key 0 itself is kept apart.
#[derive(Debug, Clone, Default)]
pub struct KeyTable<V> {
    slots: Vec<(Key, V)>,
    len: usize,
    zero: Option<V>,
}

/// A key as two words: a `u128` would align slots to 16 bytes, and a call index slot
/// (key and `u32`) would take 32 bytes instead of 24.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(transparent)]
struct Key([u64; 2]);

impl Key {
    const EMPTY: Key = Key([0; 2]);

    fn of(k: u128) -> Self {
        Self([k as u64, (k >> 64) as u64])
    }

    fn get(self) -> u128 {
        u128::from(self.0[0]) | u128::from(self.0[1]) << 64
    }
}

impl<V: Copy + Default> KeyTable<V> {
    pub fn with_capacity(n: usize) -> Self {
        let mut t = Self {
            slots: Vec::new(),
            len: 0,
            zero: None,
        };
        t.reserve(n);
        t
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `more` keys without growing.
    pub fn reserve(&mut self, more: usize) {
        let need = (self.len + more).saturating_mul(4) / 3 + 1;
        if need > self.slots.len() {
            // Geometric growth for one-by-one inserts; exact size for a bulk reserve.
            let want = need.max(self.slots.len() * 2).max(16);
            // Zeroes written, not `vec![..; n]` of zeroes: calloc'ed pages would first
            // be mapped to the shared zero page by the probes' reads, then copied on the
            // first write with a TLB shootdown across CPUs, page after page.
            let mut slots = Vec::with_capacity(want);
            slots.resize(want, (Key::EMPTY, V::default()));
            let old = std::mem::replace(&mut self.slots, slots);
            self.len = usize::from(self.zero.is_some());
            for (key, value) in old.into_iter().filter(|&(k, _)| k != Key::EMPTY) {
                self.place(key.get(), value);
            }
        }
    }

    /// The home slot of a key (see [`home_slot`]).
    fn slot(&self, key: u128) -> usize {
        home_slot(key, self.slots.len())
    }

    /// The slots' memory as the bytes of a frozen image's slots (each key as two
    /// little-endian words, an empty slot all zero), when it is laid out so: a table
    /// without values on a little-endian machine. The image is then written without
    /// encoding each slot.
    pub fn image_slots(&self) -> Option<&[u8]> {
        let bare = std::mem::size_of::<(Key, V)>() == std::mem::size_of::<Key>();
        if !(bare && cfg!(target_endian = "little")) {
            return None;
        }
        // SAFETY: a slot is a `Key` (two `u64`, every byte initialised: `repr(transparent)`
        // over `[u64; 2]`) and a value of size 0 (checked above: the pair is no larger
        // than the key, so there is no padding); `u8` has no alignment to meet, and the
        // bytes are borrowed from `self.slots` for as long as `self` is.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.slots.as_ptr().cast::<u8>(),
                std::mem::size_of_val(self.slots.as_slice()),
            )
        })
    }

    /// Number of slots (empty ones included): the shape of a frozen image.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The value of key 0, kept apart from the slots.
    pub fn zero(&self) -> Option<V> {
        self.zero
    }

    /// Every slot in order, `None` when empty: what a frozen image stores, so that its
    /// lookups probe exactly as this table's do.
    pub fn slots(&self) -> impl Iterator<Item = Option<(u128, V)>> + '_ {
        self.slots
            .iter()
            .map(|&(k, v)| (k != Key::EMPTY).then(|| (k.get(), v)))
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    /// The value of `key`, inserting `value` when absent (then `true`). Needs room.
    fn place(&mut self, key: u128, value: V) -> (V, bool) {
        if key == 0 {
            return match self.zero {
                Some(v) => (v, false),
                None => {
                    self.zero = Some(value);
                    self.len += 1;
                    (value, true)
                }
            };
        }
        let mut i = self.slot(key);
        let key = Key::of(key);
        loop {
            match self.slots[i] {
                (Key::EMPTY, _) => {
                    self.slots[i] = (key, value);
                    self.len += 1;
                    return (value, true);
                }
                (k, v) if k == key => return (v, false),
                _ => i = self.next(i),
            }
        }
    }

    /// The value of `key`, inserting `value` when absent (then `true`).
    pub fn get_or_insert(&mut self, key: u128, value: V) -> (V, bool) {
        self.reserve(1);
        self.place(key, value)
    }

    /// [`Self::get_or_insert`] for a table with room for this key (see [`Self::reserve`]).
    ///
    /// # Panics
    /// When the table is full (it never is after a `reserve` that covers the key).
    pub fn get_or_insert_reserved(&mut self, key: u128, value: V) -> (V, bool) {
        self.place(key, value)
    }

    pub fn get(&self, key: u128) -> Option<V> {
        if key == 0 {
            return self.zero;
        }
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.slot(key);
        let key = Key::of(key);
        loop {
            match self.slots[i] {
                (Key::EMPTY, _) => return None,
                (k, v) if k == key => return Some(v),
                _ => i = self.next(i),
            }
        }
    }

    /// Starts loading the cache line where a lookup of `key` begins.
    #[inline(always)]
    pub fn prefetch(&self, key: u128) {
        if let Some(slot) = self.slots.get(self.slot(key)) {
            prefetch(slot);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u128, V)> + '_ {
        let zero = self.zero.map(|v| (0, v));
        zero.into_iter().chain(
            self.slots
                .iter()
                .filter(|&&(k, _)| k != Key::EMPTY)
                .map(|&(k, v)| (k.get(), v)),
        )
    }
}

/// The home slot of a key among `slots`: its low 64 bits scaled to the table (Lemire's
/// reduction). Shared with frozen images (`key_runs`), which must probe alike.
pub fn home_slot(key: u128, slots: usize) -> usize {
    ((u128::from(key as u64) * slots as u128) >> 64) as usize
}

/// Asks the CPU to start loading `at`'s cache line.
#[inline(always)]
pub fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults, and the address is valid anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(at).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_hash_map_including_key_zero_and_collisions() {
        let mut table = KeyTable::<u32>::with_capacity(0);
        let mut reference = HashMap::new();
        // Keys with equal low bits collide on purpose; 0 is a key like any other.
        let keys =
            (0..5_000u128)
                .map(|i| (i % 1_700) << 64 | (i % 3))
                .chain([0, 0, u128::MAX, 1 << 127]);
        for (n, key) in keys.enumerate() {
            let n = n as u32;
            let want = match reference.get(&key) {
                Some(&v) => (v, false),
                None => {
                    reference.insert(key, n);
                    (n, true)
                }
            };
            assert_eq!(table.get_or_insert(key, n), want);
        }
        assert_eq!(table.len(), reference.len());
        let mut all: Vec<(u128, u32)> = table.iter().collect();
        all.sort_unstable();
        let mut want: Vec<(u128, u32)> = reference.into_iter().collect();
        want.sort_unstable();
        assert_eq!(all, want);
        assert_eq!(
            table.get(0),
            Some(0),
            "the first value given for key 0 stays"
        );
        assert_eq!(table.get(1_699 << 64 | 1), Some(1_699));
        assert_eq!(table.get(7), None);
    }
}
