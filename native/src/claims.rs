//! Durable idempotency claims of accepted events, packed for one Redis call per
//! batch: sinks/redis_idempotency.py's record layout, built from the shard
//! batch's columns (no key string per event).

use xxhash_rust::xxh3::xxh3_64;

use crate::split::ShardBatch;
use crate::time::civil_from_days;

/// Bytes per packed claim: UTC date of event time (`YYYY-MM-DD`), key hash, token tag.
pub const RECORD_BYTES: usize = 10 + 16 + 8;

const DAY_MS: i64 = 86_400_000;

/// The claim day's date as the store names its buckets (operators.idempotency.claim_day).
fn date(time_ms: i64) -> [u8; 10] {
    let (year, month, day) = civil_from_days(time_ms.div_euclid(DAY_MS));
    let text = format!("{year:04}-{month:02}-{day:02}");
    text.as_bytes().try_into().unwrap_or(*b"0000-00-00")
}

/// One record per row of `batch` in `rows`: date, the 16-byte key hash (big-endian)
/// and xxh3-64 of the token `{instance}|{origin}|{partition}|{offset}` (big-endian).
pub fn records(batch: &ShardBatch, rows: &[u32], instance: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * RECORD_BYTES);
    let prefix = format!("{instance}|{}|{}|", batch.origin, batch.partition);
    let mut token = prefix.clone().into_bytes();
    let mut last_day = i64::MIN;
    let mut day_text = [0u8; 10];
    for &row in rows {
        let row = row as usize;
        let time_ms = batch.time_ms[row];
        if time_ms.div_euclid(DAY_MS) != last_day {
            last_day = time_ms.div_euclid(DAY_MS);
            day_text = date(time_ms);
        }
        out.extend_from_slice(&day_text);
        out.extend_from_slice(&batch.key_hash[row].to_be_bytes());
        token.truncate(prefix.len());
        token.extend_from_slice(batch.offset[row].to_string().as_bytes());
        out.extend_from_slice(&xxh3_64(&token).to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days_of_event_time() {
        assert_eq!(&date(0), b"1970-01-01");
        assert_eq!(&date(-1), b"1969-12-31");
        // 2026-03-01T00:00:00Z and the millisecond before it.
        assert_eq!(&date(1_772_323_200_000), b"2026-03-01");
        assert_eq!(&date(1_772_323_199_999), b"2026-02-28");
        assert_eq!(&date(951_782_400_000), b"2000-02-29");
    }

    #[test]
    fn a_record_is_date_hash_and_token_tag() {
        let batch = ShardBatch {
            origin: "usage".into(),
            partition: 3,
            time_ms: vec![0, 86_400_000],
            key_hash: vec![1, 2],
            offset: vec![7, 8],
            ..ShardBatch::default()
        };
        let out = records(&batch, &[1], "inst");
        assert_eq!(out.len(), RECORD_BYTES);
        assert_eq!(&out[..10], b"1970-01-02");
        assert_eq!(&out[10..26], &2u128.to_be_bytes());
        assert_eq!(&out[26..], &xxh3_64(b"inst|usage|3|8").to_be_bytes());
    }
}
