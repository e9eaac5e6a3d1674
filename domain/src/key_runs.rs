//! Key tables frozen into immutable images ("runs") that are looked up in place, and a
//! table layered over them. A long history's dedupe keys and call index stay in runs
//! (a store maps them from files: only the pages a lookup probes are read), the keys
//! added since they were written in an in-memory [`KeyTable`]; a checkpoint writes the
//! fresh keys as one more run, so it costs what is new, not the whole history.
//!
//! An image is the table's slots as they are (so a lookup probes the same slots as the
//! table did), little-endian: magic `NWK1`, value width (`u32`), slot count (`u64`), keys
//! held (`u64`), whether key 0 is held and its value (`u32` each), the slots (key as two
//! `u64`, then the value), then a CRC-32 of everything before it (checked by the store
//! that loads the image, before it is used).

use super::key_table::{KeyTable, home_slot, prefetch};
use std::io::Write;
use std::marker::PhantomData;
use std::sync::Arc;

/// A value a run can hold: fixed width, little-endian.
pub trait SlotValue: Copy + Default + Send + Sync + 'static {
    const BYTES: usize;
    fn read(b: &[u8]) -> Self;
    fn put(self, out: &mut Vec<u8>);
}

impl SlotValue for () {
    const BYTES: usize = 0;
    fn read(_: &[u8]) -> Self {}
    fn put(self, _: &mut Vec<u8>) {}
}

impl SlotValue for u32 {
    const BYTES: usize = 4;
    fn read(b: &[u8]) -> Self {
        b.first_chunk::<4>().map_or(0, |w| u32::from_le_bytes(*w))
    }
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

const MAGIC: &[u8; 4] = b"NWK1";
const HEADER: usize = 32;
/// The image's trailing CRC-32.
pub const CRC_BYTES: usize = 4;

/// The bytes of an image, wherever they live (a mapped file, a buffer).
pub type RunBytes = Arc<dyn RunMemory>;

/// Where an image's bytes live.
pub trait RunMemory: AsRef<[u8]> + Send + Sync {
    /// The pages read so far need not stay in the process's memory (they are read again
    /// when next needed): a mapped file drops them. Nothing by default.
    fn release(&self) {}
}

impl RunMemory for Vec<u8> {}

/// Lookups between two [`RunMemory::release`]s of a run: each probe of a mapped run
/// brings in the pages around the one it reads (the kernel's fault-around, 64 KiB), so
/// that a few thousand probes of random keys would map most of a long history's runs.
const PROBES_PER_RELEASE: u32 = 64;

/// Probes of a run after which it gets a [`KeyFilter`] (built from a pass over the run):
/// a short-lived open (a small import into a long history) never pays for one, a
/// long-running writer, whose every new event probes every run, does once.
const FILTER_AFTER: u32 = 1 << 16;

/// A blocked Bloom filter of a run's keys (10 bits a key, 6 bits a probe: about 1 % of
/// absent keys pass): a probe for a key that is not there, as every new event's dedupe
/// key is, answers without touching the run's pages (each touch of a mapped run faults
/// in 64 KiB, and the pages are released every [`PROBES_PER_RELEASE`] probes).
struct KeyFilter {
    blocks: Box<[[u64; 8]]>,
}

impl KeyFilter {
    const BITS_PER_KEY: usize = 10;
    const PROBES: usize = 6;

    fn of(keys: impl Iterator<Item = u128>, len: usize) -> Self {
        let n = (len * Self::BITS_PER_KEY).div_ceil(512).max(1);
        let mut filter = Self {
            blocks: vec![[0u64; 8]; n].into_boxed_slice(),
        };
        for key in keys {
            let (block, bits) = filter.place(key);
            for bit in bits {
                filter.blocks[block][bit >> 6] |= 1 << (bit & 63);
            }
        }
        filter
    }

    /// The block of `key` and its bits in it (the key's halves mixed first: keys are
    /// keyed hashes, but a filter must not rely on it).
    fn place(&self, key: u128) -> (usize, impl Iterator<Item = usize> + use<>) {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        let h1 = (lo ^ hi.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let block = ((u128::from(h1) * self.blocks.len() as u128) >> 64) as usize;
        let h2 = (hi ^ lo.rotate_left(17)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        (
            block,
            (0..Self::PROBES).map(move |i| ((h2 >> (9 * i)) & 511) as usize),
        )
    }

    fn may_contain(&self, key: u128) -> bool {
        let (block, mut bits) = self.place(key);
        let words = &self.blocks[block];
        bits.all(|bit| words[bit >> 6] & (1 << (bit & 63)) != 0)
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)?.try_into().ok().map(u64::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_le_bytes)
}

/// The CRC-32 an image ends with, and the bytes it covers.
pub fn image_crc(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (body, crc) = bytes.split_last_chunk::<CRC_BYTES>()?;
    Some((u32::from_le_bytes(*crc), body))
}

/// A [`KeyTable`] image, read in place.
#[derive(Clone)]
pub struct FrozenTable<V> {
    bytes: RunBytes,
    slots: usize,
    len: usize,
    zero: Option<V>,
    /// Lookups since the last release of the bytes' pages.
    probes: Arc<std::sync::atomic::AtomicU32>,
    /// Its keys' filter, once it was probed [`FILTER_AFTER`] times.
    filter: Arc<std::sync::OnceLock<KeyFilter>>,
    _v: PhantomData<V>,
}

impl<V> std::fmt::Debug for FrozenTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrozenTable({} keys, {} slots)", self.len, self.slots)
    }
}

impl<V: SlotValue> FrozenTable<V> {
    const STRIDE: usize = 16 + V::BYTES;

    /// Reads an image's shape; `None` when the bytes are not an image of this value
    /// width or their sizes do not add up (the checksum is the loading store's to check).
    pub fn open(bytes: RunBytes) -> Option<Self> {
        let b = (*bytes).as_ref();
        if b.get(..4)? != MAGIC || u32_at(b, 4)? as usize != V::BYTES {
            return None;
        }
        let slots = usize::try_from(u64_at(b, 8)?).ok()?;
        let len = usize::try_from(u64_at(b, 16)?).ok()?;
        let zero = match u32_at(b, 24)? {
            0 => None,
            1 => Some(V::read(b.get(28..32)?)),
            _ => return None,
        };
        let size = slots
            .checked_mul(Self::STRIDE)?
            .checked_add(HEADER + CRC_BYTES)?;
        // A table is never full: every probe ends at an empty slot.
        let in_slots = len.checked_sub(usize::from(zero.is_some()))?;
        if size != b.len() || (in_slots >= slots && in_slots > 0) {
            return None;
        }
        Some(Self {
            bytes,
            slots,
            len,
            zero,
            probes: Arc::default(),
            filter: Arc::default(),
            _v: PhantomData,
        })
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn slot_count(&self) -> usize {
        self.slots
    }

    /// The image's bytes (the store checks them against what a checkpoint recorded).
    pub fn bytes(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    fn slot(&self, i: usize) -> &[u8] {
        let at = HEADER + i * Self::STRIDE;
        &self.bytes()[at..at + Self::STRIDE]
    }

    fn key_of(slot: &[u8]) -> u128 {
        let lo = u64_at(slot, 0).unwrap_or(0);
        let hi = u64_at(slot, 8).unwrap_or(0);
        u128::from(lo) | u128::from(hi) << 64
    }

    pub fn get(&self, key: u128) -> Option<V> {
        if key == 0 {
            return self.zero;
        }
        if self.slots == 0 {
            return None;
        }
        let probes = self
            .probes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let filter = match self.filter.get() {
            Some(f) => Some(f),
            None if probes >= FILTER_AFTER => Some(self.filter.get_or_init(|| {
                let filter = KeyFilter::of(self.iter().map(|(k, _)| k), self.len);
                self.bytes.release();
                filter
            })),
            None => None,
        };
        if filter.is_some_and(|f| !f.may_contain(key)) {
            return None;
        }
        if probes % PROBES_PER_RELEASE == PROBES_PER_RELEASE - 1 {
            self.bytes.release();
        }
        let mut i = home_slot(key, self.slots);
        // Bounded, although `open` saw to it that some slot is empty.
        for _ in 0..self.slots {
            let slot = self.slot(i);
            match Self::key_of(slot) {
                0 => return None,
                k if k == key => return Some(V::read(&slot[16..])),
                _ => i = if i + 1 == self.slots { 0 } else { i + 1 },
            }
        }
        None
    }

    /// Starts loading the cache line where a lookup of `key` begins.
    #[inline(always)]
    pub fn prefetch(&self, key: u128) {
        if self.slots > 0 {
            let at = HEADER + home_slot(key, self.slots) * Self::STRIDE;
            prefetch(&self.bytes()[at]);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u128, V)> + '_ {
        let zero = self.zero.map(|v| (0, v));
        zero.into_iter().chain((0..self.slots).filter_map(|i| {
            let slot = self.slot(i);
            let key = Self::key_of(slot);
            (key != 0).then(|| (key, V::read(&slot[16..])))
        }))
    }
}

/// Writes the image of `table`; returns its CRC-32 (also its last 4 bytes).
pub fn write_image<V: SlotValue>(table: &KeyTable<V>, out: &mut dyn Write) -> std::io::Result<u32> {
    write_image_as(table, out, table.image_slots())
}

/// [`write_image`], with the slots' memory as their image when `raw` (see
/// [`KeyTable::image_slots`]), else each slot encoded.
fn write_image_as<V: SlotValue>(
    table: &KeyTable<V>,
    out: &mut dyn Write,
    raw: Option<&[u8]>,
) -> std::io::Result<u32> {
    const BLOCK: usize = 1 << 16;
    let mut crc = crc32fast::Hasher::new();
    let mut block = Vec::with_capacity(BLOCK + 64);
    block.extend_from_slice(MAGIC);
    block.extend_from_slice(&(V::BYTES as u32).to_le_bytes());
    block.extend_from_slice(&(table.slot_count() as u64).to_le_bytes());
    block.extend_from_slice(&(table.len() as u64).to_le_bytes());
    block.extend_from_slice(&u32::from(table.zero().is_some()).to_le_bytes());
    table.zero().unwrap_or_default().put(&mut block);
    block.resize(HEADER, 0);
    if let Some(raw) = raw {
        crc.update(&block);
        out.write_all(&block)?;
        for piece in raw.chunks(1 << 20) {
            crc.update(piece);
            out.write_all(piece)?;
        }
        let crc = crc.finalize();
        out.write_all(&crc.to_le_bytes())?;
        return Ok(crc);
    }
    for slot in table.slots() {
        let (key, value) = slot.unwrap_or_default();
        block.extend_from_slice(&(key as u64).to_le_bytes());
        block.extend_from_slice(&((key >> 64) as u64).to_le_bytes());
        let at = block.len();
        value.put(&mut block);
        block.resize(at + V::BYTES, 0);
        if block.len() >= BLOCK {
            crc.update(&block);
            out.write_all(&block)?;
            block.clear();
        }
    }
    crc.update(&block);
    let crc = crc.finalize();
    block.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&block)?;
    Ok(crc)
}

/// One table of every key of `runs` and of `fresh` (a merge of runs; keys of different
/// layers are distinct by construction).
pub fn merged<V: SlotValue>(runs: &[FrozenTable<V>], fresh: &KeyTable<V>) -> KeyTable<V> {
    let n = runs.iter().map(FrozenTable::len).sum::<usize>() + fresh.len();
    let mut table = KeyTable::with_capacity(n);
    for (key, value) in runs.iter().flat_map(FrozenTable::iter).chain(fresh.iter()) {
        table.get_or_insert_reserved(key, value);
    }
    table
}

/// A [`KeyTable`] over frozen runs: lookups see every layer, inserts go to the fresh
/// table (a key is in one layer at most).
#[derive(Debug, Clone, Default)]
pub struct Layered<V> {
    runs: Vec<FrozenTable<V>>,
    fresh: KeyTable<V>,
}

impl<V: SlotValue> Layered<V> {
    pub fn with_runs(runs: Vec<FrozenTable<V>>) -> Self {
        Self {
            runs,
            fresh: KeyTable::default(),
        }
    }

    /// The frozen runs, oldest first.
    pub fn runs(&self) -> &[FrozenTable<V>] {
        &self.runs
    }

    /// The keys added since the runs were written.
    pub fn fresh(&self) -> &KeyTable<V> {
        &self.fresh
    }

    /// Replaces the runs by `runs`, which must hold every key of the runs and of the
    /// fresh table (a checkpoint wrote them): the fresh table empties.
    pub fn freeze(&mut self, runs: Vec<FrozenTable<V>>) {
        self.runs = runs;
        self.fresh = KeyTable::default();
    }

    pub fn len(&self) -> usize {
        self.runs.iter().map(FrozenTable::len).sum::<usize>() + self.fresh.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room in the fresh table for `more` keys without growing.
    pub fn reserve(&mut self, more: usize) {
        self.fresh.reserve(more);
    }

    fn frozen(&self, key: u128) -> Option<V> {
        self.runs.iter().rev().find_map(|r| r.get(key))
    }

    pub fn get(&self, key: u128) -> Option<V> {
        self.fresh.get(key).or_else(|| self.frozen(key))
    }

    /// The value of `key`, inserting `value` in the fresh table when absent (then `true`).
    pub fn get_or_insert(&mut self, key: u128, value: V) -> (V, bool) {
        match self.frozen(key) {
            Some(v) => (v, false),
            None => self.fresh.get_or_insert(key, value),
        }
    }

    /// [`Self::get_or_insert`] with room made (see [`Self::reserve`]).
    pub fn get_or_insert_reserved(&mut self, key: u128, value: V) -> (V, bool) {
        match self.frozen(key) {
            Some(v) => (v, false),
            None => self.fresh.get_or_insert_reserved(key, value),
        }
    }

    /// Starts loading where lookups of `key` begin, in every layer.
    #[inline(always)]
    pub fn prefetch(&self, key: u128) {
        self.fresh.prefetch(key);
        for r in &self.runs {
            r.prefetch(key);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u128, V)> + '_ {
        self.runs
            .iter()
            .flat_map(FrozenTable::iter)
            .chain(self.fresh.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image<V: SlotValue>(t: &KeyTable<V>) -> FrozenTable<V> {
        let mut bytes = Vec::new();
        let crc = write_image(t, &mut bytes).expect("to a vec");
        assert_eq!(image_crc(&bytes).map(|(c, _)| c), Some(crc));
        assert_eq!(
            image_crc(&bytes).map(|(_, b)| crc32fast::hash(b)),
            Some(crc)
        );
        FrozenTable::open(Arc::new(bytes)).expect("an image")
    }

    #[test]
    fn an_image_answers_as_its_table_including_key_zero_and_collisions() {
        let mut t = KeyTable::<u32>::with_capacity(0);
        let keys = (0..3_000u128)
            .map(|i| (i % 900) << 64 | (i % 3))
            .chain([0, u128::MAX]);
        for (n, k) in keys.enumerate() {
            t.get_or_insert(k, n as u32);
        }
        let f = image(&t);
        assert_eq!(f.len(), t.len());
        for k in (0..5_000u128)
            .map(|i| (i % 1_200) << 64 | (i % 4))
            .chain([0, u128::MAX, 7])
        {
            assert_eq!(f.get(k), t.get(k), "key {k:x}");
        }
        let mut a: Vec<_> = f.iter().collect();
        let mut b: Vec<_> = t.iter().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        // Empty tables and sets have images too.
        assert_eq!(image(&KeyTable::<()>::default()).get(5), None);
    }

    #[test]
    fn a_set_written_from_its_memory_is_the_image_its_slots_encode() {
        let mut t = KeyTable::<()>::with_capacity(0);
        for k in (1..5_000u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .chain([0, u128::MAX])
        {
            t.get_or_insert(k, ());
        }
        let raw = t.image_slots();
        assert!(raw.is_some() || cfg!(target_endian = "big"));
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let a = write_image_as(&t, &mut fast, raw).expect("to a vec");
        let b = write_image_as(&t, &mut slow, None).expect("to a vec");
        assert_eq!((a, &fast), (b, &slow), "the same bytes either way");
        assert!(
            KeyTable::<u32>::default().image_slots().is_none(),
            "values are encoded"
        );
    }

    #[test]
    fn a_filtered_run_answers_as_before_and_rarely_reads_for_absent_keys() {
        let mut t = KeyTable::<u32>::with_capacity(0);
        let key = |i: u128| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        for i in 0..20_000u128 {
            t.get_or_insert(key(i), i as u32);
        }
        // Structured keys too (the filter mixes the halves).
        for i in 0..2_000u128 {
            t.get_or_insert((i % 700) << 64 | (i % 3), 7);
        }
        let f = image(&t);
        let probe_all = |f: &FrozenTable<u32>| {
            for i in 0..40_000u128 {
                assert_eq!(f.get(key(i)), t.get(key(i)), "key {i}");
            }
            for i in 0..3_000u128 {
                let k = (i % 900) << 64 | (i % 4);
                assert_eq!(f.get(k), t.get(k), "key {k:x}");
            }
        };
        probe_all(&f);
        assert!(f.filter.get().is_none(), "not probed enough yet");
        for _ in 0..(FILTER_AFTER as usize / 43_000 + 1) {
            probe_all(&f);
        }
        let filter = f.filter.get().expect("built once probed often");
        probe_all(&f);
        // No key of the table is left out; few absent ones pass.
        assert!(t.iter().all(|(k, _)| k == 0 || filter.may_contain(k)));
        let passed = (1_000_000..1_100_000u128)
            .filter(|&i| filter.may_contain(key(i)))
            .count();
        assert!(passed < 3_000, "{passed} of 100,000 absent keys pass");
    }

    #[test]
    fn images_of_another_width_or_size_are_refused() {
        let mut t = KeyTable::<u32>::with_capacity(4);
        t.get_or_insert(9, 1);
        let mut bytes = Vec::new();
        write_image(&t, &mut bytes).expect("to a vec");
        assert!(FrozenTable::<()>::open(Arc::new(bytes.clone())).is_none());
        bytes.pop();
        assert!(FrozenTable::<u32>::open(Arc::new(bytes)).is_none());
    }

    #[test]
    fn a_layered_table_sees_every_layer_and_inserts_only_new_keys() {
        let mut l = Layered::<u32>::default();
        for k in 1..100u128 {
            assert_eq!(l.get_or_insert(k << 64 | k, k as u32), (k as u32, true));
        }
        let first = image(l.fresh());
        l.freeze(vec![first.clone()]);
        assert_eq!((l.len(), l.fresh().len()), (99, 0));
        for k in 50..150u128 {
            let new = k >= 100;
            assert_eq!(l.get_or_insert(k << 64 | k, 7).1, new, "key {k}");
        }
        assert_eq!(l.get(60 << 64 | 60), Some(60));
        assert_eq!(l.get(120 << 64 | 120), Some(7));
        let all = merged(l.runs(), l.fresh());
        assert_eq!(all.len(), 149);
        l.freeze(vec![first, image(l.fresh())]);
        assert_eq!(l.len(), 149);
        assert_eq!(l.iter().count(), 149);
    }
}
