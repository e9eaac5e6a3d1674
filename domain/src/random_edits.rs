//! Test support: a small deterministic random source and random edits of byte strings,
//! for the differential tests that hold a fast path to its reference.

/// xorshift64: deterministic, so a failing case fails again.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `base` after `edits` random edits: a byte of `alphabet` replacing, inserted at, or
    /// a byte removed from, a random place.
    pub fn edited(&mut self, base: &[u8], edits: usize, alphabet: &[u8]) -> Vec<u8> {
        let mut b = base.to_vec();
        for _ in 0..edits {
            let at = self.below(b.len() + 1);
            let c = *self.pick(alphabet);
            match self.below(3) {
                0 if at < b.len() => b[at] = c,
                1 if at < b.len() => {
                    b.remove(at);
                }
                _ => b.insert(at, c),
            }
        }
        b
    }
}
