//! Retries for tower services: backoff with jitter, a shared retry budget, Retry-After, replayable HTTP requests.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod budget;
pub mod error;
pub mod event;
pub mod future;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod kind;
mod layer;
mod metrics;
mod rng;
mod service;

pub use backoff::{Backoff, Jitter};
pub use budget::{BudgetSnapshot, RetryBudget, RetryBudgetBuilder};
pub use error::{AttemptTimedOut, DeadlineExceeded};
pub use event::{RetryEvent, RetryReason, StopReason};
pub use layer::{RetryBuilder, RetryLayer};
pub use palisade_core::{BulkheadFull, CircuitOpen};
pub use service::Retry;
