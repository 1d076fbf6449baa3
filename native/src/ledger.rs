//! Billing-period ledger: operators/period_rating.py's PeriodLedger in exact `Money`.
//!
//! Each (tenant, meter, period start, price version) keeps the period's usage
//! (the window accumulators' period kinds), the cost last charged for it and
//! when it ends. A window revision merges in, the period is priced again, and
//! the difference is the revision's amount. A batch charges all of its rows or,
//! on an `Overflow`, none: the ledger is left as it was for Python to take over.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregation;
use crate::keyhash::NumberHash;
use crate::money::{Exact, Money, ZERO};
use crate::pricing::Pricer;

/// No period ends before this is kept; expire() need not look before it.
const NEVER_MS: i64 = 1 << 62;

/// A period's tenant, meter, start and price version, as they are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodKey {
    pub tenant: String,
    pub meter: String,
    pub start_ms: i64,
    pub version: String,
}

/// A period's key with its texts interned (`Names`): hashed and compared cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub tenant: u32,
    pub meter: u32,
    pub start_ms: i64,
    pub version: u32,
}

/// Texts by number: tenants, meters and versions of the periods' keys.
#[derive(Debug, Clone, Default)]
pub struct Names {
    ids: HashMap<String, u32>,
    texts: Vec<String>,
}

impl Names {
    pub fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.ids.insert(text.to_owned(), id);
        self.texts.push(text.to_owned());
        id
    }

    pub fn text(&self, id: u32) -> &str {
        &self.texts[id as usize]
    }
}

/// A period's usage so far, by aggregation kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Usage {
    Sum(Money),
    Count(i128),
    Max(Money),
    UniqueCount(HashSet<String>),
    /// (time of the value, value); starts at (-1, 0).
    Latest(i64, Money),
}

impl Usage {
    pub fn new(kind: Aggregation) -> Usage {
        match kind {
            Aggregation::Sum => Usage::Sum(ZERO),
            Aggregation::Count => Usage::Count(0),
            Aggregation::Max => Usage::Max(ZERO),
            Aggregation::UniqueCount => Usage::UniqueCount(HashSet::new()),
            Aggregation::Latest => Usage::Latest(-1, ZERO),
        }
    }

    pub fn quantity(&self) -> Money {
        match self {
            Usage::Sum(total) => *total,
            Usage::Count(count) => Money::int(*count),
            Usage::Max(best) => *best,
            Usage::UniqueCount(values) => Money::int(values.len() as i128),
            Usage::Latest(_, value) => *value,
        }
    }
}

/// What one window revision brings to its period.
pub struct WindowChange<'a> {
    /// The window's quantity now, and its change since the last revision.
    pub quantity: Money,
    pub change: Money,
    pub latest_ms: i64,
    pub distinct: &'a HashSet<String>,
    /// What the window was charged so far.
    pub charged_before: Money,
}

/// The period after a revision, and the revision's new amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Charged {
    pub period_quantity: Money,
    pub period_cost: Money,
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub usage: Usage,
    pub charged: Money,
    pub end_ms: i64,
}

/// How to put one entry back as it was before a batch.
enum Undo {
    Absent(Key),
    Was {
        key: Key,
        usage: Option<Usage>,
        charged: Money,
        end_ms: i64,
        /// UNIQUE_COUNT: the values this batch added.
        added: Vec<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub periods: HashMap<Key, Entry, NumberHash>,
    pub names: Names,
    earliest_end_ms: i64,
}

/// Stored with its keys' texts (the numbers are this process's own).
impl Serialize for Ledger {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = &self.names;
        serializer.collect_seq(self.periods.iter().map(|(key, entry)| {
            let key = (
                names.text(key.tenant),
                names.text(key.meter),
                key.start_ms,
                names.text(key.version),
            );
            (key, entry)
        }))
    }
}

impl<'de> Deserialize<'de> for Ledger {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ledger, D::Error> {
        let stored: Vec<(PeriodKey, Entry)> = Vec::deserialize(deserializer)?;
        let mut ledger = Ledger::new();
        for (key, entry) in stored {
            let key = ledger.key(&key);
            ledger.earliest_end_ms = ledger.earliest_end_ms.min(entry.end_ms);
            ledger.periods.insert(key, entry);
        }
        Ok(ledger)
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger {
            periods: HashMap::default(),
            names: Names::default(),
            earliest_end_ms: NEVER_MS,
        }
    }

    /// `key` with its texts numbered.
    pub fn key(&mut self, key: &PeriodKey) -> Key {
        Key {
            tenant: self.names.id(&key.tenant),
            meter: self.names.id(&key.meter),
            start_ms: key.start_ms,
            version: self.names.id(&key.version),
        }
    }

    /// `key`'s texts.
    pub fn period_key(&self, key: &Key) -> PeriodKey {
        PeriodKey {
            tenant: self.names.text(key.tenant).to_owned(),
            meter: self.names.text(key.meter).to_owned(),
            start_ms: key.start_ms,
            version: self.names.text(key.version).to_owned(),
        }
    }

    /// Start a period not seen yet from what other incarnations stored.
    pub fn seed(&mut self, key: &PeriodKey, usage: Usage, charged: Money, end_ms: i64) {
        let key = self.key(key);
        if !self.periods.contains_key(&key) {
            self.earliest_end_ms = self.earliest_end_ms.min(end_ms);
            self.periods.insert(
                key,
                Entry {
                    usage,
                    charged,
                    end_ms,
                },
            );
        }
    }

    /// Charge each row in turn (`rows`: key, aggregation, period end, pricer, change);
    /// all or nothing.
    pub fn charge_all<'a>(
        &mut self,
        rows: impl Iterator<Item = (Key, Aggregation, i64, &'a Pricer, WindowChange<'a>)>,
    ) -> Exact<Vec<Charged>> {
        let mut undo = Vec::new();
        let mut out = Vec::new();
        let earliest = self.earliest_end_ms;
        for (key, kind, end_ms, pricer, change) in rows {
            match self.charge(key, kind, end_ms, pricer, change, &mut undo) {
                Ok(charged) => out.push(charged),
                Err(overflow) => {
                    self.rollback(undo);
                    self.earliest_end_ms = earliest;
                    return Err(overflow);
                }
            }
        }
        Ok(out)
    }

    fn charge(
        &mut self,
        key: Key,
        kind: Aggregation,
        end_ms: i64,
        pricer: &Pricer,
        change: WindowChange<'_>,
        undo: &mut Vec<Undo>,
    ) -> Exact<Charged> {
        match self.periods.get(&key) {
            Some(entry) => undo.push(Undo::Was {
                key,
                usage: match entry.usage {
                    Usage::UniqueCount(_) => None,
                    ref usage => Some(usage.clone()),
                },
                charged: entry.charged,
                end_ms: entry.end_ms,
                added: Vec::new(),
            }),
            None => {
                self.earliest_end_ms = self.earliest_end_ms.min(end_ms);
                undo.push(Undo::Absent(key));
                let entry = Entry {
                    usage: Usage::new(kind),
                    charged: ZERO,
                    end_ms,
                };
                self.periods.insert(key, entry);
            }
        }
        let Some(entry) = self.periods.get_mut(&key) else {
            unreachable!("the period was just found or added");
        };
        match &mut entry.usage {
            Usage::Sum(total) => *total = total.add(change.change)?,
            Usage::Count(count) => {
                // int(change): counts change by whole events.
                let whole = change.change.trunc()?;
                *count = count.checked_add(whole).ok_or(crate::money::Overflow)?;
            }
            Usage::Max(best) => *best = best.max(change.quantity)?,
            Usage::UniqueCount(values) => {
                let added: Vec<String> = change
                    .distinct
                    .iter()
                    .filter(|v| !values.contains(*v))
                    .cloned()
                    .collect();
                values.extend(added.iter().cloned());
                if let Some(Undo::Was { added: undone, .. }) = undo.last_mut() {
                    *undone = added;
                }
            }
            Usage::Latest(time_ms, value) => {
                let theirs_later = change.latest_ms > *time_ms
                    || (change.latest_ms == *time_ms
                        && change.quantity.compare(*value)? == std::cmp::Ordering::Greater);
                if theirs_later {
                    *time_ms = change.latest_ms;
                    *value = change.quantity;
                }
            }
        }
        let period_quantity = entry.usage.quantity();
        let cost = pricer.cost(period_quantity)?;
        let amount = change.charged_before.add(cost.sub(entry.charged)?)?;
        entry.charged = cost;
        entry.end_ms = end_ms;
        Ok(Charged {
            period_quantity,
            period_cost: cost,
            amount,
        })
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Absent(key) => {
                    self.periods.remove(&key);
                }
                Undo::Was {
                    key,
                    usage,
                    charged,
                    end_ms,
                    added,
                } => {
                    if let Some(entry) = self.periods.get_mut(&key) {
                        match usage {
                            Some(usage) => entry.usage = usage,
                            None => {
                                if let Usage::UniqueCount(values) = &mut entry.usage {
                                    for value in &added {
                                        values.remove(value);
                                    }
                                }
                            }
                        }
                        entry.charged = charged;
                        entry.end_ms = end_ms;
                    }
                }
            }
        }
    }

    /// Forget periods that ended before `before_ms`; how many.
    pub fn expire(&mut self, before_ms: i64) -> usize {
        if before_ms < self.earliest_end_ms {
            return 0;
        }
        let count = self.periods.len();
        self.periods.retain(|_, entry| entry.end_ms > before_ms);
        self.earliest_end_ms = self
            .periods
            .values()
            .map(|entry| entry.end_ms)
            .min()
            .unwrap_or(NEVER_MS);
        count - self.periods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Model;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn key(ledger: &mut Ledger, tenant: &str) -> Key {
        ledger.key(&PeriodKey {
            tenant: tenant.into(),
            meter: "calls".into(),
            start_ms: 0,
            version: "v1".into(),
        })
    }

    fn unit(price: &str) -> Pricer {
        Pricer {
            model: Some(Model::Unit(m(price))),
            free_allowance: ZERO,
            kept: None,
            maximum: None,
            zero_fee: None,
        }
    }

    fn change<'a>(quantity: &str, change: &str, distinct: &'a HashSet<String>) -> WindowChange<'a> {
        WindowChange {
            quantity: m(quantity),
            change: m(change),
            latest_ms: -1,
            distinct,
            charged_before: ZERO,
        }
    }

    #[test]
    fn amounts_are_the_changes_of_the_period_cost_and_overflow_undoes_the_batch() {
        let none = HashSet::new();
        let mut ledger = Ledger::new();
        let (a, b) = (key(&mut ledger, "a"), key(&mut ledger, "b"));
        let cheap = unit("0.5");
        let rows = vec![
            (a, Aggregation::Sum, 10, &cheap, change("4", "4", &none)),
            (a, Aggregation::Sum, 10, &cheap, change("2", "2", &none)),
        ];
        let charged = ledger.charge_all(rows.into_iter()).unwrap();
        assert_eq!(charged[1].period_quantity, m("6"));
        assert_eq!(charged[1].amount, m("1"));
        let huge = unit("1E+37");
        let rows = vec![
            (a, Aggregation::Sum, 10, &cheap, change("1", "1", &none)),
            (b, Aggregation::Sum, 10, &cheap, change("1", "1", &none)),
            (a, Aggregation::Sum, 10, &huge, change("99", "99", &none)),
        ];
        assert!(ledger.charge_all(rows.into_iter()).is_err());
        assert_eq!(ledger.periods.len(), 1);
        assert_eq!(ledger.periods[&a].usage.quantity(), m("6"));
        assert_eq!(ledger.periods[&a].charged, m("3"));
        let restored: Ledger =
            postcard::from_bytes(&postcard::to_allocvec(&ledger).unwrap()).unwrap();
        assert_eq!(restored.period_key(&a), ledger.period_key(&a));
        assert_eq!(ledger.expire(9), 0);
        assert_eq!(ledger.expire(10), 1);
    }
}
