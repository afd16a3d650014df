//! The events a rate limiter hands its listeners
//! ([`RateLimitBuilder::on_event`](crate::RateLimitBuilder::on_event)).

use std::sync::Arc;
use std::time::Duration;

use crate::error::KeyProblem;
use crate::settings::{FailureMode, Limit};

/// Something a rate limiter did. Built only when a listener is registered.
///
/// Events name a key's *class* (its tier), never the key itself: keys can be
/// secrets (API keys) and are unbounded in number.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RateLimitEvent {
    /// A call was refused for being over its limit.
    Limited {
        /// The limiter's name.
        name: Arc<str>,
        /// The tier whose limit refused it.
        class: Arc<str>,
        /// When a call of that key would be admitted.
        retry_after: Duration,
    },
    /// A call was admitted after waiting for its slot (throttling).
    Delayed {
        /// The limiter's name.
        name: Arc<str>,
        /// The key's tier.
        class: Arc<str>,
        /// How long it waits.
        delay: Duration,
    },
    /// A request's key could not be used; the request was refused.
    InvalidKey {
        /// The limiter's name.
        name: Arc<str>,
        /// What was wrong.
        problem: KeyProblem,
    },
    /// The key table is full: new keys share one overflow allowance until
    /// idle keys are evicted. Reported once each time it fills up.
    KeysFull {
        /// The limiter's name.
        name: Arc<str>,
        /// The table's bound.
        max_keys: usize,
    },
    /// A tier's limit was set through the handle.
    LimitChanged {
        /// The limiter's name.
        name: Arc<str>,
        /// The tier.
        class: Arc<str>,
        /// The new limit.
        limit: Limit,
    },
    /// The remote backend stopped answering: its breaker opened, and calls
    /// are decided by the failure mode until it is back.
    BackendDown {
        /// The limiter's name.
        name: Arc<str>,
        /// What applies meanwhile.
        failure_mode: FailureMode,
    },
    /// The remote backend answers again: its breaker closed.
    BackendUp {
        /// The limiter's name.
        name: Arc<str>,
    },
}
