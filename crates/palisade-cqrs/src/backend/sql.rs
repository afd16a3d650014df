//! The checkpoint and parked-event tables, written once for SQLite and
//! PostgreSQL (both accept `$n` parameters and `ON CONFLICT`).

/// The statements of one table prefix.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) prefix: String,
    pub(crate) migration: [String; 2],
    pub(crate) ensure: String,
    pub(crate) checkpoint: String,
    pub(crate) set_checkpoint: String,
    pub(crate) park: String,
    pub(crate) parked: String,
    pub(crate) unpark: String,
}

impl Statements {
    pub(crate) fn new(prefix: &str, lock_suffix: &str) -> Self {
        let p = prefix;
        Self {
            prefix: p.to_owned(),
            migration: [
                format!(
                    "CREATE TABLE IF NOT EXISTS {p}_checkpoints (projection TEXT PRIMARY KEY, position BIGINT NOT NULL)"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {p}_parked (projection TEXT NOT NULL, position BIGINT NOT NULL, \
                     stream TEXT NOT NULL, version BIGINT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL, \
                     reason TEXT NOT NULL, parked_at BIGINT NOT NULL, PRIMARY KEY (projection, position))"
                ),
            ],
            ensure: format!(
                "INSERT INTO {p}_checkpoints (projection, position) VALUES ($1, 0) ON CONFLICT (projection) DO NOTHING"
            ),
            checkpoint: format!(
                "SELECT position FROM {p}_checkpoints WHERE projection = $1{lock_suffix}"
            ),
            set_checkpoint: format!(
                "INSERT INTO {p}_checkpoints (projection, position) VALUES ($1, $2) \
                 ON CONFLICT (projection) DO UPDATE SET position = excluded.position"
            ),
            park: format!(
                "INSERT INTO {p}_parked (projection, position, stream, version, event_id, event_type, reason, parked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (projection, position) DO UPDATE SET reason = excluded.reason"
            ),
            parked: format!(
                "SELECT position, stream, version, event_id, event_type, reason, parked_at FROM {p}_parked \
                 WHERE projection = $1 ORDER BY position LIMIT $2"
            ),
            unpark: format!("DELETE FROM {p}_parked WHERE projection = $1"),
        }
    }
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

macro_rules! sql_read_model {
    (
        db: $db:ty,
        pool: $pool:ty,
        backend: $backend:ident,
        engine: $engine:literal,
        begin: $begin:literal,
        lock_suffix: $lock:literal,
        create_schema: $create_schema:literal,
        lease: $lease:ty,
    ) => {
        #[doc = concat!("Projection checkpoints and parked events in ", $engine, ", through sqlx. Cloning shares the pool.")]
        #[derive(Clone, Debug)]
        pub struct $backend {
            pool: $pool,
            sql: std::sync::Arc<$crate::backend::sql::Statements>,
        }

        impl $backend {
            /// The tables prefixed `table_prefix` on `pool` (the read
            /// model's database); the runner creates them at start.
            ///
            /// # Errors
            ///
            /// A [`ConfigError`](palisade_core::ConfigError) on
            /// `table_prefix` if it is not an identifier.
            pub fn new(pool: $pool, table_prefix: &str) -> Result<Self, palisade_core::ConfigError> {
                $crate::settings::validate_prefix(table_prefix)?;
                Ok(Self {
                    pool,
                    sql: std::sync::Arc::new($crate::backend::sql::Statements::new(
                        table_prefix,
                        $lock,
                    )),
                })
            }

            /// The pool, for the read model's own tables and queries.
            #[must_use]
            pub fn pool(&self) -> &$pool {
                &self.pool
            }
        }

        impl $crate::backend::ProjectionBackend for $backend {
            type Db = $db;
            type Lease = $lease;

            async fn migrate(&self) -> Result<(), sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                if $create_schema
                    && let Some((schema, _)) = self.sql.prefix.split_once('.')
                {
                    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
                        .execute(&mut *tx)
                        .await?;
                }
                for statement in &self.sql.migration {
                    sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }

            async fn begin(&self) -> Result<$crate::backend::Tx<Self>, sqlx::Error> {
                self.pool.begin_with($begin).await
            }

            async fn checkpoint(&self, name: &str) -> Result<u64, sqlx::Error> {
                sqlx::query(sqlx::AssertSqlSafe(self.sql.ensure.as_str()))
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                let (position,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(self.sql.checkpoint.as_str()))
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::backend::sql::to_u64(position))
            }

            async fn lock_checkpoint(
                &self,
                tx: &mut $crate::backend::Tx<Self>,
                name: &str,
            ) -> Result<u64, sqlx::Error> {
                let row: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(self.sql.checkpoint.as_str()))
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(row.map_or(0, |(p,)| $crate::backend::sql::to_u64(p)))
            }

            async fn set_checkpoint(
                &self,
                tx: &mut $crate::backend::Tx<Self>,
                name: &str,
                position: u64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(sqlx::AssertSqlSafe(self.sql.set_checkpoint.as_str()))
                    .bind(name)
                    .bind($crate::backend::sql::to_i64(position))
                    .execute(&mut **tx)
                    .await
                    .map(drop)
            }

            async fn park(
                &self,
                tx: &mut $crate::backend::Tx<Self>,
                name: &str,
                event: &palisade_event_store::RecordedEvent,
                reason: &str,
            ) -> Result<(), sqlx::Error> {
                use $crate::backend::sql::to_i64;
                sqlx::query(sqlx::AssertSqlSafe(self.sql.park.as_str()))
                    .bind(name)
                    .bind(to_i64(event.position()))
                    .bind(event.stream())
                    .bind(to_i64(event.version()))
                    .bind(event.id())
                    .bind(event.event_type())
                    .bind(reason)
                    .bind($crate::parked::now_micros())
                    .execute(&mut **tx)
                    .await
                    .map(drop)
            }

            async fn parked(
                &self,
                name: &str,
                max: usize,
            ) -> Result<Vec<$crate::parked::ParkedEvent>, sqlx::Error> {
                use $crate::backend::sql::{to_i64, to_u64};
                let rows: Vec<(i64, String, i64, String, String, String, i64)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(self.sql.parked.as_str()))
                        .bind(name)
                        .bind(to_i64(max as u64))
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(position, stream, version, event_id, event_type, reason, at)| {
                        $crate::parked::ParkedEvent {
                            position: to_u64(position),
                            stream: stream.into(),
                            version: to_u64(version),
                            event_id: event_id.into(),
                            event_type: event_type.into(),
                            reason,
                            parked_at_micros: at,
                        }
                    })
                    .collect())
            }

            async fn reset(
                &self,
                tx: &mut $crate::backend::Tx<Self>,
                name: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(sqlx::AssertSqlSafe(self.sql.unpark.as_str()))
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                self.set_checkpoint(tx, name, 0).await
            }

            async fn try_lock(&self, name: &str) -> Result<Option<$lease>, sqlx::Error> {
                self.try_lock_impl(name).await
            }

            async fn lease_alive(&self, lease: &mut $lease) -> bool {
                Self::lease_alive_impl(lease).await
            }
        }
    };
}

pub(crate) use sql_read_model;
