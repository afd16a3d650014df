//! Command handling: load, decide, append with the expected version;
//! conflicts reloaded; idempotent command ids; snapshots.

#[path = "../examples/bank/account.rs"]
mod account;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use account::{Account, AccountCommand, AccountError, AccountEvent};
use palisade_cqrs::{Command, CommandError, CommandHandler, CqrsEvent};
use palisade_event_store::backend::Backend;
use palisade_event_store::backend::memory::MemoryBackend;
use palisade_event_store::error::StoreError;
use palisade_event_store::{
    AppendResult, EventStore, EventStoreError, ExpectedVersion, NewEvent, RecordedEvent, Snapshot,
};
use tower::{Service, ServiceExt};

type Handler<B> = CommandHandler<Account, B>;

fn open(id: &str) -> Command<AccountCommand> {
    Command::new(
        id,
        AccountCommand::Open {
            owner: "Alice".into(),
        },
    )
}

fn deposit(id: &str, cents: i64) -> Command<AccountCommand> {
    Command::new(id, AccountCommand::Deposit { cents })
}

fn withdraw(id: &str, cents: i64) -> Command<AccountCommand> {
    Command::new(id, AccountCommand::Withdraw { cents })
}

fn memory_handler() -> Handler<palisade_event_store::backend::AnyBackend> {
    let store = EventStore::in_memory("bank").unwrap();
    CommandHandler::builder("accounts", store).build().unwrap()
}

#[tokio::test]
async fn a_command_appends_and_answers_its_version_and_position() {
    let mut accounts = memory_handler();
    let opened = accounts
        .ready()
        .await
        .unwrap()
        .call(open("a"))
        .await
        .unwrap();
    assert_eq!((opened.version(), opened.position()), (1, Some(1)));
    assert_eq!(opened.stream(), "account-a");
    let done = accounts
        .ready()
        .await
        .unwrap()
        .call(deposit("a", 100))
        .await
        .unwrap();
    assert_eq!((done.version(), done.position()), (2, Some(2)));
    assert_eq!(done.events(), &[AccountEvent::Deposited { cents: 100 }]);
    let stored = accounts
        .store()
        .read_stream("account-a", 1, 10)
        .await
        .unwrap();
    assert_eq!(stored[1].event_type(), "MoneyDeposited");
    let (state, version) = accounts.load("a").await.unwrap();
    assert_eq!((state.balance, version), (100, 2));
}

#[tokio::test]
async fn a_refusal_writes_nothing_and_carries_the_domain_error() {
    let accounts = memory_handler();
    accounts.handle(open("a")).await.unwrap();
    accounts.handle(deposit("a", 50)).await.unwrap();
    let err = accounts.handle(withdraw("a", 80)).await.unwrap_err();
    assert_eq!(
        err.as_rejected(),
        Some(&AccountError::Overdraft {
            balance: 50,
            requested: 80
        })
    );
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "command rejected: overdraft refused: balance 50, requested 80"
    );
    assert_eq!(
        accounts.store().stream_version("account-a").await.unwrap(),
        2
    );
}

#[tokio::test]
async fn a_retried_command_id_writes_once() {
    let accounts = memory_handler();
    accounts.handle(open("a")).await.unwrap();
    let first = accounts
        .handle(deposit("a", 100).id("req-1"))
        .await
        .unwrap();
    assert!(!first.already_stored());
    let again = accounts
        .handle(deposit("a", 100).id("req-1"))
        .await
        .unwrap();
    assert!(again.already_stored());
    assert_eq!(
        (again.version(), again.position()),
        (first.version(), first.position())
    );
    assert_eq!(again.events(), first.events());
    let stored = accounts
        .store()
        .read_stream("account-a", 1, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].id(), "req-1");
    assert_eq!(stored[1].metadata().causation_id.as_deref(), Some("req-1"));
    // Even when deciding again would now be refused (the money is gone),
    // the retry answers the first outcome.
    accounts
        .handle(withdraw("a", 100).id("req-2"))
        .await
        .unwrap();
    let retried = accounts
        .handle(withdraw("a", 100).id("req-2"))
        .await
        .unwrap();
    assert!(retried.already_stored());
    assert_eq!(accounts.load("a").await.unwrap().0.balance, 0);
}

/// A backend whose first two appends wait for each other: both commands
/// have loaded the same version before either appends, so one conflicts.
#[derive(Debug, Clone)]
struct Gated {
    inner: MemoryBackend,
    barrier: Arc<tokio::sync::Barrier>,
    appends: Arc<AtomicUsize>,
}

impl Backend for Gated {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        if self.appends.fetch_add(1, Ordering::SeqCst) < 2 {
            self.barrier.wait().await;
        }
        self.inner.append(stream, expected, events).await
    }
    async fn read_stream(
        &self,
        s: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(s, from, max).await
    }
    async fn read_stream_backward(
        &self,
        s: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_backward(s, from, max).await
    }
    async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max).await
    }
    async fn stream_version(&self, s: &str) -> Result<u64, StoreError> {
        self.inner.stream_version(s).await
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }
    async fn save_snapshot(&self, s: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(s).await
    }
    async fn load_snapshot(&self, s: &str) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(s).await
    }
}

async fn gated_accounts(max_conflict_retries: u32) -> (Handler<Gated>, Arc<AtomicUsize>) {
    let inner = MemoryBackend::new();
    let seed = EventStore::builder("seed").build(inner.clone()).unwrap();
    let opened = NewEvent::json(
        "o",
        "AccountOpened",
        &AccountEvent::Opened { owner: "A".into() },
    )
    .unwrap();
    let funded = NewEvent::json(
        "d",
        "MoneyDeposited",
        &AccountEvent::Deposited { cents: 100 },
    )
    .unwrap();
    seed.append("account-a", ExpectedVersion::NoStream, &[opened, funded])
        .await
        .unwrap();
    let gated = Gated {
        inner,
        barrier: Arc::new(tokio::sync::Barrier::new(2)),
        appends: Arc::new(AtomicUsize::new(0)),
    };
    let store = EventStore::builder("bank").build(gated).unwrap();
    let conflicts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&conflicts);
    let handler = CommandHandler::builder("accounts", store)
        .max_conflict_retries(max_conflict_retries)
        .on_event(move |e| {
            if matches!(e, CqrsEvent::CommandConflict { .. }) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    (handler, conflicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_writers_conflict_and_the_loser_decides_again() {
    let (accounts, conflicts) = gated_accounts(3).await;
    // Both withdraw 60 from 100, decided on the same version: the first
    // append wins; the second conflicts, reloads (balance 40) and is refused.
    let a = tokio::spawn({
        let accounts = accounts.clone();
        async move { accounts.oneshot(withdraw("a", 60)).await }
    });
    let b = tokio::spawn({
        let accounts = accounts.clone();
        async move { accounts.oneshot(withdraw("a", 60)).await }
    });
    let results = [a.await.unwrap(), b.await.unwrap()];
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(
        refused.as_rejected(),
        Some(&AccountError::Overdraft {
            balance: 40,
            requested: 60
        })
    );
    assert_eq!(conflicts.load(Ordering::SeqCst), 1);
    assert_eq!(
        accounts.load("a").await.unwrap(),
        (
            Account {
                open: true,
                owner: "A".into(),
                balance: 40
            },
            3
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_deposits_both_land_after_a_reload() {
    let (accounts, conflicts) = gated_accounts(3).await;
    let a = tokio::spawn(accounts.clone().oneshot(deposit("a", 5)));
    let b = tokio::spawn(accounts.clone().oneshot(deposit("a", 7)));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    let mut versions = [a.version(), b.version()];
    versions.sort_unstable();
    assert_eq!(versions, [3, 4]);
    assert_eq!(conflicts.load(Ordering::SeqCst), 1);
    assert_eq!(accounts.load("a").await.unwrap().0.balance, 112);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_bounded() {
    let (accounts, _) = gated_accounts(0).await;
    let a = tokio::spawn(accounts.clone().oneshot(deposit("a", 5)));
    let b = tokio::spawn(accounts.clone().oneshot(deposit("a", 7)));
    let results = [a.await.unwrap(), b.await.unwrap()];
    let err = results
        .into_iter()
        .find_map(Result::err)
        .expect("one conflicts");
    let CommandError::Conflict(conflict) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (conflict.attempts(), conflict.stream(), conflict.actual()),
        (1, "account-a", 3)
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn snapshots_are_taken_every_n_events_and_shorten_loading() {
    let store = EventStore::in_memory("bank").unwrap();
    let accounts: Handler<_> = CommandHandler::builder("accounts", store.clone())
        .snapshot_every(3)
        .build()
        .unwrap();
    accounts.handle(open("a")).await.unwrap();
    for _ in 0..4 {
        accounts.handle(deposit("a", 10)).await.unwrap();
    }
    let snapshot = store
        .load_snapshot("account-a", 1)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.version(), 3);
    assert_eq!(snapshot.decode::<Account>().unwrap().balance, 20);
    // A snapshot is a shortcut: a doctored one is used as it is (the tail
    // after it is folded on top) ...
    let doctored = Account {
        open: true,
        owner: "A".into(),
        balance: 1000,
    };
    store
        .save_snapshot(&Snapshot::new("account-a", 3, 1, &doctored).unwrap())
        .await
        .unwrap();
    assert_eq!(
        accounts.load("a").await.unwrap(),
        (
            Account {
                balance: 1020,
                ..doctored.clone()
            },
            5
        )
    );
    // ... but one that does not decode, or of another schema version, is
    // ignored and the stream folded from the start.
    store
        .save_snapshot(&Snapshot::new("account-a", 3, 1, &serde_json::json!({"nope": 1})).unwrap())
        .await
        .unwrap();
    assert_eq!(accounts.load("a").await.unwrap().0.balance, 40);
    store
        .save_snapshot(&Snapshot::new("account-a", 3, 2, &doctored).unwrap())
        .await
        .unwrap();
    assert_eq!(accounts.load("a").await.unwrap().0.balance, 40);
}

#[tokio::test]
async fn an_undecodable_stored_event_names_its_stream_version_and_type() {
    let accounts = memory_handler();
    accounts.handle(open("a")).await.unwrap();
    let garbage = NewEvent::new("g", "Mystery", serde_json::json!({"type": "Mystery"}));
    accounts
        .store()
        .append("account-a", ExpectedVersion::Exact(1), &[garbage])
        .await
        .unwrap();
    let err = accounts.handle(deposit("a", 1)).await.unwrap_err();
    let CommandError::Decode(decode) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (decode.stream(), decode.version(), decode.event_type()),
        ("account-a", 2, "Mystery")
    );
}

#[tokio::test]
async fn a_failing_store_is_a_transient_store_error() {
    let dir = std::env::temp_dir().join(palisade_test_util::unique_name("cqrs_down"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("events.db").display());
    let store = EventStore::builder("bank").url(&url).open().await.unwrap();
    let accounts: Handler<_> = CommandHandler::builder("accounts", store.clone())
        .build()
        .unwrap();
    accounts.handle(open("a")).await.unwrap();
    // The events table disappears under the store: every read fails.
    let palisade_event_store::backend::AnyBackend::Sqlite(sqlite) = store.backend() else {
        panic!("a sqlite store")
    };
    sqlx::query("DROP TABLE palisade_es_events")
        .execute(sqlite.pool())
        .await
        .unwrap();
    let err = accounts.handle(deposit("a", 1)).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(_)), "{err:?}");
    assert!(err.is_transient());
    drop((accounts, store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_are_validated() {
    let store = EventStore::in_memory("bank").unwrap();
    let err = CommandHandler::<Account, _>::builder("accounts", store.clone())
        .page_size(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "page_size");
    let err = CommandHandler::<Account, _>::builder("", store)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "name");
}

#[tokio::test]
async fn a_retry_hidden_by_a_snapshot_is_still_written_once() {
    let store = EventStore::in_memory("bank").unwrap();
    let accounts: Handler<_> = CommandHandler::builder("accounts", store.clone())
        .snapshot_every(1)
        .build()
        .unwrap();
    accounts.handle(open("a")).await.unwrap();
    let first = accounts.handle(deposit("a", 10).id("r")).await.unwrap();
    // The snapshot at version 2 hides the first deposit from the tail: the
    // command is decided again, and the store's idempotent append answers.
    assert_eq!(
        store
            .load_snapshot("account-a", 1)
            .await
            .unwrap()
            .unwrap()
            .version(),
        2
    );
    let again = accounts.handle(deposit("a", 10).id("r")).await.unwrap();
    assert!(again.already_stored());
    assert_eq!(
        (again.version(), again.position()),
        (first.version(), first.position())
    );
    assert_eq!(accounts.load("a").await.unwrap().0.balance, 10);
}

/// An aggregate whose commands decide several events.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Tally {
    total: u32,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Added(u32);

impl palisade_cqrs::DomainEvent for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }

    fn schema_version(&self) -> u32 {
        2
    }
}

impl palisade_cqrs::Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = u32;
    type Event = Added;
    type Error = std::convert::Infallible;

    fn decide(&self, times: &u32) -> Result<Vec<Added>, Self::Error> {
        Ok((0..*times).map(|_| Added(1)).collect())
    }

    fn evolve(self, event: &Added) -> Self {
        Self {
            total: self.total + event.0,
        }
    }
}

#[tokio::test]
async fn a_command_of_several_events_derives_their_ids_and_writes_once() {
    let store = EventStore::in_memory("tallies").unwrap();
    let tallies = CommandHandler::<Tally, _>::builder("tallies", store.clone())
        .build()
        .unwrap();
    let done = tallies
        .handle(Command::new("t", 3).id("cmd"))
        .await
        .unwrap();
    assert_eq!(
        (done.version(), done.position(), done.events().len()),
        (3, Some(3), 3)
    );
    let stored = store.read_stream("tally-t", 1, 10).await.unwrap();
    let ids: Vec<&str> = stored.iter().map(RecordedEvent::id).collect();
    assert_eq!(ids, ["cmd", "cmd#2", "cmd#3"]);
    assert!(
        stored
            .iter()
            .all(|e| e.schema_version() == 2 && e.event_type() == "Added")
    );
    let again = tallies
        .handle(Command::new("t", 3).id("cmd"))
        .await
        .unwrap();
    assert!(again.already_stored());
    assert_eq!(
        (again.version(), again.position(), again.events().len()),
        (3, Some(3), 3)
    );
    // No events decided: nothing written, no position.
    let none = tallies.handle(Command::new("t", 0)).await.unwrap();
    assert_eq!((none.version(), none.position()), (3, None));
    assert_eq!(tallies.load("t").await.unwrap().0.total, 3);
}

#[tokio::test]
async fn an_aggregate_loads_old_events_through_the_store_upcasters() {
    // Version 1 of the deposit carried euros as a float; version 2 (the
    // aggregate's) carries cents.
    let store = EventStore::builder("bank")
        .url("memory:")
        .upcaster(("MoneyDeposited", 1), ("MoneyDeposited", 2), |payload| {
            let euros = payload["euros"].as_f64().ok_or("no euros")?;
            #[allow(clippy::cast_possible_truncation)]
            let cents = (euros * 100.0).round() as i64;
            Ok(serde_json::json!({"type": "Deposited", "cents": cents}))
        })
        .open()
        .await
        .unwrap();
    let old = [
        NewEvent::json(
            "o",
            "AccountOpened",
            &AccountEvent::Opened { owner: "A".into() },
        )
        .unwrap(),
        NewEvent::new("d", "MoneyDeposited", serde_json::json!({"euros": 1.25})),
    ];
    store
        .append("account-a", ExpectedVersion::NoStream, &old)
        .await
        .unwrap();
    let accounts: Handler<_> = CommandHandler::builder("accounts", store).build().unwrap();
    let err = accounts.handle(withdraw("a", 126)).await.unwrap_err();
    assert_eq!(
        err.as_rejected(),
        Some(&AccountError::Overdraft {
            balance: 125,
            requested: 126
        })
    );
}

#[tokio::test]
async fn the_handler_composes_as_a_tower_service_with_boxed_errors() {
    use palisade_core::{BoxError, cause_ref};
    use tower::util::BoxCloneSyncService;

    let accounts = memory_handler();
    let svc: BoxCloneSyncService<Command<AccountCommand>, _, BoxError> =
        BoxCloneSyncService::new(accounts.map_err(BoxError::from));
    svc.clone().oneshot(open("a")).await.unwrap();
    let err = svc.oneshot(withdraw("a", 1)).await.unwrap_err();
    let rejected = cause_ref::<AccountError>(&*err).expect("the domain error in the chain");
    assert_eq!(
        rejected,
        &AccountError::Overdraft {
            balance: 0,
            requested: 1
        }
    );
}
