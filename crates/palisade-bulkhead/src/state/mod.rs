//! The pure parts of a bulkhead: synchronous, no I/O, no clock, no logging or
//! metrics. The shared state (`shared`) drives them under its atomics and
//! locks, and reports what they decide.
//!
//! - [`limiter`]: the adaptive limit algorithms (public).
//! - `admission`: a pool's packed admission word and its FIFO queue of
//!   waiters.
//! - `table`: the bounded, sharded map from partition keys to pools.

pub(crate) mod admission;
pub mod limiter;
pub(crate) mod table;
