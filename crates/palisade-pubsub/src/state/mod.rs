//! The pure parts: subject matching and the de-duplication set. Synchronous,
//! no I/O, clock passed in.

pub(crate) mod dedup;
pub(crate) mod subject;
