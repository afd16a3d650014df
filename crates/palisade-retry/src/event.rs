//! Events the retry layer emits to listeners
//! ([`on_event`](crate::RetryBuilder::on_event)).
//!
//! An event is only built when a listener is registered, so a layer without
//! listeners pays nothing for them. Events are emitted on the retry path only:
//! a call whose first attempt succeeds emits none.

use std::sync::Arc;
use std::time::Duration;

/// Something the retry layer did for one call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// An attempt failed and another will be made after `delay`.
    Retry {
        /// The layer's name.
        name: Arc<str>,
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// Why the previous attempt counts as failed.
        reason: RetryReason,
        /// The wait before it.
        delay: Duration,
        /// `true` if `delay` came from the server's `Retry-After`.
        retry_after: bool,
    },
    /// The last attempt failed and no other will be made; its outcome is
    /// returned to the caller.
    Stopped {
        /// The layer's name.
        name: Arc<str>,
        /// How many attempts were made.
        attempts: u32,
        /// Why no other attempt is made.
        reason: StopReason,
    },
    /// A call succeeded after at least one retry.
    Recovered {
        /// The layer's name.
        name: Arc<str>,
        /// How many attempts it took.
        attempts: u32,
    },
}

/// Why a failed attempt is retried: the `reason` label of
/// `palisade_retry_retries_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// The inner service returned an error (a transport error, say).
    Error,
    /// The attempt ran into the per-attempt timeout.
    Timeout,
    /// The inner service answered, and the classifier counts the answer as a
    /// failure (for HTTP: 429, 502, 503, 504 by default).
    Response,
}

impl RetryReason {
    /// The metric label: `error`, `timeout`, `response`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Response => "response",
        }
    }
}

/// Why a failed call was not retried (again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// `max_attempts` attempts were made.
    MaxAttempts,
    /// The retry budget is spent.
    BudgetExhausted,
    /// The next attempt could not start before the overall deadline.
    Deadline,
    /// The server's `Retry-After` asks for a longer wait than
    /// `max_retry_after` allows (or than the clock can represent).
    RetryAfterTooLong,
    /// The request cannot be replayed: a non-idempotent method without an
    /// opt-in and an idempotency key, or a body too large or too long to
    /// buffer (feature `http`).
    NotReplayable,
    /// A circuit breaker or bulkhead further down refused the call: an
    /// overload signal, never retried.
    Rejected,
    /// The backoff's delay ends at an instant the clock cannot represent.
    /// The builder bounds every delay to [`MAX_DURATION`](crate::MAX_DURATION),
    /// so this takes a clock near the end of its range; a delay that long is
    /// never taken to mean "retry now".
    DelayTooLong,
}

impl StopReason {
    /// A lowercase label for logs: `max_attempts`, `budget_exhausted`,
    /// `deadline`, `retry_after_too_long`, `not_replayable`, `rejected`,
    /// `delay_too_long`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max_attempts",
            Self::BudgetExhausted => "budget_exhausted",
            Self::Deadline => "deadline",
            Self::RetryAfterTooLong => "retry_after_too_long",
            Self::NotReplayable => "not_replayable",
            Self::Rejected => "rejected",
            Self::DelayTooLong => "delay_too_long",
        }
    }
}
