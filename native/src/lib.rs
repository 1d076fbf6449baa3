//! meterwax's native batch core: CloudEvents parsed and validated, split by shard,
//! deduplicated and folded into windows, a batch at a time.
//!
//! operators/parse.py, operators/sharding.py and operators/shard.py are the
//! specification; tests/native/ holds this core to them.

mod aggregate;
mod batch;
mod claims;
mod dedup;
mod event_log;
mod json;
mod keyhash;
mod ledger;
mod live;
mod money;
mod number;
mod parse;
mod pricing;
mod py;
mod py_ledger;
mod py_shard;
mod rated_rows;
mod row_binary;
mod shard;
mod snapshot;
mod split;
mod text;
mod time;
mod unicode_tables;
mod window;

pub use batch::{idempotency_hash, idempotency_key, parse_batch, Columns, Rejection};
pub use parse::{Meter, Path, Reason, Rules, Step};
pub use shard::{MeterSpec, Screened, Shard};
pub use split::{shard_of, split, ShardBatch};
