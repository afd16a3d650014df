//! [`PgBackend`]: events in PostgreSQL, for several processes on several
//! machines sharing one store.
//!
//! Gap safety: every append first updates the one row of `<prefix>_head`
//! and so holds its row lock until it commits or rolls back. Appends are
//! therefore serialized across the whole fleet: the second appender waits
//! for the first to end, reads the head the first committed, and takes the
//! next positions. PostgreSQL releases a transaction's locks only after its
//! commit is visible, so whenever a reader sees position `n + 1` it already
//! sees `n`: `WHERE position > $checkpoint ORDER BY position` never skips an
//! event that commits later. The price is one append in flight at a time
//! for the store (batches amortize it); the gain is that readers never wait
//! for, or guess about, holes, and positions are contiguous.
//!
//! The same API as the SQLite backend (see `backend::sqlite` for an
//! example of [`append_in`](PgBackend::append_in)); isolate tenants or tests
//! with a schema-qualified prefix (`tenant_a.palisade_es`, the schema is
//! created if missing).

use sqlx::postgres::PgPoolOptions;

use crate::error::{EventStoreError, StoreError};
use crate::settings::EventStoreSettings;

crate::backend::sql::sql_backend! {
    db: sqlx::Postgres,
    pool: sqlx::PgPool,
    row: sqlx::postgres::PgRow,
    backend: PgBackend,
    engine: "PostgreSQL",
    kind: "postgres",
    begin: "BEGIN",
    // Processes starting together create the tables one at a time.
    migrate_lock: "SELECT pg_advisory_xact_lock(7305126409154227201)",
    create_schema: true,
}

impl PgBackend {
    /// Connects to `settings.url` and creates the tables (and the prefix's
    /// schema) if missing.
    ///
    /// # Errors
    ///
    /// An [`EventStoreError::Invalid`] for bad settings, a [`StoreError`] if
    /// the server cannot be reached or the migration fails.
    pub async fn open(settings: &EventStoreSettings) -> Result<Self, EventStoreError> {
        let invalid = |e: palisade_core::ConfigError| {
            EventStoreError::Invalid(crate::error::InvalidEvent::new("settings", e.to_string()))
        };
        settings.validate().map_err(invalid)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .connect(&settings.url)
            .await
            .map_err(|e| StoreError::new("open", e))?;
        let backend = Self::with_pool(pool, &settings.table_prefix)?;
        backend.migrate().await?;
        Ok(backend)
    }
}
