//! The bank account of the seeds, event-sourced: the write model
//! ([`account`]) behind palisade-cqrs's command handler, the balances read
//! model ([`balances`]) fed by a projection runner, both on the event store
//! `[event_store]` configures (a SQLite file by default, PostgreSQL for a
//! fleet, `memory:` for tests). The routes are in `routes/accounts.rs`.
//!
//! # The command path
//!
//! A command goes through a tower stack, outermost first: a timeout
//! ([`COMMAND_TIMEOUT`]: a database that hangs fails fast), a circuit breaker
//! (`accounts`, in `/admin/event-store`: after
//! [`BREAKER_FAILURES`] infrastructure failures in a row it refuses at once
//! for [`BREAKER_WAIT`]), then the command handler (load, decide, append
//! with the expected version, reload and decide again on a conflict). The
//! domain's refusals (an overdraft) are answers, not failures: the stack's
//! response is `Result<CommandOutcome, AccountError>`, so they never trip
//! the breaker. Whatever fails, nothing is half-written: an append is all
//! or nothing.
//!
//! # Idempotency
//!
//! A command may carry an id (the routes use the `Idempotency-Key` header,
//! scoped to the account and the operation); it becomes the id of the event
//! it writes, so the same command sent twice writes once and answers the
//! first outcome again.
//!
//! # Tasks
//!
//! [`Accounts::open`] starts two tasks on the caller's runtime: the
//! projection runner of the balances, and the feed that keeps the last
//! [`RECENT_EVENTS`] events for the dashboard. [`Accounts::stop`] ends both
//! (the gateway calls it when it has drained).

pub mod account;
pub mod balances;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use palisade::cqrs::backend::postgres::PgReadModel;
use palisade::cqrs::backend::sqlite::SqliteReadModel;
use palisade::cqrs::{
    Command, CommandError, CommandHandler, CommandOutcome, ProjectionHandle, ProjectionRunner,
};
use palisade::event_store::backend::AnyBackend;
use palisade::event_store::{EventStore, EventStoreHandle, EventStoreSettings, RecordedEvent};
use palisade::{BoxError, Registry};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::AbortHandle;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

pub use account::{Account, AccountCommand, AccountError, AccountEvent, MAX_CENTS};
pub use balances::{BalanceRow, Balances};

use crate::shared::StartError;

/// The event store's name (its metrics' `name` label, its entry in
/// `/admin/event-store`).
pub const STORE_NAME: &str = "accounts";
/// The balances projection's name.
pub const PROJECTION_NAME: &str = "balances";
/// How long a command may take, from the breaker's admission to its
/// answer, before it fails with a `503`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Infrastructure failures in a row that open the accounts' breaker.
pub const BREAKER_FAILURES: u32 = 3;
/// How long the open breaker refuses commands before it tries one.
pub const BREAKER_WAIT: Duration = Duration::from_secs(5);
/// How many of the store's latest events the dashboard shows.
pub const RECENT_EVENTS: usize = 20;

/// What a command answers: its outcome, or the domain's refusal.
pub type AccountReply = Result<CommandOutcome<AccountEvent>, AccountError>;

/// The command stack: timeout, breaker, command handler.
pub type AccountService = BoxCloneSyncService<Command<AccountCommand>, AccountReply, BoxError>;

/// One event as the dashboard's live stream shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecentEvent {
    /// Its global position.
    pub position: u64,
    /// Its stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its type.
    pub event_type: String,
    /// When it was recorded, ms since the Unix epoch.
    pub recorded_at_ms: u64,
}

impl RecentEvent {
    fn of(event: &RecordedEvent) -> Self {
        Self {
            position: event.position(),
            stream: event.stream().to_owned(),
            version: event.version(),
            event_type: event.event_type().to_owned(),
            recorded_at_ms: millis_since_epoch(event.recorded_at()),
        }
    }
}

/// `at` in ms since the Unix epoch (`0` before it).
#[must_use]
pub fn millis_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where the balances live.
#[derive(Clone, Debug)]
enum ReadModel {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

struct Inner {
    store: EventStore<AnyBackend>,
    commands: AccountService,
    breaker: CircuitBreakerHandle,
    projection: ProjectionHandle,
    read_model: ReadModel,
    balances: Balances,
    stores: Registry<EventStoreHandle>,
    projections: Registry<ProjectionHandle>,
    recent: Arc<Mutex<VecDeque<RecentEvent>>>,
    feed: Mutex<Option<AbortHandle>>,
}

/// The accounts feature: the store, the command stack, the balances
/// projection and the recent-events feed. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("store", &self.inner.store.handle().snapshot().backend)
            .field("projection", &self.inner.projection)
            .finish_non_exhaustive()
    }
}

fn start_error(what: &str, err: impl std::fmt::Display) -> StartError {
    StartError::Other(format!("accounts: {what}: {err}"))
}

impl Accounts {
    /// Opens the store `settings` names (creating its tables), the balances
    /// table next to it, starts the projection runner and the feed, and
    /// builds the command stack.
    ///
    /// # Errors
    ///
    /// The store or the read model cannot be opened.
    pub async fn open(settings: &EventStoreSettings) -> Result<Self, StartError> {
        let stores = Registry::new();
        let store = EventStore::builder(STORE_NAME)
            .settings(settings.clone())
            .registry(&stores)
            .open()
            .await
            .map_err(|e| start_error("open the event store", e))?;
        let prefix = &settings.table_prefix;
        let balances = Balances::new(prefix);
        let projections = Registry::new();
        let read_prefix = format!("{prefix}_projection");
        let (read_model, projection) = match store.backend() {
            AnyBackend::Postgres(backend) => {
                let pool = backend.pool().clone();
                sqlx::query(sqlx::AssertSqlSafe(balances.create_sql()))
                    .execute(&pool)
                    .await
                    .map_err(|e| start_error("create the balances table", e))?;
                let backend = PgReadModel::new(pool.clone(), &read_prefix)
                    .map_err(|e| start_error("read model", e))?;
                let handle = ProjectionRunner::builder(
                    PROJECTION_NAME,
                    balances.clone(),
                    backend,
                    store.clone(),
                )
                .registry(&projections)
                .start()
                .await
                .map_err(|e| start_error("start the projection", e))?;
                (ReadModel::Postgres(pool), handle)
            }
            other => {
                let pool = match other {
                    AnyBackend::Sqlite(backend) => backend.pool().clone(),
                    // `memory:`: the balances in a SQLite database in memory,
                    // one connection kept for the process's life.
                    _ => sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                        .connect("sqlite::memory:")
                        .await
                        .map_err(|e| start_error("open the in-memory read model", e))?,
                };
                sqlx::query(sqlx::AssertSqlSafe(balances.create_sql()))
                    .execute(&pool)
                    .await
                    .map_err(|e| start_error("create the balances table", e))?;
                let backend = SqliteReadModel::new(pool.clone(), &read_prefix)
                    .map_err(|e| start_error("read model", e))?;
                let handle = ProjectionRunner::builder(
                    PROJECTION_NAME,
                    balances.clone(),
                    backend,
                    store.clone(),
                )
                .registry(&projections)
                .start()
                .await
                .map_err(|e| start_error("start the projection", e))?;
                (ReadModel::Sqlite(pool), handle)
            }
        };
        let handler = CommandHandler::<Account, _>::builder(STORE_NAME, store.clone())
            .build()
            .map_err(|e| start_error("command handler", e))?;
        let breaker = CircuitBreakerLayer::builder(STORE_NAME)
            .consecutive_failures(BREAKER_FAILURES)
            .wait_in_open(BREAKER_WAIT)
            .build()
            .map_err(|e| start_error("circuit breaker", e))?;
        let breaker_handle = breaker.handle();
        // The domain's refusals are answers: only the infrastructure's
        // failures reach the breaker.
        let handler = handler.map_result(|result| match result {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(CommandError::Rejected(refused)) => Ok(Err(refused)),
            Err(err) => Err(BoxError::from(err)),
        });
        let commands = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .timeout(COMMAND_TIMEOUT)
                .layer(breaker)
                .service(handler),
        );
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)));
        let feed = tokio::spawn(feed(store.clone(), Arc::clone(&recent))).abort_handle();
        tracing::info!(
            backend = store.handle().snapshot().backend,
            url = %store.handle().snapshot().settings.url,
            "accounts ready"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                commands,
                breaker: breaker_handle,
                projection,
                read_model,
                balances,
                stores,
                projections,
                recent,
                feed: Mutex::new(Some(feed)),
            }),
        })
    }

    /// Sends `command` through the stack (timeout, breaker, handler).
    ///
    /// # Errors
    ///
    /// The timeout's `Elapsed`, the breaker's `CircuitOpen`, or the
    /// handler's [`CommandError`] (never `Rejected`: that is an answer).
    pub async fn send(&self, command: Command<AccountCommand>) -> Result<AccountReply, BoxError> {
        self.inner.commands.clone().oneshot(command).await
    }

    /// The account's row in the read model, as it is now.
    ///
    /// # Errors
    ///
    /// The read model's database failed.
    pub async fn balance(&self, account: &str) -> Result<Option<BalanceRow>, sqlx::Error> {
        let sql = self.inner.balances.select_sql();
        let row: Option<(String, String, i64)> = match &self.inner.read_model {
            ReadModel::Sqlite(pool) => {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(account)
                    .fetch_optional(pool)
                    .await?
            }
            ReadModel::Postgres(pool) => {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(account)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(row.map(|(account, owner, cents)| BalanceRow {
            account,
            owner,
            cents,
        }))
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &EventStore<AnyBackend> {
        &self.inner.store
    }

    /// The command stack's breaker.
    #[must_use]
    pub fn breaker(&self) -> &CircuitBreakerHandle {
        &self.inner.breaker
    }

    /// The balances projection.
    #[must_use]
    pub fn projection(&self) -> &ProjectionHandle {
        &self.inner.projection
    }

    /// The event stores, by name (one: [`STORE_NAME`]).
    #[must_use]
    pub fn stores(&self) -> &Registry<EventStoreHandle> {
        &self.inner.stores
    }

    /// The projections, by name (one: [`PROJECTION_NAME`]).
    #[must_use]
    pub fn projections(&self) -> &Registry<ProjectionHandle> {
        &self.inner.projections
    }

    /// The store's latest events (at most [`RECENT_EVENTS`]), newest first.
    #[must_use]
    pub fn recent_events(&self) -> Vec<RecentEvent> {
        self.inner.recent.lock().iter().rev().cloned().collect()
    }

    /// Whether the feed or the projection runner still runs.
    #[must_use]
    pub fn is_running(&self) -> bool {
        let feed = self
            .inner
            .feed
            .lock()
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        feed || self.inner.projection.is_running()
    }

    /// Stops the projection runner (a batch in flight rolls back; the next
    /// start resumes at the checkpoint) and the feed. Idempotent.
    pub fn stop(&self) {
        self.inner.projection.stop();
        if let Some(feed) = self.inner.feed.lock().take() {
            feed.abort();
        }
    }
}

/// Follows every stream from a little before the head, keeping the last
/// [`RECENT_EVENTS`] events; after a read error, waits a second and goes on
/// from where it was.
async fn feed(store: EventStore<AnyBackend>, recent: Arc<Mutex<VecDeque<RecentEvent>>>) {
    let head = store.head_position().await.unwrap_or(0);
    let mut after = head.saturating_sub(RECENT_EVENTS as u64);
    loop {
        let mut subscription = store.subscribe_all(after);
        loop {
            match subscription.next().await {
                Ok(event) => {
                    let mut recent = recent.lock();
                    if recent.len() == RECENT_EVENTS {
                        recent.pop_front();
                    }
                    recent.push_back(RecentEvent::of(&event));
                    after = event.position();
                }
                Err(err) => {
                    tracing::warn!(%err, "accounts: the event feed failed to read; retrying in 1 s");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
