//! The bank account of the seeds, as an aggregate and a SQLite read model:
//! shared by `examples/bank_account.rs` and the tests, and the shape the
//! gateway's accounts follow.

#![allow(dead_code, unreachable_pub)]

use std::fmt;

use palisade_core::BoxError;
use palisade_cqrs::{Aggregate, DomainEvent, Projection};
use palisade_event_store::RecordedEvent;
use serde::{Deserialize, Serialize};

/// What a customer asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountCommand {
    /// Opens the account for `owner`.
    Open { owner: String },
    /// Deposits `cents`.
    Deposit { cents: i64 },
    /// Withdraws `cents`, if the balance covers it.
    Withdraw { cents: i64 },
}

/// What happened to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AccountEvent {
    /// The account was opened.
    Opened { owner: String },
    /// Money came in.
    Deposited { cents: i64 },
    /// Money went out.
    Withdrawn { cents: i64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "AccountOpened",
            Self::Deposited { .. } => "MoneyDeposited",
            Self::Withdrawn { .. } => "MoneyWithdrawn",
        }
    }
}

/// Why a command is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountError {
    /// The account does not exist yet.
    NotOpen,
    /// It is already open.
    AlreadyOpen,
    /// Amounts are positive.
    InvalidAmount { cents: i64 },
    /// The balance does not cover the withdrawal.
    Overdraft { balance: i64, requested: i64 },
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOpen => f.write_str("the account is not open"),
            Self::AlreadyOpen => f.write_str("the account is already open"),
            Self::InvalidAmount { cents } => write!(f, "invalid amount {cents}"),
            Self::Overdraft { balance, requested } => {
                write!(
                    f,
                    "overdraft refused: balance {balance}, requested {requested}"
                )
            }
        }
    }
}

impl std::error::Error for AccountError {}

/// An account's state: a fold over its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub owner: String,
    pub balance: i64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn decide(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { owner } => {
                if self.open {
                    return Err(AccountError::AlreadyOpen);
                }
                Ok(vec![AccountEvent::Opened {
                    owner: owner.clone(),
                }])
            }
            AccountCommand::Deposit { cents } => {
                self.check(*cents)?;
                Ok(vec![AccountEvent::Deposited { cents: *cents }])
            }
            AccountCommand::Withdraw { cents } => {
                self.check(*cents)?;
                if *cents > self.balance {
                    return Err(AccountError::Overdraft {
                        balance: self.balance,
                        requested: *cents,
                    });
                }
                Ok(vec![AccountEvent::Withdrawn { cents: *cents }])
            }
        }
    }

    fn evolve(mut self, event: &AccountEvent) -> Self {
        match event {
            AccountEvent::Opened { owner } => {
                self.open = true;
                self.owner.clone_from(owner);
            }
            AccountEvent::Deposited { cents } => self.balance = self.balance.saturating_add(*cents),
            AccountEvent::Withdrawn { cents } => self.balance = self.balance.saturating_sub(*cents),
        }
        self
    }
}

impl Account {
    fn check(&self, cents: i64) -> Result<(), AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        if cents <= 0 {
            return Err(AccountError::InvalidAmount { cents });
        }
        Ok(())
    }
}

/// The balances read model: one row per account, in SQLite.
#[derive(Clone, Debug, Default)]
pub struct Balances;

impl Balances {
    /// Creates the read model's table.
    pub async fn create(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, owner TEXT NOT NULL, cents BIGINT NOT NULL)",
        )
        .execute(pool)
        .await
        .map(drop)
    }

    /// The balance of `account`, if it is open.
    pub async fn get(pool: &sqlx::SqlitePool, account: &str) -> Result<Option<i64>, sqlx::Error> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT cents FROM balances WHERE account = $1")
            .bind(account)
            .fetch_optional(pool)
            .await?;
        Ok(row.map(|(c,)| c))
    }
}

impl Projection<sqlx::Sqlite> for Balances {
    type Event = AccountEvent;

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.stream().starts_with("account-")
    }

    async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        event: &AccountEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let account = envelope.stream().trim_start_matches("account-");
        match event {
            AccountEvent::Opened { owner } => {
                sqlx::query("INSERT INTO balances (account, owner, cents) VALUES ($1, $2, 0)")
                    .bind(account)
                    .bind(owner)
                    .execute(&mut **tx)
                    .await?;
            }
            AccountEvent::Deposited { cents } => {
                sqlx::query("UPDATE balances SET cents = cents + $2 WHERE account = $1")
                    .bind(account)
                    .bind(cents)
                    .execute(&mut **tx)
                    .await?;
            }
            AccountEvent::Withdrawn { cents } => {
                sqlx::query("UPDATE balances SET cents = cents - $2 WHERE account = $1")
                    .bind(account)
                    .bind(cents)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    async fn reset(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> Result<(), BoxError> {
        sqlx::query("DELETE FROM balances")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
