//! The envelope: what a writer hands the store ([`NewEvent`]) and what a
//! reader gets back ([`RecordedEvent`]), with its [`Metadata`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// What the caller expects of a stream's version before an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check: append whatever the stream's version.
    Any,
    /// The stream must not exist yet (version `0`).
    NoStream,
    /// The stream's last event must have this version (`Exact(0)` is
    /// [`NoStream`](Self::NoStream)).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` (`0`: no stream) satisfies this.
    #[must_use]
    pub fn matches(self, current: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == 0,
            Self::Exact(v) => current == v,
        }
    }
}

/// Correlation and causation ids, and free-form fields, stored with an event.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// The id shared by everything one request or workflow caused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the command or event that caused this event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Anything else (user, tenant, trace id): a JSON object.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// Metadata with a correlation id.
    #[must_use]
    pub fn correlated(correlation_id: impl Into<String>) -> Self {
        Self {
            correlation_id: Some(correlation_id.into()),
            ..Self::default()
        }
    }

    /// Sets the causation id.
    #[must_use]
    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    /// Adds a free-form field.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// An event to append: a client-chosen id (what makes a retried append a
/// no-op), a type, a schema version, a JSON payload and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    pub(crate) payload: serde_json::Value,
    pub(crate) metadata: Metadata,
}

impl NewEvent {
    /// An event with a JSON payload, schema version `1` and no metadata.
    ///
    /// `id` is unique across the store (a UUID, or an `Idempotency-Key`
    /// header): appending an id already stored is a no-op.
    #[must_use]
    pub fn new(
        id: impl Into<String>,
        event_type: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            id: id.into(),
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: Metadata::default(),
        }
    }

    /// An event whose payload is `payload` serialized to JSON.
    ///
    /// # Errors
    ///
    /// The `serde_json` error if `payload` does not serialize.
    pub fn json<T: Serialize + ?Sized>(
        id: impl Into<String>,
        event_type: impl Into<String>,
        payload: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::new(id, event_type, serde_json::to_value(payload)?))
    }

    /// Sets the payload's schema version (default `1`), for upcasting on read.
    #[must_use]
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The event's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event's type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }
}

/// A stored event: the envelope and its JSON payload, after the store's
/// upcasters (see [`EventStoreBuilder::upcaster`](crate::EventStoreBuilder::upcaster)).
#[derive(Clone, Debug)]
pub struct RecordedEvent {
    pub(crate) id: Arc<str>,
    pub(crate) stream: Arc<str>,
    pub(crate) version: u64,
    pub(crate) position: u64,
    pub(crate) event_type: Arc<str>,
    pub(crate) schema_version: u32,
    pub(crate) recorded_at_micros: i64,
    pub(crate) metadata: Arc<Metadata>,
    pub(crate) payload: Arc<serde_json::Value>,
    /// Set when an upcaster failed on this event: the event is as stored and
    /// [`decode`](Self::decode) reports this.
    pub(crate) upcast_failure: Option<Arc<UpcastFailure>>,
}

impl PartialEq for RecordedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.stream == other.stream
            && self.version == other.version
            && self.position == other.position
            && self.event_type == other.event_type
            && self.schema_version == other.schema_version
            && self.recorded_at_micros == other.recorded_at_micros
            && self.metadata == other.metadata
            && self.payload == other.payload
            && self.upcast_failure.is_some() == other.upcast_failure.is_some()
    }
}

impl RecordedEvent {
    /// The client-supplied event id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream the event belongs to.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Its version in the stream: `1` for the first event, contiguous.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Its position in the store's global order: `1` for the first event,
    /// increasing in commit order (see the crate docs, "Ordering").
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The event type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload's schema version.
    #[must_use]
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// When the store recorded it (the appending process's clock).
    #[must_use]
    pub fn recorded_at(&self) -> SystemTime {
        let micros = self.recorded_at_micros;
        if micros >= 0 {
            UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
        }
    }

    /// The metadata.
    #[must_use]
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The JSON payload.
    #[must_use]
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }

    /// `false` when an upcaster failed on this event: it is as stored (its
    /// old type and schema version) and [`decode`](Self::decode) fails with
    /// the upcaster's error.
    #[must_use]
    pub fn is_upcast(&self) -> bool {
        self.upcast_failure.is_none()
    }
}

/// What an append did: the stream's version after it and each event's
/// global position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub(crate) version: u64,
    pub(crate) positions: Vec<u64>,
    pub(crate) already_stored: bool,
}

impl AppendResult {
    /// The stream's version after the append (for a retried append, the
    /// version of the batch's last event).
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Each event's global position, in the batch's order.
    #[must_use]
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }

    /// The last event's global position (`None` for an empty batch).
    #[must_use]
    pub fn last_position(&self) -> Option<u64> {
        self.positions.last().copied()
    }

    /// `true` when every event was already stored (a retried append):
    /// nothing was written and the original positions are returned.
    #[must_use]
    pub fn already_stored(&self) -> bool {
        self.already_stored
    }
}

/// Microseconds since the Unix epoch, for `recorded_at`.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Why an event could not be upcast: the upcaster's own error, and the step.
#[derive(Debug)]
pub(crate) struct UpcastFailure {
    pub(crate) from_type: Arc<str>,
    pub(crate) from_version: u32,
    pub(crate) source: palisade_core::BoxError,
}

impl fmt::Display for UpcastFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the upcaster from {:?} v{} failed: {}",
            self.from_type, self.from_version, self.source
        )
    }
}

impl std::error::Error for UpcastFailure {}
