//! The balances read model: one row per account (owner, cents), written by
//! a projection in the runner's transaction (so each event's effect and the
//! checkpoint commit together), in the event store's own database: SQLite
//! by default, PostgreSQL when `[event_store] url` names one, or a SQLite
//! database in memory next to a `memory:` store.
//!
//! The table's name is written into the statements (`AssertSqlSafe`): it
//! is the event store's `table_prefix`, which its settings' `validate()`
//! restricts to an identifier or `schema.identifier` of letters, digits
//! and `_`; every value is bound.

use palisade::BoxError;
use palisade::cqrs::Projection;
use palisade::event_store::RecordedEvent;

use super::account::AccountEvent;

/// The balances projection; `table` is `<event_store.table_prefix>_balances`.
#[derive(Clone, Debug)]
pub struct Balances {
    table: String,
}

/// One account as the read model has it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BalanceRow {
    /// The account's id.
    pub account: String,
    /// Who opened it.
    pub owner: String,
    /// Its balance, in cents.
    pub cents: i64,
}

impl Balances {
    /// The projection over the table `<prefix>_balances` (the prefix is an
    /// identifier or `schema.identifier`, checked by the event store's
    /// settings).
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Self {
            table: format!("{prefix}_balances"),
        }
    }

    /// The table's name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `CREATE TABLE IF NOT EXISTS`.
    pub(crate) fn create_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (account TEXT PRIMARY KEY, owner TEXT NOT NULL, cents BIGINT NOT NULL)",
            self.table
        )
    }

    /// The row of one account.
    pub(crate) fn select_sql(&self) -> String {
        format!(
            "SELECT account, owner, cents FROM {} WHERE account = $1",
            self.table
        )
    }

    /// The statement for `event` on `account`, with its binds (owner or
    /// cents).
    fn statement(&self, event: &AccountEvent) -> (String, Bind) {
        match event {
            AccountEvent::Opened { owner } => (
                format!(
                    "INSERT INTO {} (account, owner, cents) VALUES ($1, $2, 0)",
                    self.table
                ),
                Bind::Text(owner.clone()),
            ),
            AccountEvent::Deposited { cents } => (
                format!(
                    "UPDATE {} SET cents = cents + $2 WHERE account = $1",
                    self.table
                ),
                Bind::Cents(*cents),
            ),
            AccountEvent::Withdrawn { cents } => (
                format!(
                    "UPDATE {} SET cents = cents - $2 WHERE account = $1",
                    self.table
                ),
                Bind::Cents(*cents),
            ),
        }
    }
}

enum Bind {
    Text(String),
    Cents(i64),
}

/// The account id of an account stream (`account-<id>`).
fn account_of(envelope: &RecordedEvent) -> &str {
    envelope
        .stream()
        .strip_prefix("account-")
        .unwrap_or(envelope.stream())
}

macro_rules! balances_projection {
    ($db:ty) => {
        impl Projection<$db> for Balances {
            type Event = AccountEvent;

            fn handles(&self, event: &RecordedEvent) -> bool {
                event.stream().starts_with("account-")
            }

            async fn apply(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                event: &AccountEvent,
                envelope: &RecordedEvent,
            ) -> Result<(), BoxError> {
                let (sql, bind) = self.statement(event);
                let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_of(envelope));
                let query = match bind {
                    Bind::Text(owner) => query.bind(owner),
                    Bind::Cents(cents) => query.bind(cents),
                };
                query.execute(&mut **tx).await?;
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

balances_projection!(sqlx::Sqlite);
balances_projection!(sqlx::Postgres);
