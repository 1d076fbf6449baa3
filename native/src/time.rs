//! RFC 3339 timestamps to UTC epoch milliseconds, with operators/timeparse.py's rules and words.

use crate::text::{is_digit, prefix, repr};

fn digits(bytes: &[u8], from: usize, count: usize) -> Option<i64> {
    let part = bytes.get(from..from + count)?;
    part.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

struct Stamp {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
    offset: Option<(bool, i64, i64)>, // (east of UTC, hours, minutes)
}

/// `\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})`, whole text.
fn match_stamp(bytes: &[u8]) -> Option<Stamp> {
    let sep = |at: usize, ok: &[u8]| bytes.get(at).is_some_and(|b| ok.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let mut stamp = Stamp {
        year: digits(bytes, 0, 4)?,
        month: digits(bytes, 5, 2)?,
        day: digits(bytes, 8, 2)?,
        hour: digits(bytes, 11, 2)?,
        minute: digits(bytes, 14, 2)?,
        second: digits(bytes, 17, 2)?,
        millis: 0,
        offset: None,
    };
    let mut at = 19;
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        // Sub-millisecond digits are truncated.
        let fraction = &bytes[start..end.min(start + 3)];
        let mut millis = fraction
            .iter()
            .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
        for _ in fraction.len()..3 {
            millis *= 10;
        }
        stamp.millis = millis;
        at = end;
    }
    match bytes.get(at)? {
        b'Z' | b'z' if at + 1 == bytes.len() => {}
        sign @ (b'+' | b'-') if at + 6 == bytes.len() && bytes[at + 3] == b':' => {
            stamp.offset = Some((
                *sign == b'+',
                digits(bytes, at + 1, 2)?,
                digits(bytes, at + 4, 2)?,
            ));
        }
        _ => return None,
    }
    Some(stamp)
}

/// `.*(?:[Zz]|[+-]\d{2}:\d{2})$` as Python's `re.match` reads it (`.` stops at a newline).
fn has_offset(text: &str) -> bool {
    let line = match text.find('\n') {
        Some(at) if at + 1 == text.len() => &text[..at],
        Some(_) => return false,
        None => text,
    };
    let bytes = line.as_bytes();
    if matches!(bytes.last(), Some(b'Z' | b'z')) {
        return true;
    }
    let n = bytes.len();
    n >= 6
        && matches!(bytes[n - 6], b'+' | b'-')
        && bytes[n - 5].is_ascii_digit()
        && bytes[n - 4].is_ascii_digit()
        && bytes[n - 3] == b':'
        && bytes[n - 2].is_ascii_digit()
        && bytes[n - 1].is_ascii_digit()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Python's `datetime(...)` checks, in its order and words.
fn check_fields(s: &Stamp) -> Result<(), String> {
    if s.year < 1 {
        return Err(format!("year {} is out of range", s.year));
    }
    if !(1..=12).contains(&s.month) {
        return Err("month must be in 1..12".into());
    }
    if s.day < 1 || s.day > days_in_month(s.year, s.month) {
        return Err("day is out of range for month".into());
    }
    if s.hour > 23 {
        return Err("hour must be in 0..23".into());
    }
    if s.minute > 59 {
        return Err("minute must be in 0..59".into());
    }
    if s.second > 59 {
        return Err("second must be in 0..59".into());
    }
    Ok(())
}

/// Parse `text` into UTC epoch milliseconds, or say why not (the BAD_TIME detail).
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let Some(stamp) = match_stamp(text.as_bytes()) else {
        let shown = repr(prefix(text, 64));
        if !has_offset(text) && is_digit(prefix(text, 4)) {
            return Err(format!(
                "time {shown} has no UTC offset; add 'Z' or '+hh:mm'"
            ));
        }
        return Err(format!(
            "time {shown} is not RFC 3339, expected e.g. '2026-11-21T13:59:02.120Z'"
        ));
    };
    if let Err(why) = check_fields(&stamp) {
        return Err(format!(
            "time {} is not a real date or time: {why}",
            repr(prefix(text, 64))
        ));
    }
    let days = days_from_civil(stamp.year, stamp.month, stamp.day);
    let seconds = days * 86_400 + stamp.hour * 3_600 + stamp.minute * 60 + stamp.second;
    let mut millis = seconds * 1_000 + stamp.millis;
    if let Some((east, hours, minutes)) = stamp.offset {
        if hours > 23 || minutes > 59 {
            return Err(format!(
                "time {} has an impossible UTC offset",
                repr(prefix(text, 64))
            ));
        }
        let offset_ms = (hours * 60 + minutes) * 60_000;
        millis += if east { -offset_ms } else { offset_ms };
    }
    Ok(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-01T05:05:00.500+05:30"),
            Ok(1_793_491_200_000 - 25 * 60_000 + 500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-01-01t00:00:00.123456789z"),
            Ok(1_767_225_600_123)
        );
    }

    #[test]
    fn says_why_not() {
        assert!(parse_rfc3339_ms("2026-03-01T12:00:00")
            .unwrap_err()
            .contains("no UTC offset"));
        assert!(parse_rfc3339_ms("2026-02-30T00:00:00Z")
            .unwrap_err()
            .ends_with("day is out of range for month"));
        assert!(parse_rfc3339_ms("2026-10-31T23:35:00+24:00")
            .unwrap_err()
            .contains("impossible UTC offset"));
    }
}
