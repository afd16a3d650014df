//! A projection that records each event's effect as a row (no key, so a
//! double application shows), with fault injection; fixtures on SQLite and
//! PostgreSQL.

#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_cqrs::Projection;
use palisade_event_store::{EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore};

/// What the effects projection decodes (the bank account's events).
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum Ev {
    Opened { owner: String },
    Deposited { cents: i64 },
    Withdrawn { cents: i64 },
}

/// Faults to inject.
#[derive(Default)]
pub struct Faults {
    /// At this position: signal `reached`, then never finish (the task is
    /// dropped there).
    pub hang_at: Option<u64>,
    pub reached: Arc<Notify>,
    /// A deposit of this amount always fails.
    pub fail_on_cents: Option<i64>,
    pub failures: AtomicU32,
    /// Each apply takes a permit first (none: blocked).
    pub gate: Option<Arc<Semaphore>>,
}

/// Records `(position, cents)` per applied event in table `table`.
#[derive(Clone)]
pub struct Effects {
    pub table: String,
    pub faults: Arc<Faults>,
}

impl Effects {
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            faults: Arc::new(Faults::default()),
        }
    }

    pub fn with(table: &str, faults: Faults) -> Self {
        Self {
            table: table.to_owned(),
            faults: Arc::new(faults),
        }
    }

    async fn before(&self, envelope: &RecordedEvent, event: &Ev) -> Result<(), BoxError> {
        if let Some(gate) = &self.faults.gate {
            gate.acquire().await?.forget();
        }
        if self.faults.hang_at == Some(envelope.position()) {
            self.faults.reached.notify_one();
            std::future::pending::<()>().await;
        }
        if let Ev::Deposited { cents } = event
            && self.faults.fail_on_cents == Some(*cents)
        {
            self.faults.failures.fetch_add(1, Ordering::SeqCst);
            return Err(format!("refused deposit of {cents}").into());
        }
        Ok(())
    }

    fn cents(event: &Ev) -> i64 {
        match event {
            Ev::Opened { .. } => 0,
            Ev::Deposited { cents } => *cents,
            Ev::Withdrawn { cents } => -cents,
        }
    }
}

macro_rules! effects_projection {
    ($db:ty) => {
        impl Projection<$db> for Effects {
            type Event = Ev;

            fn handles(&self, event: &RecordedEvent) -> bool {
                event.stream().starts_with("account-")
            }

            async fn apply(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                event: &Ev,
                envelope: &RecordedEvent,
            ) -> Result<(), BoxError> {
                self.before(envelope, event).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {} (position, cents) VALUES ($1, $2)",
                    self.table
                )))
                .bind(i64::try_from(envelope.position())?)
                .bind(Self::cents(event))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn reset(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
            ) -> Result<(), BoxError> {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", self.table)))
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }
    };
}

effects_projection!(sqlx::Sqlite);
#[cfg(feature = "postgres")]
effects_projection!(sqlx::Postgres);

/// Appends `n` events to `account-<id>`: an opening, then deposits of
/// 1, 2, ... cents. Returns the last position.
pub async fn seed(store: &EventStore, id: &str, n: u64) -> u64 {
    let stream = format!("account-{id}");
    let mut version = store.stream_version(&stream).await.unwrap();
    let mut last = 0;
    for i in 0..n {
        let event = if version == 0 {
            NewEvent::new(
                format!("{id}-open"),
                "AccountOpened",
                serde_json::json!({"type": "Opened", "owner": id}),
            )
        } else {
            NewEvent::new(
                format!("{id}-{version}"),
                "MoneyDeposited",
                serde_json::json!({"type": "Deposited", "cents": i64::try_from(i).unwrap()}),
            )
        };
        let done = store
            .append(&stream, ExpectedVersion::Exact(version), &[event])
            .await
            .unwrap();
        version = done.version();
        last = done.last_position().unwrap();
    }
    last
}

pub const WAIT: Duration = Duration::from_secs(20);

/// A SQLite store and read model in one file.
pub struct SqliteFixture {
    pub store: EventStore,
    pub pool: sqlx::SqlitePool,
    pub backend: palisade_cqrs::backend::sqlite::SqliteReadModel,
    pub table: String,
    dir: std::path::PathBuf,
}

impl SqliteFixture {
    pub async fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(palisade_test_util::unique_name(&format!("cqrs_{test}")));
        std::fs::create_dir_all(&dir).unwrap();
        Self::open(dir, true).await
    }

    /// The fixture in `dir` (another process's), creating the effects
    /// table if `create`.
    pub async fn open(dir: std::path::PathBuf, create: bool) -> Self {
        let url = format!("sqlite:{}", dir.join("bank.db").display());
        let store = EventStore::builder("bank").url(&url).open().await.unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap();
        let table = "effects".to_owned();
        if create {
            sqlx::query("CREATE TABLE effects (position BIGINT NOT NULL, cents BIGINT NOT NULL)")
                .execute(&pool)
                .await
                .unwrap();
        }
        let backend =
            palisade_cqrs::backend::sqlite::SqliteReadModel::new(pool.clone(), "proj").unwrap();
        Self {
            store,
            pool,
            backend,
            table,
            dir,
        }
    }

    /// `(position, times applied)`, by position.
    pub async fn effects(&self) -> Vec<(i64, i64)> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT position, COUNT(*) FROM {} GROUP BY position ORDER BY position",
            self.table
        )))
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn execute(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

impl SqliteFixture {
    /// The directory of the files.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Keeps the files when dropped (another process owns them).
    pub fn keep(mut self) {
        self.dir = std::path::PathBuf::new();
    }
}

impl Drop for SqliteFixture {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A PostgreSQL store and read model in a schema of the test's own.
#[cfg(feature = "postgres")]
pub struct PgFixture {
    pub store: EventStore,
    pub pool: sqlx::PgPool,
    pub backend: palisade_cqrs::backend::postgres::PgReadModel,
    pub table: String,
    pub schema: String,
}

#[cfg(feature = "postgres")]
impl PgFixture {
    pub async fn new(test: &str) -> Option<Self> {
        let url = palisade_test_util::service_url(palisade_test_util::POSTGRES_URL_VAR, test)?;
        let schema = palisade_test_util::unique_name("cqrs");
        let store = EventStore::builder("bank")
            .url(&url)
            .table_prefix(format!("{schema}.es"))
            .open()
            .await
            .unwrap();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .connect(&url)
            .await
            .unwrap();
        let table = format!("{schema}.effects");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {table} (position BIGINT NOT NULL, cents BIGINT NOT NULL)"
        )))
        .execute(&pool)
        .await
        .unwrap();
        let backend = palisade_cqrs::backend::postgres::PgReadModel::new(
            pool.clone(),
            &format!("{schema}.proj"),
        )
        .unwrap();
        Some(Self {
            store,
            pool,
            backend,
            table,
            schema,
        })
    }

    pub async fn effects(&self) -> Vec<(i64, i64)> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT position, COUNT(*) FROM {} GROUP BY position ORDER BY position",
            self.table
        )))
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn execute(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap();
    }

    pub async fn drop_schema(self) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await;
    }
}

/// `1..=n`, each once.
pub fn once_each(n: i64) -> Vec<(i64, i64)> {
    (1..=n).map(|p| (p, 1)).collect()
}
