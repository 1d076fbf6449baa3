//! A batch in, columns out: no object per event, only the rare rejection carries its own.

use std::collections::HashMap;
use std::fmt::Write;

use xxhash_rust::xxh3::xxh3_128;

use crate::parse::{self, judge, short_text, Accepted, Reason, Rejected, Rules};
use crate::text::char_len;

/// A rejected message: where it was in the batch, why, and the envelope it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: u32,
    pub reason: Reason,
    pub detail: String,
    pub event_id: String,
    pub event_source: String,
    pub tenant: String,
}

/// Accepted events and their measures as columns; texts live in `text`, as
/// (start, end) byte spans. Rows of `measure_*` follow events, then meters, in order.
#[derive(Debug, Default)]
pub struct Columns {
    /// Per accepted event: its position in the batch.
    pub index: Vec<u32>,
    pub time_ms: Vec<i64>,
    /// Index into `tenants` (interned per batch).
    pub tenant: Vec<u32>,
    pub tenants: Vec<String>,
    /// Index into the rules' event types.
    pub event_type: Vec<u32>,
    /// xxh3-128 of the idempotency key, 16 big-endian bytes per event.
    pub key_hash: Vec<u8>,
    pub source: Vec<u64>,
    pub id: Vec<u64>,
    pub text: Vec<u8>,
    /// Per measure: the accepted event (row in the columns above) and the meter.
    pub measure_event: Vec<u32>,
    pub meter: Vec<u32>,
    /// The quantity, `units + nanos / 10^9` (0 for COUNT and UNIQUE_COUNT).
    pub units: Vec<u64>,
    pub nanos: Vec<u32>,
    /// UNIQUE_COUNT's distinct value (an empty span for other meters).
    pub distinct: Vec<u64>,
    /// Each measure's group values in its meter's group-by order, all rows end to end.
    pub groups: Vec<u64>,
    pub rejections: Vec<Rejection>,
    /// The latest accepted event time; watermarks advance from it.
    pub max_time_ms: Option<i64>,
}

/// The idempotency key (tenant, source, id), length-prefixed as operators/model.py spells it.
pub fn idempotency_key(tenant: &str, source: &str, id: &str) -> String {
    let mut key = String::new();
    write_idempotency_key(&mut key, tenant, source, id);
    key
}

/// `idempotency_key` into `key` (cleared first): one buffer for a whole batch.
fn write_idempotency_key(key: &mut String, tenant: &str, source: &str, id: &str) {
    key.clear();
    // Writing to a String cannot fail.
    let _ = write!(
        key,
        "{}:{tenant}{}:{source}{id}",
        char_len(tenant),
        char_len(source)
    );
}

/// The 128-bit hash in-state dedup keys events by.
pub fn idempotency_hash(key: &str) -> [u8; 16] {
    xxh3_128(key.as_bytes()).to_be_bytes()
}

struct Writer<'r> {
    rules: &'r Rules,
    out: Columns,
    tenant_ids: HashMap<String, u32>,
    key: String,
}

impl Writer<'_> {
    fn span(&mut self, text: &str) -> [u64; 2] {
        let start = self.out.text.len() as u64;
        self.out.text.extend_from_slice(text.as_bytes());
        [start, self.out.text.len() as u64]
    }

    fn accept(&mut self, index: u32, event: &Accepted<'_>) {
        let row = self.out.index.len() as u32;
        self.out.index.push(index);
        self.out.time_ms.push(event.time_ms);
        self.out.max_time_ms = Some(
            self.out
                .max_time_ms
                .map_or(event.time_ms, |t| t.max(event.time_ms)),
        );
        let next = self.out.tenants.len() as u32;
        let tenant = match self.tenant_ids.get(event.tenant) {
            Some(&id) => id,
            None => {
                self.tenant_ids.insert(event.tenant.to_owned(), next);
                self.out.tenants.push(event.tenant.to_owned());
                next
            }
        };
        self.out.tenant.push(tenant);
        self.out.event_type.push(event.event_type);
        write_idempotency_key(&mut self.key, event.tenant, event.source, event.id);
        self.out
            .key_hash
            .extend_from_slice(&idempotency_hash(&self.key));
        let source = self.span(event.source);
        self.out.source.extend_from_slice(&source);
        let id = self.span(event.id);
        self.out.id.extend_from_slice(&id);
        for measure in &event.measures {
            self.out.measure_event.push(row);
            self.out.meter.push(measure.meter);
            self.out.units.push(measure.quantity.units);
            self.out.nanos.push(measure.quantity.nanos);
            let distinct = match &measure.distinct {
                Some(value) => self.span(value),
                None => [0, 0],
            };
            self.out.distinct.extend_from_slice(&distinct);
            for group in &measure.groups {
                let span = self.span(group);
                self.out.groups.extend_from_slice(&span);
            }
        }
    }

    fn message(&mut self, index: u32, payload: &[u8], latest_allowed_ms: i64) {
        let rejected = if payload.len() > self.rules.max_event_bytes {
            Rejected {
                reason: Reason::TooLarge,
                detail: format!(
                    "{} bytes, more than the limit of {}",
                    payload.len(),
                    self.rules.max_event_bytes
                ),
            }
        } else {
            match parse::read(payload) {
                Ok(doc) => match judge(self.rules, &doc, latest_allowed_ms) {
                    Ok(event) => return self.accept(index, &event),
                    Err(rejected) => rejected,
                },
                Err(rejected) => rejected,
            }
        };
        // Best effort: name the event in the dead letter when its envelope is readable.
        let (event_id, event_source, tenant) = match crate::json::read(payload) {
            Ok(doc) => (
                short_text(&doc, "id"),
                short_text(&doc, "source"),
                short_text(&doc, "subject"),
            ),
            Err(_) => Default::default(),
        };
        self.out.rejections.push(Rejection {
            index,
            reason: rejected.reason,
            detail: rejected.detail,
            event_id,
            event_source,
            tenant,
        });
    }
}

/// Parse the messages `payloads[ends[i-1]..ends[i]]` against `rules` at wall time `now_ms`.
pub fn parse_batch(rules: &Rules, payloads: &[u8], ends: &[u64], now_ms: i64) -> Columns {
    let mut writer = Writer {
        rules,
        out: Columns::default(),
        tenant_ids: HashMap::new(),
        key: String::new(),
    };
    let latest_allowed_ms = now_ms.saturating_add(rules.max_future_skew_ms);
    let mut start = 0usize;
    for (index, &end) in ends.iter().enumerate() {
        let end = end as usize;
        writer.message(index as u32, &payloads[start..end], latest_allowed_ms);
        start = end;
    }
    writer.out
}
