//! The SQL stores, written once for SQLite and PostgreSQL (both accept the
//! same statements: `$n` parameters, `ON CONFLICT`): the exactly-once inbox
//! and the relay's checkpoint store.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::StoreError;

/// Checks a table name is one or two SQL identifiers (`table` or
/// `schema.table`) of ASCII letters, digits and `_`, not starting with a
/// digit: it is written into statements, never bound.
pub(crate) fn validate_table(table: &str) -> Result<(), StoreError> {
    let ok = !table.is_empty()
        && table.len() <= 127
        && table.split('.').count() <= 2
        && table.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !part.as_bytes()[0].is_ascii_digit()
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            "validate table name",
            format!("{table:?} is not `table` or `schema.table` of letters, digits and `_`"),
        ))
    }
}

/// Milliseconds since the Unix epoch, for the inbox's `handled_at`.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Stamps out the inbox, its transaction and the checkpoint store for one
/// sqlx database.
macro_rules! sql_stores {
    (
        db: $db:ty,
        pool: $pool:ty,
        inbox: $inbox:ident,
        checkpoints: $checkpoints:ident,
        engine: $engine:literal,
    ) => {
        #[doc = concat!("The exactly-once inbox on ", $engine, ": a table of `(consumer, message_id)` written in the same transaction as the handler's effects.")]
        ///
        /// [`begin`](Self::begin) opens a transaction and records the message
        /// id for the consumer; if it was already recorded (a duplicate,
        /// whose effects were committed) it answers `None`. Otherwise the
        /// handler writes its effects through the returned transaction and
        /// [`commit`](InboxTransaction::commit)s: effects and the id become
        /// durable together, or (on error, drop or crash) neither does, and
        /// the redelivery runs the handler again. A concurrent duplicate
        /// waits on the row lock until the first commits, then sees it.
        ///
        /// The table grows by one row per handled message: [`prune`](Self::prune)
        /// rows older than the redelivery horizon (the stream's max age, or
        /// the outbox relay's longest replay).
        #[derive(Clone, Debug)]
        pub struct $inbox {
            pool: $pool,
            table: std::sync::Arc<str>,
            insert: std::sync::Arc<str>,
        }

        impl $inbox {
            /// An inbox in the table `palisade_inbox`.
            #[must_use]
            pub fn new(pool: $pool) -> Self {
                Self::with_table(pool, "palisade_inbox").expect("a valid default table name")
            }

            /// An inbox in `table` (`table` or `schema.table`).
            ///
            /// # Errors
            ///
            /// A [`StoreError`] for an invalid table name.
            pub fn with_table(pool: $pool, table: &str) -> Result<Self, StoreError> {
                $crate::backend::sql::validate_table(table)?;
                Ok(Self {
                    pool,
                    insert: format!(
                        "INSERT INTO {table} (consumer, message_id, handled_at) VALUES ($1, $2, $3) ON CONFLICT (consumer, message_id) DO NOTHING"
                    )
                    .into(),
                    table: table.into(),
                })
            }

            /// Creates the table if it does not exist.
            ///
            /// # Errors
            ///
            /// A [`StoreError`] from the database.
            pub async fn migrate(&self) -> Result<(), StoreError> {
                let table = &*self.table;
                let index = table.replace('.', "_");
                for statement in [
                    format!("CREATE TABLE IF NOT EXISTS {table} (consumer TEXT NOT NULL, message_id TEXT NOT NULL, handled_at BIGINT NOT NULL, PRIMARY KEY (consumer, message_id))"),
                    format!("CREATE INDEX IF NOT EXISTS {index}_handled_at ON {table} (handled_at)"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&self.pool)
                        .await
                        .map_err(|e| StoreError::new("create inbox table", e))?;
                }
                Ok(())
            }

            /// Starts handling `message` for `consumer`: `None` when it was
            /// already handled (skip it and ack), else the transaction to
            /// write the effects in and commit.
            ///
            /// # Errors
            ///
            /// A [`StoreError`] from the database (the message should be
            /// redelivered: return a retryable error).
            pub async fn begin(
                &self,
                consumer: &str,
                message: &$crate::Message,
            ) -> Result<Option<InboxTransaction<$db>>, StoreError> {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| StoreError::new("inbox begin", e))?;
                let inserted = sqlx::query(sqlx::AssertSqlSafe(std::sync::Arc::clone(&self.insert)))
                    .bind(consumer)
                    .bind(message.id())
                    .bind($crate::backend::sql::now_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::new("inbox insert", e))?
                    .rows_affected();
                if inserted == 0 {
                    tx.rollback()
                        .await
                        .map_err(|e| StoreError::new("inbox rollback", e))?;
                    return Ok(None);
                }
                Ok(Some(InboxTransaction { tx }))
            }

            /// Whether `consumer` has handled `message_id` (committed).
            ///
            /// # Errors
            ///
            /// A [`StoreError`] from the database.
            pub async fn contains(&self, consumer: &str, message_id: &str) -> Result<bool, StoreError> {
                let sql = format!("SELECT COUNT(*) FROM {} WHERE consumer = $1 AND message_id = $2", self.table);
                let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(consumer)
                    .bind(message_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| StoreError::new("inbox lookup", e))?;
                Ok(n > 0)
            }

            /// Deletes the ids handled more than `older_than` ago; returns
            /// how many.
            ///
            /// # Errors
            ///
            /// A [`StoreError`] from the database.
            pub async fn prune(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
                let cutoff = $crate::backend::sql::now_millis()
                    .saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
                let sql = format!("DELETE FROM {} WHERE handled_at < $1", self.table);
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(cutoff)
                    .execute(&self.pool)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|e| StoreError::new("inbox prune", e))
            }
        }

        #[doc = concat!("Relay checkpoints in a ", $engine, " table `(relay, position)`.")]
        #[derive(Clone, Debug)]
        pub struct $checkpoints {
            pool: $pool,
            table: std::sync::Arc<str>,
            load: std::sync::Arc<str>,
            save: std::sync::Arc<str>,
        }

        impl $checkpoints {
            /// Checkpoints in the table `palisade_outbox_checkpoints`.
            #[must_use]
            pub fn new(pool: $pool) -> Self {
                Self::with_table(pool, "palisade_outbox_checkpoints").expect("a valid default table name")
            }

            /// Checkpoints in `table` (`table` or `schema.table`).
            ///
            /// # Errors
            ///
            /// A [`StoreError`] for an invalid table name.
            pub fn with_table(pool: $pool, table: &str) -> Result<Self, StoreError> {
                $crate::backend::sql::validate_table(table)?;
                Ok(Self {
                    pool,
                    load: format!("SELECT position FROM {table} WHERE relay = $1").into(),
                    save: format!(
                        "INSERT INTO {table} (relay, position, updated_at) VALUES ($1, $2, $3) ON CONFLICT (relay) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
                    )
                    .into(),
                    table: table.into(),
                })
            }

            /// Creates the table if it does not exist.
            ///
            /// # Errors
            ///
            /// A [`StoreError`] from the database.
            pub async fn migrate(&self) -> Result<(), StoreError> {
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS {} (relay TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
                    self.table
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&self.pool)
                    .await
                    .map(drop)
                    .map_err(|e| StoreError::new("create checkpoint table", e))
            }
        }

        impl $checkpoints {
            /// The checkpoint of the relay called `relay`, if it has one
            /// (the `CheckpointStore` impl in `outbox` calls this).
            pub(crate) async fn load_checkpoint(&self, relay: &str) -> Result<Option<u64>, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(std::sync::Arc::clone(&self.load)))
                    .bind(relay)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| StoreError::new("load checkpoint", e))?;
                Ok(row.map(|(p,)| u64::try_from(p).unwrap_or(0)))
            }

            /// Saves `position` as the checkpoint of `relay` (the
            /// `CheckpointStore` impl in `outbox` calls this).
            pub(crate) async fn save_checkpoint(&self, relay: &str, position: u64) -> Result<(), StoreError> {
                let position = i64::try_from(position)
                    .map_err(|e| StoreError::new("save checkpoint", e))?;
                sqlx::query(sqlx::AssertSqlSafe(std::sync::Arc::clone(&self.save)))
                    .bind(relay)
                    .bind(position)
                    .bind($crate::backend::sql::now_millis())
                    .execute(&self.pool)
                    .await
                    .map(drop)
                    .map_err(|e| StoreError::new("save checkpoint", e))
            }
        }
    };
}

pub(crate) use sql_stores;

/// A handler's transaction from an inbox's `begin`: write the effects
/// through it (`&mut **tx`, or [`transaction`](Self::transaction)),
/// then [`commit`](Self::commit). Dropped without committing, it rolls back
/// (the id is not recorded, the redelivery handles the message).
#[derive(Debug)]
pub struct InboxTransaction<DB: sqlx::Database> {
    pub(crate) tx: sqlx::Transaction<'static, DB>,
}

impl<DB: sqlx::Database> InboxTransaction<DB> {
    /// Commits the effects and the message id together.
    ///
    /// # Errors
    ///
    /// A [`StoreError`]: nothing was committed.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx
            .commit()
            .await
            .map_err(|e| StoreError::new("inbox commit", e))
    }

    /// The transaction, to run the handler's statements on.
    pub fn transaction(&mut self) -> &mut sqlx::Transaction<'static, DB> {
        &mut self.tx
    }
}

impl<DB: sqlx::Database> std::ops::Deref for InboxTransaction<DB> {
    type Target = sqlx::Transaction<'static, DB>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for InboxTransaction<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}
