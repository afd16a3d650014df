//! A circuit breaker for tower services: count and time windows, slow calls, half-open probes, runtime control.
//!
//! Under construction: see the crate's issue.
