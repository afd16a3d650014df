//! Partition keys: which pool a request draws its permit from.
//!
//! A partitioned bulkhead gives every key its own pool with its own limit, so
//! a noisy tenant, route or downstream exhausts only its own capacity. Keys
//! are strings, borrowed from the request when they can be (a header value, a
//! path): looking up an existing partition allocates nothing. See
//! [`BulkheadBuilder::partition_by`](crate::BulkheadBuilder::partition_by) for
//! closures and, with the `http` feature, `palisade_bulkhead::http` for ready
//! keys (a header, the path or its first segments, the authority).
//!
//! A request whose key is `None` uses the [`UNKEYED`] pool. When
//! [`max_partitions`](crate::BulkheadBuilder::max_partitions) keys are live,
//! a request with a new key uses the [`OVERFLOW`] pool, as does a key longer
//! than [`MAX_KEY_LEN`] bytes.

use std::borrow::Cow;
use std::fmt;

/// The partition label of the pool used by requests without a key.
pub const UNKEYED: &str = "(unkeyed)";

/// The partition label of the shared pool used by new keys once
/// `max_partitions` keys are live, and by over-long keys.
pub const OVERFLOW: &str = "(overflow)";

/// Keys longer than this many bytes are not given a partition of their own:
/// such requests share the [`OVERFLOW`] pool. A key is kept in memory and
/// used as a metric label, so its size is bounded.
pub const MAX_KEY_LEN: usize = 256;

/// Picks the partition of a request.
///
/// Implemented by [`Unpartitioned`], by the closures given to
/// [`BulkheadBuilder::partition_by`](crate::BulkheadBuilder::partition_by)
/// (as [`KeyFn`]) and, with the `http` feature, by the keys in
/// `palisade_bulkhead::http`. Called once per call: keep it cheap, and borrow
/// from the request rather than allocate.
pub trait Partition<Req> {
    /// The partition key of `req`, or `None` for the [`UNKEYED`] pool.
    fn key<'r>(&self, req: &'r Req) -> Option<Cow<'r, str>>;
}

/// No partitions: every call uses the one pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpartitioned;

impl<Req> Partition<Req> for Unpartitioned {
    #[inline]
    fn key<'r>(&self, _: &'r Req) -> Option<Cow<'r, str>> {
        None
    }
}

/// A closure used as a partition key; see
/// [`BulkheadBuilder::partition_by`](crate::BulkheadBuilder::partition_by).
#[derive(Clone, Copy)]
pub struct KeyFn<F>(pub(crate) F);

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFn")
    }
}

impl<Req, F> Partition<Req> for KeyFn<F>
where
    F: for<'r> Fn(&'r Req) -> Option<Cow<'r, str>>,
{
    #[inline]
    fn key<'r>(&self, req: &'r Req) -> Option<Cow<'r, str>> {
        (self.0)(req)
    }
}
