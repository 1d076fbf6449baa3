//! One shard's metering state: duplicate screening, then event-time windows.
//! operators/shard.py's ShardState (screen -> admit -> finish), a batch at a time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregation;
use crate::dedup::Dedup;
use crate::split::ShardBatch;
use crate::window::{Lateness, Measure, PartitionKey, Revision, WindowConfig, WindowStore};

/// A meter as the shard folds it: slug, aggregation and group-by names (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterSpec {
    pub slug: String,
    pub aggregation: Aggregation,
    pub group_names: Vec<String>,
}

/// Outcome of screening a batch: rows of the batch, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Screened {
    pub fresh: Vec<u32>,
    /// Per fresh row: LATE (1) or OPEN (0).
    pub fresh_late: Vec<u8>,
    pub too_late: Vec<u32>,
    pub duplicates: u64,
    pub late: u64,
}

/// Dedup keys and windows for the tenants routed to one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shard {
    /// The catalog's meters, in the order batches number them.
    pub meters: Vec<MeterSpec>,
    /// Every meter this state has aggregated (restored ones included).
    pub aggregations: BTreeMap<String, Aggregation>,
    pub windows: WindowStore,
    pub dedup: Dedup,
    /// The last emission's windows, for `set_amounts`; not state.
    #[serde(skip)]
    emitted: Vec<(i64, u128)>,
}

impl Shard {
    /// An empty shard (the caller checks the configuration).
    pub fn new(
        meters: Vec<MeterSpec>,
        config: WindowConfig,
        dedup_horizon_ms: i64,
        expected_partitions: BTreeSet<PartitionKey>,
    ) -> Shard {
        let aggregations = meters
            .iter()
            .map(|m| (m.slug.clone(), m.aggregation))
            .collect();
        Shard {
            meters,
            aggregations,
            windows: WindowStore::new(config, expected_partitions),
            dedup: Dedup::new(dedup_horizon_ms, config.size_ms),
            emitted: Vec::new(),
        }
    }

    /// Apply the current settings to restored state (the caller checked they fit).
    pub fn reconfigure(
        &mut self,
        meters: Vec<MeterSpec>,
        config: WindowConfig,
        dedup_horizon_ms: i64,
        expected_partitions: BTreeSet<PartitionKey>,
    ) {
        for meter in &meters {
            self.aggregations
                .insert(meter.slug.clone(), meter.aggregation);
        }
        self.meters = meters;
        self.windows.config = config;
        self.windows.expected_partitions = expected_partitions;
        self.dedup.horizon_ms = dedup_horizon_ms;
    }

    /// Drop in-state duplicates, find too-late events, keep the rest (in order).
    pub fn screen(&mut self, batch: &ShardBatch) -> Screened {
        let mut out = Screened::default();
        let partition = (batch.origin.clone(), batch.partition);
        let before = self.windows.progress(&partition);
        for row in 0..batch.len() {
            let key = batch.key_hash[row];
            let time_ms = batch.time_ms[row];
            let status = self
                .windows
                .lateness(time_ms, before.max(batch.progress_ms[row]));
            // A copy of a counted event is a duplicate even when it comes too late
            // (while its key is remembered).
            if status == Lateness::TooLate {
                if self.dedup.contains(key) {
                    out.duplicates += 1;
                } else {
                    out.too_late.push(row as u32);
                }
                continue;
            }
            if !self.dedup.add(key, time_ms) {
                out.duplicates += 1;
                continue;
            }
            let is_late = status == Lateness::Late;
            out.late += u64::from(is_late);
            out.fresh.push(row as u32);
            out.fresh_late.push(u8::from(is_late));
        }
        out
    }

    /// Fold the accepted events `rows` of `batch` into their windows.
    pub fn admit(&mut self, batch: &ShardBatch, rows: &[u32]) {
        let mut values: Vec<&str> = Vec::new();
        for &row in rows {
            let row = row as usize;
            let tenant = &batch.tenants[batch.tenant[row] as usize];
            let measures = batch.measures(row);
            let mut folded = Vec::with_capacity(measures.len());
            values.clear();
            for at in measures.clone() {
                values.extend(batch.groups(at).map(|g| batch.text(batch.group[g])));
            }
            let mut next = 0;
            for at in measures {
                let meter = &self.meters[batch.meter[at] as usize];
                let count = batch.groups(at).len();
                folded.push(Measure {
                    meter: &meter.slug,
                    aggregation: meter.aggregation,
                    group_names: &meter.group_names,
                    group_values: &values[next..next + count],
                    value: batch.value[at],
                    distinct: batch.text(batch.distinct[at]),
                });
                next += count;
            }
            self.windows.fold(tenant, batch.time_ms[row], folded);
        }
    }

    /// After a batch: move the watermark, emit closed windows and adjustments, expire keys.
    pub fn finish(
        &mut self,
        partition: Option<&PartitionKey>,
        max_time_ms: Option<i64>,
        now_s: f64,
    ) -> Vec<Revision> {
        if let Some(partition) = partition {
            self.windows.observe(partition, max_time_ms, now_s);
        }
        let out = self.windows.advance(now_s);
        // Keys stay while a lagging partition can still send an accepted copy.
        self.dedup.expire(self.windows.slowest_progress());
        self.remember(out)
    }

    /// End of input: close every window.
    pub fn close_all(&mut self) -> Vec<Revision> {
        let out = self.windows.close_all();
        self.remember(out)
    }

    /// Record the amounts charged for the last emission's revisions, in its order.
    pub fn set_amounts(&mut self, amounts: Vec<String>) {
        for (&(start, key), amount) in self.emitted.iter().zip(amounts) {
            self.windows.set_amount(start, key, amount);
        }
    }

    fn remember(&mut self, out: Vec<Revision>) -> Vec<Revision> {
        self.emitted = out.iter().map(|r| (r.start, r.key)).collect();
        out
    }
}
