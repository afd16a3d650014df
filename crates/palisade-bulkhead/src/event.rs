//! Events a bulkhead emits to the listeners registered with
//! [`BulkheadBuilder::on_event`](crate::BulkheadBuilder::on_event).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The pool was full and the call could not wait (`max_wait` of zero, or
    /// a pool whose limit is zero).
    Full,
    /// The pool was full and `max_queue` calls were already waiting.
    QueueFull,
    /// The call waited `max_wait` without getting a permit.
    Timeout,
}

impl RejectReason {
    /// The metric label: `full`, `queue_full` or `timeout`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::QueueFull => "queue_full",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What changed a pool's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitCause {
    /// An operator, through a [`BulkheadHandle`](crate::BulkheadHandle).
    Handle,
    /// The adaptive limiter, from observed latency and errors.
    Adaptive,
}

impl LimitCause {
    /// A label: `handle` or `adaptive`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Handle => "handle",
            Self::Adaptive => "adaptive",
        }
    }
}

/// Something a bulkhead did. Built only when a listener is registered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// A call was refused.
    Rejected {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The partition whose pool was full (`None` for an unpartitioned
        /// bulkhead).
        partition: Option<Arc<str>>,
        /// Why.
        reason: RejectReason,
        /// How long the call waited first (`None`: refused at once).
        waited: Option<Duration>,
    },
    /// A pool's limit changed.
    LimitChanged {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The partition, if the pool is one.
        partition: Option<Arc<str>>,
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
        /// Who changed it.
        cause: LimitCause,
    },
    /// A partition's pool was created for a key seen for the first time (or
    /// again after its pool was reclaimed).
    PartitionCreated {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The partition key.
        partition: Arc<str>,
    },
    /// An idle partition's pool was reclaimed.
    PartitionReclaimed {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The partition key.
        partition: Arc<str>,
    },
}
