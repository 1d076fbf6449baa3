//! The Python face of the core: module `operators._native`.

use std::collections::HashSet;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::batch::{self, Columns};
use crate::parse::{Meter, Path, Rules, Step};
use crate::rated_rows::{self, Encoding};
use crate::row_binary;

/// A path step as config.jsonpath compiles it: an index (int) or a key (str).
#[derive(FromPyObject)]
enum StepArg {
    Index(usize),
    Key(String),
}

/// A path: its text (`$.a`) and its compiled steps.
type PathArg = (String, Vec<StepArg>);
/// A meter: slug, event type, numeric, value path, group-by paths sorted by name.
type MeterArg = (String, String, bool, Option<PathArg>, Vec<PathArg>);

fn path((text, steps): PathArg) -> Path {
    let steps = steps
        .into_iter()
        .map(|step| match step {
            StepArg::Index(i) => Step::Index(i),
            StepArg::Key(key) => Step::Key(key),
        })
        .collect();
    Path::new(&text, steps)
}

/// The parser's rules, built once; `parse_batch` may be called from any thread.
#[pyclass(frozen, module = "operators._native", name = "Parser")]
struct PyParser {
    rules: Rules,
}

#[pymethods]
impl PyParser {
    #[new]
    #[pyo3(signature = (meters, known_tenants, max_event_bytes, max_future_skew_ms))]
    fn new(
        meters: Vec<MeterArg>,
        known_tenants: Option<Vec<String>>,
        max_event_bytes: usize,
        max_future_skew_ms: i64,
    ) -> Self {
        let meters = meters
            .into_iter()
            .map(|(slug, event_type, numeric, value, groups)| Meter {
                slug,
                event_type,
                numeric,
                value: value.map(path),
                groups: groups.into_iter().map(path).collect(),
            })
            .collect();
        let tenants = known_tenants.map(|names| names.into_iter().collect::<HashSet<_>>());
        PyParser {
            rules: Rules::new(meters, tenants, max_event_bytes, max_future_skew_ms),
        }
    }

    /// Event types in the order `ParsedColumns.event_type` indexes them.
    #[getter]
    fn event_types(&self) -> Vec<String> {
        self.rules.event_types.clone()
    }

    /// Parse messages `payloads[ends[i-1]:ends[i]]` (`ends`: a buffer of uint64) at
    /// wall time `now_ms`, without the GIL.
    fn parse_batch(
        &self,
        py: Python<'_>,
        payloads: &Bound<'_, PyBytes>,
        ends: PyBuffer<u64>,
        now_ms: i64,
    ) -> PyResult<ParsedColumns> {
        let ends = ends.to_vec(py)?;
        let bytes = payloads.as_bytes();
        let mut previous = 0u64;
        for &end in &ends {
            if end < previous || end > bytes.len() as u64 {
                return Err(PyValueError::new_err(
                    "ends must rise and stay within payloads: pass the running total of the lengths",
                ));
            }
            previous = end;
        }
        if previous != bytes.len() as u64 {
            return Err(PyValueError::new_err(
                "the last of ends must be len(payloads): pass the running total of the lengths",
            ));
        }
        let rules = &self.rules;
        let columns = py.detach(|| batch::parse_batch(rules, bytes, &ends, now_ms));
        ParsedColumns::new(py, columns)
    }
}

/// Native-endian bytes of a column, for `memoryview(...).cast(...)`.
fn column<T: Copy, const N: usize>(
    py: Python<'_>,
    values: &[T],
    to_bytes: fn(T) -> [u8; N],
) -> Py<PyBytes> {
    let raw: Vec<u8> = values.iter().flat_map(|&v| to_bytes(v)).collect();
    PyBytes::new(py, &raw).unbind()
}

/// The result of `Parser.parse_batch`: see `Columns` for what each column holds.
#[pyclass(frozen, module = "operators._native")]
struct ParsedColumns {
    #[pyo3(get)]
    index: Py<PyBytes>,
    #[pyo3(get)]
    time_ms: Py<PyBytes>,
    #[pyo3(get)]
    tenant: Py<PyBytes>,
    #[pyo3(get)]
    tenants: Py<PyList>,
    #[pyo3(get)]
    event_type: Py<PyBytes>,
    #[pyo3(get)]
    key_hash: Py<PyBytes>,
    #[pyo3(get)]
    source: Py<PyBytes>,
    #[pyo3(get)]
    id: Py<PyBytes>,
    #[pyo3(get)]
    text: Py<PyBytes>,
    #[pyo3(get)]
    measure_event: Py<PyBytes>,
    #[pyo3(get)]
    meter: Py<PyBytes>,
    #[pyo3(get)]
    units: Py<PyBytes>,
    #[pyo3(get)]
    nanos: Py<PyBytes>,
    #[pyo3(get)]
    distinct: Py<PyBytes>,
    #[pyo3(get)]
    groups: Py<PyBytes>,
    #[pyo3(get)]
    rejections: Py<PyList>,
    #[pyo3(get)]
    max_time_ms: Option<i64>,
}

impl ParsedColumns {
    fn new(py: Python<'_>, c: Columns) -> PyResult<ParsedColumns> {
        let rejections = c
            .rejections
            .into_iter()
            .map(|r| {
                PyTuple::new(
                    py,
                    [
                        r.index.into_pyobject(py)?.into_any(),
                        r.reason.code().into_pyobject(py)?.into_any(),
                        r.detail.into_pyobject(py)?.into_any(),
                        r.event_id.into_pyobject(py)?.into_any(),
                        r.event_source.into_pyobject(py)?.into_any(),
                        r.tenant.into_pyobject(py)?.into_any(),
                    ],
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(ParsedColumns {
            index: column(py, &c.index, u32::to_ne_bytes),
            time_ms: column(py, &c.time_ms, i64::to_ne_bytes),
            tenant: column(py, &c.tenant, u32::to_ne_bytes),
            tenants: PyList::new(py, c.tenants)?.unbind(),
            event_type: column(py, &c.event_type, u32::to_ne_bytes),
            key_hash: PyBytes::new(py, &c.key_hash).unbind(),
            source: column(py, &c.source, u64::to_ne_bytes),
            id: column(py, &c.id, u64::to_ne_bytes),
            text: PyBytes::new(py, &c.text).unbind(),
            measure_event: column(py, &c.measure_event, u32::to_ne_bytes),
            meter: column(py, &c.meter, u32::to_ne_bytes),
            units: column(py, &c.units, u64::to_ne_bytes),
            nanos: column(py, &c.nanos, u32::to_ne_bytes),
            distinct: column(py, &c.distinct, u64::to_ne_bytes),
            groups: column(py, &c.groups, u64::to_ne_bytes),
            rejections: PyList::new(py, rejections)?.unbind(),
            max_time_ms: c.max_time_ms,
        })
    }
}

/// The 16-byte hash of an idempotency key, as `ParsedColumns.key_hash` holds it.
#[pyfunction]
fn idempotency_hash<'py>(py: Python<'py>, key: &str) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &batch::idempotency_hash(key))
}

/// Rated window revisions as RowBinary rows of `RATED_WINDOW_COLUMNS` and how many:
/// `columns` holds one list per column, in that order (sinks/clickhouse.py's
/// `_window_columns`, with each row's group values as (name, value) pairs).
/// `None` when a decimal is not held exactly by its column: the caller then
/// takes the driver's path, which says why.
#[pyfunction]
fn encode_rated_windows<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyList>,
) -> PyResult<Option<(Bound<'py, PyBytes>, usize)>> {
    if columns.len() != rated_rows::COLUMNS.len() {
        return Err(PyValueError::new_err(format!(
            "{} columns, expected {}",
            columns.len(),
            rated_rows::COLUMNS.len()
        )));
    }
    let columns: Vec<Bound<'py, PyList>> = columns
        .iter()
        .map(|column| column.cast_into::<PyList>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let rows = columns[0].len();
    if let Some((name, _)) = columns
        .iter()
        .zip(rated_rows::COLUMNS)
        .find_map(|(column, named)| (column.len() != rows).then_some(named))
    {
        return Err(PyValueError::new_err(format!(
            "column {name} is not {rows} rows long"
        )));
    }
    let mut out = Vec::with_capacity(rows * 256);
    for row in 0..rows {
        for (column, (name, kind)) in columns.iter().zip(rated_rows::COLUMNS) {
            let value = column.get_item(row)?;
            let encoded = match kind {
                Encoding::Text => {
                    row_binary::text(&mut out, value.cast::<PyString>()?.to_str()?.as_bytes());
                    true
                }
                Encoding::Pairs => {
                    let pairs: Vec<(Bound<'py, PyString>, Bound<'py, PyString>)> =
                        value.extract()?;
                    row_binary::length(&mut out, pairs.len());
                    for (key, text) in &pairs {
                        row_binary::text(&mut out, key.to_str()?.as_bytes());
                        row_binary::text(&mut out, text.to_str()?.as_bytes());
                    }
                    true
                }
                Encoding::Int64 => {
                    out.extend_from_slice(&value.extract::<i64>()?.to_le_bytes());
                    true
                }
                Encoding::UInt64 => {
                    out.extend_from_slice(&value.extract::<u64>()?.to_le_bytes());
                    true
                }
                Encoding::RevisionKind => {
                    let kind = value.cast::<PyString>()?;
                    let code = rated_rows::window_kind(kind.to_str()?).ok_or_else(|| {
                        PyValueError::new_err(format!("{name}: unknown kind {kind}"))
                    })?;
                    out.push(code);
                    true
                }
                Encoding::Quantity | Encoding::Amount => {
                    let (precision, scale, bytes) = if kind == Encoding::Quantity {
                        (38, 9, 16)
                    } else {
                        (76, 21, 32)
                    };
                    let text = value.str()?;
                    rated_rows::decimal(&mut out, text.to_str()?, precision, scale, bytes)
                }
                Encoding::Texts => {
                    if value.is_instance_of::<PyString>() {
                        return Err(PyTypeError::new_err(format!(
                            "{name}: expected a list of str"
                        )));
                    }
                    let texts: Vec<Bound<'py, PyString>> = value.extract()?;
                    row_binary::length(&mut out, texts.len());
                    for text in &texts {
                        row_binary::text(&mut out, text.to_str()?.as_bytes());
                    }
                    true
                }
            };
            if !encoded {
                return Ok(None);
            }
        }
    }
    Ok(Some((PyBytes::new(py, &out), rows)))
}

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyParser>()?;
    m.add_class::<ParsedColumns>()?;
    m.add_function(wrap_pyfunction!(idempotency_hash, m)?)?;
    m.add_function(wrap_pyfunction!(encode_rated_windows, m)?)?;
    let names: Vec<&str> = rated_rows::COLUMNS.iter().map(|(name, _)| *name).collect();
    m.add("RATED_WINDOW_COLUMNS", names)?;
    crate::py_shard::register(m)?;
    crate::py_ledger::register(m)
}
