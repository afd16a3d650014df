//! Typed errors: [`CommandError`] (command handling),
//! [`ConflictsExhausted`], [`EncodeError`], [`ProjectionError`] (the
//! read-model database) and [`WaitTimeout`] (read-your-writes).

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;
use palisade_event_store::EventStoreError;
use palisade_event_store::error::{Conflict, DecodeError};

/// Why a command failed. `E` is the aggregate's domain error.
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command (nothing written): a 409 or 422
    /// with the domain's reason.
    Rejected(E),
    /// Other writers kept appending to the stream: the command was decided
    /// `max_conflict_retries + 1` times and each append found a newer
    /// version. Nothing written; trying later may succeed.
    Conflict(ConflictsExhausted),
    /// A stored event of the stream does not decode as the aggregate's
    /// event (an unknown type, a payload no upcaster fixed): names the
    /// stream, version and type. Nothing written.
    Decode(DecodeError),
    /// A decided event does not serialize. Nothing written.
    Encode(EncodeError),
    /// The store failed or refused the append (a [`StoreError`]: the
    /// database is down, transient; a duplicate or invalid event id).
    /// Nothing written.
    ///
    /// [`StoreError`]: palisade_event_store::error::StoreError
    Store(EventStoreError),
}

impl<E> CommandError<E> {
    /// The domain error, if the aggregate refused the command.
    pub fn as_rejected(&self) -> Option<&E> {
        match self {
            Self::Rejected(e) => Some(e),
            _ => None,
        }
    }

    /// Whether sending the same command again may succeed unchanged: the
    /// store failed, or conflicts ran out.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Conflict(_) => true,
            Self::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl<E: fmt::Display> fmt::Display for CommandError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(e) => write!(f, "command rejected: {e}"),
            Self::Conflict(e) => e.fmt(f),
            Self::Decode(e) => e.fmt(f),
            Self::Encode(e) => e.fmt(f),
            Self::Store(e) => e.fmt(f),
        }
    }
}

impl<E: Error + 'static> Error for CommandError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Rejected(e) => Some(e),
            Self::Conflict(e) => Some(e),
            Self::Decode(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Store(e) => Some(e),
        }
    }
}

impl<E> From<EventStoreError> for CommandError<E> {
    fn from(e: EventStoreError) -> Self {
        Self::Store(e)
    }
}

/// A command still conflicted after its last reload.
#[derive(Debug)]
pub struct ConflictsExhausted {
    attempts: u32,
    last: Conflict,
}

impl ConflictsExhausted {
    pub(crate) fn new(attempts: u32, last: Conflict) -> Self {
        Self { attempts, last }
    }

    /// How many times the command was decided.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The stream.
    #[must_use]
    pub fn stream(&self) -> &str {
        self.last.stream()
    }

    /// The stream's version at the last conflict.
    #[must_use]
    pub fn actual(&self) -> u64 {
        self.last.actual()
    }
}

impl fmt::Display for ConflictsExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream {:?} kept changing: {} decisions conflicted",
            self.last.stream(),
            self.attempts
        )
    }
}

impl Error for ConflictsExhausted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.last)
    }
}

/// A decided event (or a snapshot's state) did not serialize to JSON.
#[derive(Debug)]
pub struct EncodeError {
    event_type: &'static str,
    source: serde_json::Error,
}

impl EncodeError {
    pub(crate) fn new(event_type: &'static str, source: serde_json::Error) -> Self {
        Self { event_type, source }
    }

    /// The event type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        self.event_type
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {:?} does not serialize", self.event_type)
    }
}

impl Error for EncodeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// The read-model database failed (connecting, migrating, reading the
/// checkpoint or the parked events, rebuilding).
#[derive(Debug)]
pub struct ProjectionError {
    projection: Arc<str>,
    operation: &'static str,
    source: BoxError,
}

impl ProjectionError {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn new(
        projection: &Arc<str>,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        Self {
            projection: Arc::clone(projection),
            operation,
            source: source.into(),
        }
    }

    /// The projection.
    #[must_use]
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// What failed (`migrate`, `read checkpoint`, `rebuild`, ...).
    #[must_use]
    pub fn operation(&self) -> &str {
        self.operation
    }
}

impl fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projection {:?}: {} failed",
            self.projection, self.operation
        )
    }
}

impl Error for ProjectionError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// A read-your-writes wait ran out: the projection's checkpoint did not
/// reach the position in time (the projection lags, is stopped, or its
/// runner is in another process that is down). Answer 503 with
/// `Retry-After`, or read the possibly stale model and say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    projection: Arc<str>,
    position: u64,
    reached: u64,
    waited: Duration,
}

impl WaitTimeout {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn new(
        projection: &Arc<str>,
        position: u64,
        reached: u64,
        waited: Duration,
    ) -> Self {
        Self {
            projection: Arc::clone(projection),
            position,
            reached,
            waited,
        }
    }

    /// The projection.
    #[must_use]
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// The position waited for.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The checkpoint when the wait ended.
    #[must_use]
    pub fn reached(&self) -> u64 {
        self.reached
    }

    /// How long it waited.
    #[must_use]
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projection {:?} did not reach position {} within {:?} (at {})",
            self.projection, self.position, self.waited, self.reached
        )
    }
}

impl Error for WaitTimeout {}
