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

/// rustc's FxHash: a multiply and rotate per word, for keys made of small integers
/// that the core numbered itself (no input chooses them).
#[derive(Default, Clone, Copy)]
pub struct NumberHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl NumberHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_i64(&mut self, value: i64) {
        self.add(value as u64);
    }
}

/// Builds NumberHashers for maps keyed by numbered keys.
pub type NumberHash = BuildHasherDefault<NumberHasher>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_key_hashes_to_its_low_bits() {
        assert_eq!(KeyHash::default().hash_one(0xAB_u128 << 64 | 7), 7);
    }

    #[test]
    fn numbered_keys_spread() {
        let hash = |key: (u32, u32, i64)| NumberHash::default().hash_one(key);
        assert_ne!(hash((1, 2, 0)), hash((2, 1, 0)));
        assert_ne!(hash((1, 2, 60_000)), hash((1, 2, 120_000)));
    }
}
