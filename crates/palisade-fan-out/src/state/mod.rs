//! The pure parts of a gather: synchronous, no I/O, no clock, no logging or
//! metrics. The gather future (`future`) drives them.
//!
//! - `slots`: pinned storage for a gather's branch calls, one allocation per
//!   eight branches, without `unsafe`.
//! - `gather`: what a gather collected, one [`BranchResult`] per branch, as
//!   the merge sees it ([`Gathered`]).

mod gather;
mod slots;

pub(crate) use gather::ResultTable;
pub use gather::{BranchResult, Gathered, IntoIter};
pub(crate) use slots::Chunk;
