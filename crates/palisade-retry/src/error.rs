//! Errors the retry layer adds.
//!
//! Everything else the layer returns is the last attempt's own outcome,
//! unchanged apart from being boxed: `is_caused_by` finds the inner error as
//! it would without the layer. Every error the layer makes itself is one of
//! the types here, never a string.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// One attempt took longer than the per-attempt timeout
/// ([`attempt_timeout`](crate::RetryBuilder::attempt_timeout)).
///
/// It is the attempt's outcome, made by the layer itself (so the classifier,
/// which judges the inner service's results, does not see it): retried as a
/// failure unless
/// [`retry_on_attempt_timeout(false)`](crate::RetryBuilder::retry_on_attempt_timeout),
/// and returned if it was the last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptTimedOut {
    attempt: u32,
    after: Duration,
}

impl AttemptTimedOut {
    /// Attempt `attempt` (1-based) was cut off after `after`.
    #[must_use]
    pub const fn new(attempt: u32, after: Duration) -> Self {
        Self { attempt, after }
    }

    /// Which attempt timed out (1 is the first).
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The timeout it ran into.
    #[must_use]
    pub const fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {} timed out after {:?}",
            self.attempt, self.after
        )
    }
}

impl Error for AttemptTimedOut {}

/// The overall deadline ([`deadline`](crate::RetryBuilder::deadline)) passed
/// while an attempt was in flight or the service was not ready for the next
/// one.
///
/// When the deadline would pass during a backoff, no retry is made and the
/// last attempt's outcome is returned instead of this error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineExceeded {
    attempts: u32,
    deadline: Duration,
}

impl DeadlineExceeded {
    /// The deadline `deadline` passed after `attempts` attempts were started.
    #[must_use]
    pub const fn new(attempts: u32, deadline: Duration) -> Self {
        Self { attempts, deadline }
    }

    /// How many attempts were started.
    #[must_use]
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The overall deadline.
    #[must_use]
    pub const fn deadline(&self) -> Duration {
        self.deadline
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry deadline of {:?} exceeded after {} attempt{}",
            self.deadline,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )
    }
}

impl Error for DeadlineExceeded {}

/// The copy of the request kept for the next attempt was gone when that
/// attempt was due, so the call ends with this error instead.
///
/// The layer only retries while it holds a copy, so this does not happen; it
/// is the typed answer should that invariant ever break, where a panic would
/// take the caller's task down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLost {
    attempt: u32,
}

impl RequestLost {
    /// The copy for attempt `attempt` (1-based) was missing.
    #[must_use]
    pub const fn new(attempt: u32) -> Self {
        Self { attempt }
    }

    /// The attempt that could not be sent.
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl fmt::Display for RequestLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry: no copy of the request left to send attempt {}",
            self.attempt
        )
    }
}

impl Error for RequestLost {}

/// The request's deadline (the caller's, carried with the request) leaves no
/// room for another attempt: the backoff before it would end past the
/// deadline. The last attempt's error is the [`source`](Error::source), so
/// `is_caused_by` finds it as it would without the layer.
///
/// A last attempt that failed with a response (a `503`) is returned as that
/// response; this error is for one that failed with an error.
#[derive(Debug)]
pub struct NoTimeToRetry {
    attempts: u32,
    left: Duration,
    source: palisade_core::BoxError,
}

impl NoTimeToRetry {
    /// After `attempts` attempts, `left` remained of the deadline; the last
    /// one failed with `source`.
    #[must_use]
    pub fn new(attempts: u32, left: Duration, source: palisade_core::BoxError) -> Self {
        Self {
            attempts,
            left,
            source,
        }
    }

    /// How many attempts were made.
    #[must_use]
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// What was left of the deadline when retrying stopped.
    #[must_use]
    pub const fn left(&self) -> Duration {
        self.left
    }
}

impl fmt::Display for NoTimeToRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not retried: the deadline leaves {:?}, too little for another attempt after {} attempt{}: {}",
            self.left,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.source
        )
    }
}

impl Error for NoTimeToRetry {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_without_period() {
        let t = AttemptTimedOut::new(2, Duration::from_millis(300));
        assert_eq!(t.to_string(), "attempt 2 timed out after 300ms");
        let d = DeadlineExceeded::new(1, Duration::from_secs(2));
        assert_eq!(
            d.to_string(),
            "retry deadline of 2s exceeded after 1 attempt"
        );
        let d = DeadlineExceeded::new(3, Duration::from_secs(2));
        assert_eq!(
            d.to_string(),
            "retry deadline of 2s exceeded after 3 attempts"
        );
        let lost = RequestLost::new(2);
        assert_eq!(lost.attempt(), 2);
        assert_eq!(
            lost.to_string(),
            "retry: no copy of the request left to send attempt 2"
        );
    }
}
