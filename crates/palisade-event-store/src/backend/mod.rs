//! The storage behind an [`EventStore`](crate::EventStore): the [`Backend`]
//! trait, one module per backend, and [`AnyBackend`], the one a URL selects.
//!
//! Every backend applies the same rules (the crate's `state` module) and
//! passes the same conformance suite (`tests/conformance/`):
//!
//! - an append is one transaction: all of the batch or none of it;
//! - the expected version is checked, and positions allocated, while the
//!   appender holds the store's single write lock, so positions become
//!   visible in order (gap-safe reads, see the crate docs, "Ordering");
//! - a batch whose ids are all stored (in this stream, in this order) is a
//!   retry: nothing is written and the original positions are returned.

use std::future::Future;

use crate::envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::error::{EventStoreError, StoreError};
use crate::settings::{BackendKind, EventStoreSettings};
use crate::snapshot::Snapshot;

pub mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

/// Storage for events. Implemented by [`memory::MemoryBackend`],
/// `sqlite::SqliteBackend`, `postgres::PgBackend` and [`AnyBackend`]; a
/// CQRS layer or an outbox is generic over it.
///
/// Versions start at `1` (`0`: no stream); positions start at `1` (`0`:
/// before the first event).
pub trait Backend: Send + Sync + 'static {
    /// What the store's snapshot names this backend: `memory`, `sqlite`,
    /// `postgres`; `custom` unless a backend says otherwise.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Appends `events` to `stream` if its version matches `expected`, in one
    /// transaction.
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<AppendResult, EventStoreError>> + Send;

    /// Up to `max` events of `stream` from version `from` (inclusive), oldest
    /// first.
    fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Up to `max` events of `stream` at version `from` or below, newest
    /// first (`from = u64::MAX`: the last `max` events).
    fn read_stream_backward(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Up to `max` events of every stream after global position `after`, in
    /// position order, never skipping one that commits later (gap-safe).
    fn read_all(
        &self,
        after: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The stream's version (`0`: no stream).
    fn stream_version(&self, stream: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The last committed global position (`0`: empty store).
    fn head_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores `snapshot` as its stream's snapshot, replacing an older one.
    fn save_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The stream's stored snapshot, as it is (see
    /// [`EventStore::load_snapshot`](crate::EventStore::load_snapshot) for
    /// the checks that decide whether to use it).
    fn load_snapshot(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;
}

/// The backend [`EventStoreSettings::url`] selects.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyBackend {
    /// In the process.
    Memory(memory::MemoryBackend),
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteBackend),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgBackend),
}

impl AnyBackend {
    /// Opens the backend `settings.url` selects, creating its tables.
    ///
    /// # Errors
    ///
    /// An [`EventStoreError::Invalid`] for bad settings or a backend this
    /// build lacks (its feature is off), a [`StoreError`] if the database
    /// cannot be reached or migrated.
    pub async fn open(settings: &EventStoreSettings) -> Result<Self, EventStoreError> {
        let invalid = |e: palisade_core::ConfigError| {
            EventStoreError::Invalid(crate::error::InvalidEvent::new("settings", e.to_string()))
        };
        settings.validate().map_err(invalid)?;
        match settings.backend_kind().map_err(invalid)? {
            BackendKind::Memory => Ok(Self::Memory(memory::MemoryBackend::new())),
            #[cfg(feature = "sqlite")]
            BackendKind::Sqlite => Ok(Self::Sqlite(sqlite::SqliteBackend::open(settings).await?)),
            #[cfg(feature = "postgres")]
            BackendKind::Postgres => Ok(Self::Postgres(postgres::PgBackend::open(settings).await?)),
            #[allow(unreachable_patterns)]
            other => Err(invalid(palisade_core::ConfigError::new(
                "url",
                format!("the {other:?} backend is not built (enable its feature)"),
            ))),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBackend::Memory($b) => $e,
            #[cfg(feature = "sqlite")]
            AnyBackend::Sqlite($b) => $e,
            #[cfg(feature = "postgres")]
            AnyBackend::Postgres($b) => $e,
        }
    };
}

impl Backend for AnyBackend {
    fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }

    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        dispatch!(self, b => b.append(stream, expected, events).await)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, b => b.read_stream(stream, from, max).await)
    }

    async fn read_stream_backward(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, b => b.read_stream_backward(stream, from, max).await)
    }

    async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, b => b.read_all(after, max).await)
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        dispatch!(self, b => b.stream_version(stream).await)
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        dispatch!(self, b => b.head_position().await)
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        dispatch!(self, b => b.save_snapshot(snapshot).await)
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        dispatch!(self, b => b.load_snapshot(stream).await)
    }
}
