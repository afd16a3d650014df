//! The accounts' events on the bus: a transactional-outbox relay
//! (`palisade::pubsub::outbox`) that follows the event store's gap-safe
//! global order and publishes every committed event, at least once and in
//! commit order, on `<prefix>.accounts.<EventType>`, with the event's id as
//! the message id (JetStream's de-duplication and idempotent consumers absorb
//! a re-publish after a crash). Its checkpoint lives beside the events: a
//! table in the same SQLite file or PostgreSQL schema, so a restart resumes
//! where it stopped; the in-memory store keeps it in memory.

use palisade::event_store::EventStore;
use palisade::event_store::backend::AnyBackend;
use palisade::pubsub::backend::postgres::PgCheckpoints;
use palisade::pubsub::backend::sqlite::SqliteCheckpoints;
use palisade::pubsub::error::StoreError;
use palisade::pubsub::outbox::{CheckpointStore, MemoryCheckpoints};

use crate::shared::StartError;

/// The relay's name (its checkpoint row, its metrics' `name` label).
pub const RELAY_NAME: &str = "accounts-events";

/// The subject token after the prefix: `<prefix>.accounts.<EventType>`.
pub const ACCOUNTS_SUBJECT: &str = "accounts";

/// Where the relay keeps its checkpoint: next to the events it follows.
pub(crate) enum Checkpoints {
    Memory(MemoryCheckpoints),
    Sqlite(SqliteCheckpoints),
    Postgres(PgCheckpoints),
}

impl Checkpoints {
    /// The checkpoint store for `store`'s backend (creating its table), in
    /// `<table_prefix>_relay_checkpoints` beside the store's own tables.
    pub(crate) async fn beside(
        store: &EventStore<AnyBackend>,
        table_prefix: &str,
    ) -> Result<Self, StartError> {
        let table = format!("{table_prefix}_relay_checkpoints");
        let failed = |e: StoreError| StartError::Other(format!("pubsub relay checkpoints: {e}"));
        match store.backend() {
            AnyBackend::Sqlite(backend) => {
                let c = SqliteCheckpoints::with_table(backend.pool().clone(), &table)
                    .map_err(failed)?;
                c.migrate().await.map_err(failed)?;
                Ok(Self::Sqlite(c))
            }
            AnyBackend::Postgres(backend) => {
                let c =
                    PgCheckpoints::with_table(backend.pool().clone(), &table).map_err(failed)?;
                c.migrate().await.map_err(failed)?;
                Ok(Self::Postgres(c))
            }
            _ => Ok(Self::Memory(MemoryCheckpoints::new())),
        }
    }
}

impl CheckpointStore for Checkpoints {
    async fn load(&self, relay: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Memory(c) => c.load(relay).await,
            Self::Sqlite(c) => c.load(relay).await,
            Self::Postgres(c) => c.load(relay).await,
        }
    }

    async fn save(&self, relay: &str, position: u64) -> Result<(), StoreError> {
        match self {
            Self::Memory(c) => c.save(relay, position).await,
            Self::Sqlite(c) => c.save(relay, position).await,
            Self::Postgres(c) => c.save(relay, position).await,
        }
    }
}
