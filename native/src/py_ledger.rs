//! The Python face of rating: `NativeLedger`, which prices a `NativeShard`'s last
//! emission against billing periods without a Python object per revision.
//!
//! Billing segments (which plan, version and period a tenant's window falls in)
//! stay in Python (operators/periods.py): Python adds a span per tenant and
//! segment, with a compiled pricer per meter, for the rows `missing_spans` names.

use std::collections::{HashMap, HashSet};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::aggregate::{Aggregation, Fold};
use crate::keyhash::NumberHash;
use crate::ledger::{Charged, Key, Ledger, PeriodKey, Usage, WindowChange};
use crate::money::{Exact, Money, ZERO};
use crate::pricing::{Model, Pricer, Tier};
use crate::py_shard::PyShard;
use crate::snapshot;

/// A tenant's billing segment and the window starts [from, before) it covers.
struct Span {
    from_ms: i64,
    before_ms: i64,
    period_start_ms: i64,
    period_end_ms: i64,
    tenant: u32,
    version: u32,
    version_text: Py<PyString>,
    plan_id: Py<PyString>,
    currency: Py<PyString>,
    /// The plan id's and currency's numbers in the ledger's names.
    plan: u32,
    currency_id: u32,
    /// Each meter's name, number and pricer (an index into `pricers`).
    pricers: Vec<(String, u32, usize)>,
    /// The rating round it was added for: never evicted before that rating.
    added_in: u64,
}

/// Spans kept per tenant (a late window can fall in an earlier segment).
const SPANS_PER_TENANT: usize = 4;

/// A tier as Python passes it: (up_to, unit_price, flat_price) as decimal texts.
type TierArg = (Option<String>, String, String);

fn money(text: &str) -> Exact<Money> {
    Money::parse(text)
}

fn optional(text: Option<String>) -> Exact<Option<Money>> {
    text.as_deref().map(money).transpose()
}

fn aggregation(code: &str) -> PyResult<Aggregation> {
    Aggregation::from_code(code)
        .ok_or_else(|| PyValueError::new_err(format!("unknown aggregation {code:?}")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    ledger: Ledger,
    aggregations: HashMap<String, Aggregation>,
}

/// One shard's billing-period ledger (operators/period_rating.py's PeriodLedger).
#[pyclass(module = "operators._native", name = "NativeLedger")]
pub struct PyLedger {
    state: State,
    // Made from the pricing catalog; not state.
    pricers: Vec<Pricer>,
    spans: HashMap<String, Vec<Span>>,
    /// Ratings that found spans missing so far.
    round: u64,
    /// Each period this run rated (with its plan and currency): its quantity and
    /// cost after its last revision. The run's summary; not state.
    rated: HashMap<(Key, u32, u32), (Money, Money), NumberHash>,
}

#[pymethods]
impl PyLedger {
    /// An empty ledger for meters aggregated as `aggregations` ((slug, code) pairs).
    #[new]
    fn new(aggregations: Vec<(String, String)>) -> PyResult<PyLedger> {
        let mut ledger = PyLedger {
            state: State {
                ledger: Ledger::new(),
                aggregations: HashMap::new(),
            },
            pricers: Vec::new(),
            spans: HashMap::new(),
            round: 0,
            rated: HashMap::default(),
        };
        ledger.set_aggregations(aggregations)?;
        Ok(ledger)
    }

    fn __len__(&self) -> usize {
        self.state.ledger.periods.len()
    }

    /// Every meter's aggregation (restored meters keep theirs).
    fn set_aggregations(&mut self, aggregations: Vec<(String, String)>) -> PyResult<()> {
        for (meter, code) in aggregations {
            self.state.aggregations.insert(meter, aggregation(&code)?);
        }
        Ok(())
    }

    /// Compile a segment pricer (operators/pricing.py's `segment_pricer`) from its
    /// model's kind and decimal texts; its number, or None if one does not fit.
    #[pyo3(signature = (kind, numbers, tiers, round_down, free_allowance, kept, maximum, zero_fee))]
    #[allow(clippy::too_many_arguments)]
    fn add_pricer(
        &mut self,
        kind: Option<&str>,
        numbers: Vec<Option<String>>,
        tiers: Vec<TierArg>,
        round_down: bool,
        free_allowance: String,
        kept: Option<String>,
        maximum: Option<String>,
        zero_fee: Option<String>,
    ) -> PyResult<Option<usize>> {
        let compiled = (|| -> Exact<Pricer> {
            let number = |at: usize| -> Exact<Option<Money>> {
                optional(numbers.get(at).cloned().flatten())
            };
            let tiers = || -> Exact<Vec<Tier>> {
                tiers
                    .iter()
                    .map(|(up_to, unit, flat)| {
                        Ok(Tier {
                            up_to: optional(up_to.clone())?,
                            unit_price: money(unit)?,
                            flat_price: money(flat)?,
                        })
                    })
                    .collect()
            };
            let required = |at: usize| number(at)?.ok_or(crate::money::Overflow);
            let model = match kind {
                None => None,
                Some("unit") => Some(Model::Unit(required(0)?)),
                Some("package") => Some(Model::Package {
                    size: required(0)?,
                    price: required(1)?,
                    round_down,
                }),
                Some("graduated") => Some(Model::Graduated(tiers()?)),
                Some("volume") => Some(Model::Volume(tiers()?)),
                Some("percentage") => Some(Model::Percentage {
                    rate_percent: required(0)?,
                    free_amount: number(1)?,
                }),
                Some(_) => return Err(crate::money::Overflow),
            };
            Ok(Pricer {
                model,
                free_allowance: money(&free_allowance)?,
                kept: optional(kept.clone())?,
                maximum: optional(maximum.clone())?,
                zero_fee: optional(zero_fee.clone())?,
            })
        })();
        Ok(compiled.ok().map(|pricer| {
            self.pricers.push(pricer);
            self.pricers.len() - 1
        }))
    }

    /// Pricer `pricer`'s cost of `quantity` (decimal texts); None if it does not fit here.
    fn quote(&self, pricer: usize, quantity: &str) -> PyResult<Option<String>> {
        let pricer = self
            .pricers
            .get(pricer)
            .ok_or_else(|| PyValueError::new_err(format!("no pricer {pricer}")))?;
        Ok(money(quantity)
            .and_then(|q| pricer.cost(q))
            .ok()
            .map(Money::text))
    }

    /// Forget spans and pricers (a new pricing catalog, or too many kept).
    fn clear_spans(&mut self) {
        self.spans.clear();
        self.pricers.clear();
    }

    fn pricer_count(&self) -> usize {
        self.pricers.len()
    }

    /// Add `tenant`'s segment covering window starts [from_ms, before_ms) and
    /// each meter's pricer (`pricers`: (meter, pricer number)).
    #[pyo3(signature = (tenant, from_ms, before_ms, period_start_ms, period_end_ms, version, plan_id, currency, pricers))]
    #[allow(clippy::too_many_arguments)]
    fn add_span(
        &mut self,
        tenant: String,
        from_ms: i64,
        before_ms: i64,
        period_start_ms: i64,
        period_end_ms: i64,
        version: Bound<'_, PyString>,
        plan_id: Bound<'_, PyString>,
        currency: Bound<'_, PyString>,
        pricers: Vec<(String, usize)>,
    ) -> PyResult<()> {
        if let Some((_, index)) = pricers.iter().find(|(_, i)| *i >= self.pricers.len()) {
            return Err(PyValueError::new_err(format!("no pricer {index}")));
        }
        let names = &mut self.state.ledger.names;
        let pricers = pricers
            .into_iter()
            .map(|(meter, index)| {
                let id = names.id(&meter);
                (meter, id, index)
            })
            .collect();
        let span = Span {
            from_ms,
            before_ms,
            period_start_ms,
            period_end_ms,
            tenant: names.id(&tenant),
            version: names.id(version.to_str()?),
            plan: names.id(plan_id.to_str()?),
            currency_id: names.id(currency.to_str()?),
            version_text: version.unbind(),
            plan_id: plan_id.unbind(),
            currency: currency.unbind(),
            pricers,
            added_in: self.round,
        };
        let spans = self.spans.entry(tenant).or_default();
        if spans.len() >= SPANS_PER_TENANT {
            // The oldest span not added for the rating under way.
            if let Some(oldest) = spans.iter().position(|s| s.added_in != self.round) {
                spans.remove(oldest);
            }
        }
        spans.push(span);
        Ok(())
    }

    /// Price `shard`'s last emission against the periods and record each window's
    /// new amount in it. Columns of decimal texts: (amount, previous amount,
    /// period quantity, period amount), then (currency, plan id, price version,
    /// period start). Or, with nothing changed: the (tenant, window start) pairs
    /// no span covers yet, as a list (add them, then rate again); None if a
    /// number does not fit here.
    fn rate<'py>(
        &mut self,
        py: Python<'py>,
        mut shard: PyRefMut<'py, PyShard>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let rows = shard.last();
        // Each row's span, found once; the rows without one are reported instead.
        let found: Vec<Option<&Span>> = rows
            .iter()
            .map(|row| span_of(&self.spans, &row.name.tenant, row.start))
            .collect();
        if found.iter().any(Option::is_none) {
            let mut seen = HashSet::new();
            let missing: Vec<(&str, i64)> = rows
                .iter()
                .zip(&found)
                .filter(|(row, span)| span.is_none() && seen.insert((&row.name.tenant, row.start)))
                .map(|(row, _)| (row.name.tenant.as_str(), row.start))
                .collect();
            let missing = missing.into_pyobject(py)?.into_any();
            self.round += 1;
            // The spans this emission found must outlive the spans added for it.
            let round = self.round;
            for row in rows {
                if let Some(spans) = self.spans.get_mut(&row.name.tenant) {
                    let covering = spans.iter_mut().rev().find(|s| s.covers(row.start));
                    if let Some(span) = covering {
                        span.added_in = round;
                    }
                }
            }
            return Ok(Some(missing));
        }
        let spans: Vec<&Span> = found.into_iter().flatten().collect();
        let empty = HashSet::new();
        let mut inputs = Vec::with_capacity(rows.len());
        for (row, span) in rows.iter().zip(&spans) {
            let meter = &row.name.meter;
            let kind = *self.state.aggregations.get(meter).ok_or_else(|| {
                PyValueError::new_err(format!("meter {meter:?} has no aggregation"))
            })?;
            let (meter_id, pricer) = span
                .pricers
                .iter()
                .find(|(name, _, _)| name == meter)
                .map(|&(_, id, index)| (id, &self.pricers[index]))
                .ok_or_else(|| PyValueError::new_err(format!("no pricer for meter {meter:?}")))?;
            let charged_before = match row.acc.amount.as_deref().map(money).transpose() {
                Ok(amount) => amount.unwrap_or(ZERO),
                Err(_) => return Ok(None),
            };
            let (latest_ms, distinct) = match &row.acc.fold {
                Fold::Latest(time_ms, _) => (*time_ms, &empty),
                Fold::UniqueCount(values) => (-1, &**values),
                _ => (-1, &empty),
            };
            let key = Key {
                tenant: span.tenant,
                meter: meter_id,
                start_ms: span.period_start_ms,
                version: span.version,
            };
            let change = WindowChange {
                quantity: Money::of_scaled(row.quantity),
                change: Money::of_scaled(row.quantity - row.previous),
                latest_ms,
                distinct,
                charged_before,
            };
            inputs.push((key, kind, span.period_end_ms, pricer, change));
        }
        let keys: Vec<(Key, u32, u32)> = inputs
            .iter()
            .zip(&spans)
            .map(|(input, span)| (input.0, span.plan, span.currency_id))
            .collect();
        let before: Vec<Money> = inputs.iter().map(|input| input.4.charged_before).collect();
        let ledger = &mut self.state.ledger;
        let Ok(charged) = py.detach(move || ledger.charge_all(inputs.into_iter())) else {
            return Ok(None);
        };
        // Python strings straight from one buffer: no Rust string per value.
        let mut buffer = String::with_capacity(48);
        let mut texts = |pick: fn(&Charged) -> Money| -> PyResult<Bound<'py, PyList>> {
            PyList::new(
                py,
                charged.iter().map(|c| {
                    buffer.clear();
                    pick(c).write(&mut buffer);
                    PyString::new(py, &buffer)
                }),
            )
        };
        let period_quantity = texts(|c| c.period_quantity)?;
        let period_cost = texts(|c| c.period_cost)?;
        let amounts: Vec<String> = charged.iter().map(|c| c.amount.text()).collect();
        let amount_list = PyList::new(py, &amounts)?;
        let previous = PyList::new(
            py,
            rows.iter()
                .map(|row| row.acc.amount.as_deref().unwrap_or("0")),
        )?;
        for (key, c) in keys.iter().zip(&charged) {
            self.rated.insert(*key, (c.period_quantity, c.period_cost));
        }
        let changes = amount_changes(&spans, &charged, &before)
            .map(|totals| {
                let names = &self.state.ledger.names;
                totals
                    .into_iter()
                    .map(|((currency, sign), total)| (names.text(currency), sign, total.text()))
                    .collect::<Vec<_>>()
            })
            .into_pyobject(py)?;
        let columns = (
            amount_list,
            previous,
            period_quantity,
            period_cost,
            PyList::new(py, spans.iter().map(|s| s.currency.bind(py)))?,
            PyList::new(py, spans.iter().map(|s| s.plan_id.bind(py)))?,
            PyList::new(py, spans.iter().map(|s| s.version_text.bind(py)))?,
            PyList::new(py, spans.iter().map(|s| s.period_start_ms))?,
            changes,
        );
        shard.charge_last(amounts);
        Ok(Some(columns.into_pyobject(py)?.into_any()))
    }

    /// Start a period not seen yet from what other incarnations stored; False
    /// (nothing changed) if a number does not fit here.
    #[pyo3(signature = (tenant, meter, start_ms, version, end_ms, quantity, amount, latest_ms, distinct))]
    #[allow(clippy::too_many_arguments)]
    fn seed(
        &mut self,
        tenant: String,
        meter: String,
        start_ms: i64,
        version: String,
        end_ms: i64,
        quantity: &str,
        amount: &str,
        latest_ms: i64,
        distinct: Vec<String>,
    ) -> PyResult<bool> {
        let kind =
            *self.state.aggregations.get(&meter).ok_or_else(|| {
                PyValueError::new_err(format!("meter {meter:?} has no aggregation"))
            })?;
        let (Ok(quantity), Ok(amount)) = (money(quantity), money(amount)) else {
            return Ok(false);
        };
        let usage = match kind {
            Aggregation::Sum => Usage::Sum(quantity),
            Aggregation::Count => match quantity.trunc() {
                Ok(count) => Usage::Count(count),
                Err(_) => return Ok(false),
            },
            Aggregation::Max => Usage::Max(quantity),
            Aggregation::UniqueCount => Usage::UniqueCount(distinct.into_iter().collect()),
            Aggregation::Latest => Usage::Latest(latest_ms, quantity),
        };
        let key = PeriodKey {
            tenant,
            meter,
            start_ms,
            version,
        };
        self.state.ledger.seed(&key, usage, amount, end_ms);
        Ok(true)
    }

    /// Forget periods that ended before `before_ms`; how many.
    fn expire(&mut self, before_ms: i64) -> usize {
        self.state.ledger.expire(before_ms)
    }

    /// The tenants with a period here.
    fn tenants(&self) -> HashSet<String> {
        let ledger = &self.state.ledger;
        let periods = ledger.periods.keys();
        periods
            .map(|key| ledger.names.text(key.tenant).to_owned())
            .collect()
    }

    /// The periods this run rated, each after its last revision: (tenant, meter,
    /// period start, plan id, version, currency, quantity, cost), decimals as texts.
    #[allow(clippy::type_complexity)]
    fn rated_periods(&self) -> Vec<(&str, &str, i64, &str, &str, &str, String, String)> {
        let names = &self.state.ledger.names;
        self.rated
            .iter()
            .map(|((key, plan, currency), (quantity, cost))| {
                (
                    names.text(key.tenant),
                    names.text(key.meter),
                    key.start_ms,
                    names.text(*plan),
                    names.text(key.version),
                    names.text(*currency),
                    quantity.text(),
                    cost.text(),
                )
            })
            .collect()
    }

    /// Every period: (tenant, meter, period start, version, end, quantity,
    /// charged, LATEST's time, UNIQUE_COUNT's values), decimals as texts.
    #[allow(clippy::type_complexity)]
    fn entries(
        &self,
    ) -> Vec<(
        String,
        String,
        i64,
        String,
        i64,
        String,
        String,
        i64,
        Vec<String>,
    )> {
        let mut out: Vec<_> = self
            .state
            .ledger
            .periods
            .iter()
            .map(|(key, entry)| {
                let key = self.state.ledger.period_key(key);
                let (latest_ms, distinct) = match &entry.usage {
                    Usage::Latest(time_ms, _) => (*time_ms, Vec::new()),
                    Usage::UniqueCount(values) => {
                        let mut values: Vec<String> = values.iter().cloned().collect();
                        values.sort();
                        (-1, values)
                    }
                    _ => (-1, Vec::new()),
                };
                (
                    key.tenant,
                    key.meter,
                    key.start_ms,
                    key.version,
                    entry.end_ms,
                    entry.usage.quantity().text(),
                    entry.charged.text(),
                    latest_ms,
                    distinct,
                )
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1, a.2, &a.3).cmp(&(&b.0, &b.1, b.2, &b.3)));
        out
    }

    /// The ledger as bytes (spans and pricers are not state).
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &snapshot::encode(&self.state))
    }

    /// A ledger from `snapshot`.
    #[staticmethod]
    fn restore(data: &[u8]) -> PyResult<PyLedger> {
        let state = snapshot::decode(data).map_err(|e| PyValueError::new_err(e.0))?;
        Ok(PyLedger {
            state,
            pricers: Vec::new(),
            spans: HashMap::new(),
            round: 0,
            rated: HashMap::default(),
        })
    }
}

/// Per (currency, "charge" or "credit"): the rows' changes in amount added up
/// (operators' metrics count them); None if a total does not fit here.
fn amount_changes(
    spans: &[&Span],
    charged: &[Charged],
    before: &[Money],
) -> Option<Vec<((u32, &'static str), Money)>> {
    let mut totals: Vec<((u32, &'static str), Money)> = Vec::new();
    for ((span, c), was) in spans.iter().zip(charged).zip(before) {
        let change = c.amount.sub(*was).ok()?;
        let sign = match change.mantissa.signum() {
            1 => "charge",
            -1 => "credit",
            _ => continue,
        };
        let magnitude = Money::new(change.mantissa.checked_abs()?, change.exponent);
        let key = (span.currency_id, sign);
        match totals.iter_mut().find(|(k, _)| *k == key) {
            Some((_, total)) => *total = total.add(magnitude).ok()?,
            None => totals.push((key, magnitude)),
        }
    }
    Some(totals)
}

/// `tenant`'s span that covers windows starting at `start_ms`.
fn span_of<'s>(
    spans: &'s HashMap<String, Vec<Span>>,
    tenant: &str,
    start_ms: i64,
) -> Option<&'s Span> {
    let spans = spans.get(tenant)?;
    spans.iter().rev().find(|span| span.covers(start_ms))
}

impl Span {
    /// Whether windows starting at `start_ms` fall in this span.
    fn covers(&self, start_ms: i64) -> bool {
        self.from_ms <= start_ms && start_ms < self.before_ms
    }
}

/// Add the ledger to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLedger>()
}
