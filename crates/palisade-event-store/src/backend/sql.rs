//! The SQL backends, written once for SQLite and PostgreSQL (both accept
//! the same statements: `$n` parameters, `ON CONFLICT`, `RETURNING`).
//!
//! Tables (`<p>` is the table prefix):
//!
//! - `<p>_events`: one row per event, `position` the primary key, unique
//!   `(stream, version)` and unique `event_id`; payload and metadata as JSON
//!   text.
//! - `<p>_head`: one row holding the last allocated position. Every append
//!   first advances it by its batch size (taking its row lock, or on SQLite
//!   the file's write lock; a refused append gives the positions back or
//!   rolls back) and holds that lock until it commits: appends are serialized, so
//!   the expected-version check cannot race and positions become visible in
//!   order. A reader following positions can never see `n + 1` before `n`.
//! - `<p>_snapshots`: one row per stream.

use std::fmt::Write as _;

/// Columns of a recorded event, in the order `decode_row` reads them.
pub(crate) const COLUMNS: &str = "position, stream, version, event_id, event_type, schema_version, recorded_at, metadata, payload";

/// Rows per multi-row `INSERT` (9 parameters each: far below SQLite's and
/// PostgreSQL's limits).
pub(crate) const INSERT_CHUNK: usize = 500;

/// The statements of one table prefix.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) prefix: String,
    pub(crate) bump_head: String,
    pub(crate) unbump_head: String,
    pub(crate) head: String,
    pub(crate) stream_version: String,
    pub(crate) read_stream: String,
    pub(crate) read_backward: String,
    pub(crate) read_all: String,
    pub(crate) save_snapshot: String,
    pub(crate) load_snapshot: String,
}

impl Statements {
    pub(crate) fn new(prefix: &str) -> Self {
        let p = prefix;
        Self {
            prefix: p.to_owned(),
            bump_head: format!(
                "UPDATE {p}_head SET position = position + $1 WHERE id = 1 RETURNING position"
            ),
            unbump_head: format!("UPDATE {p}_head SET position = position - $1 WHERE id = 1"),
            head: format!("SELECT position FROM {p}_head WHERE id = 1"),
            stream_version: format!(
                "SELECT COALESCE(MAX(version), 0) FROM {p}_events WHERE stream = $1"
            ),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {p}_events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3"
            ),
            read_backward: format!(
                "SELECT {COLUMNS} FROM {p}_events WHERE stream = $1 AND version <= $2 ORDER BY version DESC LIMIT $3"
            ),
            read_all: format!(
                "SELECT {COLUMNS} FROM {p}_events WHERE position > $1 ORDER BY position LIMIT $2"
            ),
            save_snapshot: format!(
                "INSERT INTO {p}_snapshots (stream, version, schema_version, state, recorded_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version, schema_version = excluded.schema_version, \
                 state = excluded.state, recorded_at = excluded.recorded_at"
            ),
            load_snapshot: format!(
                "SELECT version, schema_version, state FROM {p}_snapshots WHERE stream = $1"
            ),
        }
    }

    /// The schema, created if missing (idempotent).
    pub(crate) fn migration(&self) -> Vec<String> {
        let p = &self.prefix;
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {p}_events (\
                 position BIGINT NOT NULL PRIMARY KEY, \
                 stream TEXT NOT NULL, \
                 version BIGINT NOT NULL, \
                 event_id TEXT NOT NULL UNIQUE, \
                 event_type TEXT NOT NULL, \
                 schema_version BIGINT NOT NULL, \
                 recorded_at BIGINT NOT NULL, \
                 metadata TEXT NOT NULL, \
                 payload TEXT NOT NULL, \
                 UNIQUE (stream, version))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}_head (id BIGINT NOT NULL PRIMARY KEY, position BIGINT NOT NULL)"
            ),
            format!(
                "INSERT INTO {p}_head (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}_snapshots (\
                 stream TEXT NOT NULL PRIMARY KEY, \
                 version BIGINT NOT NULL, \
                 schema_version BIGINT NOT NULL, \
                 state TEXT NOT NULL, \
                 recorded_at BIGINT NOT NULL)"
            ),
        ]
    }

    /// The first look-up of an append, one statement: the stream's version
    /// (a marker row with position `-1`, stream `$1`) and which of the
    /// first `n` ids (`$2..`) are stored.
    pub(crate) fn first_lookup(&self, n: usize) -> String {
        let p = &self.prefix;
        let version = format!(
            "SELECT CAST('' AS TEXT), CAST('' AS TEXT), COALESCE(MAX(version), 0), CAST(-1 AS BIGINT) FROM {p}_events WHERE stream = $1"
        );
        if n == 0 {
            return version;
        }
        let mut sql = format!(
            "SELECT event_id, stream, version, position FROM {p}_events WHERE event_id IN ("
        );
        for i in 2..=n + 1 {
            if i > 2 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${i}");
        }
        sql.push_str(") UNION ALL ");
        sql.push_str(&version);
        sql
    }

    /// `SELECT event_id, stream, version, position ... WHERE event_id IN ($1..$n)`.
    pub(crate) fn stored_ids(&self, n: usize) -> String {
        let mut sql = format!(
            "SELECT event_id, stream, version, position FROM {}_events WHERE event_id IN (",
            self.prefix
        );
        for i in 1..=n {
            if i > 1 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${i}");
        }
        sql.push(')');
        sql
    }

    /// A multi-row insert of `n` events.
    pub(crate) fn insert(&self, n: usize) -> String {
        let mut sql = format!("INSERT INTO {}_events ({COLUMNS}) VALUES ", self.prefix);
        for row in 0..n {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for col in 1..=9 {
                if col > 1 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "${}", row * 9 + col);
            }
            sql.push(')');
        }
        sql
    }
}

/// A `u64` as a SQL `BIGINT`, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored `BIGINT` as a `u64` (negative: 0, which no stored value is).
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Wraps a driver or encoding error of `operation`.
pub(crate) fn failed<E: Into<palisade_core::BoxError>>(
    operation: &'static str,
) -> impl FnOnce(E) -> crate::error::StoreError {
    move |e| crate::error::StoreError::new(operation, e)
}

/// Stamps out a SQL backend for one sqlx database.
macro_rules! sql_backend {
    (
        db: $db:ty,
        pool: $pool:ty,
        row: $row:ty,
        backend: $backend:ident,
        engine: $engine:literal,
        kind: $kind:literal,
        begin: $begin:literal,
        migrate_lock: $migrate_lock:expr,
        create_schema: $create_schema:literal,
    ) => {
        #[doc = concat!("Events in ", $engine, ", through sqlx. Cloning shares the pool.")]
        ///
        /// [`begin`](Self::begin) and [`append_in`](Self::append_in) append
        /// inside a transaction of the caller's, with other writes (an
        /// outbox row, a read model): all commit together or none does.
        #[derive(Clone, Debug)]
        pub struct $backend {
            pool: $pool,
            sql: std::sync::Arc<$crate::backend::sql::Statements>,
        }

        impl $backend {
            /// A backend on `pool` with tables prefixed `table_prefix`;
            /// call [`migrate`](Self::migrate) before use.
            ///
            /// # Errors
            ///
            /// An [`EventStoreError::Invalid`] for a bad prefix.
            pub fn with_pool(pool: $pool, table_prefix: &str) -> Result<Self, EventStoreError> {
                $crate::settings::validate_prefix(table_prefix).map_err(|e| {
                    EventStoreError::Invalid($crate::error::InvalidEvent::new(
                        "settings",
                        e.to_string(),
                    ))
                })?;
                Ok(Self {
                    pool,
                    sql: std::sync::Arc::new($crate::backend::sql::Statements::new(table_prefix)),
                })
            }

            /// The pool, for the caller's own tables.
            #[must_use]
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// Creates the tables if missing (at open; idempotent, and safe
            /// when several processes start together).
            ///
            /// # Errors
            ///
            /// A [`StoreError`] from the database.
            pub async fn migrate(&self) -> Result<(), StoreError> {
                let err = |e| StoreError::new("migrate", e);
                let mut tx = self.pool.begin_with($begin).await.map_err(err)?;
                let lock: &'static str = $migrate_lock;
                if !lock.is_empty() {
                    sqlx::query(lock).execute(&mut *tx).await.map_err(err)?;
                }
                if let Some((schema, _)) = self.sql.prefix.split_once('.')
                    && $create_schema
                {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE SCHEMA IF NOT EXISTS {schema}"
                    )))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                }
                for statement in self.sql.migration() {
                    sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                tx.commit().await.map_err(err)
            }

            /// Begins a transaction for [`append_in`](Self::append_in).
            #[doc = concat!("On ", $engine, " it is `", $begin, "`.")]
            ///
            /// # Errors
            ///
            /// A [`StoreError`] from the database.
            pub async fn begin(&self) -> Result<sqlx::Transaction<'static, $db>, StoreError> {
                self.pool
                    .begin_with($begin)
                    .await
                    .map_err(|e| StoreError::new("begin", e))
            }

            /// Appends inside the caller's transaction (from
            /// [`begin`](Self::begin)): the events are written when the
            /// caller commits, with whatever else it wrote. The store's
            /// write lock is held from this call until the transaction
            /// ends, so keep it short. A refused append writes nothing; the
            /// caller may still commit its other writes or roll back.
            ///
            /// On PostgreSQL the transaction must be `READ COMMITTED` (the
            /// default): each statement then sees the appends committed
            /// before it took the lock. Under `REPEATABLE READ` or
            /// `SERIALIZABLE` a concurrent append shows up as a
            /// [`StoreError`] (a unique violation or a serialization
            /// failure), never as a wrong version.
            ///
            /// # Errors
            ///
            /// As [`Backend::append`](crate::backend::Backend::append). After a [`StoreError`] on
            /// PostgreSQL the transaction is aborted: roll it back.
            pub async fn append_in(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                stream: &str,
                expected: $crate::ExpectedVersion,
                events: &[$crate::NewEvent],
            ) -> Result<$crate::AppendResult, EventStoreError> {
                self.append_locked(tx, stream, expected, events, true).await
            }

            /// The append; `compensate`: give the positions back when nothing
            /// is written (the caller may commit), else the caller rolls back.
            async fn append_locked(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                stream: &str,
                expected: $crate::ExpectedVersion,
                events: &[$crate::NewEvent],
                compensate: bool,
            ) -> Result<$crate::AppendResult, EventStoreError> {
                use $crate::backend::sql::{INSERT_CHUNK, to_i64, to_u64};
                $crate::state::validate_batch(stream, events)?;
                use $crate::backend::sql::failed as err;
                // The write lock, held until the transaction ends, and the
                // batch's positions: head + 1 ..= head + n.
                let n = events.len() as u64;
                let (head,): (i64,) =
                    sqlx::query_as(sqlx::AssertSqlSafe(self.sql.bump_head.as_str()))
                        .bind(to_i64(n))
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(err("lock head"))?;
                let head = to_u64(head).saturating_sub(n);
                // The stream's version and the stored ids, read under the lock.
                let mut found = Vec::new();
                let mut current = 0;
                let mut chunks = events.chunks(INSERT_CHUNK);
                let first = chunks.next().unwrap_or(&[]);
                let mut query = sqlx::query_as::<_, (String, String, i64, i64)>(
                    sqlx::AssertSqlSafe(self.sql.first_lookup(first.len())),
                )
                .bind(stream);
                for event in first {
                    query = query.bind(event.id.as_str());
                }
                let mut rows = query
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(err("look up stream and event ids"))?;
                for chunk in chunks {
                    let mut query = sqlx::query_as::<_, (String, String, i64, i64)>(
                        sqlx::AssertSqlSafe(self.sql.stored_ids(chunk.len())),
                    );
                    for event in chunk {
                        query = query.bind(event.id.as_str());
                    }
                    rows.extend(
                        query
                            .fetch_all(&mut **tx)
                            .await
                            .map_err(err("look up event ids"))?,
                    );
                }
                for (id, s, version, position) in rows {
                    if position < 0 {
                        current = to_u64(version);
                    } else {
                        found.push($crate::state::StoredId {
                            id,
                            stream: s,
                            version: to_u64(version),
                            position: to_u64(position),
                        });
                    }
                }
                let decided = $crate::state::classify_stored(stream, events, &found)
                    .map_err(EventStoreError::from)
                    .and_then(|retry| match retry {
                        Some(retry) => Ok(Some(retry)),
                        None => {
                            $crate::state::check_expected(stream, expected, current)?;
                            Ok(events.is_empty().then(|| $crate::AppendResult {
                                version: current,
                                positions: Vec::new(),
                                already_stored: false,
                            }))
                        }
                    });
                if let Some(finished) = decided.transpose() {
                    // Nothing to write: give the positions back, so a caller
                    // who commits its transaction leaves none unused.
                    if compensate && n > 0 {
                        sqlx::query(sqlx::AssertSqlSafe(self.sql.unbump_head.as_str()))
                            .bind(to_i64(n))
                            .execute(&mut **tx)
                            .await
                            .map_err(err("release positions"))?;
                    }
                    return finished;
                }
                let recorded_at = $crate::envelope::now_micros();
                let mut positions = Vec::with_capacity(events.len());
                let mut next = 0u64;
                for chunk in events.chunks(INSERT_CHUNK) {
                    let sql = self.sql.insert(chunk.len());
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for event in chunk {
                        next += 1;
                        let position = head + next;
                        positions.push(position);
                        let metadata = serde_json::to_string(&event.metadata)
                            .map_err(err("encode metadata"))?;
                        let payload =
                            serde_json::to_string(&event.payload).map_err(err("encode payload"))?;
                        query = query
                            .bind(to_i64(position))
                            .bind(stream)
                            .bind(to_i64(current + next))
                            .bind(event.id.as_str())
                            .bind(event.event_type.as_str())
                            .bind(i64::from(event.schema_version))
                            .bind(recorded_at)
                            .bind(metadata)
                            .bind(payload);
                    }
                    query
                        .execute(&mut **tx)
                        .await
                        .map_err(err("insert events"))?;
                }
                Ok($crate::AppendResult {
                    version: current + next,
                    positions,
                    already_stored: false,
                })
            }

            async fn fetch_events(
                &self,
                query: sqlx::query::Query<'_, $db, <$db as sqlx::Database>::Arguments>,
                op: &'static str,
            ) -> Result<Vec<$crate::RecordedEvent>, StoreError> {
                let rows = query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| StoreError::new(op, e))?;
                rows.iter().map(Self::decode_row).collect()
            }

            fn decode_row(row: &$row) -> Result<$crate::RecordedEvent, StoreError> {
                use sqlx::Row as _;
                use $crate::backend::sql::to_u64;
                let err = |e| StoreError::new("decode stored event", e);
                let metadata: String = row.try_get(7).map_err(err)?;
                let payload: String = row.try_get(8).map_err(err)?;
                let schema_version: i64 = row.try_get(5).map_err(err)?;
                Ok($crate::RecordedEvent {
                    position: to_u64(row.try_get(0).map_err(err)?),
                    stream: row.try_get::<String, _>(1).map_err(err)?.into(),
                    version: to_u64(row.try_get(2).map_err(err)?),
                    id: row.try_get::<String, _>(3).map_err(err)?.into(),
                    event_type: row.try_get::<String, _>(4).map_err(err)?.into(),
                    schema_version: u32::try_from(schema_version)
                        .map_err(|e| StoreError::new("decode stored event", e))?,
                    recorded_at_micros: row.try_get(6).map_err(err)?,
                    metadata: std::sync::Arc::new(
                        serde_json::from_str(&metadata)
                            .map_err(|e| StoreError::new("decode stored metadata", e))?,
                    ),
                    payload: std::sync::Arc::new(
                        serde_json::from_str(&payload)
                            .map_err(|e| StoreError::new("decode stored payload", e))?,
                    ),
                    upcast_failure: None,
                })
            }
        }

        impl $crate::backend::Backend for $backend {
            fn kind(&self) -> &'static str {
                $kind
            }

            async fn append(
                &self,
                stream: &str,
                expected: $crate::ExpectedVersion,
                events: &[$crate::NewEvent],
            ) -> Result<$crate::AppendResult, EventStoreError> {
                $crate::state::validate_batch(stream, events)?;
                let mut tx = self.begin().await?;
                match self
                    .append_locked(&mut tx, stream, expected, events, false)
                    .await
                {
                    Ok(result) if !result.already_stored && !result.positions.is_empty() => {
                        tx.commit()
                            .await
                            .map_err(|e| StoreError::new("commit", e))?;
                        Ok(result)
                    }
                    other => {
                        // Nothing written (a retry, an empty batch or a
                        // refusal): release the write lock.
                        tx.rollback()
                            .await
                            .map_err(|e| StoreError::new("rollback", e))?;
                        other
                    }
                }
            }

            async fn read_stream(
                &self,
                stream: &str,
                from: u64,
                max: usize,
            ) -> Result<Vec<$crate::RecordedEvent>, StoreError> {
                use $crate::backend::sql::to_i64;
                let query = sqlx::query(sqlx::AssertSqlSafe(self.sql.read_stream.as_str()))
                    .bind(stream)
                    .bind(to_i64(from))
                    .bind(to_i64(max as u64));
                self.fetch_events(query, "read stream").await
            }

            async fn read_stream_backward(
                &self,
                stream: &str,
                from: u64,
                max: usize,
            ) -> Result<Vec<$crate::RecordedEvent>, StoreError> {
                use $crate::backend::sql::to_i64;
                let query = sqlx::query(sqlx::AssertSqlSafe(self.sql.read_backward.as_str()))
                    .bind(stream)
                    .bind(to_i64(from))
                    .bind(to_i64(max as u64));
                self.fetch_events(query, "read stream backward").await
            }

            async fn read_all(
                &self,
                after: u64,
                max: usize,
            ) -> Result<Vec<$crate::RecordedEvent>, StoreError> {
                use $crate::backend::sql::to_i64;
                let query = sqlx::query(sqlx::AssertSqlSafe(self.sql.read_all.as_str()))
                    .bind(to_i64(after))
                    .bind(to_i64(max as u64));
                self.fetch_events(query, "read all").await
            }

            async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
                let (version,): (i64,) =
                    sqlx::query_as(sqlx::AssertSqlSafe(self.sql.stream_version.as_str()))
                        .bind(stream)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|e| StoreError::new("read stream version", e))?;
                Ok($crate::backend::sql::to_u64(version))
            }

            async fn head_position(&self) -> Result<u64, StoreError> {
                let (head,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(self.sql.head.as_str()))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| StoreError::new("read head", e))?;
                Ok($crate::backend::sql::to_u64(head))
            }

            async fn save_snapshot(&self, snapshot: &$crate::Snapshot) -> Result<(), StoreError> {
                use $crate::backend::sql::to_i64;
                let state = serde_json::to_string(&snapshot.state)
                    .map_err(|e| StoreError::new("encode snapshot", e))?;
                sqlx::query(sqlx::AssertSqlSafe(self.sql.save_snapshot.as_str()))
                    .bind(&*snapshot.stream)
                    .bind(to_i64(snapshot.version))
                    .bind(i64::from(snapshot.schema_version))
                    .bind(state)
                    .bind($crate::envelope::now_micros())
                    .execute(&self.pool)
                    .await
                    .map(drop)
                    .map_err(|e| StoreError::new("save snapshot", e))
            }

            async fn load_snapshot(
                &self,
                stream: &str,
            ) -> Result<Option<$crate::Snapshot>, StoreError> {
                let row: Option<(i64, i64, String)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(self.sql.load_snapshot.as_str()))
                        .bind(stream)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| StoreError::new("load snapshot", e))?;
                let Some((version, schema_version, state)) = row else {
                    return Ok(None);
                };
                // A snapshot that does not parse, or whose schema version is
                // out of range, is no snapshot: fold from the events.
                let (Ok(state), Ok(schema_version)) =
                    (serde_json::from_str(&state), u32::try_from(schema_version))
                else {
                    return Ok(None);
                };
                Ok(Some($crate::Snapshot {
                    stream: stream.into(),
                    version: $crate::backend::sql::to_u64(version),
                    schema_version,
                    state,
                }))
            }
        }
    };
}

pub(crate) use sql_backend;
