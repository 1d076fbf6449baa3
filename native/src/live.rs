//! Live usage partials: a batch's accepted measures folded per (tenant, meter,
//! window start), for operators/live_usage.py to merge into its billing periods
//! (a period's price version is the same for a tenant's whole window).

use indexmap::IndexMap;

use crate::aggregate::Accumulator;
use crate::shard::MeterSpec;
use crate::split::ShardBatch;

/// A batch's usage of one tenant (index into the batch's tenants), meter (index
/// into the catalog) and window start.
pub type Place = (u32, u32, i64);

/// The measures of `rows` of `batch`, folded per place, in the order places first occur.
pub fn partials(
    batch: &ShardBatch,
    rows: &[u32],
    meters: &[MeterSpec],
    size_ms: i64,
) -> IndexMap<Place, Accumulator> {
    let mut out: IndexMap<Place, Accumulator> = IndexMap::new();
    for &row in rows {
        let row = row as usize;
        let time_ms = batch.time_ms[row];
        let start = time_ms - time_ms.rem_euclid(size_ms);
        for at in batch.measures(row) {
            let meter = batch.meter[at];
            out.entry((batch.tenant[row], meter, start))
                .or_insert_with(|| Accumulator::new(meters[meter as usize].aggregation))
                .fold(batch.value[at], batch.text(batch.distinct[at]), time_ms);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Aggregation, SCALE};

    #[test]
    fn measures_fold_per_tenant_meter_and_window() {
        let batch = ShardBatch {
            tenants: vec!["a".into(), "b".into()],
            tenant: vec![0, 1, 0],
            time_ms: vec![5, 6, 61],
            measure_end: vec![1, 2, 3],
            meter: vec![0, 0, 0],
            value: vec![SCALE, 2 * SCALE, 3 * SCALE],
            distinct: vec![Default::default(); 3],
            ..ShardBatch::default()
        };
        let meters = [MeterSpec {
            slug: "m".into(),
            aggregation: Aggregation::Sum,
            group_names: vec![],
        }];
        let out = partials(&batch, &[0, 1, 2], &meters, 60);
        let keys: Vec<_> = out.keys().copied().collect();
        assert_eq!(keys, [(0, 0, 0), (1, 0, 0), (0, 0, 60)]);
        assert_eq!(out[&(0, 0, 60)].quantity(), 3 * SCALE);
    }
}
