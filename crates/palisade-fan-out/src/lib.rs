//! Scatter-gather for tower services: call many branches concurrently, merge, and return partial results.
//!
//! Under construction: see the crate's issue.
