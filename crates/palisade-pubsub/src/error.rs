//! The errors this crate adds. Every type is an opaque struct with a
//! lowercase `Display` and, when it wraps a cause, a `source()`.
//!
//! A handler that wants a message dead-lettered at once, without retries,
//! returns (or wraps its error in) [`Terminal`]. The rejections a handler's
//! stack may raise ([`CircuitOpen`](palisade_core::CircuitOpen),
//! [`BulkheadFull`](palisade_core::BulkheadFull),
//! [`RateLimited`](palisade_core::RateLimited)) are palisade-core's.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use palisade_core::BoxError;

/// A subject or pattern is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSubject {
    subject: String,
    reason: Cow<'static, str>,
}

impl InvalidSubject {
    pub(crate) fn new(subject: &str, reason: impl Into<Cow<'static, str>>) -> Self {
        let mut subject = subject.to_owned();
        if subject.len() > 80 {
            let mut cut = 77;
            while !subject.is_char_boundary(cut) {
                cut -= 1;
            }
            subject.truncate(cut);
            subject.push_str("...");
        }
        Self {
            subject,
            reason: reason.into(),
        }
    }

    /// The subject as given (cut to 80 bytes).
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// What is wrong with it.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid subject {:?}: {}", self.subject, self.reason)
    }
}

impl Error for InvalidSubject {}

/// A message could not be built: a bad subject, id, header, or a payload the
/// serde helper could not encode.
#[derive(Debug)]
pub struct InvalidMessage {
    field: &'static str,
    reason: Cow<'static, str>,
    source: Option<BoxError>,
}

impl InvalidMessage {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
            source: None,
        }
    }

    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Which part is invalid: `subject`, `id`, `header`, `correlation_id` or
    /// `payload`.
    #[must_use]
    pub const fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid message {}: {}", self.field, self.reason)
    }
}

impl Error for InvalidMessage {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl From<InvalidSubject> for InvalidMessage {
    fn from(err: InvalidSubject) -> Self {
        Self::new("subject", err.to_string())
    }
}

/// Why a publish failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The message is larger than the backend accepts.
    TooLarge,
    /// The in-process bus was closed.
    Closed,
    /// A subscriber of an in-process bus with the `Wait` policy had no room
    /// within the publish timeout. Nothing was delivered to anyone.
    Full,
    /// The broker did not confirm the message in time, or is unreachable.
    /// The message may or may not have been stored: publish it again with the
    /// same id (de-duplication makes that safe).
    Unavailable,
    /// The broker refused the message (no stream captures the subject, a
    /// limit was reached, a server error).
    Rejected,
}

impl PublishErrorKind {
    /// A label: `too_large`, `closed`, `full`, `unavailable`, `rejected`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Closed => "closed",
            Self::Full => "full",
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
        }
    }
}

/// A message was not published.
#[derive(Debug)]
pub struct PublishError {
    kind: PublishErrorKind,
    subject: Box<str>,
    detail: Cow<'static, str>,
    source: Option<BoxError>,
}

impl PublishError {
    #[cfg_attr(not(any(feature = "memory", feature = "nats")), allow(dead_code))]
    pub(crate) fn new(
        kind: PublishErrorKind,
        subject: &str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            kind,
            subject: subject.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Why it failed.
    #[must_use]
    pub const fn kind(&self) -> PublishErrorKind {
        self.kind
    }

    /// The subject the message was for.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `true` when publishing the same message again may succeed (the broker
    /// was unavailable, or a subscriber was full).
    #[must_use]
    pub const fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            PublishErrorKind::Unavailable | PublishErrorKind::Full
        )
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "publish to `{}` failed ({}): {}",
            self.subject,
            self.kind.as_str(),
            self.detail
        )
    }
}

impl Error for PublishError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Why a subscription yielded an error instead of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubscribeErrorKind {
    /// The subscriber was too slow: this many messages were dropped (oldest
    /// first) from its buffer since the last report. The subscription goes on.
    Lagged(u64),
    /// The broker could not be reached or the consumer could not be created.
    Unavailable,
    /// The broker refused the subscription (a bad stream or consumer setting).
    Rejected,
}

/// A subscription could not be made, or reports a gap.
#[derive(Debug)]
pub struct SubscribeError {
    kind: SubscribeErrorKind,
    detail: Cow<'static, str>,
    source: Option<BoxError>,
}

impl SubscribeError {
    #[cfg_attr(not(any(feature = "memory", feature = "nats")), allow(dead_code))]
    pub(crate) fn new(kind: SubscribeErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            source: None,
        }
    }

    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What happened.
    #[must_use]
    pub const fn kind(&self) -> SubscribeErrorKind {
        self.kind
    }

    /// Messages dropped for this subscriber, when that is the error.
    #[must_use]
    pub const fn lagged(&self) -> Option<u64> {
        match self.kind {
            SubscribeErrorKind::Lagged(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SubscribeErrorKind::Lagged(n) => {
                write!(f, "subscriber lagged: {n} messages dropped")
            }
            SubscribeErrorKind::Unavailable => {
                write!(f, "subscription unavailable: {}", self.detail)
            }
            SubscribeErrorKind::Rejected => write!(f, "subscription refused: {}", self.detail),
        }
    }
}

impl Error for SubscribeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// An acknowledgement (ack, nak, progress, term) did not reach the broker.
/// The broker will redeliver the message after its ack wait.
#[derive(Debug)]
pub struct AckError {
    source: BoxError,
}

impl AckError {
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn new(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acknowledgement failed: {}", self.source)
    }
}

impl Error for AckError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// A handler error that must not be retried: the consumer dead-letters the
/// message at once with this reason. Found anywhere in an error's source
/// chain.
///
/// ```
/// use palisade_core::{is_caused_by, BoxError};
/// use palisade_pubsub::error::Terminal;
///
/// let err: BoxError = Terminal::new("order 17 has no lines").into();
/// assert!(is_caused_by::<Terminal>(&*err));
/// assert_eq!(err.to_string(), "terminal failure: order 17 has no lines");
/// ```
#[derive(Debug)]
pub struct Terminal {
    reason: Cow<'static, str>,
    source: Option<BoxError>,
}

impl Terminal {
    /// A terminal failure described by `reason`.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
            source: None,
        }
    }

    /// Marks `error` as terminal; its `Display` is the reason.
    pub fn wrap(error: impl Into<BoxError>) -> Self {
        let source = error.into();
        Self {
            reason: source.to_string().into(),
            source: Some(source),
        }
    }

    /// Why the message cannot be handled.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Terminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "terminal failure: {}", self.reason)
    }
}

impl Error for Terminal {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// An idempotent consumer found a handler already running for this message
/// id (a concurrent redelivery). Retryable: the message is redelivered later
/// and then skipped if that handler succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlreadyInProgress {
    id: Box<str>,
}

impl AlreadyInProgress {
    pub(crate) fn new(id: &str) -> Self {
        Self { id: id.into() }
    }

    /// The message id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for AlreadyInProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message {:?} is already being handled", self.id)
    }
}

impl Error for AlreadyInProgress {}

/// A store (checkpoints, inbox, outbox source) failed.
#[derive(Debug)]
pub struct StoreError {
    what: &'static str,
    source: BoxError,
}

impl StoreError {
    /// `what` failed (`load checkpoint`, `save checkpoint`, `read events`,
    /// `inbox insert`, ...) because of `source`.
    pub fn new(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            what,
            source: source.into(),
        }
    }

    /// The operation that failed.
    #[must_use]
    pub const fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, self.source)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}
