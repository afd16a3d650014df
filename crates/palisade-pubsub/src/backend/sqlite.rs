//! SQLite through sqlx: the exactly-once [`SqliteInbox`] and the relay's
//! [`SqliteCheckpoints`].
//!
//! ```
//! use palisade_pubsub::backend::sqlite::{SqliteCheckpoints, SqliteInbox};
//! use palisade_pubsub::outbox::CheckpointStore;
//! use palisade_pubsub::Message;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! sqlx::query("CREATE TABLE balances (account TEXT PRIMARY KEY, cents BIGINT)").execute(&pool).await?;
//! sqlx::query("INSERT INTO balances VALUES ('a', 0)").execute(&pool).await?;
//! let inbox = SqliteInbox::new(pool.clone());
//! inbox.migrate().await?;
//!
//! let paid = Message::builder("payments.settled").id("pay-1").payload("250").build()?;
//! for _ in 0..2 {
//!     // The second delivery is a duplicate: `begin` answers `None`.
//!     if let Some(mut tx) = inbox.begin("billing", &paid).await? {
//!         sqlx::query("UPDATE balances SET cents = cents + 250 WHERE account = 'a'")
//!             .execute(&mut **tx)
//!             .await?;
//!         tx.commit().await?;
//!     }
//! }
//! let (cents,): (i64,) = sqlx::query_as("SELECT cents FROM balances").fetch_one(&pool).await?;
//! assert_eq!(cents, 250);
//!
//! let checkpoints = SqliteCheckpoints::new(pool);
//! checkpoints.migrate().await?;
//! checkpoints.save("orders", 42).await?;
//! assert_eq!(checkpoints.load("orders").await?, Some(42));
//! # Ok(())
//! # }
//! ```

pub use crate::backend::sql::InboxTransaction;
use crate::error::StoreError;

crate::backend::sql::sql_stores! {
    db: sqlx::Sqlite,
    pool: sqlx::SqlitePool,
    inbox: SqliteInbox,
    checkpoints: SqliteCheckpoints,
    engine: "SQLite",
}
