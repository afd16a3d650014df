//! The pure parts of the retry layer: backoff schedules, the budget's
//! arithmetic and the jitter source.
//!
//! Leaves: nothing here imports another part of the crate, and nothing here
//! does I/O, traces or records metrics. The layer's settings check their
//! values against these (`settings` imports `state`, never the other way).

pub mod backoff;
pub mod budget;
pub(crate) mod rng;
