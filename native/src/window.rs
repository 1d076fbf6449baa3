//! Event-time tumbling windows with grace, idle close, adjustments and settlement:
//! operators/windowing.py's WindowStore, rule for rule (see its module docstring).
//!
//! Series are keyed by a 128-bit hash of (tenant, meter, group values); each
//! keeps its names once, for emission. Open windows and their series iterate in
//! the order Python's dicts would, so revisions come out in the same order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use indexmap::{IndexMap, IndexSet};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::aggregate::{Accumulator, Aggregation};
use crate::keyhash::KeyHash;

/// The watermark before any input: far below every event time.
pub const NO_WATERMARK: i64 = -(1 << 62);

/// An input partition: its origin (topic) and number.
pub type PartitionKey = (String, i64);

/// Where an event's window stands relative to its input partition's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lateness {
    Open,
    Late,
    TooLate,
}

/// Window geometry and lateness policy, all in milliseconds (checked by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    pub size_ms: i64,
    pub grace_ms: i64,
    pub settlement_ms: i64,
    pub idle_timeout_ms: i64,
}

/// What a series is: emitted with each of its revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesName {
    pub tenant: String,
    pub meter: String,
    /// (name, value) pairs, sorted by name.
    pub groups: Vec<(String, String)>,
}

/// One series of one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// Shared by the series' windows and revisions (snapshotted as the name itself).
    pub name: Arc<SeriesName>,
    pub acc: Accumulator,
}

type Window = IndexMap<u128, Series, KeyHash>;

/// One measure of an accepted event, as the window store folds it.
pub struct Measure<'a> {
    pub meter: &'a str,
    pub aggregation: Aggregation,
    pub group_names: &'a [String],
    pub group_values: &'a [&'a str],
    pub value: i128,
    pub distinct: &'a str,
}

/// Whether a revision closed its window on time or revised a settled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Window,
    Adjustment,
}

/// One emitted window revision (the series' accumulator is read at emission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub start: i64,
    pub key: u128,
    pub name: Arc<SeriesName>,
    pub acc: Accumulator,
    pub quantity: i128,
    pub previous: i128,
    pub kind: Kind,
}

/// Open and settled windows of one shard, its input partitions' progress and watermark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowStore {
    pub config: WindowConfig,
    pub expected_partitions: BTreeSet<PartitionKey>,
    pub watermark: i64,
    open: BTreeMap<i64, Window>,
    settled: BTreeMap<i64, Window>,
    dirty: IndexSet<(i64, u128), KeyHash>,
    partition_max: BTreeMap<PartitionKey, i64>,
    // Each series' name, shared by its windows: a window holds ~a million series.
    // Not snapshotted: resume() rebuilds it from the restored windows.
    #[serde(skip)]
    names: HashMap<u128, Arc<SeriesName>, KeyHash>,
    // Wall-clock marks (seconds, monotonic): reset by resume(), never snapshotted.
    #[serde(skip)]
    partition_seen: HashMap<PartitionKey, f64>,
    #[serde(skip)]
    last_activity: f64,
}

/// The series key: length-prefixed parts, so no two series share their bytes.
fn series_key(tenant: &str, measure: &Measure<'_>) -> u128 {
    let mut hasher = Xxh3::new();
    let mut part = |text: &str| {
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    };
    part(tenant);
    part(measure.meter);
    for (name, value) in measure.group_names.iter().zip(measure.group_values) {
        part(name);
        part(value);
    }
    hasher.digest128()
}

impl WindowStore {
    /// An empty store.
    pub fn new(config: WindowConfig, expected_partitions: BTreeSet<PartitionKey>) -> WindowStore {
        WindowStore {
            config,
            expected_partitions,
            watermark: NO_WATERMARK,
            open: BTreeMap::new(),
            settled: BTreeMap::new(),
            dirty: IndexSet::default(),
            partition_max: BTreeMap::new(),
            names: HashMap::default(),
            partition_seen: HashMap::new(),
            last_activity: 0.0,
        }
    }

    /// Start the quiet-time clocks (at start and after a restore): downtime is not quiet.
    /// A restored store's windows each hold their own copy of a series' name: they
    /// share one again, as in a store that never stopped.
    pub fn resume(&mut self, now_s: f64) {
        let names = &mut self.names;
        for window in self.open.values_mut().chain(self.settled.values_mut()) {
            for (key, series) in window.iter_mut() {
                series.name = names
                    .entry(*key)
                    .or_insert_with(|| series.name.clone())
                    .clone();
            }
        }
        self.partition_seen = self
            .partition_max
            .keys()
            .chain(&self.expected_partitions)
            .map(|p| (p.clone(), now_s))
            .collect();
        self.last_activity = now_s;
    }

    /// Whether an event at `time_ms` is on time, late or too late, given its partition's progress.
    pub fn lateness(&self, time_ms: i64, progress_ms: i64) -> Lateness {
        let c = &self.config;
        let end = time_ms - time_ms.rem_euclid(c.size_ms) + c.size_ms;
        if end + c.grace_ms > progress_ms {
            Lateness::Open
        } else if end + c.settlement_ms > progress_ms {
            Lateness::Late
        } else {
            Lateness::TooLate
        }
    }

    /// Latest event time `partition` delivered in earlier batches (NO_WATERMARK: none).
    pub fn progress(&self, partition: &PartitionKey) -> i64 {
        self.partition_max
            .get(partition)
            .copied()
            .unwrap_or(NO_WATERMARK)
    }

    /// The least progress over every input partition, named up front or seen.
    pub fn slowest_progress(&self) -> i64 {
        self.expected_partitions
            .iter()
            .chain(self.partition_max.keys())
            .map(|p| self.progress(p))
            .min()
            .unwrap_or(NO_WATERMARK)
    }

    /// Tenants with a window in this store.
    pub fn tenants(&self) -> BTreeSet<&str> {
        self.open
            .values()
            .chain(self.settled.values())
            .flat_map(|window| window.values().map(|s| s.name.tenant.as_str()))
            .collect()
    }

    /// Add an accepted, deduplicated, not-too-late event's measures to its window.
    pub fn fold<'m>(
        &mut self,
        tenant: &str,
        time_ms: i64,
        measures: impl IntoIterator<Item = Measure<'m>>,
    ) {
        let size = self.config.size_ms;
        let start = time_ms - time_ms.rem_euclid(size);
        // A window stays where it is: after a restart with another grace, one still
        // open takes the event until the next advance closes it, a settled one revises.
        let is_open = self.open.contains_key(&start)
            || (start + size + self.config.grace_ms > self.watermark
                && !self.settled.contains_key(&start));
        let windows = if is_open {
            &mut self.open
        } else {
            &mut self.settled
        };
        let window = windows.entry(start).or_default();
        let names = &mut self.names;
        for measure in measures {
            let key = series_key(tenant, &measure);
            let series = window.entry(key).or_insert_with(|| Series {
                name: names
                    .entry(key)
                    .or_insert_with(|| {
                        Arc::new(SeriesName {
                            tenant: tenant.to_owned(),
                            meter: measure.meter.to_owned(),
                            groups: measure
                                .group_names
                                .iter()
                                .zip(measure.group_values)
                                .map(|(n, v)| (n.clone(), (*v).to_owned()))
                                .collect(),
                        })
                    })
                    .clone(),
                acc: Accumulator::new(measure.aggregation),
            });
            series.acc.fold(measure.value, measure.distinct, time_ms);
            if !is_open {
                self.dirty.insert((start, key));
            }
        }
    }

    /// Note that `partition` delivered a batch whose latest event time is `max_time_ms`
    /// (None: no accepted event, which says nothing about event time).
    pub fn observe(&mut self, partition: &PartitionKey, max_time_ms: Option<i64>, now_s: f64) {
        let Some(max_time_ms) = max_time_ms else {
            return;
        };
        self.last_activity = now_s;
        self.partition_seen.insert(partition.clone(), now_s);
        if max_time_ms > self.progress(partition) {
            self.partition_max.insert(partition.clone(), max_time_ms);
        }
    }

    /// Move the watermark, close due windows, emit pending adjustments, drop settled state.
    pub fn advance(&mut self, now_s: f64) -> Vec<Revision> {
        let candidate = self.watermark_candidate(now_s);
        self.watermark = self.watermark.max(candidate);
        let mut out = self.close_due();
        self.emit_adjustments(&mut out);
        self.drop_settled();
        out
    }

    /// End of input: close every open window and emit pending adjustments.
    pub fn close_all(&mut self) -> Vec<Revision> {
        if let Some((&last, _)) = self.open.last_key_value() {
            let end = last + self.config.size_ms + self.config.grace_ms;
            self.watermark = self.watermark.max(end);
        }
        let mut out = self.close_due();
        self.emit_adjustments(&mut out);
        out
    }

    /// Monotonic time at which advance() could next change something without new input.
    pub fn next_wakeup(&self, now_s: f64) -> Option<f64> {
        if self.open.is_empty() && self.dirty.is_empty() {
            return None;
        }
        let idle_s = self.config.idle_timeout_ms as f64 / 1000.0;
        let earliest_active = self
            .partition_seen
            .values()
            .copied()
            .filter(|seen| now_s - seen < idle_s)
            .reduce(f64::min);
        if let Some(seen) = earliest_active {
            return Some(seen + idle_s);
        }
        let Some((&first, _)) = self.open.first_key_value() else {
            return Some(now_s);
        };
        let due_ms = first + self.config.size_ms + self.config.grace_ms;
        let wait_ms = (due_ms - self.watermark_candidate(now_s)).max(0);
        Some(now_s + (wait_ms as f64 / 1000.0).min(idle_s))
    }

    /// The amount charged for an emitted window, kept for its next revision.
    pub fn set_amount(&mut self, start: i64, key: u128, amount: String) {
        let series = self
            .settled
            .get_mut(&start)
            .and_then(|window| window.get_mut(&key));
        // A window dropped in the advance that emitted it has no next revision.
        if let Some(series) = series {
            series.acc.amount = Some(amount);
        }
    }

    fn watermark_candidate(&self, now_s: f64) -> i64 {
        let idle_s = self.config.idle_timeout_ms as f64 / 1000.0;
        let active = self
            .partition_seen
            .iter()
            .filter(|(_, &seen)| now_s - seen < idle_s)
            .map(|(p, _)| self.progress(p))
            .min();
        if let Some(slowest) = active {
            // An active partition that has not delivered yet holds everything back.
            return slowest;
        }
        match self.partition_max.values().max() {
            None => NO_WATERMARK,
            Some(&latest) => latest + ((now_s - self.last_activity) * 1000.0) as i64,
        }
    }

    fn close_due(&mut self) -> Vec<Revision> {
        let (size, grace) = (self.config.size_ms, self.config.grace_ms);
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            if start + size + grace > self.watermark {
                break;
            }
            let mut window = entry.remove();
            for (&key, series) in window.iter_mut() {
                let quantity = series.acc.quantity();
                series.acc.emitted = Some(quantity);
                out.push(Revision {
                    start,
                    key,
                    name: series.name.clone(),
                    acc: series.acc.clone(),
                    quantity,
                    previous: 0,
                    kind: Kind::Window,
                });
            }
            // A window is open or settled, never both: events reach settled[start]
            // only once the watermark has passed its close, which closes it first.
            // Settled, it takes late events only: its room to grow is not needed.
            window.shrink_to_fit();
            self.settled.insert(start, window);
        }
        out
    }

    fn emit_adjustments(&mut self, out: &mut Vec<Revision>) {
        for (start, key) in self.dirty.drain(..) {
            let series = self
                .settled
                .get_mut(&start)
                .and_then(|window| window.get_mut(&key))
                .expect("a dirty series is in its settled window");
            let quantity = series.acc.quantity();
            let previous = series.acc.emitted.unwrap_or(0);
            series.acc.emitted = Some(quantity);
            out.push(Revision {
                start,
                key,
                name: series.name.clone(),
                acc: series.acc.clone(),
                quantity,
                previous,
                kind: Kind::Adjustment,
            });
        }
    }

    fn drop_settled(&mut self) {
        // Not by the watermark: it can run ahead of a lagging partition, whose
        // events may still be on time or late for these windows.
        let horizon = self.config.size_ms + self.config.settlement_ms;
        let slowest = self.slowest_progress();
        let before = self.settled.len();
        self.settled.retain(|start, _| start + horizon > slowest);
        if self.settled.len() < before {
            // Names no window holds any more (revisions out for rating may, a while).
            self.names.retain(|_, name| Arc::strong_count(name) > 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: WindowConfig = WindowConfig {
        size_ms: 60_000,
        grace_ms: 10_000,
        settlement_ms: 600_000,
        idle_timeout_ms: 5_000,
    };

    fn sum(value: i128) -> Measure<'static> {
        Measure {
            meter: "tokens",
            aggregation: Aggregation::Sum,
            group_names: &[],
            group_values: &[],
            value,
            distinct: "",
        }
    }

    #[test]
    fn a_restored_store_shares_each_series_name_again() {
        let p: PartitionKey = ("usage".into(), 0);
        let mut store = WindowStore::new(CONFIG, BTreeSet::from([p.clone()]));
        store.resume(0.0);
        for minute in 0..3 {
            store.fold("acme", minute * 60_000 + 1, [sum(1)]);
            store.observe(&p, Some(minute * 60_000 + 1), 0.0);
            store.advance(0.0);
        }
        let shared = |store: &WindowStore| {
            let names: Vec<&Arc<SeriesName>> = store
                .open
                .values()
                .chain(store.settled.values())
                .flat_map(|w| w.values().map(|s| &s.name))
                .collect();
            names.len() == 3 && names.windows(2).all(|w| Arc::ptr_eq(w[0], w[1]))
        };
        assert!(shared(&store));
        let bytes = crate::snapshot::encode(&store);
        let mut restored: WindowStore = crate::snapshot::decode(&bytes).unwrap();
        assert!(!shared(&restored));
        restored.resume(0.0);
        assert!(shared(&restored));
        restored.fold("acme", 3 * 60_000 + 1, [sum(1)]);
        let newest = restored.open[&180_000].values().next().unwrap();
        let oldest = restored.settled[&0].values().next().unwrap();
        assert!(Arc::ptr_eq(&newest.name, &oldest.name));
    }

    #[test]
    fn windows_close_at_end_plus_grace_and_late_events_revise_them() {
        let p: PartitionKey = ("usage".into(), 0);
        let mut store = WindowStore::new(CONFIG, BTreeSet::from([p.clone()]));
        store.resume(0.0);
        store.fold("acme", 1_000, [sum(5)]);
        store.observe(&p, Some(1_000), 0.0);
        assert!(store.advance(0.1).is_empty());
        store.observe(&p, Some(70_000), 0.2);
        let closed = store.advance(0.2);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].quantity, closed[0].kind), (5, Kind::Window));

        assert_eq!(store.lateness(2_000, 70_000), Lateness::Late);
        store.fold("acme", 2_000, [sum(3)]);
        let revised = store.advance(0.3);
        assert_eq!(revised.len(), 1);
        assert_eq!(
            (revised[0].quantity, revised[0].previous, revised[0].kind),
            (8, 5, Kind::Adjustment)
        );
        assert_eq!(store.lateness(2_000, 660_000), Lateness::TooLate);
    }

    #[test]
    fn quiet_inputs_still_close_their_windows() {
        let p: PartitionKey = ("usage".into(), 0);
        let mut store = WindowStore::new(CONFIG, BTreeSet::new());
        store.resume(0.0);
        store.fold("acme", 1_000, [sum(1)]);
        store.observe(&p, Some(1_000), 0.0);
        assert_eq!(store.next_wakeup(1.0), Some(5.0));
        assert!(store.advance(4.9).is_empty());
        // Quiet for 69 s past the last event's time: 1_000 + 69_000 reaches end + grace.
        assert_eq!(store.advance(69.0).len(), 1);
    }
}
