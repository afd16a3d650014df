//! The errors this crate adds: opaque structs with a lowercase `Display`
//! and, when they wrap a cause, a `source()`, gathered in [`EventStoreError`]
//! for the store's methods.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

use palisade_core::BoxError;
use serde::de::DeserializeOwned;

use crate::envelope::{ExpectedVersion, RecordedEvent, UpcastFailure};

/// An append's expected version did not match the stream: nothing of the
/// batch was written. Reload the stream, decide again, retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    stream: String,
    expected: ExpectedVersion,
    actual: u64,
}

impl Conflict {
    pub(crate) fn new(stream: &str, expected: ExpectedVersion, actual: u64) -> Self {
        Self {
            stream: stream.to_owned(),
            expected,
            actual,
        }
    }

    /// The stream appended to.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// What the append expected.
    #[must_use]
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }

    /// The stream's version when the append was refused (`0`: no stream).
    #[must_use]
    pub fn actual(&self) -> u64 {
        self.actual
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = match self.expected {
            ExpectedVersion::Any => Cow::Borrowed("any version"),
            ExpectedVersion::NoStream => Cow::Borrowed("no stream"),
            ExpectedVersion::Exact(v) => Cow::Owned(format!("version {v}")),
        };
        write!(
            f,
            "stream {:?} is at version {}, the append expected {expected}",
            self.stream, self.actual
        )
    }
}

impl Error for Conflict {}

/// An append's event ids clash with stored ones in a way that is not a
/// plain retry: the batch mixes stored and new ids, an id is stored in
/// another stream or at other versions, or an id is repeated in the batch.
/// Nothing of the batch was written.
///
/// A batch whose ids are *all* stored, in this stream, in the same order, is
/// a retry and succeeds without writing (see
/// [`AppendResult::already_stored`](crate::AppendResult::already_stored)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateEvent {
    event_id: String,
    reason: &'static str,
}

impl DuplicateEvent {
    pub(crate) fn new(event_id: &str, reason: &'static str) -> Self {
        Self {
            event_id: event_id.to_owned(),
            reason,
        }
    }

    /// The first offending event id.
    #[must_use]
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// Why the batch was refused.
    #[must_use]
    pub fn reason(&self) -> &str {
        self.reason
    }
}

impl fmt::Display for DuplicateEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event id {:?} refused: {}", self.event_id, self.reason)
    }
}

impl Error for DuplicateEvent {}

/// An append was refused before reaching the store: an empty or too long
/// stream name, event id or type, or too many events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidEvent {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl InvalidEvent {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The offending field (`stream`, `id`, `event_type`, `events`).
    #[must_use]
    pub fn field(&self) -> &str {
        self.field
    }

    /// What is wrong with it.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl Error for InvalidEvent {}

/// The backend failed (the database is down, a statement failed, the
/// stored JSON is corrupt). An append that fails so wrote nothing: it ran
/// in one transaction.
#[derive(Debug)]
pub struct StoreError {
    operation: &'static str,
    source: BoxError,
}

impl StoreError {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn new(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            operation,
            source: source.into(),
        }
    }

    /// What the store was doing (`append`, `read stream`, `open`, ...).
    #[must_use]
    pub fn operation(&self) -> &str {
        self.operation
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event store {} failed", self.operation)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// A stored payload did not decode as the asked type.
#[derive(Debug)]
pub struct DecodeError {
    stream: String,
    version: u64,
    event_type: String,
    schema_version: u32,
    /// `true`: an upcaster failed (the source is its error); `false`: the
    /// payload did not deserialize (the source is serde's).
    upcast: bool,
    source: BoxError,
}

impl DecodeError {
    pub(crate) fn new(
        stream: &str,
        version: u64,
        event_type: &str,
        schema_version: u32,
        source: serde_json::Error,
    ) -> Self {
        Self {
            stream: stream.to_owned(),
            version,
            event_type: event_type.to_owned(),
            schema_version,
            upcast: false,
            source: Box::new(source),
        }
    }

    /// `true` when an upcaster failed on the event (rather than the
    /// payload not fitting the type it was decoded into).
    #[must_use]
    pub fn is_upcast_failure(&self) -> bool {
        self.upcast
    }

    /// The event's stream.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The event's version in its stream.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The event's type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The event's schema version.
    #[must_use]
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

impl RecordedEvent {
    /// The payload decoded as `T`.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the stream, version and type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        if let Some(failure) = &self.upcast_failure {
            return Err(DecodeError {
                stream: self.stream.to_string(),
                version: self.version,
                event_type: self.event_type.to_string(),
                schema_version: self.schema_version,
                upcast: true,
                source: Box::new(UpcastFailed(Arc::clone(failure))),
            });
        }
        T::deserialize(&*self.payload).map_err(|e| {
            DecodeError::new(
                &self.stream,
                self.version,
                &self.event_type,
                self.schema_version,
                e,
            )
        })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.upcast { "upcast" } else { "decode" };
        write!(
            f,
            "event {:?} v{} of stream {:?} at version {} does not {what}",
            self.event_type, self.schema_version, self.stream, self.version
        )
    }
}

impl Error for DecodeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// The upcaster's failure as a `DecodeError`'s source (shared by every clone
/// of the event).
#[derive(Debug)]
struct UpcastFailed(Arc<UpcastFailure>);

impl fmt::Display for UpcastFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for UpcastFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0.source)
    }
}

/// Every error of the store's methods.
#[derive(Debug)]
#[non_exhaustive]
pub enum EventStoreError {
    /// The expected version did not match.
    Conflict(Conflict),
    /// Event ids clash with stored ones (not a plain retry).
    Duplicate(DuplicateEvent),
    /// The input was refused before reaching the store.
    Invalid(InvalidEvent),
    /// The backend failed.
    Store(StoreError),
}

impl EventStoreError {
    /// The conflict, if this is one.
    #[must_use]
    pub fn as_conflict(&self) -> Option<&Conflict> {
        match self {
            Self::Conflict(c) => Some(c),
            _ => None,
        }
    }

    /// Whether trying again unchanged may succeed: a backend failure
    /// (the append was not written). A conflict needs a new decision, not a
    /// plain retry.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(_))
    }
}

impl fmt::Display for EventStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict(e) => e.fmt(f),
            Self::Duplicate(e) => e.fmt(f),
            Self::Invalid(e) => e.fmt(f),
            Self::Store(e) => e.fmt(f),
        }
    }
}

impl Error for EventStoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Conflict(e) => Some(e),
            Self::Duplicate(e) => Some(e),
            Self::Invalid(e) => Some(e),
            Self::Store(e) => Some(e),
        }
    }
}

impl From<Conflict> for EventStoreError {
    fn from(e: Conflict) -> Self {
        Self::Conflict(e)
    }
}

impl From<DuplicateEvent> for EventStoreError {
    fn from(e: DuplicateEvent) -> Self {
        Self::Duplicate(e)
    }
}

impl From<InvalidEvent> for EventStoreError {
    fn from(e: InvalidEvent) -> Self {
        Self::Invalid(e)
    }
}

impl From<StoreError> for EventStoreError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
