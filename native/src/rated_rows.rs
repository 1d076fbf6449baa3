//! Rated window revisions as rows of ClickHouse's `rated_windows` table, in RowBinary:
//! what clickhouse-connect would send for sinks/clickhouse.py's `_window_columns`,
//! encoded without a Python object per value.
//!
//! Decimals come as text (`str(Decimal)`). Only values the column holds exactly
//! are encoded; for any other the caller falls back to the driver's path, which
//! refuses them with the reason (sinks/clickhouse.py's `_exact`).

/// How a column's values are encoded, in the table's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// String and LowCardinality(String): LEB128 length and bytes.
    Text,
    /// Map(String, String) from (name, value) pairs.
    Pairs,
    /// DateTime64(3) and Int64: 8 bytes.
    Int64,
    /// UInt64.
    UInt64,
    /// Enum8('window' = 1, 'adjustment' = 2).
    RevisionKind,
    /// Decimal(38, 9): Int128.
    Quantity,
    /// Decimal(76, 21): Int256.
    Amount,
    /// Array(String).
    Texts,
}

/// The table's columns in the order rows hold them, with their kinds.
pub const COLUMNS: [(&str, Encoding); 20] = [
    ("tenant", Encoding::Text),
    ("meter", Encoding::Text),
    ("group_key", Encoding::Text),
    ("group_values", Encoding::Pairs),
    ("window_start", Encoding::Int64),
    ("window_end", Encoding::Int64),
    ("revision", Encoding::UInt64),
    ("kind", Encoding::RevisionKind),
    ("quantity", Encoding::Quantity),
    ("amount", Encoding::Amount),
    ("previous_quantity", Encoding::Quantity),
    ("previous_amount", Encoding::Amount),
    ("currency", Encoding::Text),
    ("plan_id", Encoding::Text),
    ("price_version", Encoding::Text),
    ("emitted_at", Encoding::Int64),
    ("incarnation", Encoding::Text),
    ("aggregation", Encoding::Text),
    ("latest_ms", Encoding::Int64),
    ("distinct_values", Encoding::Texts),
];

/// The Enum8 value of a revision kind; `None` for an unknown one.
pub fn window_kind(kind: &str) -> Option<u8> {
    match kind {
        "window" => Some(1),
        "adjustment" => Some(2),
        _ => None,
    }
}

/// Appends `text` (Python's `str(Decimal)`: plain or scientific notation) to `out`
/// as the little-endian two's complement of `value * 10^scale` in `bytes` bytes
/// (16 or 32), if the column (`precision`, `scale`) holds it exactly. `false`,
/// with nothing appended, for anything else: more nonzero fractional digits
/// than `scale`, more digits than `precision`, NaN, Infinity, not a number.
pub fn decimal(
    out: &mut Vec<u8>,
    text: &str,
    precision: usize,
    scale: usize,
    bytes: usize,
) -> bool {
    match scaled(text, precision, scale) {
        Some(limbs) => {
            for limb in &limbs[..bytes / 8] {
                out.extend_from_slice(&limb.to_le_bytes());
            }
            true
        }
        None => false,
    }
}

/// `text * 10^scale` as four little-endian 64-bit limbs, two's complement.
fn scaled(text: &str, precision: usize, scale: usize) -> Option<[u64; 4]> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // The digits (ASCII), and the power of ten of the last one.
    let mut last_power = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
    let (whole, mut fraction) = (whole.as_bytes(), fraction.as_bytes());
    let mut whole_len = whole.len();
    // Zeros below the column's scale are dropped; any other digit there is not held.
    while last_power < -(scale as i64) {
        let last = match fraction.split_last() {
            Some((&last, rest)) => {
                fraction = rest;
                last
            }
            None if whole_len > 0 => {
                whole_len -= 1;
                whole[whole_len]
            }
            None => break,
        };
        if last != b'0' {
            return None;
        }
        last_power += 1;
    }
    let digits = whole[..whole_len].iter().chain(fraction);
    let significant: Vec<u8> = digits.skip_while(|&&d| d == b'0').copied().collect();
    if significant.is_empty() {
        return Some([0; 4]);
    }
    // Scaled: the digits, then zeros up to the scale.
    let padding = usize::try_from(last_power.checked_add(scale as i64)?).ok()?;
    if significant.len() + padding > precision {
        return None;
    }
    let mut limbs = [0u64; 4];
    for &digit in significant
        .iter()
        .chain(std::iter::repeat_n(&b'0', padding))
    {
        let mut carry = u128::from(digit - b'0');
        for limb in &mut limbs {
            let value = u128::from(*limb) * 10 + carry;
            *limb = value as u64;
            carry = value >> 64;
        }
    }
    if negative {
        // Two's complement: invert and add one.
        let mut carry = 1u128;
        for limb in &mut limbs {
            let value = u128::from(!*limb) + carry;
            *limb = value as u64;
            carry = value >> 64;
        }
    }
    Some(limbs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(text: &str, precision: usize, scale: usize, bytes: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        decimal(&mut out, text, precision, scale, bytes).then_some(out)
    }

    fn i128_of(text: &str) -> Option<i128> {
        encoded(text, 38, 9, 16).map(|b| i128::from_le_bytes(b.try_into().unwrap()))
    }

    #[test]
    fn decimals_are_scaled_exactly_or_refused() {
        assert_eq!(i128_of("1.5"), Some(1_500_000_000));
        assert_eq!(i128_of("-0.000000001"), Some(-1));
        assert_eq!(i128_of("1E+3"), Some(1_000_000_000_000));
        assert_eq!(i128_of("1.50E-7"), Some(150));
        assert_eq!(i128_of("0E-25"), Some(0));
        assert_eq!(i128_of("-0"), Some(0));
        assert_eq!(i128_of("2.0000000000000"), Some(2_000_000_000));
        assert_eq!(
            i128_of("99999999999999999999999999999.999999999"),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        for refused in [
            "1.0000000001",
            "1E+29",
            "100000000000000000000000000000",
            "NaN",
            "-Infinity",
            "",
            "-",
            ".",
            "1.2.3",
            "1e",
            "٣",
        ] {
            assert_eq!(i128_of(refused), None, "{refused}");
        }
    }

    #[test]
    fn amounts_are_int256() {
        let bytes = encoded("-1.5", 76, 21, 32).unwrap();
        let mut expected = (-1_500_000_000_000_000_000_000i128).to_le_bytes().to_vec();
        expected.extend_from_slice(&[0xff; 16]);
        assert_eq!(bytes, expected);
        let largest = format!("{}.{}", "9".repeat(55), "9".repeat(21));
        assert!(encoded(&largest, 76, 21, 32).is_some());
        assert_eq!(encoded(&format!("1{largest}"), 76, 21, 32), None);
    }
}
