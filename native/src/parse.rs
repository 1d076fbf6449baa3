//! operators/parse.py's rules for one event, with its reason codes and details.
//!
//! The Python module is the specification: every check runs in its order, so
//! an event that breaks two rules gets the same reason from both.

use std::collections::{HashMap, HashSet};

use crate::json::{self, Document, Refusal, Value};
use crate::number::{Decimal, Quantity, QuantityError, MAX_FRACTION_DIGITS};
use crate::text::{char_len, describe, json_dumps, prefix, repr};
use crate::time::parse_rfc3339_ms;

const MAX_ATTRIBUTE_CHARS: usize = 256;
const MAX_GROUP_VALUE_CHARS: usize = 256;
const MAX_DEPTH: usize = 128;
/// 2000-01-01T00:00:00Z: older stamps are broken clocks.
const MIN_TIME_MS: i64 = 946_684_800_000;
/// 2200-01-01T00:00:00Z, whatever max_future_skew allows: billing periods and
/// ClickHouse's DateTime64 must hold every window.
const MAX_TIME_MS: i64 = 7_258_118_400_000;
const REQUIRED_STRINGS: [&str; 4] = ["id", "source", "type", "subject"];

/// Why an event was rejected: operators.model.Reason, same codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MalformedJson,
    NotAnObject,
    MissingField,
    BadType,
    BadSpecversion,
    BadTime,
    FutureTime,
    MissingValue,
    BadValue,
    NegativeValue,
    NonFiniteValue,
    ValueOutOfRange,
    TooLarge,
    UnknownEventType,
    UnknownSubject,
}

impl Reason {
    /// The stable code dashboards and runbooks use.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::BadType => "bad_type",
            Reason::BadSpecversion => "bad_specversion",
            Reason::BadTime => "bad_time",
            Reason::FutureTime => "future_time",
            Reason::MissingValue => "missing_value",
            Reason::BadValue => "bad_value",
            Reason::NegativeValue => "negative_value",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::ValueOutOfRange => "value_out_of_range",
            Reason::TooLarge => "too_large",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::UnknownSubject => "unknown_subject",
        }
    }
}

/// A rejection: reason and the detail that names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Reason,
    pub detail: String,
}

fn reject<T>(reason: Reason, detail: String) -> Result<T, Rejected> {
    Err(Rejected { reason, detail })
}

/// One step of a meter's JSON path: an object key or an array index.
#[derive(Debug, Clone)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A compiled JSON path (config/jsonpath.py) and how details name it.
#[derive(Debug, Clone)]
pub struct Path {
    pub steps: Vec<Step>,
    /// `$.a.b` as the user sees it in the event: `data.a.b`.
    pub place: String,
}

impl Path {
    /// A path from its text (`$...`) and compiled steps.
    pub fn new(text: &str, steps: Vec<Step>) -> Path {
        let tail = text.strip_prefix('$').unwrap_or(text);
        Path {
            steps,
            place: format!("data{tail}"),
        }
    }

    fn find<'v, 'a>(&self, data: &'v Value<'a>) -> Option<&'v Value<'a>> {
        self.steps
            .iter()
            .try_fold(data, |node, step| match (step, node) {
                (Step::Key(key), Value::Object(_)) => node.get(key),
                (Step::Index(i), Value::Array(items)) => items.get(*i),
                _ => None,
            })
    }
}

/// A meter as the parser needs it; `groups` sorted by group-by name.
#[derive(Debug, Clone)]
pub struct Meter {
    pub slug: String,
    pub event_type: String,
    /// Values are quantities (SUM, MAX, LATEST), not UNIQUE_COUNT's distinct keys.
    pub numeric: bool,
    pub value: Option<Path>,
    pub groups: Vec<Path>,
}

/// What validation needs to know: the catalog, the tenants and the limits.
pub struct Rules {
    pub meters: Vec<Meter>,
    /// Event types in order of first appearance, and the meters of each.
    pub event_types: Vec<String>,
    by_type: HashMap<String, (u32, Vec<u32>)>,
    /// None: every tenant is known (a default plan rates them).
    tenants: Option<HashSet<String>>,
    pub max_event_bytes: usize,
    pub max_future_skew_ms: i64,
}

impl Rules {
    /// Index `meters` by event type.
    pub fn new(
        meters: Vec<Meter>,
        tenants: Option<HashSet<String>>,
        max_event_bytes: usize,
        max_future_skew_ms: i64,
    ) -> Rules {
        let mut event_types = Vec::new();
        let mut by_type: HashMap<String, (u32, Vec<u32>)> = HashMap::new();
        for (i, meter) in meters.iter().enumerate() {
            let next = u32::try_from(event_types.len()).unwrap_or(u32::MAX);
            let entry = by_type.entry(meter.event_type.clone()).or_insert_with(|| {
                event_types.push(meter.event_type.clone());
                (next, Vec::new())
            });
            entry.1.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        Rules {
            meters,
            event_types,
            by_type,
            tenants,
            max_event_bytes,
            max_future_skew_ms,
        }
    }
}

/// What an accepted event contributes to one meter.
#[derive(Debug)]
pub struct Measure<'a> {
    pub meter: u32,
    pub quantity: Quantity,
    /// UNIQUE_COUNT's distinct value; it and the group values are `_scalar_text`'s
    /// texts (a number as its JSON text).
    pub distinct: Option<&'a str>,
    pub groups: Vec<&'a str>,
}

/// An accepted event, borrowing its texts from the document.
#[derive(Debug)]
pub struct Accepted<'a> {
    pub tenant: &'a str,
    pub source: &'a str,
    pub id: &'a str,
    pub event_type: u32,
    pub time_ms: i64,
    pub measures: Vec<Measure<'a>>,
}

/// Read `payload` (the JSON step only): a document, or the rejection.
pub fn read(payload: &[u8]) -> Result<Document<'_>, Rejected> {
    match json::read(payload) {
        Ok(doc) => Ok(doc),
        Err(Refusal::Infinity(message)) => reject(
            Reason::NonFiniteValue,
            format!("a number overflows to infinity: {message}"),
        ),
        Err(Refusal::Syntax(message)) => match json::classify_refused(payload) {
            Some(constant) => reject(
                Reason::NonFiniteValue,
                format!("{constant} is not a finite number"),
            ),
            None => reject(Reason::MalformedJson, message),
        },
    }
}

/// The checks after reading, in the Python parser's order.
pub fn judge<'d, 'a>(
    rules: &Rules,
    doc: &'d Document<'a>,
    latest_allowed_ms: i64,
) -> Result<Accepted<'d>, Rejected> {
    let root = &doc.root;
    if !matches!(root, Value::Object(_)) {
        return reject(
            Reason::NotAnObject,
            format!("expected a JSON object, got {}", root.type_name()),
        );
    }
    if doc.depth > MAX_DEPTH {
        return reject(
            Reason::MalformedJson,
            format!("nested deeper than {MAX_DEPTH} levels"),
        );
    }
    if let Some(key) = &doc.repeated_key {
        return reject(
            Reason::MalformedJson,
            format!("key {} appears twice in one object", repr(prefix(key, 64))),
        );
    }
    check_specversion(root.get("specversion"))?;
    let mut strings = [""; 4];
    for (slot, name) in strings.iter_mut().zip(REQUIRED_STRINGS) {
        *slot = required_string(root, name)?;
    }
    let [id, source, event_type, subject] = strings;
    let data = match root.get("data") {
        Some(data @ Value::Object(_)) => data,
        None | Some(Value::Null) => {
            return reject(
                Reason::MissingField,
                "data: required, an object with the usage values".into(),
            )
        }
        Some(other) => {
            return reject(
                Reason::BadType,
                format!("data: expected an object, got {}", other.type_name()),
            )
        }
    };
    let time_ms = event_time(root.get("time"), latest_allowed_ms)?;
    let Some((type_index, plans)) = rules.by_type.get(event_type) else {
        return reject(
            Reason::UnknownEventType,
            format!("type {} matches no meter", repr(event_type)),
        );
    };
    if let Some(tenants) = &rules.tenants {
        if !tenants.contains(subject) {
            return reject(
                Reason::UnknownSubject,
                format!(
                    "subject {} has no subscription or default plan",
                    repr(subject)
                ),
            );
        }
    }
    let mut measures = Vec::with_capacity(plans.len());
    for &index in plans {
        measures.push(measure(&rules.meters[index as usize], index, data)?);
    }
    Ok(Accepted {
        tenant: subject,
        source,
        id,
        event_type: *type_index,
        time_ms,
        measures,
    })
}

fn check_specversion(version: Option<&Value<'_>>) -> Result<(), Rejected> {
    match version {
        Some(Value::Str(text)) if text == "1.0" => Ok(()),
        None => reject(
            Reason::MissingField,
            "specversion: required, must be '1.0'".into(),
        ),
        Some(Value::Str(text)) => reject(
            Reason::BadSpecversion,
            format!("specversion {} is not '1.0'", describe(&json_dumps(text))),
        ),
        Some(other) => reject(
            Reason::BadType,
            format!("specversion: expected a string, got {}", other.type_name()),
        ),
    }
}

fn required_string<'d>(root: &'d Value<'_>, name: &str) -> Result<&'d str, Rejected> {
    match root.get(name) {
        Some(Value::Str(text)) if text.is_empty() => {
            reject(Reason::MissingField, format!("{name}: must not be empty"))
        }
        Some(Value::Str(text)) if char_len(text) > MAX_ATTRIBUTE_CHARS => reject(
            Reason::TooLarge,
            format!("{name}: longer than {MAX_ATTRIBUTE_CHARS} characters"),
        ),
        Some(Value::Str(text)) => Ok(text),
        None | Some(Value::Null) => reject(Reason::MissingField, format!("{name}: required")),
        Some(other) => reject(
            Reason::BadType,
            format!("{name}: expected a string, got {}", other.type_name()),
        ),
    }
}

fn event_time(value: Option<&Value<'_>>, latest_allowed_ms: i64) -> Result<i64, Rejected> {
    let text = match value {
        Some(Value::Str(text)) => text,
        None | Some(Value::Null) => {
            return reject(
                Reason::MissingField,
                "time: required, RFC 3339 with an offset".into(),
            )
        }
        Some(other) => {
            return reject(
                Reason::BadType,
                format!("time: expected a string, got {}", other.type_name()),
            )
        }
    };
    let time_ms = parse_rfc3339_ms(text).or_else(|why| reject(Reason::BadTime, why))?;
    if time_ms < MIN_TIME_MS {
        return reject(
            Reason::BadTime,
            format!("time {} is before 2000-01-01", repr(text)),
        );
    }
    if time_ms > latest_allowed_ms {
        return reject(
            Reason::FutureTime,
            format!("time {} is ahead of the clock", repr(text)),
        );
    }
    if time_ms >= MAX_TIME_MS {
        return reject(
            Reason::FutureTime,
            format!("time {} is not before 2200-01-01", repr(text)),
        );
    }
    Ok(time_ms)
}

/// One meter's measure of `data`.
fn measure<'d>(meter: &Meter, index: u32, data: &'d Value<'_>) -> Result<Measure<'d>, Rejected> {
    let mut groups = Vec::with_capacity(meter.groups.len());
    for path in &meter.groups {
        groups.push(group_value(path, data)?);
    }
    let mut measure = Measure {
        meter: index,
        quantity: Quantity { units: 0, nanos: 0 },
        distinct: None,
        groups,
    };
    let Some(path) = &meter.value else {
        return Ok(measure);
    };
    let raw = path.find(data);
    let missing = || {
        reject(
            Reason::MissingValue,
            format!(
                "{}: required by meter {} but absent",
                path.place,
                repr(&meter.slug)
            ),
        )
    };
    if meter.numeric {
        measure.quantity = match raw {
            None | Some(Value::Null) => return missing(),
            // A JSON number's grammar is a subset of what Decimal::parse reads.
            Some(Value::Number(text)) => match Quantity::plain(text) {
                Some(plain) => plain,
                None => match Decimal::parse(text) {
                    Some(decimal) => quantity(&decimal, &path.place, text)?,
                    None => unreachable!("JSON number text {text:?} is decimal notation"),
                },
            },
            Some(Value::Str(text)) => quantity_of_text(text, &path.place)?,
            Some(other) => {
                return reject(
                    Reason::BadType,
                    format!(
                        "{}: expected a number, got {}",
                        path.place,
                        other.type_name()
                    ),
                )
            }
        };
        return Ok(measure);
    }
    measure.distinct = Some(match raw {
        None | Some(Value::Null) => return missing(),
        Some(value) => scalar(value, &path.place)?,
    });
    Ok(measure)
}

/// The checks of `_to_decimal` once `value` (a JSON number's text or a numeric
/// string, as sent) is read as `decimal`.
fn quantity(decimal: &Decimal, place: &str, value: &str) -> Result<Quantity, Rejected> {
    if !decimal.python_holds() {
        // An exponent beyond what any Decimal holds (1e999999999999999999999).
        return reject(
            Reason::ValueOutOfRange,
            format!("{place}: {} is out of range", describe(&json_dumps(value))),
        );
    }
    decimal.quantity().or_else(|error| match error {
        QuantityError::Negative => reject(
            Reason::NegativeValue,
            format!("{place}: {} is negative", decimal.sci_string()),
        ),
        QuantityError::OutOfRange => reject(
            Reason::ValueOutOfRange,
            format!("{place}: {} is 1E+18 or more", decimal.format_3e()),
        ),
        QuantityError::TooManyFractionDigits => reject(
            Reason::BadValue,
            format!(
                "{place}: {} has more than {MAX_FRACTION_DIGITS} fractional digits",
                describe(&json_dumps(value))
            ),
        ),
    })
}

/// A numeric string: plain ASCII decimal notation, padding allowed.
fn quantity_of_text(text: &str, place: &str) -> Result<Quantity, Rejected> {
    let stripped = text.trim_matches([' ', '\t', '\r', '\n']);
    if let Some(plain) = Quantity::plain(stripped) {
        return Ok(plain);
    }
    if is_non_finite_word(stripped) {
        return reject(
            Reason::NonFiniteValue,
            format!("{place}: {} is not a finite number", repr(text)),
        );
    }
    let Some(decimal) = Decimal::parse(stripped) else {
        return reject(
            Reason::BadValue,
            format!("{place}: {} is not a number", describe(&json_dumps(text))),
        );
    };
    quantity(&decimal, place, text)
}

/// `[+-]?(nan|snan|inf|infinity)` as Python's case-insensitive `re` matches it
/// (which also takes 'ſ' for 's' and 'İ', 'ı' for 'i').
fn is_non_finite_word(text: &str) -> bool {
    let word = text.strip_prefix(['+', '-']).unwrap_or(text);
    if word.len() > 16 {
        return false;
    }
    let folded: String = word
        .chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{130}' | '\u{131}' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    matches!(folded.as_str(), "nan" | "snan" | "inf" | "infinity")
}

fn group_value<'d>(path: &Path, data: &'d Value<'_>) -> Result<&'d str, Rejected> {
    match path.find(data) {
        // A missing group-by property is its own group (""), as OpenMeter does.
        None | Some(Value::Null) => Ok(""),
        Some(value) => scalar(value, &path.place),
    }
}

/// `_scalar_text`: a string, boolean or number as a group-by or distinct value;
/// a number is the JSON text it was written as (`1.0`, `-0` and `1e2` stay apart).
fn scalar<'d>(value: &'d Value<'_>, place: &str) -> Result<&'d str, Rejected> {
    match value {
        Value::Str(text) => group_text(text, place),
        Value::Number(text) => group_text(text, place),
        Value::Bool(true) => Ok("true"),
        Value::Bool(false) => Ok("false"),
        other => reject(
            Reason::BadType,
            format!("{place}: expected a scalar, got {}", other.type_name()),
        ),
    }
}

fn group_text<'d>(text: &'d str, place: &str) -> Result<&'d str, Rejected> {
    if char_len(text) > MAX_GROUP_VALUE_CHARS {
        return reject(
            Reason::TooLarge,
            format!("{place}: longer than {MAX_GROUP_VALUE_CHARS} characters"),
        );
    }
    Ok(text)
}

/// `_short_text`: an attribute for the dead letter, when it is a string.
pub fn short_text(doc: &Document<'_>, name: &str) -> String {
    match doc.root.get(name) {
        Some(Value::Str(text)) => prefix(text, MAX_ATTRIBUTE_CHARS).to_owned(),
        _ => String::new(),
    }
}
