//! Pseudonymisation of calling numbers: a keyed hash (BLAKE3 keyed mode), so that the same
//! number maps to the same token while nobody without the key can invert it, even by trying
//! every phone number.

use super::event::CallerHash;

pub struct Pseudonymizer {
    key: [u8; 32],
}

impl Pseudonymizer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn hash(&self, caller: &str) -> CallerHash {
        let full = blake3::keyed_hash(&self.key, caller.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_bytes()[..16]);
        CallerHash(out)
    }
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_number_same_token_and_key_matters() {
        let a = Pseudonymizer::new([1; 32]);
        let b = Pseudonymizer::new([2; 32]);
        assert_eq!(a.hash("+390364123456"), a.hash("+390364123456"));
        assert_ne!(a.hash("+390364123456"), a.hash("+390364123457"));
        assert_ne!(a.hash("+390364123456"), b.hash("+390364123456"));
        assert!(!format!("{:?}", a.hash("+390364123456")).contains("390364"));
    }
}
