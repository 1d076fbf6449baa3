//! Per-window accumulators, one per aggregation kind: operators/aggregation.py's rules.
//!
//! Quantities are scaled integers: `value / 10^9` (parse guarantees at most nine
//! fractional digits and less than 10^18, so sums of ~10^11 events fit an i128).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Fixed-point scale of every quantity: nine fractional digits.
pub const SCALE: i128 = 1_000_000_000;

/// How a meter aggregates its events within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregation {
    Sum,
    Count,
    Max,
    UniqueCount,
    Latest,
}

impl Aggregation {
    /// config.meters.Aggregation's value for this kind.
    pub fn code(self) -> &'static str {
        match self {
            Aggregation::Sum => "SUM",
            Aggregation::Count => "COUNT",
            Aggregation::Max => "MAX",
            Aggregation::UniqueCount => "UNIQUE_COUNT",
            Aggregation::Latest => "LATEST",
        }
    }

    /// The kind named by config.meters.Aggregation's value, if any.
    pub fn from_code(code: &str) -> Option<Aggregation> {
        [
            Aggregation::Sum,
            Aggregation::Count,
            Aggregation::Max,
            Aggregation::UniqueCount,
            Aggregation::Latest,
        ]
        .into_iter()
        .find(|kind| kind.code() == code)
    }
}

/// What a window holds for one aggregation kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fold {
    Sum(i128),
    Count,
    /// Starts at 0, as MaxAccumulator does (values are never negative).
    Max(i128),
    /// Boxed: every window of the other kinds is then 32 bytes smaller.
    #[allow(clippy::box_collection)]
    UniqueCount(Box<HashSet<String>>),
    /// (time, value); starts at (-1, 0). Ties in time go to the larger value.
    Latest(i64, i128),
}

/// One window's accumulator for one series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accumulator {
    pub fold: Fold,
    /// Distinct events folded in: the window's revision.
    pub count: u64,
    /// The quantity last emitted (None before the first emission).
    pub emitted: Option<i128>,
    /// The amount last charged, as exact decimal text; kept for the Python rating.
    pub amount: Option<String>,
}

impl Accumulator {
    /// An empty accumulator of `kind`.
    pub fn new(kind: Aggregation) -> Accumulator {
        let fold = match kind {
            Aggregation::Sum => Fold::Sum(0),
            Aggregation::Count => Fold::Count,
            Aggregation::Max => Fold::Max(0),
            Aggregation::UniqueCount => Fold::UniqueCount(Box::default()),
            Aggregation::Latest => Fold::Latest(-1, 0),
        };
        Accumulator {
            fold,
            count: 0,
            emitted: None,
            amount: None,
        }
    }

    /// Fold one event's value (scaled; `distinct` is UNIQUE_COUNT's text) at `time_ms`.
    pub fn fold(&mut self, value: i128, distinct: &str, time_ms: i64) {
        match &mut self.fold {
            Fold::Sum(total) => {
                *total = total
                    .checked_add(value)
                    .expect("a window's sum beyond 10^29 cannot be reached by < 10^18 values");
            }
            Fold::Count => {}
            Fold::Max(best) => *best = (*best).max(value),
            Fold::UniqueCount(values) => {
                if !values.contains(distinct) {
                    values.insert(distinct.to_owned());
                }
            }
            Fold::Latest(latest_ms, latest) => {
                if time_ms > *latest_ms || (time_ms == *latest_ms && value > *latest) {
                    *latest_ms = time_ms;
                    *latest = value;
                }
            }
        }
        self.count += 1;
    }

    /// The window's quantity so far, scaled.
    pub fn quantity(&self) -> i128 {
        match &self.fold {
            Fold::Sum(total) => *total,
            Fold::Count => i128::from(self.count) * SCALE,
            Fold::Max(best) => *best,
            Fold::UniqueCount(values) => values.len() as i128 * SCALE,
            Fold::Latest(_, latest) => *latest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_folds_as_the_python_accumulators() {
        let mut sum = Accumulator::new(Aggregation::Sum);
        sum.fold(1_500_000_000, "", 5);
        sum.fold(2 * SCALE, "", 1);
        assert_eq!((sum.quantity(), sum.count), (3_500_000_000, 2));

        let mut count = Accumulator::new(Aggregation::Count);
        count.fold(0, "", 1);
        assert_eq!(count.quantity(), SCALE);

        let mut max = Accumulator::new(Aggregation::Max);
        max.fold(3, "", 1);
        max.fold(2, "", 2);
        assert_eq!(max.quantity(), 3);

        let mut unique = Accumulator::new(Aggregation::UniqueCount);
        for text in ["1", "1.0", "1"] {
            unique.fold(0, text, 1);
        }
        assert_eq!((unique.quantity(), unique.count), (2 * SCALE, 3));

        let mut latest = Accumulator::new(Aggregation::Latest);
        latest.fold(5, "", 10);
        latest.fold(7, "", 10); // a tie goes to the larger value
        latest.fold(9, "", 9); // an earlier event changes nothing
        assert_eq!(latest.quantity(), 7);
    }

    #[test]
    fn aggregation_codes_round_trip() {
        for code in ["SUM", "COUNT", "MAX", "UNIQUE_COUNT", "LATEST"] {
            assert_eq!(
                Aggregation::from_code(code).map(Aggregation::code),
                Some(code)
            );
        }
        assert_eq!(Aggregation::from_code("AVG"), None);
    }
}
