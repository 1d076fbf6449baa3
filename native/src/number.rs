//! Exact decimal numbers: quantities as scaled integers, and their spellings in details.
//!
//! Quantities are read from the text that was sent, never through a double:
//! `units` whole units plus `nanos` billionths (9 fractional digits at most).

/// A decimal read exactly from text: `digits × 10^exponent`, as Python's Decimal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    pub negative: bool,
    /// The coefficient without leading zeros ("0" for zero).
    pub digits: String,
    pub exponent: i64,
}

/// Why a number is not a quantity, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityError {
    Negative,
    OutOfRange,
    TooManyFractionDigits,
}

/// A valid quantity: `units + nanos / 10^9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub units: u64,
    pub nanos: u32,
}

impl Quantity {
    /// The common case without a `Decimal`: plain `digits[.digits]` below 10^18 with
    /// at most 9 fractional digits. `None` for anything else (signs, exponents,
    /// rejections), which `Decimal::parse` and `Decimal::quantity` then judge.
    pub fn plain(text: &str) -> Option<Quantity> {
        let bytes = text.as_bytes();
        let (int_part, frac_part) = match bytes.iter().position(|&b| b == b'.') {
            Some(point) => (&bytes[..point], &bytes[point + 1..]),
            None => (bytes, &bytes[bytes.len()..]),
        };
        let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
        let point = int_part.len() < bytes.len();
        if int_part.is_empty() || (point && frac_part.is_empty()) || frac_part.len() > 9 {
            return None;
        }
        if !all_digits(int_part) || !all_digits(frac_part) {
            return None;
        }
        let significant = int_part
            .iter()
            .position(|&b| b != b'0')
            .unwrap_or(int_part.len());
        if int_part.len() - significant > 18 {
            return None;
        }
        let number = |part: &[u8]| part.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
        let units = number(&int_part[significant..]);
        let scale = 10u32.pow(9 - frac_part.len() as u32);
        let nanos = u32::try_from(number(frac_part)).ok()? * scale;
        Some(Quantity { units, nanos })
    }
}

pub const MAX_FRACTION_DIGITS: i64 = 9;
const MAX_INTEGER_DIGITS: i64 = 18; // quantities are below 10^18
/// The largest adjusted exponent a Python Decimal holds (libmpdec's MAX_EMAX).
const MAX_EMAX: i64 = 999_999_999_999_999_999;
/// The smallest exponent a Python Decimal holds (libmpdec's Etiny at maximum precision).
const MIN_ETINY: i64 = -1_999_999_999_999_999_997;
/// Beyond both limits above; saturating here keeps the arithmetic safe.
const EXPONENT_LIMIT: i64 = 4_000_000_000_000_000_000;

impl Decimal {
    /// Read `text` if it is `[+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?` (ASCII only),
    /// which covers JSON numbers and the numeric strings the parser accepts.
    pub fn parse(text: &str) -> Option<Decimal> {
        let bytes = text.as_bytes();
        let mut at = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                at = 1;
                true
            }
            Some(b'+') => {
                at = 1;
                false
            }
            _ => false,
        };
        let int_start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let int_part = &text[int_start..at];
        let mut frac_part = "";
        if at < bytes.len() && bytes[at] == b'.' {
            at += 1;
            let frac_start = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                at += 1;
            }
            frac_part = &text[frac_start..at];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let mut exponent: i64 = 0;
        if at < bytes.len() && (bytes[at] == b'e' || bytes[at] == b'E') {
            at += 1;
            let mut exp_negative = false;
            if at < bytes.len() && (bytes[at] == b'+' || bytes[at] == b'-') {
                exp_negative = bytes[at] == b'-';
                at += 1;
            }
            let exp_start = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                exponent = exponent
                    .saturating_mul(10)
                    .saturating_add(i64::from(bytes[at] - b'0'))
                    .min(EXPONENT_LIMIT);
                at += 1;
            }
            if at == exp_start {
                return None;
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if at != bytes.len() {
            return None;
        }
        let mut digits = String::with_capacity(int_part.len() + frac_part.len());
        digits.push_str(int_part);
        digits.push_str(frac_part);
        let significant = digits.trim_start_matches('0');
        let digits = if significant.is_empty() {
            "0".to_owned()
        } else {
            significant.to_owned()
        };
        let frac_len = i64::try_from(frac_part.len()).unwrap_or(EXPONENT_LIMIT);
        Some(Decimal {
            negative,
            digits,
            exponent: exponent.saturating_sub(frac_len),
        })
    }

    /// Whether Python's `Decimal(text)` holds this number: it refuses an adjusted
    /// exponent above `MAX_EMAX` and an exponent below `MIN_ETINY` (even a zero's,
    /// even where only zeros would be dropped).
    pub fn python_holds(&self) -> bool {
        self.adjusted() <= MAX_EMAX && self.exponent >= MIN_ETINY
    }

    pub fn is_zero(&self) -> bool {
        self.digits == "0"
    }

    fn len(&self) -> i64 {
        i64::try_from(self.digits.len()).unwrap_or(EXPONENT_LIMIT)
    }

    /// The power of ten of the leading digit.
    fn adjusted(&self) -> i64 {
        self.exponent + self.len() - 1
    }

    /// The parser's rules for a metered value: not negative, below 10^18, and no
    /// nonzero digit beyond the 9th fractional place (trailing zeros are fine).
    pub fn quantity(&self) -> Result<Quantity, QuantityError> {
        if self.is_zero() {
            return Ok(Quantity { units: 0, nanos: 0 });
        }
        if self.negative {
            return Err(QuantityError::Negative);
        }
        if self.adjusted() >= MAX_INTEGER_DIGITS {
            return Err(QuantityError::OutOfRange);
        }
        let shift = self.exponent + MAX_FRACTION_DIGITS;
        let digits = if shift < 0 {
            let cut = usize::try_from(-shift).unwrap_or(usize::MAX);
            if cut >= self.digits.len() {
                return Err(QuantityError::TooManyFractionDigits);
            }
            let (kept, dropped) = self.digits.split_at(self.digits.len() - cut);
            if dropped.bytes().any(|b| b != b'0') {
                return Err(QuantityError::TooManyFractionDigits);
            }
            kept
        } else {
            self.digits.as_str()
        };
        // Below 10^27 once scaled: 27 digits at most, well inside u128.
        let mut scaled: u128 = digits
            .bytes()
            .fold(0u128, |acc, b| acc * 10 + u128::from(b - b'0'));
        for _ in 0..shift.max(0) {
            scaled *= 10;
        }
        let units = u64::try_from(scaled / 1_000_000_000).unwrap_or(u64::MAX);
        let nanos = u32::try_from(scaled % 1_000_000_000).unwrap_or(0);
        Ok(Quantity { units, nanos })
    }

    /// Python's `str(Decimal)`: plain notation unless the exponent is large or very negative.
    pub fn sci_string(&self) -> String {
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        let len = self.len();
        let adjusted = self.adjusted();
        if self.exponent <= 0 && adjusted >= -6 {
            if self.exponent == 0 {
                out.push_str(&self.digits);
            } else if len > -self.exponent {
                let point = usize::try_from(len + self.exponent).unwrap_or(0);
                out.push_str(&self.digits[..point]);
                out.push('.');
                out.push_str(&self.digits[point..]);
            } else {
                out.push_str("0.");
                for _ in 0..(-self.exponent - len) {
                    out.push('0');
                }
                out.push_str(&self.digits);
            }
        } else {
            out.push_str(&self.digits[..1]);
            if self.digits.len() > 1 {
                out.push('.');
                out.push_str(&self.digits[1..]);
            }
            out.push('E');
            out.push(if adjusted >= 0 { '+' } else { '-' });
            out.push_str(&adjusted.unsigned_abs().to_string());
        }
        out
    }

    /// Python's `format(Decimal, ".3E")` for a nonzero value: 4 significant digits, half-even.
    pub fn format_3e(&self) -> String {
        let digits = self.digits.as_bytes();
        let mut head: u32 = 0;
        for i in 0..4 {
            head = head * 10 + u32::from(digits.get(i).map_or(0, |d| d - b'0'));
        }
        let mut adjusted = self.adjusted();
        if digits.len() > 4 {
            let rest = &digits[4..];
            let up = match rest[0].cmp(&b'5') {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => rest[1..].iter().any(|&d| d != b'0') || head % 2 == 1,
            };
            if up {
                head += 1;
                if head == 10_000 {
                    head = 1_000;
                    adjusted += 1;
                }
            }
        }
        let sign = if self.negative { "-" } else { "" };
        let exp_sign = if adjusted >= 0 { '+' } else { '-' };
        format!(
            "{sign}{}.{:03}E{exp_sign}{}",
            head / 1000,
            head % 1000,
            adjusted.unsigned_abs()
        )
    }
}

/// Whether JSON number text has only an integer part (no fraction, no exponent).
fn is_integer_text(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Whether orjson reads this JSON number as an int (from i64's minimum to u64's maximum);
/// other numbers it reads as doubles.
pub fn reads_as_int(text: &str) -> bool {
    is_integer_text(text)
        && if text.starts_with('-') {
            text.parse::<i64>().is_ok()
        } else {
            text.parse::<u64>().is_ok()
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    #[test]
    fn plain_quantities_are_what_decimals_make_of_them() {
        let texts = [
            "0",
            "7",
            "007",
            "12.5",
            "0.000000001",
            "1.100000000",
            "999999999999999999",
            "0000999999999999999999.999999999",
            "123456789012345678.9",
        ];
        for text in texts {
            let plain = Quantity::plain(text).unwrap_or_else(|| panic!("{text} is plain"));
            assert_eq!(Ok(plain), dec(text).quantity(), "{text}");
        }
        // Left to Decimal: signs, exponents, too many digits, not numbers at all.
        let others = [
            "-1",
            "+1",
            "1e3",
            "1E-2",
            "1000000000000000000",
            "0.1234567891",
            ".5",
            "5.",
            "",
            ".",
            "1.2.3",
            "1 ",
            "NaN",
            "١",
        ];
        for text in others {
            assert_eq!(Quantity::plain(text), None, "{text}");
        }
    }

    #[test]
    fn quantities_are_exact() {
        assert_eq!(
            dec("999999999999999999.999999999").quantity(),
            Ok(Quantity {
                units: 999_999_999_999_999_999,
                nanos: 999_999_999
            })
        );
        assert_eq!(
            dec("1.500000000000").quantity(),
            Ok(Quantity {
                units: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            dec("100e-11").quantity(),
            Ok(Quantity { units: 0, nanos: 1 })
        );
        assert_eq!(dec("-0.0").quantity(), Ok(Quantity { units: 0, nanos: 0 }));
        assert_eq!(dec("-1").quantity(), Err(QuantityError::Negative));
        assert_eq!(dec("1e18").quantity(), Err(QuantityError::OutOfRange));
        assert_eq!(
            dec("1e-10").quantity(),
            Err(QuantityError::TooManyFractionDigits)
        );
    }

    #[test]
    fn spellings_match_python() {
        assert_eq!(dec("-1e5").sci_string(), "-1E+5");
        assert_eq!(dec("-00.50").sci_string(), "-0.50");
        assert_eq!(dec("1e-10").sci_string(), "1E-10");
        assert_eq!(dec("0.000001").sci_string(), "0.000001");
        assert_eq!(dec("1999500000000000000").format_3e(), "2.000E+18");
        assert_eq!(dec("9.9995e20").format_3e(), "1.000E+21");
        assert_eq!(dec("1e400").format_3e(), "1.000E+400");
        assert_eq!(
            dec("-1e-1500000000000000000").sci_string(),
            "-1E-1500000000000000000"
        );
        assert_eq!(
            dec("1e999999999999999999").format_3e(),
            "1.000E+999999999999999999"
        );
    }

    #[test]
    fn exponents_as_python_decimal_holds_them() {
        for held in [
            "1e999999999999999999",
            "0.1e1000000000000000000",
            "1.0e999999999999999999",
            "0001e999999999999999999",
            "0e999999999999999999",
            "0.000e1000000000000000002",
            "1e-1999999999999999997",
            "0e-1999999999999999997",
            "0.0e-1999999999999999996",
            "1e-00000000000000000000000000001",
        ] {
            assert!(dec(held).python_holds(), "{held}");
        }
        for refused in [
            "1e1000000000000000000",
            "10e999999999999999999",
            "1000e999999999999999998",
            "0e1000000000000000000",
            "-0e1000000000000000000",
            "1e-1999999999999999998",
            "0e-1999999999999999998",
            "100e-1999999999999999999",
            "0.01e-1999999999999999997",
            "1e999999999999999999999",
            "1e-999999999999999999999",
            "1e99999999999999999999999999999999999999999",
        ] {
            assert!(!dec(refused).python_holds(), "{refused}");
        }
    }
}
