//! [`SqliteBackend`]: events in a SQLite file (WAL mode), the embedded
//! default: nothing to set up.
//!
//! Writers are serialized by SQLite itself: an append runs in a
//! `BEGIN IMMEDIATE` transaction, which takes the file's write lock before
//! reading anything, so one append at a time checks versions, allocates
//! positions and commits (others wait up to the busy timeout). Commit order
//! is position order, and WAL readers see a committed prefix of positions:
//! reads by position are gap-safe without more work. Readers never block
//! the writer, nor it them.
//!
//! ```
//! use palisade_event_store::backend::Backend;
//! use palisade_event_store::backend::sqlite::SqliteBackend;
//! use palisade_event_store::{EventStoreSettings, ExpectedVersion, NewEvent};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("es-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let url = format!("sqlite:{}", dir.join("events.db").display());
//! let store = SqliteBackend::open(&EventStoreSettings::with_url(url)).await?;
//!
//! // An outbox row and the events, in one transaction.
//! sqlx::query("CREATE TABLE IF NOT EXISTS outbox (topic TEXT, body TEXT)")
//!     .execute(store.pool())
//!     .await?;
//! let mut tx = store.begin().await?;
//! let appended = store
//!     .append_in(&mut tx, "order-1", ExpectedVersion::NoStream,
//!         &[NewEvent::new("e-1", "OrderPlaced", json!({"total": 30}))])
//!     .await?;
//! sqlx::query("INSERT INTO outbox VALUES ('orders', 'placed')").execute(&mut *tx).await?;
//! tx.commit().await?;
//! assert_eq!(appended.version(), 1);
//! assert_eq!(store.read_all(0, 10).await?.len(), 1);
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{EventStoreError, StoreError};
use crate::settings::EventStoreSettings;

crate::backend::sql::sql_backend! {
    db: sqlx::Sqlite,
    pool: sqlx::SqlitePool,
    row: sqlx::sqlite::SqliteRow,
    backend: SqliteBackend,
    engine: "SQLite",
    kind: "sqlite",
    begin: "BEGIN IMMEDIATE",
    migrate_lock: "",
    create_schema: false,
}

impl SqliteBackend {
    /// Opens (creating if missing) the file `settings.url` names, in WAL
    /// mode with `synchronous = NORMAL` (durable across a process crash; the
    /// last commits may be lost on a power cut), and creates the tables.
    ///
    /// # Errors
    ///
    /// An [`EventStoreError::Invalid`] for bad settings, a [`StoreError`] if
    /// the file cannot be opened or migrated.
    pub async fn open(settings: &EventStoreSettings) -> Result<Self, EventStoreError> {
        let invalid = |e: palisade_core::ConfigError| {
            EventStoreError::Invalid(crate::error::InvalidEvent::new("settings", e.to_string()))
        };
        settings.validate().map_err(invalid)?;
        let options = SqliteConnectOptions::from_str(&settings.url)
            .map_err(|e| StoreError::new("open", e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(settings.busy_timeout);
        // An in-memory database is one per connection: keep one.
        let in_memory = settings.url.contains(":memory:") || settings.url.contains("mode=memory");
        let max = if in_memory {
            1
        } else {
            settings.max_connections
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::new("open", e))?;
        let backend = Self::with_pool(pool, &settings.table_prefix)?;
        backend.migrate().await?;
        Ok(backend)
    }
}
