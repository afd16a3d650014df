//! Retries for tower services: backoff with jitter, a shared retry budget, Retry-After, replayable HTTP requests.
//!
//! Under construction: see the crate's issue.
