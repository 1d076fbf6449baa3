//! A billing segment's cost as a function of the period's quantity:
//! operators/pricing.py's `segment_pricer`, step for step, in exact `Money`.

use std::cmp::Ordering;

use crate::money::{Exact, Money, ZERO};

/// One tier of a graduated or volume price.
#[derive(Debug, Clone)]
pub struct Tier {
    pub up_to: Option<Money>,
    pub unit_price: Money,
    pub flat_price: Money,
}

/// A meter's price model (config/pricing.py); percentage prices the sum.
#[derive(Debug, Clone)]
pub enum Model {
    Unit(Money),
    Package {
        size: Money,
        price: Money,
        round_down: bool,
    },
    Graduated(Vec<Tier>),
    Volume(Vec<Tier>),
    Percentage {
        rate_percent: Money,
        free_amount: Option<Money>,
    },
}

/// `segment_pricer` of one (plan, version, meter, period start); `None` model: unpriced.
#[derive(Debug, Clone)]
pub struct Pricer {
    pub model: Option<Model>,
    pub free_allowance: Money,
    /// (100 - discount_percent) / 100, when there is a discount.
    pub kept: Option<Money>,
    pub maximum: Option<Money>,
    /// The zero-usage fee a later version's segment is charged less.
    pub zero_fee: Option<Money>,
}

impl Pricer {
    /// The segment's cost of `quantity` units.
    pub fn cost(&self, quantity: Money) -> Exact<Money> {
        let Some(model) = &self.model else {
            return Ok(ZERO);
        };
        let billable = ZERO.max(quantity.sub(self.free_allowance)?)?;
        let mut cost = model.cost(billable)?;
        if let Some(kept) = self.kept {
            cost = cost.mul(kept)?;
        }
        if let Some(maximum) = self.maximum {
            cost = cost.min(maximum)?;
        }
        match self.zero_fee {
            Some(fee) => cost.sub(fee),
            None => Ok(cost),
        }
    }
}

impl Model {
    /// `model_cost` of a quantity >= 0.
    fn cost(&self, quantity: Money) -> Exact<Money> {
        match self {
            Model::Unit(price) => quantity.mul(*price),
            Model::Package {
                size,
                price,
                round_down,
            } => {
                let (whole, rest) = quantity.divmod(*size)?;
                let packages = if !rest.is_zero() && !round_down {
                    whole.add(Money::int(1))?
                } else {
                    whole
                };
                packages.mul(*price)
            }
            Model::Graduated(tiers) => graduated(tiers, quantity),
            Model::Volume(tiers) => {
                let mut chosen = tiers.last().ok_or(crate::money::Overflow)?;
                for tier in tiers {
                    let holds = match tier.up_to {
                        None => true,
                        Some(up_to) => quantity.compare(up_to)? != Ordering::Greater,
                    };
                    if holds {
                        chosen = tier;
                        break;
                    }
                }
                quantity.mul(chosen.unit_price)?.add(chosen.flat_price)
            }
            Model::Percentage {
                rate_percent,
                free_amount,
            } => {
                let billable = match free_amount {
                    None => quantity,
                    Some(free) => ZERO.max(quantity.sub(*free)?)?,
                };
                billable.mul(*rate_percent)?.hundredth()
            }
        }
    }
}

fn graduated(tiers: &[Tier], quantity: Money) -> Exact<Money> {
    let mut cost = ZERO;
    let mut lower = ZERO;
    let last = tiers.len().saturating_sub(1);
    for (index, tier) in tiers.iter().enumerate() {
        if index > 0 && quantity.compare(lower)? != Ordering::Greater {
            // No unit reaches this tier, so neither its units nor its flat price count.
            return Ok(cost);
        }
        let bounded = tier.up_to.filter(|_| index != last);
        let upper = match bounded {
            None => quantity,
            Some(up_to) => quantity.min(up_to)?,
        };
        let units = upper.sub(lower)?;
        cost = cost.add(units.mul(tier.unit_price)?.add(tier.flat_price)?)?;
        match bounded {
            None => return Ok(cost),
            Some(up_to) => lower = up_to,
        }
    }
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn tier(up_to: Option<&str>, unit: &str, flat: &str) -> Tier {
        Tier {
            up_to: up_to.map(m),
            unit_price: m(unit),
            flat_price: m(flat),
        }
    }

    fn pricer(model: Model) -> Pricer {
        Pricer {
            model: Some(model),
            free_allowance: ZERO,
            kept: None,
            maximum: None,
            zero_fee: None,
        }
    }

    #[test]
    fn graduated_prices_each_tier_and_its_flat_price_once_reached() {
        let tiers = vec![
            tier(Some("100"), "0.10", "5"),
            tier(Some("1000"), "0.05", "1"),
            tier(None, "0.01", "0"),
        ];
        let price = pricer(Model::Graduated(tiers));
        assert_eq!(price.cost(m("0")).unwrap(), m("5"));
        assert_eq!(price.cost(m("100")).unwrap(), m("15"));
        assert_eq!(price.cost(m("101")).unwrap(), m("16.05"));
        assert_eq!(price.cost(m("2000")).unwrap(), m("71"));
    }

    #[test]
    fn volume_package_and_terms() {
        let volume = pricer(Model::Volume(vec![
            tier(Some("1000"), "0.10", "0"),
            tier(None, "0.08", "0"),
        ]));
        assert_eq!(volume.cost(m("1000")).unwrap(), m("100"));
        assert_eq!(volume.cost(m("1001")).unwrap(), m("80.08"));
        let package = Pricer {
            free_allowance: m("10"),
            kept: Some(m("0.9")),
            maximum: Some(m("40")),
            zero_fee: Some(m("1")),
            ..pricer(Model::Package {
                size: m("100"),
                price: m("20"),
                round_down: false,
            })
        };
        assert_eq!(package.cost(m("5")).unwrap(), m("-1"));
        assert_eq!(package.cost(m("111")).unwrap(), m("35"));
        assert_eq!(package.cost(m("1000")).unwrap(), m("39"));
    }
}
