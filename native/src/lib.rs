//! meterwax's native batch core: CloudEvents parsed and validated a batch at a time.
//!
//! operators/parse.py is the specification; tests/native/ holds this core to it.

mod batch;
mod json;
mod number;
mod parse;
mod py;
mod text;
mod time;
mod unicode_tables;

pub use batch::{idempotency_hash, idempotency_key, parse_batch, Columns, Rejection};
pub use parse::{Meter, Path, Reason, Rules, Step};
