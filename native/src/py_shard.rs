//! The Python face of the split and the shard: `split_batch`, `ShardBatch`,
//! `NativeShard` and the `Revisions` it emits, in module `operators._native`.

use std::collections::HashMap;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyType};

use crate::aggregate::{Aggregation, Fold, SCALE};
use crate::batch::Columns;
use crate::shard::{MeterSpec, Shard};
use crate::snapshot;
use crate::split::{self, Messages, ShardBatch};
use crate::window::{Kind, PartitionKey, Revision, WindowConfig};
use crate::{claims, event_log, live};

/// Native-endian bytes of a column, for `memoryview(...).cast(...)`.
fn column<T: Copy, const N: usize>(
    py: Python<'_>,
    values: &[T],
    to_bytes: fn(T) -> [u8; N],
) -> Py<PyBytes> {
    let raw: Vec<u8> = values.iter().flat_map(|&v| to_bytes(v)).collect();
    PyBytes::new(py, &raw).unbind()
}

/// A column of `ParsedColumns` read back into values.
fn read<T, const N: usize>(
    columns: &Bound<'_, PyAny>,
    name: &str,
    from_bytes: fn([u8; N]) -> T,
) -> PyResult<Vec<T>> {
    let attr = columns.getattr(name)?;
    let bytes = attr.cast::<PyBytes>()?.as_bytes();
    Ok(bytes
        .chunks_exact(N)
        .map(|chunk| from_bytes(chunk.try_into().expect("chunks of N bytes")))
        .collect())
}

fn raw(columns: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u8>> {
    Ok(columns
        .getattr(name)?
        .cast::<PyBytes>()?
        .as_bytes()
        .to_vec())
}

fn parsed(columns: &Bound<'_, PyAny>) -> PyResult<Columns> {
    Ok(Columns {
        index: read(columns, "index", u32::from_ne_bytes)?,
        time_ms: read(columns, "time_ms", i64::from_ne_bytes)?,
        tenant: read(columns, "tenant", u32::from_ne_bytes)?,
        tenants: columns.getattr("tenants")?.extract()?,
        event_type: Vec::new(),
        key_hash: raw(columns, "key_hash")?,
        source: read(columns, "source", u64::from_ne_bytes)?,
        id: read(columns, "id", u64::from_ne_bytes)?,
        text: raw(columns, "text")?,
        measure_event: read(columns, "measure_event", u32::from_ne_bytes)?,
        meter: read(columns, "meter", u32::from_ne_bytes)?,
        units: read(columns, "units", u64::from_ne_bytes)?,
        nanos: read(columns, "nanos", u32::from_ne_bytes)?,
        distinct: read(columns, "distinct", u64::from_ne_bytes)?,
        groups: read(columns, "groups", u64::from_ne_bytes)?,
        rejections: Vec::new(),
        max_time_ms: columns.getattr("max_time_ms")?.extract()?,
    })
}

/// One shard's part of a parsed batch; pickles as bytes (it crosses Bytewax exchanges).
#[pyclass(frozen, module = "operators._native", name = "ShardBatch")]
pub struct PyShardBatch {
    batch: ShardBatch,
}

#[pymethods]
impl PyShardBatch {
    fn __len__(&self) -> usize {
        self.batch.len()
    }

    /// The input partition: (origin, partition).
    #[getter]
    fn partition(&self) -> (String, i64) {
        (self.batch.origin.clone(), self.batch.partition)
    }

    /// The latest accepted event time of the whole input batch (None: no event).
    #[getter]
    fn max_time_ms(&self) -> Option<i64> {
        self.batch.max_time_ms
    }

    /// Event `row`: (tenant, source, id, time_ms, offset, payload).
    fn event<'py>(
        &self,
        py: Python<'py>,
        row: usize,
    ) -> PyResult<(String, String, String, i64, i64, Bound<'py, PyBytes>)> {
        let b = &self.batch;
        if row >= b.len() {
            return Err(PyValueError::new_err(format!(
                "row {row} is beyond this batch's {} events",
                b.len()
            )));
        }
        Ok((
            b.tenants[b.tenant[row] as usize].clone(),
            b.text(b.source[row]).to_owned(),
            b.text(b.id[row]).to_owned(),
            b.time_ms[row],
            b.offset[row],
            PyBytes::new(py, b.payload(row)),
        ))
    }

    /// When the messages of `rows` arrived (epoch ms).
    fn arrivals(&self, rows: Vec<usize>) -> PyResult<Vec<i64>> {
        rows.into_iter()
            .map(|row| {
                self.batch
                    .arrived_ms
                    .get(row)
                    .copied()
                    .ok_or_else(|| PyValueError::new_err(format!("row {row} is beyond this batch")))
            })
            .collect()
    }

    /// The batch as bytes (`from_bytes` reads them back).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &snapshot::encode(&self.batch))
    }

    /// A batch from `to_bytes`.
    #[classmethod]
    fn from_bytes(_cls: &Bound<'_, PyType>, data: &[u8]) -> PyResult<PyShardBatch> {
        let batch = snapshot::decode(data).map_err(|e| PyValueError::new_err(e.0))?;
        Ok(PyShardBatch { batch })
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let py = slf.py();
        let restore = slf.get_type().getattr("from_bytes")?;
        Ok((restore, (slf.get().to_bytes(py),)))
    }
}

/// Split parsed `columns` of one input partition's batch by shard, without the GIL.
///
/// `group_counts[m]`: group-by values per measure of meter `m`; the messages are
/// `payloads` cut at `ends` (running totals), at `offsets`, arrived at `arrivals`.
#[pyfunction]
#[pyo3(signature = (columns, group_counts, payloads, ends, offsets, arrivals, origin, partition, shards))]
#[allow(clippy::too_many_arguments)]
fn split_batch(
    py: Python<'_>,
    columns: &Bound<'_, PyAny>,
    group_counts: Vec<usize>,
    payloads: &Bound<'_, PyBytes>,
    ends: PyBuffer<u64>,
    offsets: PyBuffer<i64>,
    arrivals: PyBuffer<i64>,
    origin: &str,
    partition: i64,
    shards: u32,
) -> PyResult<Vec<PyShardBatch>> {
    if shards == 0 {
        return Err(PyValueError::new_err("shards must be at least 1"));
    }
    let columns = parsed(columns)?;
    let ends = ends.to_vec(py)?;
    let offsets = offsets.to_vec(py)?;
    let arrivals = arrivals.to_vec(py)?;
    let payloads = payloads.as_bytes();
    if ends.len() != offsets.len()
        || ends.len() != arrivals.len()
        || ends.last().is_some_and(|&e| e != payloads.len() as u64)
    {
        return Err(PyValueError::new_err(
            "ends, offsets and arrivals need one entry per message, ends the running total of the lengths",
        ));
    }
    if columns.index.iter().any(|&i| i as usize >= ends.len()) {
        return Err(PyValueError::new_err(
            "the columns name messages beyond the batch: pass the batch they were parsed from",
        ));
    }
    let groups: usize = columns
        .meter
        .iter()
        .map(|&m| {
            group_counts
                .get(m as usize)
                .copied()
                .unwrap_or(usize::MAX / 2)
        })
        .sum();
    if 2 * groups != columns.groups.len() {
        return Err(PyValueError::new_err(
            "group_counts do not match the parsed meters: pass the parser's catalog",
        ));
    }
    let messages = Messages {
        origin,
        partition,
        payloads,
        ends: &ends,
        offsets: &offsets,
        arrivals: &arrivals,
    };
    let parts = py.detach(|| split::split(&columns, &messages, &group_counts, shards));
    Ok(parts
        .into_iter()
        .map(|batch| PyShardBatch { batch })
        .collect())
}

/// Rows of `batch` from native-endian uint32 bytes.
fn rows_of(batch: &ShardBatch, rows: &[u8]) -> PyResult<Vec<u32>> {
    let rows: Vec<u32> = rows
        .chunks_exact(4)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
        .collect();
    if rows.iter().any(|&r| r as usize >= batch.len()) {
        return Err(PyValueError::new_err("rows must be rows of the batch"));
    }
    Ok(rows)
}

/// One live usage partial as Python receives it (see `NativeShard.live_partials`).
type LivePartial = (String, u32, i64, String, i64, Vec<String>);

/// Meters as Python passes them: (slug, aggregation value, sorted group-by names).
type MeterArg = (String, String, Vec<String>);

fn meter_specs(meters: Vec<MeterArg>) -> PyResult<Vec<MeterSpec>> {
    meters
        .into_iter()
        .map(|(slug, code, group_names)| {
            let aggregation = Aggregation::from_code(&code).ok_or_else(|| {
                PyValueError::new_err(format!("meter {slug:?}: unknown aggregation {code:?}"))
            })?;
            Ok(MeterSpec {
                slug,
                aggregation,
                group_names,
            })
        })
        .collect()
}

fn window_config(
    size_ms: i64,
    grace_ms: i64,
    settlement_ms: i64,
    idle_ms: i64,
) -> PyResult<WindowConfig> {
    if size_ms <= 0 {
        return Err(PyValueError::new_err("size_ms must be positive"));
    }
    if grace_ms.min(settlement_ms).min(idle_ms) < 0 {
        return Err(PyValueError::new_err(
            "grace, settlement and idle timeout must not be negative",
        ));
    }
    if settlement_ms < grace_ms {
        return Err(PyValueError::new_err(
            "settlement must be at least the grace period",
        ));
    }
    Ok(WindowConfig {
        size_ms,
        grace_ms,
        settlement_ms,
        idle_timeout_ms: idle_ms,
    })
}

/// An exact decimal text of a scaled quantity: no exponent, no trailing zeros.
fn decimal_text(value: i128) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let (units, nanos) = (
        value.unsigned_abs() / SCALE as u128,
        value.unsigned_abs() % SCALE as u128,
    );
    if nanos == 0 {
        return format!("{sign}{units}");
    }
    let fraction = format!("{nanos:09}");
    format!("{sign}{units}.{}", fraction.trim_end_matches('0'))
}

/// Window revisions as columns; texts are indexes into `strings`.
#[pyclass(frozen, module = "operators._native")]
pub struct Revisions {
    #[pyo3(get)]
    strings: Vec<String>,
    #[pyo3(get)]
    tenant: Py<PyBytes>,
    #[pyo3(get)]
    meter: Py<PyBytes>,
    /// Per row: the end of its (name, value) pairs in `group_name`/`group_value`.
    #[pyo3(get)]
    group_end: Py<PyBytes>,
    #[pyo3(get)]
    group_name: Py<PyBytes>,
    #[pyo3(get)]
    group_value: Py<PyBytes>,
    #[pyo3(get)]
    window_start: Py<PyBytes>,
    /// Exact decimal texts.
    #[pyo3(get)]
    quantity: Vec<String>,
    #[pyo3(get)]
    previous: Vec<String>,
    #[pyo3(get)]
    revision: Py<PyBytes>,
    /// 0: window closed on time; 1: adjustment.
    #[pyo3(get)]
    kind: Py<PyBytes>,
    /// LATEST's time of its value (-1 for other kinds).
    #[pyo3(get)]
    latest_ms: Py<PyBytes>,
    /// UNIQUE_COUNT's distinct values: per row the end of its range in `distinct`.
    #[pyo3(get)]
    distinct_end: Py<PyBytes>,
    #[pyo3(get)]
    distinct: Py<PyBytes>,
    /// The amount charged so far for the window (None: nothing yet).
    #[pyo3(get)]
    amount: Vec<Option<String>>,
}

#[pymethods]
impl Revisions {
    fn __len__(&self) -> usize {
        self.quantity.len()
    }
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    strings: Vec<String>,
}

impl Interner {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.ids.insert(text.to_owned(), id);
        self.strings.push(text.to_owned());
        id
    }
}

fn revisions(py: Python<'_>, rows: &[Revision]) -> Revisions {
    let mut texts = Interner::default();
    let (mut tenant, mut meter, mut group_end, mut group_name, mut group_value) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut start, mut revision, mut kind, mut latest_ms) = (vec![], vec![], vec![], vec![]);
    let (mut distinct_end, mut distinct) = (vec![], vec![]);
    let (mut quantity, mut previous, mut amount) = (vec![], vec![], vec![]);
    for row in rows {
        tenant.push(texts.id(&row.name.tenant));
        meter.push(texts.id(&row.name.meter));
        for (name, value) in &row.name.groups {
            group_name.push(texts.id(name));
            group_value.push(texts.id(value));
        }
        group_end.push(group_name.len() as u32);
        start.push(row.start);
        quantity.push(decimal_text(row.quantity));
        previous.push(decimal_text(row.previous));
        revision.push(row.acc.count);
        kind.push(u8::from(row.kind == Kind::Adjustment));
        match &row.acc.fold {
            Fold::Latest(time_ms, _) => latest_ms.push(*time_ms),
            Fold::UniqueCount(values) => {
                latest_ms.push(-1);
                distinct.extend(values.iter().map(|v| texts.id(v)));
            }
            _ => latest_ms.push(-1),
        }
        distinct_end.push(distinct.len() as u32);
        amount.push(row.acc.amount.clone());
    }
    Revisions {
        strings: texts.strings,
        tenant: column(py, &tenant, u32::to_ne_bytes),
        meter: column(py, &meter, u32::to_ne_bytes),
        group_end: column(py, &group_end, u32::to_ne_bytes),
        group_name: column(py, &group_name, u32::to_ne_bytes),
        group_value: column(py, &group_value, u32::to_ne_bytes),
        window_start: column(py, &start, i64::to_ne_bytes),
        quantity,
        previous,
        revision: column(py, &revision, u64::to_ne_bytes),
        kind: column(py, &kind, u8::to_ne_bytes),
        latest_ms: column(py, &latest_ms, i64::to_ne_bytes),
        distinct_end: column(py, &distinct_end, u32::to_ne_bytes),
        distinct: column(py, &distinct, u32::to_ne_bytes),
        amount,
    }
}

/// One shard's dedup keys and windows (operators/shard.py's ShardState, natively).
#[pyclass(module = "operators._native", name = "NativeShard")]
pub struct PyShard {
    shard: Shard,
    /// The last emission's revisions, for the native ledger to rate; not state.
    last: Vec<Revision>,
}

impl PyShard {
    /// The last emission's revisions (what the last finish or close_all returned).
    pub(crate) fn last(&self) -> &[Revision] {
        &self.last
    }

    /// Record the amounts charged for the last emission's revisions, in its order.
    pub(crate) fn charge_last(&mut self, amounts: Vec<String>) {
        self.shard.set_amounts(amounts);
    }
}

#[pymethods]
impl PyShard {
    #[new]
    #[pyo3(signature = (meters, size_ms, grace_ms, settlement_ms, idle_timeout_ms, dedup_horizon_ms, expected_partitions))]
    fn new(
        meters: Vec<MeterArg>,
        size_ms: i64,
        grace_ms: i64,
        settlement_ms: i64,
        idle_timeout_ms: i64,
        dedup_horizon_ms: i64,
        expected_partitions: Vec<PartitionKey>,
    ) -> PyResult<PyShard> {
        let config = window_config(size_ms, grace_ms, settlement_ms, idle_timeout_ms)?;
        if dedup_horizon_ms < 0 {
            return Err(PyValueError::new_err("dedup_horizon_ms must be >= 0"));
        }
        let shard = Shard::new(
            meter_specs(meters)?,
            config,
            dedup_horizon_ms,
            expected_partitions.into_iter().collect(),
        );
        Ok(PyShard {
            shard,
            last: Vec::new(),
        })
    }

    /// Apply the current settings to restored state (the caller checked the window
    /// length and the aggregations still fit).
    #[pyo3(signature = (meters, size_ms, grace_ms, settlement_ms, idle_timeout_ms, dedup_horizon_ms, expected_partitions))]
    #[allow(clippy::too_many_arguments)]
    fn reconfigure(
        &mut self,
        meters: Vec<MeterArg>,
        size_ms: i64,
        grace_ms: i64,
        settlement_ms: i64,
        idle_timeout_ms: i64,
        dedup_horizon_ms: i64,
        expected_partitions: Vec<PartitionKey>,
    ) -> PyResult<()> {
        let config = window_config(size_ms, grace_ms, settlement_ms, idle_timeout_ms)?;
        if config.size_ms != self.shard.windows.config.size_ms || dedup_horizon_ms < 0 {
            return Err(PyValueError::new_err(
                "the window length is part of the state and the dedup horizon must be >= 0",
            ));
        }
        self.shard.reconfigure(
            meter_specs(meters)?,
            config,
            dedup_horizon_ms,
            expected_partitions.into_iter().collect(),
        );
        Ok(())
    }

    /// The window length the state was built with (ms).
    #[getter]
    fn size_ms(&self) -> i64 {
        self.shard.windows.config.size_ms
    }

    /// Every meter's aggregation this state has folded or will fold.
    #[getter]
    fn aggregations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (slug, aggregation) in &self.shard.aggregations {
            out.set_item(slug, aggregation.code())?;
        }
        Ok(out)
    }

    /// Tenants with a window in this state.
    fn tenants(&self) -> Vec<String> {
        self.shard
            .windows
            .tenants()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// The event-time watermark (NO_WATERMARK before it has one).
    #[getter]
    fn watermark(&self) -> i64 {
        self.shard.windows.watermark
    }

    /// The least progress over every input partition, named up front or seen.
    fn slowest_progress(&self) -> i64 {
        self.shard.windows.slowest_progress()
    }

    /// Idempotency keys remembered.
    fn dedup_len(&self) -> usize {
        self.shard.dedup.len()
    }

    /// Start the quiet-time clocks (monotonic seconds): at start and after a restore.
    fn resume(&mut self, now_s: f64) {
        self.shard.windows.resume(now_s);
    }

    /// Screen `batch` without the GIL: (fresh rows: uint32, fresh rows' late flags:
    /// uint8, too-late rows: uint32, duplicates, late).
    fn screen(
        &mut self,
        py: Python<'_>,
        batch: &Bound<'_, PyShardBatch>,
    ) -> (Py<PyBytes>, Py<PyBytes>, Py<PyBytes>, u64, u64) {
        let batch = &batch.get().batch;
        let shard = &mut self.shard;
        let out = py.detach(|| shard.screen(batch));
        (
            column(py, &out.fresh, u32::to_ne_bytes),
            PyBytes::new(py, &out.fresh_late).unbind(),
            column(py, &out.too_late, u32::to_ne_bytes),
            out.duplicates,
            out.late,
        )
    }

    /// Fold the accepted `rows` (native-endian uint32 bytes) of `batch` into their windows.
    fn admit(
        &mut self,
        py: Python<'_>,
        batch: &Bound<'_, PyShardBatch>,
        rows: &[u8],
    ) -> PyResult<()> {
        let batch = &batch.get().batch;
        let rows = rows_of(batch, rows)?;
        if batch
            .meter
            .iter()
            .any(|&m| m as usize >= self.shard.meters.len())
        {
            return Err(PyValueError::new_err(
                "the batch names a meter this shard does not know: give both the same catalog",
            ));
        }
        let shard = &mut self.shard;
        py.detach(|| shard.admit(batch, &rows));
        Ok(())
    }

    /// Durable claims of `rows` of `batch` (native-endian uint32 bytes), packed as
    /// sinks/redis_idempotency.py sends them, tokened with `instance`.
    fn claim_records<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'_, PyShardBatch>,
        rows: &[u8],
        instance: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let batch = &batch.get().batch;
        let rows = rows_of(batch, rows)?;
        let packed = py.detach(|| claims::records(batch, &rows, instance));
        Ok(PyBytes::new(py, &packed))
    }

    /// The event log rows of `rows` of `batch` in RowBinary (columns: `EVENT_LOG_COLUMNS`)
    /// and how many; `event_types[m]` is meter `m`'s event type.
    fn event_log<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'_, PyShardBatch>,
        rows: &[u8],
        event_types: Vec<String>,
        ingested_at_ms: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        let batch = &batch.get().batch;
        let rows = rows_of(batch, rows)?;
        let meters = &self.shard.meters;
        if event_types.len() != meters.len()
            || batch.meter.iter().any(|&m| m as usize >= meters.len())
        {
            return Err(PyValueError::new_err(
                "the batch, the shard and event_types must come from the same catalog",
            ));
        }
        let (out, count) =
            py.detach(|| event_log::rows(batch, &rows, meters, &event_types, ingested_at_ms));
        Ok((PyBytes::new(py, &out), count))
    }

    /// Live usage of `rows` of `batch` per (tenant, meter index, window start), in
    /// first-seen order: (tenant, meter, start, quantity text, latest_ms, distinct values).
    fn live_partials(
        &self,
        py: Python<'_>,
        batch: &Bound<'_, PyShardBatch>,
        rows: &[u8],
    ) -> PyResult<Vec<LivePartial>> {
        let batch = &batch.get().batch;
        let rows = rows_of(batch, rows)?;
        let meters = &self.shard.meters;
        if batch.meter.iter().any(|&m| m as usize >= meters.len()) {
            return Err(PyValueError::new_err(
                "the batch names a meter this shard does not know: give both the same catalog",
            ));
        }
        let size_ms = self.shard.windows.config.size_ms;
        let parts = py.detach(|| live::partials(batch, &rows, meters, size_ms));
        Ok(parts
            .into_iter()
            .map(|((tenant, meter, start), acc)| {
                let (latest_ms, distinct) = match acc.fold {
                    Fold::Latest(time_ms, _) => (time_ms, Vec::new()),
                    Fold::UniqueCount(ref values) => (-1, values.iter().cloned().collect()),
                    _ => (-1, Vec::new()),
                };
                (
                    batch.tenants[tenant as usize].clone(),
                    meter,
                    start,
                    decimal_text(acc.quantity()),
                    latest_ms,
                    distinct,
                )
            })
            .collect())
    }

    /// After a batch of `partition` (or a wake-up: None): move the watermark, emit
    /// closed windows and adjustments, expire keys.
    #[pyo3(signature = (partition, max_time_ms, now_s))]
    fn finish(
        &mut self,
        py: Python<'_>,
        partition: Option<PartitionKey>,
        max_time_ms: Option<i64>,
        now_s: f64,
    ) -> Revisions {
        let shard = &mut self.shard;
        let rows = py.detach(|| shard.finish(partition.as_ref(), max_time_ms, now_s));
        let out = revisions(py, &rows);
        self.last = rows;
        out
    }

    /// End of input: close every window.
    fn close_all(&mut self, py: Python<'_>) -> Revisions {
        let rows = self.shard.close_all();
        let out = revisions(py, &rows);
        self.last = rows;
        out
    }

    /// The amounts charged for the last emission's rows (exact decimal texts, in order).
    fn set_amounts(&mut self, amounts: Vec<String>) {
        self.shard.set_amounts(amounts);
    }

    /// Monotonic time at which `finish(None, None, ...)` could next emit without new input.
    fn next_wakeup(&self, now_s: f64) -> Option<f64> {
        self.shard.windows.next_wakeup(now_s)
    }

    /// The state as bytes (not the wall-clock marks: call `resume` after `restore`).
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &snapshot::encode(&self.shard))
    }

    /// State from `snapshot`.
    #[staticmethod]
    fn restore(data: &[u8]) -> PyResult<PyShard> {
        let shard = snapshot::decode(data).map_err(|e| PyValueError::new_err(e.0))?;
        Ok(PyShard {
            shard,
            last: Vec::new(),
        })
    }
}

/// Add the split and shard to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyShardBatch>()?;
    m.add_class::<PyShard>()?;
    m.add_class::<Revisions>()?;
    m.add_function(wrap_pyfunction!(split_batch, m)?)?;
    m.add("EVENT_LOG_COLUMNS", event_log::COLUMNS.to_vec())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decimal_text;

    #[test]
    fn decimal_text_is_exact_without_trailing_zeros() {
        assert_eq!(decimal_text(0), "0");
        assert_eq!(decimal_text(1_500_000_000), "1.5");
        assert_eq!(decimal_text(1), "0.000000001");
        assert_eq!(decimal_text(-2_000_000_000), "-2");
    }
}
