//! A bulkhead for tower services: bounded concurrency with fair waiting, per-key partitions and an adaptive limit.
//!
//! Under construction: see the crate's issue.
