//! The pure part: key hashing, the shard map of each scheme, replica load.
//! Synchronous, no I/O, no tracing or metrics; unit-tested in place.

pub(crate) mod key;
pub(crate) mod load;
pub(crate) mod map;

pub use key::ShardKey;
pub use map::{MOVE_SAMPLES, ShardMap, ShardSpec, jump};
