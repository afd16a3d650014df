//! [`CacheEvent`]: what a cache tells its listeners, and the vocabulary of
//! how a request was served.

use std::sync::Arc;
use std::time::Duration;

use crate::state::NotStored;

/// Why a stale entry was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StaleReason {
    /// Within `stale_while_revalidate`: served at once while one background
    /// refresh runs.
    Revalidating,
    /// The backend failed (an error, or a 500/502/503/504 answer).
    Error,
    /// The backend timed out (a `tokio` or `tower` timeout, or a
    /// `palisade_core::deadline::DeadlineExpired`, in the error's chain).
    Timeout,
    /// A resilience layer below refused the call (an open breaker, a full
    /// bulkhead, a rate limit: [`palisade_core::is_rejection`]).
    Rejected,
}

impl StaleReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 4] = [
        Self::Revalidating,
        Self::Error,
        Self::Timeout,
        Self::Rejected,
    ];

    /// The metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Revalidating => "revalidating",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Rejected => "rejected",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// How one request was answered; HTTP answers carry it in the
/// `x-palisade-cache` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Served {
    /// From a fresh entry.
    Hit,
    /// From the backend (the entry was missing, expired, or had to be
    /// revalidated and changed).
    Miss,
    /// From the backend call of another request for the same key, which
    /// this one waited for.
    Coalesced,
    /// From a stale entry the backend confirmed unchanged (`304 Not
    /// Modified` to the cache's `If-None-Match`).
    Revalidated,
    /// From a stale entry.
    Stale(StaleReason),
    /// Not a cacheable request: straight to the backend.
    Bypass,
}

impl Served {
    /// The label (`hit`, `miss`, `coalesced`, `revalidated`, `stale`,
    /// `bypass`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Revalidated => "revalidated",
            Self::Stale(_) => "stale",
            Self::Bypass => "bypass",
        }
    }
}

/// An event of one cache, handed to the listeners added with
/// [`CacheBuilder::on_event`](crate::CacheBuilder::on_event).
///
/// Events are built only when someone listens, so a cache without listeners
/// pays nothing for them. Keys are rendered as text (`key`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheEvent {
    /// A request was answered from a fresh entry.
    Hit {
        /// The cache's name.
        name: Arc<str>,
        /// The entry's key.
        key: String,
    },
    /// A request went to the backend (or the shared tier) for its key.
    Miss {
        /// The cache's name.
        name: Arc<str>,
        /// The key.
        key: String,
    },
    /// A stale entry was served.
    StaleServed {
        /// The cache's name.
        name: Arc<str>,
        /// The key.
        key: String,
        /// Why.
        reason: StaleReason,
    },
    /// A request joined another request's backend call for its key.
    Coalesced {
        /// The cache's name.
        name: Arc<str>,
        /// The key.
        key: String,
    },
    /// A response was stored.
    Stored {
        /// The cache's name.
        name: Arc<str>,
        /// The key.
        key: String,
        /// Its weight in bytes.
        bytes: u64,
        /// How long it is fresh.
        fresh_for: Duration,
    },
    /// A response was not stored.
    NotStored {
        /// The cache's name.
        name: Arc<str>,
        /// The key.
        key: String,
        /// Why.
        reason: NotStored,
    },
    /// A background refresh ended.
    Refreshed {
        /// The cache's name.
        name: Arc<str>,
        /// The key.
        key: String,
        /// `true` if it stored a new (or revalidated) entry.
        success: bool,
    },
    /// Entries were invalidated through the handle.
    Invalidated {
        /// The cache's name.
        name: Arc<str>,
        /// The key or prefix asked for.
        pattern: String,
        /// `true` for a prefix.
        prefix: bool,
        /// Entries removed from the process tier.
        removed: u64,
    },
    /// The shared tier (Redis) failed or was skipped by its open breaker;
    /// the process tier carries on alone.
    SharedTierUnavailable {
        /// The cache's name.
        name: Arc<str>,
        /// What went wrong, as text.
        error: String,
    },
}
