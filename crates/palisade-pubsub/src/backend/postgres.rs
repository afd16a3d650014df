//! PostgreSQL through sqlx: the exactly-once [`PgInbox`] and the relay's
//! [`PgCheckpoints`].
//!
//! The same API as the SQLite stores (see `backend::sqlite` for an
//! example); isolate tests or tenants with a schema-qualified table
//! (`with_table(pool, "tenant_a.palisade_inbox")`).

pub use crate::backend::sql::InboxTransaction;
use crate::error::StoreError;

crate::backend::sql::sql_stores! {
    db: sqlx::Postgres,
    pool: sqlx::PgPool,
    inbox: PgInbox,
    checkpoints: PgCheckpoints,
    engine: "PostgreSQL",
}
