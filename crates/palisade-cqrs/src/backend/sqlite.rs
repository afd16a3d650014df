//! [`SqliteReadModel`]: a projection's checkpoint and parked events in a
//! SQLite file, next to its read model's tables.
//!
//! Every read-model transaction is `BEGIN IMMEDIATE`: it takes the file's
//! write lock before reading the checkpoint, so two transactions on the
//! same projection never interleave.
//!
//! **One runner per projection.** A SQLite file belongs to one host, and
//! this backend takes no lock across processes: run each projection in one
//! process. [`try_lock`](crate::backend::ProjectionBackend::try_lock)
//! always succeeds. Were two runners started on the same file anyway, each
//! batch still checks, under the write lock, that the checkpoint is the one
//! it started from, and rolls back otherwise: effects stay exactly once,
//! only work is wasted.

crate::backend::sql::sql_read_model! {
    db: sqlx::Sqlite,
    pool: sqlx::SqlitePool,
    backend: SqliteReadModel,
    engine: "SQLite",
    begin: "BEGIN IMMEDIATE",
    lock_suffix: "",
    create_schema: false,
    lease: (),
}

impl SqliteReadModel {
    #[allow(clippy::unused_async)]
    async fn try_lock_impl(&self, _name: &str) -> Result<Option<()>, sqlx::Error> {
        Ok(Some(()))
    }

    #[allow(clippy::unused_async)]
    async fn lease_alive_impl(_lease: &mut ()) -> bool {
        true
    }
}
