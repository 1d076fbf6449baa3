//! Exact duplicate detection by idempotency-key hash over an event-time horizon:
//! operators/dedup.py's DedupState, keyed by 128-bit hashes instead of strings.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::keyhash::KeyHash;

/// Remembers key hashes until the watermark passes their time plus a horizon.
///
/// Keys are filed in event-time buckets so expiry drops whole buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    pub horizon_ms: i64,
    bucket_ms: i64,
    seen: HashSet<u128, KeyHash>,
    buckets: BTreeMap<i64, Vec<u128>>,
}

impl Dedup {
    /// An empty store (`bucket_ms` > 0; the shard passes the window length).
    pub fn new(horizon_ms: i64, bucket_ms: i64) -> Dedup {
        assert!(horizon_ms >= 0 && bucket_ms > 0, "checked by the caller");
        Dedup {
            horizon_ms,
            bucket_ms,
            seen: HashSet::default(),
            buckets: BTreeMap::new(),
        }
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: u128) -> bool {
        self.seen.contains(&key)
    }

    /// Record `key` at `time_ms`: true if it is new, false if it is a duplicate.
    pub fn add(&mut self, key: u128, time_ms: i64) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.buckets
            .entry(time_ms.div_euclid(self.bucket_ms))
            .or_default()
            .push(key);
        true
    }

    /// Drop keys whose bucket ended more than the horizon before `watermark_ms`.
    pub fn expire(&mut self, watermark_ms: i64) -> usize {
        let limit = watermark_ms.saturating_sub(self.horizon_ms);
        let mut dropped = 0;
        while let Some(entry) = self.buckets.first_entry() {
            if (entry.key() + 1) * self.bucket_ms > limit {
                break;
            }
            for key in entry.remove() {
                self.seen.remove(&key);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_a_duplicate_until_its_bucket_expires() {
        let mut dedup = Dedup::new(1_000, 100);
        assert!(dedup.add(7, 150));
        assert!(!dedup.add(7, 999));
        assert_eq!(dedup.expire(1_199), 0); // bucket [100, 200) ends at 200 > 199
        assert!(dedup.contains(7));
        assert_eq!(dedup.expire(1_200), 1);
        assert!(!dedup.contains(7));
        assert!(dedup.is_empty());
    }

    #[test]
    fn negative_times_fall_in_floor_buckets() {
        let mut dedup = Dedup::new(0, 100);
        dedup.add(1, -1); // bucket -1: [-100, 0)
        assert_eq!(dedup.expire(-1), 0);
        assert_eq!(dedup.expire(0), 1);
    }
}
