//! Where projections keep their checkpoint and parked events: the
//! [`ProjectionBackend`] trait, implemented for a SQLite read model
//! (`sqlite::SqliteReadModel`) and a PostgreSQL one (`postgres::PgReadModel`).
//!
//! Tables (`<p>`: the prefix the backend is built with, conventionally
//! [`DEFAULT_TABLE_PREFIX`](crate::DEFAULT_TABLE_PREFIX)),
//! in the read model's database, next to the projection's own tables:
//!
//! - `<p>_checkpoints`: one row per projection, the global position its
//!   read model has reached. Written in the same transaction as the
//!   effects of the events up to it, so both commit or neither does.
//! - `<p>_parked`: the events a projection set aside, with the reason.

use std::future::Future;

use palisade_event_store::RecordedEvent;

use crate::parked::ParkedEvent;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod sql;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

/// A transaction of a backend's database.
pub type Tx<K> = sqlx::Transaction<'static, <K as ProjectionBackend>::Db>;

/// A read-model database that keeps projections' checkpoints and parked
/// events, and tells which runner is the active one.
pub trait ProjectionBackend: Clone + Send + Sync + 'static {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// What a runner holds while it is the projection's active runner.
    type Lease: Send + 'static;

    /// Creates the tables if missing.
    fn migrate(&self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Begins a read-model transaction (SQLite: `BEGIN IMMEDIATE`).
    fn begin(&self) -> impl Future<Output = Result<Tx<Self>, sqlx::Error>> + Send;

    /// The projection's checkpoint (`0` if it has none yet; the row is
    /// created).
    fn checkpoint(&self, name: &str) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// The checkpoint read inside `tx`, locked until it ends (PostgreSQL:
    /// `FOR UPDATE`; SQLite: the transaction holds the write lock).
    fn lock_checkpoint(
        &self,
        tx: &mut Tx<Self>,
        name: &str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Sets the checkpoint inside `tx`.
    fn set_checkpoint(
        &self,
        tx: &mut Tx<Self>,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Parks `event` with `reason` inside `tx`.
    fn park(
        &self,
        tx: &mut Tx<Self>,
        name: &str,
        event: &RecordedEvent,
        reason: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// The projection's parked events, oldest first (at most `max`).
    fn parked(
        &self,
        name: &str,
        max: usize,
    ) -> impl Future<Output = Result<Vec<ParkedEvent>, sqlx::Error>> + Send;

    /// Inside `tx`: forgets the parked events and sets the checkpoint to
    /// `0` (a rebuild).
    fn reset(
        &self,
        tx: &mut Tx<Self>,
        name: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Tries to become the projection's active runner: `Some(lease)` until
    /// the lease is dropped, `None` if another runner holds it.
    fn try_lock(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Self::Lease>, sqlx::Error>> + Send;

    /// Whether `lease` still holds (on PostgreSQL: its session is alive;
    /// a server restart ends it and frees the lock for another runner).
    fn lease_alive(&self, lease: &mut Self::Lease) -> impl Future<Output = bool> + Send;
}
