//! CQRS on the palisade event store: aggregates as `decide`/`evolve` with a
//! given/when/then harness, command handling as a tower service, and
//! projections whose checkpoint commits with their read model.
//!
//! # Example
//!
//! The bank account of `examples/bank/account.rs`, shortened: an aggregate,
//! its test, commands through the handler, and a balances read model in
//! SQLite that a query reads after its own write.
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade_cqrs::backend::sqlite::SqliteReadModel;
//! use palisade_cqrs::harness::given;
//! use palisade_cqrs::{
//!     Aggregate, Command, CommandError, CommandHandler, DomainEvent, Projection, ProjectionRunner,
//! };
//! use palisade_event_store::{EventStore, RecordedEvent};
//! use serde::{Deserialize, Serialize};
//! use tower::{Service, ServiceExt};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Account { balance: i64 }
//!
//! #[derive(Clone)]
//! enum Cmd { Deposit(i64), Withdraw(i64) }
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum Event { Deposited { cents: i64 }, Withdrawn { cents: i64 } }
//!
//! impl DomainEvent for Event {
//!     fn event_type(&self) -> &'static str {
//!         match self { Event::Deposited { .. } => "MoneyDeposited", Event::Withdrawn { .. } => "MoneyWithdrawn" }
//!     }
//! }
//!
//! #[derive(Debug, PartialEq)]
//! struct Overdraft { balance: i64 }
//! impl std::fmt::Display for Overdraft {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         write!(f, "overdraft refused: balance {}", self.balance)
//!     }
//! }
//! impl std::error::Error for Overdraft {}
//!
//! impl Aggregate for Account {
//!     const TYPE: &'static str = "account";
//!     type Command = Cmd;
//!     type Event = Event;
//!     type Error = Overdraft;
//!
//!     fn decide(&self, command: &Cmd) -> Result<Vec<Event>, Overdraft> {
//!         match *command {
//!             Cmd::Deposit(cents) => Ok(vec![Event::Deposited { cents }]),
//!             Cmd::Withdraw(cents) if cents > self.balance => Err(Overdraft { balance: self.balance }),
//!             Cmd::Withdraw(cents) => Ok(vec![Event::Withdrawn { cents }]),
//!         }
//!     }
//!
//!     fn evolve(self, event: &Event) -> Self {
//!         match event {
//!             Event::Deposited { cents } => Account { balance: self.balance + cents },
//!             Event::Withdrawn { cents } => Account { balance: self.balance - cents },
//!         }
//!     }
//! }
//!
//! /// The read model: one row per account, written in the runner's transaction.
//! struct Balances;
//!
//! impl Projection<sqlx::Sqlite> for Balances {
//!     type Event = Event;
//!
//!     async fn apply(
//!         &self,
//!         tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
//!         event: &Event,
//!         envelope: &RecordedEvent,
//!     ) -> Result<(), palisade_core::BoxError> {
//!         let delta = match event { Event::Deposited { cents } => *cents, Event::Withdrawn { cents } => -cents };
//!         sqlx::query("INSERT INTO balances VALUES ($1, $2) \
//!                      ON CONFLICT (account) DO UPDATE SET cents = cents + excluded.cents")
//!             .bind(envelope.stream())
//!             .bind(delta)
//!             .execute(&mut **tx)
//!             .await?;
//!         Ok(())
//!     }
//!
//!     async fn reset(&self, tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<(), palisade_core::BoxError> {
//!         sqlx::query("DELETE FROM balances").execute(&mut **tx).await?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The aggregate alone: given past events, when a command, then events or an error.
//! given::<Account>([Event::Deposited { cents: 100 }])
//!     .when(Cmd::Withdraw(130))
//!     .then_error(Overdraft { balance: 100 });
//!
//! // Events and read model in one SQLite file.
//! # let dir = std::env::temp_dir().join(format!("cqrs-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let url = format!("sqlite:{}", dir.join("bank.db").display());
//! let store = EventStore::builder("bank").url(&url).open().await?;
//! let pool = sqlx::SqlitePool::connect(&url).await?;
//! sqlx::query("CREATE TABLE balances (account TEXT PRIMARY KEY, cents BIGINT NOT NULL)")
//!     .execute(&pool)
//!     .await?;
//! let balances = ProjectionRunner::builder(
//!     "balances",
//!     Balances,
//!     SqliteReadModel::new(pool.clone(), "palisade_projection")?,
//!     store.clone(),
//! )
//! .start()
//! .await?;
//!
//! // Commands through a tower service; the command id makes a retry a no-op.
//! let mut accounts = CommandHandler::<Account, _>::builder("accounts", store).build()?;
//! let deposit = Command::new("7", Cmd::Deposit(100)).id("req-1");
//! let done = accounts.ready().await?.call(deposit.clone()).await?;
//! assert!(accounts.ready().await?.call(deposit).await?.already_stored());
//! let refused = accounts.ready().await?.call(Command::new("7", Cmd::Withdraw(130))).await;
//! assert!(matches!(refused, Err(CommandError::Rejected(Overdraft { balance: 100 }))));
//!
//! // Read your writes: wait (bounded) until the read model has the deposit.
//! balances.wait_for(done.position().unwrap_or(0), Duration::from_secs(5)).await?;
//! let (cents,): (i64,) = sqlx::query_as("SELECT cents FROM balances WHERE account = 'account-7'")
//!     .fetch_one(&pool)
//!     .await?;
//! assert_eq!(cents, 100);
//! # balances.stop();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! A [`CommandHandler`] is a `Service<Command<_>>`: stack the usual layers
//! around it. Outermost first: a timeout (a slow database fails fast), a
//! circuit breaker counting [`CommandError::is_transient`] errors as
//! failures (a database that is down answers 503 at once), a bulkhead
//! (bounds the commands waiting for the store's pool). Retry only
//! transient errors, and only commands that carry an [id](Command::id):
//! the retried command then writes once. Never retry a
//! [`CommandError::Rejected`]: the domain said no. Conflicts are handled
//! inside (reload, decide again, bounded by
//! [`max_conflict_retries`](CommandSettings::max_conflict_retries)).
//!
//! Events reach projections in the store's global order, which is
//! gap-safe (see `palisade_event_store`, "Ordering"): a runner never skips
//! an event that commits after a later one became visible. A projection
//! sees each stream's events in version order.
//!
//! # Clone
//!
//! [`CommandHandler`] and [`ProjectionHandle`] are `Arc`s: clones share the
//! store, the settings, the metrics and the listeners (a handle's clones
//! control the one runner); cloning does not create new state. A handler
//! holds no readiness reservation, so a clone is ready at once.
//!
//! # Backpressure
//!
//! `poll_ready` always answers `Ready`: the handler reserves nothing.
//! Commands wait when they run, for the store's pool and write lock (see
//! `palisade_event_store`, "Backpressure"); put a bulkhead in front to
//! bound how many wait. A projection runner holds one batch
//! ([`batch_size`](ProjectionSettings::batch_size) events) and one
//! read-model transaction at a time, and reads the store at its own pace:
//! a slow read model shows as [lag](ProjectionHandle::lag), never as
//! memory.
//!
//! # Errors
//!
//! | error | when | HTTP |
//! |---|---|---|
//! | [`CommandError::Rejected`] | the aggregate refused (an overdraft) | 409 or 422, with the domain's reason |
//! | [`CommandError::Conflict`] ([`ConflictsExhausted`](error::ConflictsExhausted)) | other writers kept winning past `max_conflict_retries` | 409 or 503, retry later |
//! | [`CommandError::Decode`] | a stored event of the stream does not decode: names stream, version, type | 500: fix the data or add an upcaster |
//! | [`CommandError::Encode`] | a decided event does not serialize | 500: a bug |
//! | [`CommandError::Store`] | the store failed (transient) or refused an id | 503 (transient), else 409 |
//! | [`WaitTimeout`] | a read-your-writes wait ran out | 503 with `Retry-After`, or a stale read marked so |
//! | [`ProjectionError`](error::ProjectionError) | the read-model database failed (start, parked, rebuild) | 503 |
//!
//! Nothing is written when a command fails. A projection never fails as a
//! whole: an event it cannot apply is parked
//! ([`ProjectionHandle::parked`]) and a database error is retried.
//!
//! # Projections
//!
//! A [`ProjectionRunner`] feeds one [`Projection`] from the store's global
//! order. Each batch is one read-model transaction: the runner checks the
//! checkpoint (locked), applies the events through the projection's
//! [`apply`](Projection::apply), moves the checkpoint past them, commits.
//! A crash anywhere rolls the batch back, and the next runner resumes at
//! the checkpoint: every event's effect is in the read model exactly once.
//! An event that does not decode is parked at once; one whose handler
//! fails is retried alone ([`max_attempts`](ProjectionSettings::max_attempts)),
//! then parked with its error; the projection goes on.
//! [`ProjectionHandle::rebuild`] clears the read model and replays from `0`.
//!
//! One runner per projection is active: on PostgreSQL the one holding the
//! projection's advisory lock (the others stand by and take over when it
//! goes, see [`backend::postgres`]); on SQLite, run each projection in one
//! process (see [`backend::sqlite`]; a [`Registry`] keeps one per name in a
//! process). Neither is needed for exactly-once, which the locked
//! checkpoint gives alone; they keep runners from doing the same work twice.
//!
//! # Metrics
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `palisade_cqrs_commands_total` | counter | `name`, `outcome` (`written`, `already_stored`, `unchanged`, `rejected`, `error`) |
//! | `palisade_cqrs_command_duration_seconds` | histogram | `name` |
//! | `palisade_cqrs_command_conflicts_total` | counter | `name` |
//! | `palisade_cqrs_snapshots_total` | counter | `name` |
//! | `palisade_cqrs_projection_events_total` | counter | `name` (the projection) |
//! | `palisade_cqrs_projection_parked_total` | counter | `name` |
//! | `palisade_cqrs_projection_checkpoint` | gauge | `name` |
//! | `palisade_cqrs_projection_lag` | gauge | `name`: the store's head position minus the checkpoint |
//! | `palisade_cqrs_projection_active` | gauge | `name`: `1` while this process runs it |
//!
//! # Events
//!
//! [`CqrsEvent`] to listeners added with `on_event` on either builder:
//! conflicts, snapshots, parked events, a runner becoming active or
//! standing by, rebuilds.
//!
//! # Why
//!
//! The CQRS crates this project compared (cqrs-es, esrs, eventually)
//! dispatch projections inline with the command, so a crash between the
//! append and the read-model write loses the update for good, and they
//! follow a global sequence that can skip events. Here a projection is fed
//! from the gap-safe global order, and its checkpoint commits in the same
//! transaction as its effects; a poisoned event is parked, visible, and
//! does not stall it; snapshots are a shortcut, never trusted over the
//! events. See `docs/patterns/cqrs.md`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod backend;
mod builder;
mod command;
pub mod error;
mod event;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod handle;
pub mod harness;
mod metrics;
mod parked;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod projection;
mod service;
mod settings;

pub use aggregate::{Aggregate, DomainEvent, event_id, stream_name};
pub use builder::CommandHandlerBuilder;
pub use command::{Command, CommandOutcome};
pub use error::{CommandError, WaitTimeout};
pub use event::CqrsEvent;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use handle::{ProjectionHandle, ProjectionSnapshot};
pub use palisade_core::Registry;
pub use parked::ParkedEvent;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use projection::{Projection, ProjectionRunner, ProjectionRunnerBuilder};
pub use service::{CommandFuture, CommandHandler};
pub use settings::{
    CommandSettings, DEFAULT_TABLE_PREFIX, MAX_ATTEMPTS, MAX_CONFLICT_RETRIES, MAX_NAME_LEN,
    MAX_PAGE_SIZE, ProjectionSettings,
};
