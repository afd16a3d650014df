//! Scatter-gather for tower services: call many branches concurrently, merge, and return partial results.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod branch;
pub mod error;
pub mod future;
mod gather;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod merge;
mod metrics;
mod service;
mod slots;

pub use branch::Branch;
pub use error::{
    BranchError, BranchErrorKind, DeadlineElapsed, GatherError, NothingSucceeded,
    RequiredBranchFailed,
};
pub use gather::{BranchResult, Gathered, IntoIter};
pub use merge::{JsonMerge, Merge, MergeFn};
pub use service::{FanOut, FanOutBuilder};
