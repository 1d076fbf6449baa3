//! Hashing for keys that are already 128-bit hashes (idempotency keys, series keys):
//! their low 64 bits are as well spread as any hasher's output, so use them as is.

use std::hash::{BuildHasherDefault, Hasher};

/// A Hasher for u128 keys that are themselves uniform hashes.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed with it; fold anything else in, byte by byte.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        // Mixed with what came before (a window start, in (start, key) pairs).
        self.0 = self.0.rotate_left(5) ^ key as u64;
    }
}

/// Builds KeyHashers for HashSet/IndexMap of hashed keys.
pub type KeyHash = BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_key_hashes_to_its_low_bits() {
        assert_eq!(KeyHash::default().hash_one(0xAB_u128 << 64 | 7), 7);
    }
}
