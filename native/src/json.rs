//! A strict JSON reader with the acceptance rules of orjson (RFC 8259, UTF-8, at most
//! 1024 levels), keeping each number's exact text and noting repeated keys.
//!
//! When a document is refused, [`classify_refused`] tells a non-finite number
//! (NaN, Infinity) apart from broken JSON the way the Python parser's fallback,
//! the standard library's `json.loads`, does.

use std::borrow::Cow;

/// orjson refuses documents nested deeper than this.
const MAX_NESTING: usize = 1024;
/// Where the standard library's reader gives up (a RecursionError under Python's
/// default limit of 1000 frames, less the frames of its callers): approximate.
const PY_MAX_NESTING: usize = 980;

/// A JSON value; strings borrow from the payload unless they had escapes.
#[derive(Debug)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// The number exactly as written.
    Number(&'a str),
    Str(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value of `key` in an object (the last one, as orjson keeps it).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The parser's `_type_name`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// A document orjson would read, with what the parser checks beyond JSON syntax.
pub struct Document<'a> {
    pub root: Value<'a>,
    /// Deepest container level (the outermost is 1; 0 for a scalar document).
    pub depth: usize,
    /// The first key repeated within one object, in the order objects close.
    pub repeated_key: Option<String>,
}

/// Why orjson refused a document.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A number too large for a double (orjson: "number is infinity when parsed as double").
    Infinity(String),
    Syntax(String),
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
    max_depth: usize,
    repeated_key: Option<String>,
}

/// Read `payload` as orjson would.
pub fn read(payload: &[u8]) -> Result<Document<'_>, Refusal> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| Refusal::Syntax("str is not valid UTF-8: line 1 column 1 (char 0)".into()))?;
    let mut reader = Reader {
        text,
        bytes: payload,
        at: 0,
        depth: 0,
        max_depth: 0,
        repeated_key: None,
    };
    if payload.is_empty() {
        return Err(reader.syntax("input length is 0"));
    }
    reader.skip_ws();
    let root = reader.value()?;
    reader.skip_ws();
    if reader.at != reader.bytes.len() {
        return Err(reader.syntax("unexpected content after document"));
    }
    Ok(Document {
        root,
        depth: reader.max_depth,
        repeated_key: reader.repeated_key,
    })
}

impl<'a> Reader<'a> {
    fn position(&self, at: usize) -> String {
        // Python's JSONDecodeError words: line, column and character index.
        let before = &self.text[..at.min(self.text.len())];
        let char_at = before.chars().count();
        let line = before.matches('\n').count() + 1;
        let column = match before.rfind('\n') {
            Some(nl) => char_at - before[..nl].chars().count(),
            None => char_at + 1,
        };
        format!("line {line} column {column} (char {char_at})")
    }

    fn syntax(&self, what: &str) -> Refusal {
        Refusal::Syntax(format!("{what}: {}", self.position(self.at)))
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>, Refusal> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.syntax("invalid literal"))
        }
    }

    fn value(&mut self) -> Result<Value<'a>, Refusal> {
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.syntax("unexpected character, expected a JSON value")),
            None => Err(self.syntax("unexpected end of data")),
        }
    }

    fn enter(&mut self) -> Result<(), Refusal> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.syntax("depth limit exceeded"));
        }
        self.max_depth = self.max_depth.max(self.depth);
        Ok(())
    }

    fn array(&mut self) -> Result<Value<'a>, Refusal> {
        self.enter()?;
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.syntax("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self) -> Result<Value<'a>, Refusal> {
        self.enter()?;
        self.at += 1;
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Value::Object(Vec::new()));
        }
        // Events are objects of about eight members: one allocation, not three.
        let mut members: Vec<(Cow<'a, str>, Value<'a>)> = Vec::with_capacity(8);
        loop {
            self.skip_ws();
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(self.syntax("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.bytes.get(self.at) != Some(&b':') {
                return Err(self.syntax("expected ':'"));
            }
            self.at += 1;
            self.skip_ws();
            let value = self.value()?;
            members.push((key, value));
            self.skip_ws();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    self.depth -= 1;
                    if self.repeated_key.is_none() {
                        self.repeated_key = first_repeated(&members);
                    }
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.syntax("expected ',' or '}'")),
            }
        }
    }

    fn number(&mut self) -> Result<Value<'a>, Refusal> {
        let start = self.at;
        let b = self.bytes;
        let mut at = self.at;
        if b[at] == b'-' {
            at += 1;
        }
        match b.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                while b.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
            }
            _ => {
                self.at = at;
                return Err(self.syntax("invalid number"));
            }
        }
        let mut integer = true;
        if b.get(at) == Some(&b'.') {
            integer = false;
            at += 1;
            if !b.get(at).is_some_and(u8::is_ascii_digit) {
                self.at = at;
                return Err(self.syntax("no digit after decimal point"));
            }
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
        }
        if matches!(b.get(at), Some(b'e' | b'E')) {
            integer = false;
            at += 1;
            if matches!(b.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if !b.get(at).is_some_and(u8::is_ascii_digit) {
                self.at = at;
                return Err(self.syntax("no digit after exponent sign"));
            }
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
        }
        let text = &self.text[start..at];
        // Short integers are ints to orjson; anything else it reads as a double.
        let short_integer = integer && at - start < 19;
        if !short_integer && !crate::number::reads_as_int(text) {
            let value: f64 = text.parse().unwrap_or(f64::INFINITY);
            if value.is_infinite() {
                return Err(Refusal::Infinity(format!(
                    "number is infinity when parsed as double: {}",
                    self.position(start)
                )));
            }
        }
        self.at = at;
        Ok(Value::Number(text))
    }

    fn string(&mut self) -> Result<Cow<'a, str>, Refusal> {
        self.at += 1;
        let start = self.at;
        let b = self.bytes;
        let mut at = start;
        while let Some(&c) = b.get(at) {
            match c {
                b'"' => {
                    self.at = at + 1;
                    return Ok(Cow::Borrowed(&self.text[start..at]));
                }
                b'\\' => break,
                0..=0x1f => {
                    self.at = at;
                    return Err(self.syntax("unexpected control character in string"));
                }
                _ => at += 1,
            }
        }
        let mut out = String::from(&self.text[start..at]);
        loop {
            let Some(&c) = b.get(at) else {
                self.at = at;
                return Err(self.syntax("unexpected end of data in string"));
            };
            match c {
                b'"' => {
                    self.at = at + 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    let (decoded, next) = self.escape(at)?;
                    out.push(decoded);
                    at = next;
                }
                0..=0x1f => {
                    self.at = at;
                    return Err(self.syntax("unexpected control character in string"));
                }
                _ => {
                    // Copy one whole UTF-8 character.
                    let width = utf8_width(c);
                    out.push_str(&self.text[at..at + width]);
                    at += width;
                }
            }
        }
    }

    /// The character of the escape at `at` (a backslash) and where the text goes on.
    fn escape(&mut self, at: usize) -> Result<(char, usize), Refusal> {
        let simple = match self.bytes.get(at + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\x08',
            Some(b'f') => '\x0c',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.at = at;
                let high = hex4(self.bytes, at + 2).ok_or_else(|| self.syntax("invalid escape"))?;
                if (0xDC00..0xE000).contains(&high) {
                    return Err(self.syntax("invalid high surrogate in string"));
                }
                if !(0xD800..0xDC00).contains(&high) {
                    let c = char::from_u32(high).ok_or_else(|| self.syntax("invalid escape"))?;
                    return Ok((c, at + 6));
                }
                let low = (self.bytes.get(at + 6..at + 8) == Some(b"\\u"))
                    .then(|| hex4(self.bytes, at + 8))
                    .flatten()
                    .filter(|low| (0xDC00..0xE000).contains(low));
                let Some(low) = low else {
                    return Err(self.syntax("invalid low surrogate in string"));
                };
                let point = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                let c = char::from_u32(point).ok_or_else(|| self.syntax("invalid escape"))?;
                return Ok((c, at + 12));
            }
            _ => {
                self.at = at;
                return Err(self.syntax("invalid escape"));
            }
        };
        Ok((simple, at + 2))
    }
}

fn utf8_width(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn hex4<T: Copy + Into<u32>>(units: &[T], at: usize) -> Option<u32> {
    let part = units.get(at..at + 4)?;
    part.iter().try_fold(0u32, |acc, &unit| {
        char::from_u32(unit.into())
            .and_then(|c| c.to_digit(16))
            .map(|d| acc * 16 + d)
    })
}

/// Python's `Counter` order: the first key (by first appearance) that appears twice.
fn first_repeated(members: &[(Cow<'_, str>, Value<'_>)]) -> Option<String> {
    if members.len() < 2 {
        return None;
    }
    if members.len() <= 16 {
        for (i, (key, _)) in members.iter().enumerate() {
            if members[i + 1..].iter().any(|(other, _)| other == key) {
                return Some(key.to_string());
            }
        }
        return None;
    }
    let mut seen = std::collections::HashMap::with_capacity(members.len());
    let mut repeated: Option<usize> = None;
    for (i, (key, _)) in members.iter().enumerate() {
        if let Some(&first) = seen.get(key.as_ref()) {
            repeated = Some(repeated.map_or(first, |r: usize| r.min(first)));
        } else {
            seen.insert(key.as_ref(), i);
        }
    }
    repeated.map(|i| members[i].0.to_string())
}

/// What the standard library's `json.loads` makes of a document orjson refused:
/// `Some(constant)` when it meets NaN, Infinity or -Infinity before any error.
pub fn classify_refused(payload: &[u8]) -> Option<&'static str> {
    let units = decode_like_python(payload)?;
    let mut scanner = PyScanner {
        units: &units,
        at: 0,
        depth: 0,
    };
    scanner.skip_ws();
    match scanner.value() {
        Err(Stop::NonFinite(constant)) => Some(constant),
        _ => None,
    }
}

/// `bytes.decode(json.detect_encoding(b), 'surrogatepass')` as code points.
fn decode_like_python(b: &[u8]) -> Option<Vec<u32>> {
    if b.starts_with(&[0, 0, 0xFE, 0xFF]) {
        return utf32(&b[4..], true);
    }
    if b.starts_with(&[0xFF, 0xFE, 0, 0]) {
        return utf32(&b[4..], false);
    }
    if b.starts_with(&[0xFE, 0xFF]) {
        return utf16(&b[2..], true);
    }
    if b.starts_with(&[0xFF, 0xFE]) {
        return utf16(&b[2..], false);
    }
    if let Some(rest) = b.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8_surrogatepass(rest);
    }
    if b.len() >= 4 {
        if b[0] == 0 {
            return if b[1] != 0 {
                utf16(b, true)
            } else {
                utf32(b, true)
            };
        }
        if b[1] == 0 {
            return if b[2] != 0 || b[3] != 0 {
                utf16(b, false)
            } else {
                utf32(b, false)
            };
        }
    } else if b.len() == 2 {
        if b[0] == 0 {
            return utf16(b, true);
        }
        if b[1] == 0 {
            return utf16(b, false);
        }
    }
    utf8_surrogatepass(b)
}

fn utf16(b: &[u8], big_endian: bool) -> Option<Vec<u32>> {
    if b.len() % 2 != 0 {
        return None;
    }
    let units = b.chunks_exact(2).map(|pair| {
        let pair = [pair[0], pair[1]];
        u32::from(if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        })
    });
    // Pairs combine; with surrogatepass an unpaired surrogate stays as it is.
    let units: Vec<u32> = units.collect();
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let unit = units[i];
        if (0xD800..0xDC00).contains(&unit)
            && units
                .get(i + 1)
                .is_some_and(|u| (0xDC00..0xE000).contains(u))
        {
            out.push(0x10000 + ((unit - 0xD800) << 10) + (units[i + 1] - 0xDC00));
            i += 2;
        } else {
            out.push(unit);
            i += 1;
        }
    }
    Some(out)
}

fn utf32(b: &[u8], big_endian: bool) -> Option<Vec<u32>> {
    if b.len() % 4 != 0 {
        return None;
    }
    b.chunks_exact(4)
        .map(|quad| {
            let quad = [quad[0], quad[1], quad[2], quad[3]];
            let point = if big_endian {
                u32::from_be_bytes(quad)
            } else {
                u32::from_le_bytes(quad)
            };
            (point <= 0x10FFFF).then_some(point)
        })
        .collect()
}

/// Strict UTF-8 that lets encoded surrogates through (Python's 'surrogatepass').
fn utf8_surrogatepass(b: &[u8]) -> Option<Vec<u32>> {
    if let Ok(text) = std::str::from_utf8(b) {
        return Some(text.chars().map(u32::from).collect());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let cont = |at: usize| {
        b.get(at)
            .filter(|c| (0x80..0xC0).contains(*c))
            .map(|c| u32::from(c & 0x3F))
    };
    while i < b.len() {
        let first = b[i];
        let (point, width) = match first {
            0x00..=0x7F => (u32::from(first), 1),
            0xC2..=0xDF => ((u32::from(first & 0x1F) << 6) | cont(i + 1)?, 2),
            0xE0..=0xEF => {
                let point = (u32::from(first & 0x0F) << 12) | (cont(i + 1)? << 6) | cont(i + 2)?;
                if point < 0x800 {
                    return None;
                }
                (point, 3)
            }
            0xF0..=0xF4 => {
                let point = (u32::from(first & 0x07) << 18)
                    | (cont(i + 1)? << 12)
                    | (cont(i + 2)? << 6)
                    | cont(i + 3)?;
                if !(0x10000..=0x10FFFF).contains(&point) {
                    return None;
                }
                (point, 4)
            }
            _ => return None,
        };
        out.push(point);
        i += width;
    }
    Some(out)
}

enum Stop {
    NonFinite(&'static str),
    Error,
}

/// The standard library's scanner, reduced to what classification needs.
struct PyScanner<'u> {
    units: &'u [u32],
    at: usize,
    depth: usize,
}

impl PyScanner<'_> {
    fn peek(&self) -> Option<u32> {
        self.units.get(self.at).copied()
    }

    fn starts_with(&self, word: &str) -> bool {
        let mut units = self.units[self.at..].iter();
        word.chars().all(|c| units.next() == Some(&u32::from(c)))
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(0x20 | 0x09 | 0x0A | 0x0D)) {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<(), Stop> {
        let Some(c) = self.peek().and_then(char::from_u32) else {
            return Err(Stop::Error);
        };
        match c {
            '"' => self.string(),
            '{' => self.container('}'),
            '[' => self.container(']'),
            'N' | 'I' | '-' => {
                if let Some(word) = ["NaN", "Infinity", "-Infinity"]
                    .into_iter()
                    .find(|word| self.starts_with(word))
                {
                    return Err(Stop::NonFinite(word));
                }
                if c == '-' {
                    self.number()
                } else {
                    Err(Stop::Error)
                }
            }
            't' | 'f' | 'n' => {
                for word in ["true", "false", "null"] {
                    if self.starts_with(word) {
                        self.at += word.len();
                        return Ok(());
                    }
                }
                Err(Stop::Error)
            }
            '0'..='9' => self.number(),
            _ => Err(Stop::Error),
        }
    }

    fn digit(&self, at: usize) -> bool {
        self.units
            .get(at)
            .is_some_and(|u| (0x30..=0x39).contains(u))
    }

    fn number(&mut self) -> Result<(), Stop> {
        let mut at = self.at;
        if self.units.get(at) == Some(&0x2D) {
            at += 1;
        }
        if self.units.get(at) == Some(&0x30) {
            at += 1;
        } else if self.digit(at) {
            while self.digit(at) {
                at += 1;
            }
        } else {
            return Err(Stop::Error);
        }
        if self.units.get(at) == Some(&0x2E) && self.digit(at + 1) {
            at += 1;
            while self.digit(at) {
                at += 1;
            }
        }
        if matches!(self.units.get(at), Some(0x65 | 0x45)) {
            let mut exp = at + 1;
            if matches!(self.units.get(exp), Some(0x2B | 0x2D)) {
                exp += 1;
            }
            if self.digit(exp) {
                while self.digit(exp) {
                    exp += 1;
                }
                at = exp;
            }
        }
        self.at = at;
        Ok(())
    }

    fn string(&mut self) -> Result<(), Stop> {
        self.at += 1;
        loop {
            match self.peek() {
                None => return Err(Stop::Error),
                Some(0x22) => {
                    self.at += 1;
                    return Ok(());
                }
                Some(0x5C) => {
                    match self.units.get(self.at + 1).copied() {
                        Some(0x22 | 0x5C | 0x2F | 0x62 | 0x66 | 0x6E | 0x72 | 0x74) => self.at += 2,
                        Some(0x75) => {
                            // Lone surrogates are accepted here; only the hex digits matter.
                            hex4(self.units, self.at + 2).ok_or(Stop::Error)?;
                            self.at += 6;
                        }
                        _ => return Err(Stop::Error),
                    }
                }
                Some(unit) if unit < 0x20 => return Err(Stop::Error),
                Some(_) => self.at += 1,
            }
        }
    }

    fn container(&mut self, close: char) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > PY_MAX_NESTING {
            return Err(Stop::Error);
        }
        let close = u32::from(close);
        self.at += 1;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if close == u32::from('}') {
                if self.peek() != Some(0x22) {
                    return Err(Stop::Error);
                }
                self.string()?;
                self.skip_ws();
                if self.peek() != Some(0x3A) {
                    return Err(Stop::Error);
                }
                self.at += 1;
                self.skip_ws();
            }
            self.value()?;
            self.skip_ws();
            match self.peek() {
                Some(unit) if unit == close => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                Some(0x2C) => {
                    self.at += 1;
                    self.skip_ws();
                }
                _ => return Err(Stop::Error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_number_text_and_finds_repeated_keys() {
        let doc = read(br#"{"a": 0.30000000000000001, "b": {"x": 1, "y": 2, "x": 3}}"#).unwrap();
        assert!(matches!(
            doc.root.get("a"),
            Some(Value::Number("0.30000000000000001"))
        ));
        assert_eq!(doc.repeated_key.as_deref(), Some("x"));
        assert_eq!(doc.depth, 2);
    }

    #[test]
    fn refuses_what_orjson_refuses() {
        for bad in [
            &b"[1,]"[..],
            b"[01]",
            b"[1.]",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"a\x01\"",
            b"\xef\xbb\xbf{}",
            b"",
            b"[NaN]",
        ] {
            assert!(matches!(read(bad), Err(Refusal::Syntax(_))), "{bad:?}");
        }
        assert!(matches!(read(b"[1e400]"), Err(Refusal::Infinity(_))));
        assert!(read(&[b'['; 1025]).is_err());
        let mut deep = vec![b'['; 1024];
        deep.extend([b']'; 1024]);
        assert!(read(&deep).is_ok());
    }

    #[test]
    fn classifies_like_the_standard_library() {
        assert_eq!(classify_refused(b"{\"a\": NaN}"), Some("NaN"));
        assert_eq!(classify_refused(b"[-Infinity, 'x']"), Some("-Infinity"));
        assert_eq!(classify_refused(b"['x', NaN]"), None);
        assert_eq!(
            classify_refused(b"\xef\xbb\xbf[\"\\ud800\", Infinity]"),
            Some("Infinity")
        );
        assert_eq!(classify_refused(b"[NaN, \xff]"), None);
    }
}
