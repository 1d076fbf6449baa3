//! Exact decimal money for rating: `mantissa × 10^exponent` in an i128.
//!
//! Python's `Decimal` (operators/money.py's EXACT context, 76 digits) is the
//! specification. Sums, differences, products and comparisons here are exact;
//! whatever does not fit 38 digits is an `Overflow`, never a rounded value, and
//! the caller then rates in Python instead.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::number::Decimal;

/// An operation whose exact result does not fit here (the Python ledger takes over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

pub type Exact<T> = Result<T, Overflow>;

/// operators/money.py's EXACT precision: results with more digits raise there.
const PYTHON_DIGITS: i64 = 76;

/// Exponents beyond this are refused: no price or quantity needs them.
const MAX_EXPONENT: i32 = 1_000;

/// An exact decimal: `mantissa × 10^exponent`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Money {
    pub mantissa: i128,
    pub exponent: i32,
}

impl PartialEq for Money {
    fn eq(&self, other: &Money) -> bool {
        self.compare(*other) == Ok(Ordering::Equal)
    }
}

pub const ZERO: Money = Money {
    mantissa: 0,
    exponent: 0,
};

fn pow10(n: u32) -> Exact<i128> {
    10i128.checked_pow(n).ok_or(Overflow)
}

impl Money {
    pub fn new(mantissa: i128, exponent: i32) -> Money {
        Money { mantissa, exponent }
    }

    /// An integer.
    pub fn int(value: i128) -> Money {
        Money::new(value, 0)
    }

    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// The same value without trailing zeros in the mantissa.
    pub fn normalized(self) -> Money {
        let (mut mantissa, mut exponent) = (self.mantissa, self.exponent);
        if mantissa == 0 {
            return Money::new(0, 0);
        }
        while mantissa % 10 == 0 && exponent < MAX_EXPONENT {
            mantissa /= 10;
            exponent += 1;
        }
        Money::new(mantissa, exponent)
    }

    /// Both mantissas at the smaller exponent; without trailing zeros first if
    /// that is what it takes to fit (Python's exponent is then not kept, the value is).
    fn aligned(self, other: Money) -> Exact<(i128, i128, i32)> {
        self.aligned_as_is(other).or_else(|_| {
            // Python's 76 digits count trailing zeros: beyond them it raises, so must we.
            let top = self.adjusted().max(other.adjusted());
            if top - i64::from(self.exponent.min(other.exponent)) + 1 > PYTHON_DIGITS {
                return Err(Overflow);
            }
            self.normalized().aligned_as_is(other.normalized())
        })
    }

    /// The exponent of the leading digit (Python's `Decimal.adjusted()`; 0 has one digit).
    fn adjusted(self) -> i64 {
        let mut buffer = [0u8; 40];
        let digits = digits_of(self.mantissa.unsigned_abs(), &mut buffer).len();
        i64::from(self.exponent) + digits as i64 - 1
    }

    fn aligned_as_is(self, other: Money) -> Exact<(i128, i128, i32)> {
        let exponent = self.exponent.min(other.exponent);
        let scale = |m: Money| -> Exact<i128> {
            if m.mantissa == 0 {
                return Ok(0);
            }
            m.mantissa
                .checked_mul(pow10((m.exponent - exponent) as u32)?)
                .ok_or(Overflow)
        };
        Ok((scale(self)?, scale(other)?, exponent))
    }

    pub fn add(self, other: Money) -> Exact<Money> {
        let (a, b, exponent) = self.aligned(other)?;
        Ok(Money::new(a.checked_add(b).ok_or(Overflow)?, exponent))
    }

    pub fn sub(self, other: Money) -> Exact<Money> {
        let (a, b, exponent) = self.aligned(other)?;
        Ok(Money::new(a.checked_sub(b).ok_or(Overflow)?, exponent))
    }

    pub fn mul(self, other: Money) -> Exact<Money> {
        let exponent = self.exponent + other.exponent;
        if exponent.abs() > MAX_EXPONENT {
            return Err(Overflow);
        }
        let mantissa = self.mantissa.checked_mul(other.mantissa).ok_or(Overflow)?;
        Ok(Money::new(mantissa, exponent))
    }

    /// `self / 100` as Python's exact division gives it: the exponent lowered only
    /// as far as the quotient needs (1.50 / 100 is 0.015, 150 / 100 is 1.5).
    pub fn hundredth(self) -> Exact<Money> {
        let (mut mantissa, mut exponent) = (self.mantissa, self.exponent);
        for _ in 0..2 {
            if mantissa % 10 == 0 && mantissa != 0 {
                mantissa /= 10;
            } else {
                exponent -= 1;
            }
        }
        if mantissa == 0 {
            exponent = self.exponent;
        }
        if exponent.abs() > MAX_EXPONENT {
            return Err(Overflow);
        }
        Ok(Money::new(mantissa, exponent))
    }

    pub fn compare(self, other: Money) -> Exact<Ordering> {
        if self.exponent == other.exponent {
            return Ok(self.mantissa.cmp(&other.mantissa));
        }
        // Signs decide without scaling when they differ (or one is zero).
        let signs = self.mantissa.signum().cmp(&other.mantissa.signum());
        if signs != Ordering::Equal || self.mantissa == 0 {
            return Ok(signs);
        }
        if let Ok((a, b, _)) = self.aligned(other) {
            return Ok(a.cmp(&b));
        }
        let larger = magnitude_order(self, other);
        Ok(if self.mantissa < 0 {
            larger.reverse()
        } else {
            larger
        })
    }

    pub fn max(self, other: Money) -> Exact<Money> {
        // Python's max() keeps the first of equals.
        Ok(if other.compare(self)? == Ordering::Greater {
            other
        } else {
            self
        })
    }

    pub fn min(self, other: Money) -> Exact<Money> {
        Ok(if other.compare(self)? == Ordering::Less {
            other
        } else {
            self
        })
    }

    /// (floor(self / divisor), self - that × divisor) for self >= 0 and divisor > 0.
    pub fn divmod(self, divisor: Money) -> Exact<(Money, Money)> {
        if divisor.mantissa <= 0 || self.mantissa < 0 {
            return Err(Overflow);
        }
        if self.compare(divisor)? == Ordering::Less {
            // Python answers (0, self at the smaller exponent) without aligning the
            // divisor, which may not fit 38 digits at the dividend's exponent.
            let exponent = self.exponent.min(divisor.exponent);
            let remainder = if self.mantissa == 0 {
                0
            } else {
                self.mantissa
                    .checked_mul(pow10((self.exponent - exponent) as u32)?)
                    .ok_or(Overflow)?
            };
            return Ok((ZERO, Money::new(remainder, exponent)));
        }
        let (a, b, exponent) = self.aligned(divisor)?;
        Ok((Money::int(a / b), Money::new(a % b, exponent)))
    }

    /// The integer part (Python's `int()`: toward zero).
    pub fn trunc(self) -> Exact<i128> {
        if self.exponent >= 0 {
            return self
                .mantissa
                .checked_mul(pow10(self.exponent as u32)?)
                .ok_or(Overflow);
        }
        Ok(match pow10(self.exponent.unsigned_abs()) {
            Ok(divisor) => self.mantissa / divisor,
            Err(_) => 0,
        })
    }

    /// A scaled quantity of the windows (nine fractional digits).
    pub fn of_scaled(value: i128) -> Money {
        Money::new(value, -9)
    }

    /// Read a decimal text as Python's `Decimal` would (crate::number's reader).
    pub fn parse(text: &str) -> Exact<Money> {
        let decimal = Decimal::parse(text.trim()).ok_or(Overflow)?;
        if decimal.exponent.unsigned_abs() > u64::from(MAX_EXPONENT.unsigned_abs()) {
            return Err(Overflow);
        }
        let mut mantissa: i128 = 0;
        for byte in decimal.digits.bytes() {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(byte - b'0')))
                .ok_or(Overflow)?;
        }
        let mantissa = if decimal.negative {
            -mantissa
        } else {
            mantissa
        };
        Ok(Money::new(mantissa, decimal.exponent as i32))
    }

    /// Exact decimal text that Python's `Decimal` reads back to the same value.
    pub fn text(self) -> String {
        let mut out = String::with_capacity(24);
        self.write(&mut out);
        out
    }

    /// `text()` appended to `out`.
    pub fn write(self, out: &mut String) {
        if self.mantissa < 0 {
            out.push('-');
        }
        let mut buffer = [0u8; 40];
        let digits = digits_of(self.mantissa.unsigned_abs(), &mut buffer);
        if self.exponent >= 0 {
            out.push_str(digits);
            if self.mantissa != 0 {
                if self.exponent <= 20 {
                    out.extend(std::iter::repeat_n('0', self.exponent as usize));
                } else {
                    out.push_str("E+");
                    out.push_str(&self.exponent.to_string());
                }
            }
            return;
        }
        let point = self.exponent.unsigned_abs() as usize;
        if digits.len() > point {
            let (whole, fraction) = digits.split_at(digits.len() - point);
            out.push_str(whole);
            out.push('.');
            out.push_str(fraction);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(digits);
        }
    }
}

/// |a| against |b| for nonzero values too far apart to align in an i128.
fn magnitude_order(a: Money, b: Money) -> Ordering {
    let (mut first, mut second) = ([0u8; 40], [0u8; 40]);
    let da = digits_of(a.mantissa.unsigned_abs(), &mut first);
    let db = digits_of(b.mantissa.unsigned_abs(), &mut second);
    a.adjusted().cmp(&b.adjusted()).then_with(|| {
        let width = da.len().max(db.len());
        format!("{da:0<width$}").cmp(&format!("{db:0<width$}"))
    })
}

/// The decimal digits of `value`, written at the end of `buffer`.
fn digits_of(mut value: u128, buffer: &mut [u8; 40]) -> &str {
    let mut at = buffer.len();
    // u64 arithmetic once the value fits: u128 division is slow.
    while value > u128::from(u64::MAX) {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    let mut small = value as u64;
    loop {
        at -= 1;
        buffer[at] = b'0' + (small % 10) as u8;
        small /= 10;
        if small == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[at..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    #[test]
    fn parses_and_writes_back_the_same_value() {
        for (text, written) in [
            ("0", "0"),
            ("1.50", "1.50"),
            ("-0.001", "-0.001"),
            ("12E+3", "12000"),
            ("1E+30", "1E+30"),
            ("2.5E-3", "0.0025"),
            ("0E-9", "0.000000000"),
            ("-0.5", "-0.5"),
            (
                "170141183460469231731687303715884105727",
                "170141183460469231731687303715884105727",
            ),
        ] {
            assert_eq!(m(text).text(), written, "{text}");
        }
        assert!(Money::parse("abc").is_err());
        assert!(Money::parse("1e99999").is_err());
        assert!(Money::parse("3E-9223372036854775808").is_err());
    }

    #[test]
    fn arithmetic_is_exact_or_overflows() {
        assert_eq!(m("0.1").add(m("0.2")).unwrap(), m("0.3"));
        assert_eq!(m("1.5").mul(m("0.02")).unwrap().text(), "0.030");
        assert_eq!(m("3").sub(m("4.25")).unwrap(), m("-1.25"));
        let big = Money::new(i128::MAX / 2, 0);
        assert_eq!(big.mul(m("3")), Err(Overflow));
        assert_eq!(big.add(m("0.1")), Err(Overflow));
        assert_eq!(m("7").divmod(m("2.5")).unwrap(), (m("2"), m("2")));
        // Python's 76 digits count the zeros: 1E+30 + 0E-50 raises there.
        assert_eq!(m("1E+30").add(m("0E-50")), Err(Overflow));
        let one = m("1").sub(m("0E-30")).unwrap();
        assert_eq!(one.divmod(m("1E+9")).unwrap(), (m("0"), m("1")));
        // A dividend below a divisor too far above it to align: no Overflow.
        let (q, r) = m("93138626483.080708096").divmod(m("2.0190E+30")).unwrap();
        assert_eq!((q, r.text()), (m("0"), "93138626483.080708096".to_string()));
        let (q, r) = m("0E-9").divmod(m("1E+40")).unwrap();
        assert_eq!((q, r.exponent), (m("0"), -9));
        assert_eq!(m("1E+30").divmod(m("3E-20")), Err(Overflow));
        assert_eq!(m("1E+3").compare(m("999.99")), Ok(Ordering::Greater));
        assert_eq!(m("-1E+300").compare(m("1")), Ok(Ordering::Less));
        assert_eq!(m("1E+300").compare(m("0.5")), Ok(Ordering::Greater));
        assert_eq!(m("-1E+300").compare(m("-2E+300")), Ok(Ordering::Greater));
        assert_eq!(m("25E+299").compare(m("0.0025E+303")), Ok(Ordering::Equal));
        assert_eq!(m("1.50").hundredth().unwrap().text(), "0.015");
        assert_eq!(m("150").hundredth().unwrap().text(), "1.5");
        assert_eq!(m("0.00").hundredth().unwrap().text(), "0.00");
    }
}
