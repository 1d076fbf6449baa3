//! Shard state and shard batches as bytes: Bytewax snapshots and exchanges carry them.
//!
//! postcard (serde) after a format tag, so a snapshot from another layout is
//! refused in one line instead of being misread.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Names the layout; change it with any change to the serialised structs.
const FORMAT: &[u8; 8] = b"mwshard1";

/// Why bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `value` as tagged bytes.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = FORMAT.to_vec();
    postcard::to_io(value, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// The value `encode` wrote, or why these bytes are not one.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    let body = bytes.strip_prefix(FORMAT.as_slice()).ok_or_else(|| {
        SnapshotError(
            "the native state was written by another version of meterwax; \
             start with a new recovery directory"
                .to_owned(),
        )
    })?;
    postcard::from_bytes(body).map_err(|e| {
        SnapshotError(format!(
            "the native state is damaged ({e}); start with a new recovery directory"
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::aggregate::Aggregation;
    use crate::shard::{MeterSpec, Shard};
    use crate::split::ShardBatch;
    use crate::window::WindowConfig;

    #[test]
    fn a_shard_round_trips_and_foreign_bytes_are_refused() {
        let meters = vec![MeterSpec {
            slug: "tokens".into(),
            aggregation: Aggregation::Sum,
            group_names: vec![],
        }];
        let config = WindowConfig {
            size_ms: 60_000,
            grace_ms: 0,
            settlement_ms: 0,
            idle_timeout_ms: 0,
        };
        let mut shard = Shard::new(meters, config, 1_000, BTreeSet::new());
        let batch = ShardBatch {
            origin: "usage".into(),
            tenants: vec!["acme".into()],
            tenant: vec![0],
            time_ms: vec![5],
            progress_ms: vec![5],
            key_hash: vec![u128::MAX],
            offset: vec![0],
            payload: vec![Default::default()],
            source: vec![Default::default()],
            id: vec![Default::default()],
            measure_end: vec![1],
            meter: vec![0],
            value: vec![7],
            distinct: vec![Default::default()],
            group_end: vec![0],
            ..ShardBatch::default()
        };
        let screened = shard.screen(&batch);
        shard.admit(&batch, &screened.fresh);
        let restored: Shard = decode(&encode(&shard)).unwrap();
        assert_eq!(encode(&restored), encode(&shard));
        assert_eq!(decode::<ShardBatch>(&encode(&batch)).unwrap(), batch);

        assert!(decode::<Shard>(b"pickle").is_err());
        let mut cut = encode(&shard);
        cut.truncate(cut.len() - 3);
        assert!(decode::<Shard>(&cut).unwrap_err().0.contains("damaged"));
    }
}
