//! A parsed batch of one input partition split by shard, in input order:
//! operators/sharding.py's ShardSplitter, with columns in and columns out.

use serde::{Deserialize, Serialize};

use crate::batch::Columns;

/// A text's `[start, end)` bytes in its batch's `text`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span(pub u32, pub u32);

/// One shard's accepted events of one input partition's batch, as columns.
///
/// Every shard gets one for every batch (maybe without events): `max_time_ms`
/// tells it how far the partition got. `progress_ms[i]` is the latest event
/// time of the whole batch up to and including event `i`, over every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardBatch {
    pub origin: String,
    pub partition: i64,
    pub max_time_ms: Option<i64>,
    /// Interned tenants; `tenant` indexes them.
    pub tenants: Vec<String>,
    pub tenant: Vec<u32>,
    pub time_ms: Vec<i64>,
    pub progress_ms: Vec<i64>,
    /// The 128-bit hash of the idempotency key.
    pub key_hash: Vec<u128>,
    /// The message's offset in its partition, its bytes, CloudEvents source and id.
    pub offset: Vec<i64>,
    /// When the message reached the input (epoch ms; for latency metrics).
    pub arrived_ms: Vec<i64>,
    pub payload: Vec<Span>,
    pub source: Vec<Span>,
    pub id: Vec<Span>,
    /// Per event: the end of its measures in the measure columns.
    pub measure_end: Vec<u32>,
    /// Per measure: the meter (its position in the catalog), scaled value,
    /// UNIQUE_COUNT's text, and the end of its group values in `group`.
    pub meter: Vec<u32>,
    pub value: Vec<i128>,
    pub distinct: Vec<Span>,
    pub group_end: Vec<u32>,
    pub group: Vec<Span>,
    pub text: Vec<u8>,
}

impl ShardBatch {
    /// Events in this part.
    pub fn len(&self) -> usize {
        self.time_ms.len()
    }

    /// Whether this part has no event.
    pub fn is_empty(&self) -> bool {
        self.time_ms.is_empty()
    }

    /// A text of this batch.
    pub fn text(&self, span: Span) -> &str {
        // Only whole UTF-8 texts are ever copied in (see `copy`).
        std::str::from_utf8(&self.text[span.0 as usize..span.1 as usize]).unwrap_or_default()
    }

    /// An event's bytes as it arrived.
    pub fn payload(&self, row: usize) -> &[u8] {
        let Span(start, end) = self.payload[row];
        &self.text[start as usize..end as usize]
    }

    /// Measures `[start, end)` of event `row`.
    pub fn measures(&self, row: usize) -> std::ops::Range<usize> {
        let start = if row == 0 {
            0
        } else {
            self.measure_end[row - 1] as usize
        };
        start..self.measure_end[row] as usize
    }

    /// Group values `[start, end)` of measure `at`.
    pub fn groups(&self, at: usize) -> std::ops::Range<usize> {
        let start = if at == 0 {
            0
        } else {
            self.group_end[at - 1] as usize
        };
        start..self.group_end[at] as usize
    }

    fn copy(&mut self, bytes: &[u8]) -> Span {
        let start = self.text.len() as u32;
        self.text.extend_from_slice(bytes);
        Span(start, self.text.len() as u32)
    }
}

/// The shard of `tenant` among `shards`: operators.sharding.shard_of's (crc32, the
/// same in every process and after every restart).
pub fn shard_of(tenant: &str, shards: u32) -> u32 {
    crc32fast::hash(tenant.as_bytes()) % shards
}

/// The messages of a batch: all bytes end to end, where each ends, offsets and
/// when each arrived.
pub struct Messages<'a> {
    pub origin: &'a str,
    pub partition: i64,
    pub payloads: &'a [u8],
    pub ends: &'a [u64],
    pub offsets: &'a [i64],
    pub arrivals: &'a [i64],
}

impl Messages<'_> {
    fn payload(&self, index: usize) -> &[u8] {
        let start = if index == 0 {
            0
        } else {
            self.ends[index - 1] as usize
        };
        &self.payloads[start..self.ends[index] as usize]
    }
}

fn span_of<'t>(text: &'t [u8], spans: &[u64], at: usize) -> &'t [u8] {
    &text[spans[2 * at] as usize..spans[2 * at + 1] as usize]
}

/// Split parsed `columns` of `messages` into `shards` parts (`group_counts[m]`: how
/// many group values meter `m` has per measure).
pub fn split(
    columns: &Columns,
    messages: &Messages<'_>,
    group_counts: &[usize],
    shards: u32,
) -> Vec<ShardBatch> {
    let mut parts: Vec<ShardBatch> = (0..shards)
        .map(|_| ShardBatch {
            origin: messages.origin.to_owned(),
            partition: messages.partition,
            max_time_ms: columns.max_time_ms,
            ..ShardBatch::default()
        })
        .collect();
    // Per batch tenant: its shard and its index among that shard's tenants.
    let homes: Vec<(usize, u32)> = columns
        .tenants
        .iter()
        .map(|tenant| {
            let home = shard_of(tenant, shards) as usize;
            let part = &mut parts[home];
            part.tenants.push(tenant.clone());
            (home, part.tenants.len() as u32 - 1)
        })
        .collect();
    let text = &columns.text;
    let mut latest = i64::MIN;
    let mut measure = 0usize;
    let mut group = 0usize;
    for (row, &time_ms) in columns.time_ms.iter().enumerate() {
        latest = latest.max(time_ms);
        let (home, tenant) = homes[columns.tenant[row] as usize];
        let part = &mut parts[home];
        let message = columns.index[row] as usize;
        part.tenant.push(tenant);
        part.time_ms.push(time_ms);
        part.progress_ms.push(latest);
        let hash: [u8; 16] = columns.key_hash[16 * row..16 * row + 16]
            .try_into()
            .expect("16 bytes per event");
        part.key_hash.push(u128::from_be_bytes(hash));
        part.offset.push(messages.offsets[message]);
        part.arrived_ms.push(messages.arrivals[message]);
        let payload = part.copy(messages.payload(message));
        part.payload.push(payload);
        let source = part.copy(span_of(text, &columns.source, row));
        part.source.push(source);
        let id = part.copy(span_of(text, &columns.id, row));
        part.id.push(id);
        while measure < columns.measure_event.len()
            && columns.measure_event[measure] as usize == row
        {
            let meter = columns.meter[measure];
            part.meter.push(meter);
            part.value.push(
                i128::from(columns.units[measure]) * crate::aggregate::SCALE
                    + i128::from(columns.nanos[measure]),
            );
            let distinct = part.copy(span_of(text, &columns.distinct, measure));
            part.distinct.push(distinct);
            for _ in 0..group_counts[meter as usize] {
                let value = part.copy(span_of(text, &columns.groups, group));
                part.group.push(value);
                group += 1;
            }
            part.group_end.push(part.group.len() as u32);
            measure += 1;
        }
        part.measure_end.push(part.meter.len() as u32);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_python_zlib_crc32() {
        // Python: zlib.crc32("acme".encode()) == 96778814.
        assert_eq!(shard_of("acme", u32::MAX), 96_778_814);
        assert_eq!(shard_of("acme", 8), 96_778_814 % 8);
    }
}
