//! Accepted events as rows of ClickHouse's `accepted_events` table, in RowBinary:
//! sinks/clickhouse.py's `_event_rows`, one row per event and meter, built from
//! the shard batch's columns (no Python object per event).

use crate::aggregate::{Aggregation, SCALE};
use crate::row_binary;
use crate::shard::MeterSpec;
use crate::split::{ShardBatch, Span};

/// The table's columns in the order the rows hold them.
pub const COLUMNS: [&str; 14] = [
    "tenant",
    "meter",
    "aggregation",
    "group_key",
    "quantity",
    "distinct_value",
    "event_time",
    "source",
    "id",
    "type",
    "origin",
    "partition",
    "offset",
    "ingested_at",
];

/// A string as Python's `json.dumps(..., ensure_ascii=False)` writes it.
fn json_string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for &byte in text {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..0x20 => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

fn span(batch: &ShardBatch, Span(start, end): Span) -> &[u8] {
    &batch.text[start as usize..end as usize]
}

/// The event log rows of `rows` of `batch` (RowBinary, `COLUMNS`) and how many.
///
/// `meters` and `event_types` are the catalog in the order the batch numbers
/// meters; `ingested_at_ms` is when the batch was accepted.
pub fn rows(
    batch: &ShardBatch,
    rows: &[u32],
    meters: &[MeterSpec],
    event_types: &[String],
    ingested_at_ms: i64,
) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(rows.len() * 160);
    let mut count = 0;
    let mut group_key = Vec::new();
    let origin = batch.origin.as_bytes();
    let partition = batch.partition as i32;
    for &row in rows {
        let row = row as usize;
        let tenant = batch.tenants[batch.tenant[row] as usize].as_bytes();
        for at in batch.measures(row) {
            let index = batch.meter[at] as usize;
            let meter = &meters[index];
            group_key.clear();
            group_key.push(b'{');
            for (k, (name, g)) in meter.group_names.iter().zip(batch.groups(at)).enumerate() {
                if k > 0 {
                    group_key.push(b',');
                }
                json_string(&mut group_key, name.as_bytes());
                group_key.push(b':');
                json_string(&mut group_key, span(batch, batch.group[g]));
            }
            group_key.push(b'}');
            let (quantity, distinct) = match meter.aggregation {
                Aggregation::UniqueCount => (0, span(batch, batch.distinct[at])),
                Aggregation::Count => (SCALE, &b""[..]),
                _ => (batch.value[at], &b""[..]),
            };
            row_binary::text(&mut out, tenant);
            row_binary::text(&mut out, meter.slug.as_bytes());
            row_binary::text(&mut out, meter.aggregation.code().as_bytes());
            row_binary::text(&mut out, &group_key);
            out.extend_from_slice(&quantity.to_le_bytes());
            row_binary::text(&mut out, distinct);
            out.extend_from_slice(&batch.time_ms[row].to_le_bytes());
            row_binary::text(&mut out, span(batch, batch.source[row]));
            row_binary::text(&mut out, span(batch, batch.id[row]));
            row_binary::text(&mut out, event_types[index].as_bytes());
            row_binary::text(&mut out, origin);
            out.extend_from_slice(&partition.to_le_bytes());
            out.extend_from_slice(&batch.offset[row].to_le_bytes());
            out.extend_from_slice(&ingested_at_ms.to_le_bytes());
            count += 1;
        }
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_pythons() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"\\\n\u{1}é\u{7f}".as_bytes());
        assert_eq!(out, "\"a\\\"\\\\\\n\\u0001é\u{7f}\"".as_bytes());
    }
}
