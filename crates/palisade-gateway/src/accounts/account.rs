//! The bank account of the seeds as an aggregate (the shape of
//! palisade-cqrs's `examples/bank/account.rs`): commands, events, the
//! domain's refusals, and the state as a fold over the events.
//!
//! Amounts are whole cents, positive, at most [`MAX_CENTS`] per command,
//! and a deposit that would take the balance past `i64::MAX` is refused:
//! the state never saturates silently.

use std::fmt;

use palisade::cqrs::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The largest amount one deposit or withdrawal may move, in cents
/// (a trillion: ten billion in whole units).
pub const MAX_CENTS: i64 = 1_000_000_000_000;

/// What a customer asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountCommand {
    /// Opens the account for `owner`.
    Open {
        /// The owner's name.
        owner: String,
    },
    /// Deposits `cents`.
    Deposit {
        /// The amount.
        cents: i64,
    },
    /// Withdraws `cents`, if the balance covers it.
    Withdraw {
        /// The amount.
        cents: i64,
    },
}

/// What happened to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AccountEvent {
    /// The account was opened.
    Opened {
        /// The owner's name.
        owner: String,
    },
    /// Money came in.
    Deposited {
        /// The amount.
        cents: i64,
    },
    /// Money went out.
    Withdrawn {
        /// The amount.
        cents: i64,
    },
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
    /// Amounts are positive and at most [`MAX_CENTS`].
    InvalidAmount {
        /// The amount asked.
        cents: i64,
    },
    /// The deposit would take the balance past what it can hold.
    BalanceOverflow {
        /// The balance.
        balance: i64,
        /// The amount asked.
        requested: i64,
    },
    /// The balance does not cover the withdrawal.
    Overdraft {
        /// The balance.
        balance: i64,
        /// The amount asked.
        requested: i64,
    },
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOpen => f.write_str("the account is not open"),
            Self::AlreadyOpen => f.write_str("the account is already open"),
            Self::InvalidAmount { cents } => {
                write!(f, "invalid amount {cents}: expected 1 to {MAX_CENTS} cents")
            }
            Self::BalanceOverflow { balance, requested } => write!(
                f,
                "deposit refused: balance {balance} plus {requested} does not fit"
            ),
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
    /// Whether it was opened.
    pub open: bool,
    /// Who opened it.
    pub owner: String,
    /// The balance, in cents.
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
                if self.balance.checked_add(*cents).is_none() {
                    return Err(AccountError::BalanceOverflow {
                        balance: self.balance,
                        requested: *cents,
                    });
                }
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
    /// Open, and `cents` a valid amount.
    fn check(&self, cents: i64) -> Result<(), AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        if cents <= 0 || cents > MAX_CENTS {
            return Err(AccountError::InvalidAmount { cents });
        }
        Ok(())
    }
}
