//! Atomics for the state machine: std's, or loom's when the crate's unit
//! tests are model-checked (`--cfg loom`).

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic;
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic;

/// Lets another thread run (a transition is being published).
pub(crate) fn yield_now() {
    #[cfg(all(test, loom))]
    loom::thread::yield_now();
    #[cfg(not(all(test, loom)))]
    std::thread::yield_now();
}
