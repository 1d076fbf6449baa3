//! Text as Python spells it in rejection details: `repr()`, `json.dumps()`, `str[:n]`.

use std::fmt::Write;

use crate::unicode_tables::{DIGITS, NOT_PRINTABLE};

fn in_ranges(table: &[(u32, u32)], point: u32) -> bool {
    table
        .binary_search_by(|&(low, high)| {
            if high < point {
                std::cmp::Ordering::Less
            } else if low > point {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Python's `str.isprintable()` for one character.
fn printable(c: char) -> bool {
    !in_ranges(NOT_PRINTABLE, c as u32)
}

/// Python's `text.isdigit()` (Unicode digits; false for "").
pub fn is_digit(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| in_ranges(DIGITS, c as u32))
}

/// Python's `text[:chars]`.
pub fn prefix(text: &str, chars: usize) -> &str {
    match text.char_indices().nth(chars) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Python's `len(text)`: characters, not bytes.
pub fn char_len(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

/// Python's `repr(text)`.
pub fn repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x80 && (c < ' ' || c == '\x7f') => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x80 || printable(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `json.dumps(text)` (ASCII only, as with ensure_ascii).
pub fn json_dumps(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// The parser's `_describe`: JSON text of a value, cut to 40 characters.
pub fn describe(json_text: &str) -> String {
    if char_len(json_text) <= 40 {
        json_text.to_owned()
    } else {
        format!("{}...", prefix(json_text, 37))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        assert_eq!(repr("a'b"), "\"a'b\"");
        assert_eq!(repr("a'b\""), "'a\\'b\"'");
        assert_eq!(
            repr("\x7f\x00\u{200b}\u{1F600}\u{a0}\u{ad}"),
            "'\\x7f\\x00\\u200b\u{1F600}\\xa0\\xad'"
        );
    }

    #[test]
    fn json_dumps_matches_python() {
        assert_eq!(
            json_dumps("\x7f\x00\u{e9}\u{1F600}"),
            "\"\\u007f\\u0000\\u00e9\\ud83d\\ude00\""
        );
    }

    #[test]
    fn digits_are_unicode_digits() {
        assert!(is_digit("2026"));
        assert!(is_digit("\u{0661}\u{0662}"));
        assert!(!is_digit(""));
        assert!(!is_digit("20x6"));
    }
}
