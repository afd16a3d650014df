//! Benchmarks for the event store on SQLite (a file, WAL,
//! `synchronous = NORMAL`) and PostgreSQL, side by side with raw sqlx in
//! one run, and the CQRS load and projection paths on top of it.
//!
//! - `append`: one append of a batch of 1 or 100 events to one stream
//!   (`ExpectedVersion::Any`) through `EventStore::append`: a transaction
//!   (`BEGIN IMMEDIATE` on SQLite) that advances the head row (the write
//!   lock and the batch's positions), reads the stream's version and looks
//!   up the batch's ids in one statement, and inserts the rows. The floor,
//!   `raw_insert`, writes the same rows (same nine columns, same JSON text,
//!   same unique indexes) with one multi-row `INSERT` in one transaction
//!   and checks nothing. Both build the batch's events inside the timed
//!   loop. Reported per event. `pg_*`: the same on PostgreSQL
//!   (`PALISADE_TEST_POSTGRES_URL`; skipped with a printed reason when
//!   unset), each side in its own schema.
//! - `append_phases`: a single-event append's round trips issued by hand
//!   with the store's own statements (and the raw floor's), each timed;
//!   the mean of each phase is printed after the bench.
//! - `commands_64_streams`: 64 tasks each handle one deposit command for
//!   their own account through `CommandHandler` (load, decide, append).
//! - `append_64_streams`: 64 tasks on a 2-worker runtime each append one
//!   batch (1 or 100 events) to its own stream, all at once; one sample is
//!   one such round, reported per event. The store's pool and the raw
//!   pool have the same size (8 connections, the store's default). The raw
//!   floor allocates positions from an atomic counter and versions per
//!   stream, so its inserts never wait on each other beyond the database.
//! - `load_aggregate`: `CommandHandler::load` of an account whose stream
//!   holds 10 000 events, without a snapshot (every event read in pages of
//!   256, decoded and folded) and with a snapshot at version 10 000 (the
//!   snapshot row, then an empty read of the tail).
//! - `projection_catch_up`: a `ProjectionRunner` (SQLite read model in the
//!   store's file, default batches of 100) started at checkpoint 0 on a
//!   store of 10 000 events over 64 streams, timed until `wait_for` sees
//!   the head; reported per event.
//! - `read_all`: reading 1 000 events after position 0 from a store of
//!   10 000, through `EventStore::read_all` (rows decoded into
//!   `RecordedEvent`s, payload and metadata parsed as JSON), and through a
//!   raw `SELECT` of the same columns whose payloads are parsed as JSON.
//!   Reported per event.
//!
//! The cqrs-es / postgres-es peer is not in this binary: postgres-es 0.5 is
//! on sqlx 0.8, and Cargo resolves `links = "sqlite3"` over the whole
//! lockfile (sqlx 0.8's unused SQLite driver included), which would move
//! the workspace's SQLite down to libsqlite3-sys 0.30. It is measured by
//! `benches/peers/cqrs-es`, a separate workspace (see docs/benchmarks.md).
//!
//! Run: `PALISADE_TEST_POSTGRES_URL=postgres://... cargo bench -p palisade-benches --bench event_store`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use divan::counter::ItemsCount;
use divan::{AllocProfiler, Bencher};
use palisade_cqrs::backend::sqlite::SqliteReadModel;
use palisade_cqrs::{
    Aggregate, Command, CommandHandler, DomainEvent, Projection, ProjectionRunner,
};
use palisade_event_store::{
    EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Snapshot,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const READ: usize = 1_000;
const STORED: usize = 10_000;
/// Concurrent streams of `append_64_streams`.
const STREAMS: usize = 64;
/// Connections of every pool here (the store's default).
const POOL: u32 = 8;
/// Events of the aggregate `load_aggregate` loads.
const LOADED: u64 = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "palisade-bench-es-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

fn events(n: u64, batch: usize) -> Vec<NewEvent> {
    (0..batch)
        .map(|i| {
            NewEvent::new(
                format!("{n}-{i}"),
                "Deposited",
                json!({"cents": 100, "memo": "salary"}),
            )
            .metadata(Metadata::correlated("req-1"))
        })
        .collect()
}

async fn open_store(dir: &std::path::Path) -> EventStore {
    EventStore::builder("bench")
        .url(format!("sqlite:{}", dir.join("events.db").display()))
        .max_connections(POOL)
        .open()
        .await
        .expect("the store opens")
}

async fn open_raw(dir: &std::path::Path) -> SqlitePool {
    let options =
        SqliteConnectOptions::from_str(&format!("sqlite:{}", dir.join("raw.db").display()))
            .expect("a url")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL)
        .connect_with(options)
        .await
        .expect("the raw pool");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE raw_events {RAW_TABLE}"
    )))
    .execute(&pool)
    .await
    .expect("the raw table");
    pool
}

/// `INSERT INTO <table> (...) VALUES ($1, ..., $9), ...` for `n` rows.
fn insert_sql(table: &str, n: usize) -> String {
    let mut sql = format!(
        "INSERT INTO {table} (position, stream, version, event_id, event_type, schema_version, recorded_at, metadata, payload) VALUES "
    );
    for row in 0..n {
        if row > 0 {
            sql.push_str(", ");
        }
        let b = row * 9;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9
        ));
    }
    sql
}

/// The raw floor on SQLite and PostgreSQL: the same rows in one multi-row
/// INSERT in one transaction, no checks; rows `position + 1..` and
/// `version + 1..`.
macro_rules! raw_insert_fn {
    ($name:ident, $pool:ty) => {
        async fn $name(
            pool: &$pool,
            table: &str,
            stream: &str,
            events: &[NewEvent],
            position: i64,
            version: i64,
        ) {
            let mut tx = pool.begin().await.expect("begin");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(insert_sql(table, events.len())));
            for (i, event) in (1_i64..).zip(events) {
                query = query
                    .bind(position + i)
                    .bind(stream)
                    .bind(version + i)
                    .bind(event.id())
                    .bind(event.event_type())
                    .bind(1_i64)
                    .bind(0_i64)
                    .bind(serde_json::to_string(&Metadata::correlated("req-1")).expect("json"))
                    .bind(serde_json::to_string(event.payload()).expect("json"));
            }
            query.execute(&mut *tx).await.expect("insert");
            tx.commit().await.expect("commit");
        }
    };
}

raw_insert_fn!(raw_insert_sqlite, SqlitePool);
raw_insert_fn!(raw_insert_pg, PgPool);

/// The raw floor of the single-stream benches, on SQLite.
async fn raw_insert(pool: &SqlitePool, events: &[NewEvent], next: &mut i64) {
    raw_insert_sqlite(pool, "raw_events", "acct", events, *next, *next).await;
    *next += events.len() as i64;
}

const RAW_TABLE: &str = "(position BIGINT NOT NULL PRIMARY KEY, stream TEXT NOT NULL, \
     version BIGINT NOT NULL, event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, \
     schema_version BIGINT NOT NULL, recorded_at BIGINT NOT NULL, metadata TEXT NOT NULL, \
     payload TEXT NOT NULL, UNIQUE (stream, version))";

/// The PostgreSQL URL, or `None` with the reason printed.
fn pg_url(bench: &str) -> Option<String> {
    match std::env::var("PALISADE_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            println!("{bench} skipped: PALISADE_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A fresh schema name for one bench on PostgreSQL.
fn pg_schema(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "bench_es_{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pool on PostgreSQL with `schema` created.
async fn pg_pool(url: &str, schema: &str) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(POOL)
        .connect(url)
        .await
        .expect("the PostgreSQL pool");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&pool)
    .await
    .expect("the schema");
    pool
}

/// The raw table in its own schema on PostgreSQL.
async fn open_raw_pg(url: &str, schema: &str) -> PgPool {
    let pool = pg_pool(url, schema).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {schema}.raw_events {RAW_TABLE}"
    )))
    .execute(&pool)
    .await
    .expect("the raw table");
    pool
}

/// The event store with its tables in `schema` on PostgreSQL.
async fn open_store_pg(url: &str, schema: &str) -> EventStore {
    EventStore::builder("bench")
        .url(url)
        .table_prefix(format!("{schema}.palisade_es"))
        .max_connections(POOL)
        .open()
        .await
        .expect("the store opens")
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok(pool) = PgPool::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&pool)
            .await;
    }
}

#[divan::bench_group(sample_count = 30, sample_size = 10)]
mod append {
    use super::*;

    #[divan::bench(args = [1, 100])]
    fn event_store(bencher: Bencher<'_, '_>, batch: usize) {
        let rt = runtime();
        let dir = temp_dir("append");
        let store = rt.block_on(open_store(&dir));
        let n = AtomicU64::new(0);
        bencher.counter(ItemsCount::new(batch)).bench_local(|| {
            let events = events(n.fetch_add(1, Ordering::Relaxed), batch);
            rt.block_on(store.append("acct", ExpectedVersion::Any, &events))
                .expect("appended");
        });
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench(args = [1, 100])]
    fn raw_sqlx_insert(bencher: Bencher<'_, '_>, batch: usize) {
        let rt = runtime();
        let dir = temp_dir("raw");
        let pool = rt.block_on(open_raw(&dir));
        let n = AtomicU64::new(0);
        let mut next = 0_i64;
        bencher.counter(ItemsCount::new(batch)).bench_local(|| {
            let events = events(n.fetch_add(1, Ordering::Relaxed), batch);
            rt.block_on(raw_insert(&pool, &events, &mut next));
        });
        drop(pool);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench(args = [1, 100])]
    fn pg_event_store(bencher: Bencher<'_, '_>, batch: usize) {
        let Some(url) = pg_url("append/pg_event_store") else {
            return;
        };
        let rt = runtime();
        let schema = pg_schema("append");
        let store = rt.block_on(open_store_pg(&url, &schema));
        let n = AtomicU64::new(0);
        bencher.counter(ItemsCount::new(batch)).bench_local(|| {
            let events = events(n.fetch_add(1, Ordering::Relaxed), batch);
            rt.block_on(store.append("acct", ExpectedVersion::Any, &events))
                .expect("appended");
        });
        drop(store);
        rt.block_on(drop_schema(&url, &schema));
    }

    #[divan::bench(args = [1, 100])]
    fn pg_raw_sqlx_insert(bencher: Bencher<'_, '_>, batch: usize) {
        let Some(url) = pg_url("append/pg_raw_sqlx_insert") else {
            return;
        };
        let rt = runtime();
        let schema = pg_schema("raw");
        let table = format!("{schema}.raw_events");
        let pool = rt.block_on(open_raw_pg(&url, &schema));
        let n = AtomicU64::new(0);
        let mut next = 0_i64;
        bencher.counter(ItemsCount::new(batch)).bench_local(|| {
            let events = events(n.fetch_add(1, Ordering::Relaxed), batch);
            rt.block_on(raw_insert_pg(&pool, &table, "acct", &events, next, next));
            next += batch as i64;
        });
        drop(pool);
        rt.block_on(drop_schema(&url, &schema));
    }
}

#[divan::bench_group(sample_count = 30, sample_size = 5)]
mod read_all {
    use super::*;

    #[divan::bench]
    fn event_store(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        let dir = temp_dir("read");
        let store = rt.block_on(async {
            let store = open_store(&dir).await;
            for b in 0..(STORED / 100) as u64 {
                store
                    .append("acct", ExpectedVersion::Any, &events(b, 100))
                    .await
                    .expect("filled");
            }
            store
        });
        bencher.counter(ItemsCount::new(READ)).bench_local(|| {
            let page = rt.block_on(store.read_all(0, READ)).expect("read");
            assert_eq!(page.len(), READ);
            page
        });
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench]
    fn raw_sqlx_select(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        let dir = temp_dir("rawread");
        let pool = rt.block_on(async {
            let pool = open_raw(&dir).await;
            let mut next = 0;
            for b in 0..(STORED / 100) as u64 {
                raw_insert(&pool, &events(b, 100), &mut next).await;
            }
            pool
        });
        bencher.counter(ItemsCount::new(READ)).bench_local(|| {
            rt.block_on(async {
                let rows = sqlx::query(
                    "SELECT position, stream, version, event_id, event_type, schema_version, recorded_at, metadata, payload \
                     FROM raw_events WHERE position > $1 ORDER BY position LIMIT $2",
                )
                .bind(0_i64)
                .bind(READ as i64)
                .fetch_all(&pool)
                .await
                .expect("read");
                let parsed: Vec<(i64, String, serde_json::Value)> = rows
                    .iter()
                    .map(|row| {
                        let payload: String = row.get(8);
                        (
                            row.get(0),
                            row.get(3),
                            serde_json::from_str(&payload).expect("json"),
                        )
                    })
                    .collect();
                assert_eq!(parsed.len(), READ);
                parsed
            })
        });
        drop(pool);
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Round `n`'s batch for stream `s`: ids unique over the whole run.
fn stream_events(n: u64, s: usize, batch: usize) -> Vec<NewEvent> {
    (0..batch)
        .map(|i| {
            NewEvent::new(
                format!("{n}-{s}-{i}"),
                "Deposited",
                json!({"cents": 100, "memo": "salary"}),
            )
            .metadata(Metadata::correlated("req-1"))
        })
        .collect()
}

/// One round: `STREAMS` tasks, each appending one batch to its own stream.
fn store_round(rt: &tokio::runtime::Runtime, store: &EventStore, n: u64, batch: usize) {
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for s in 0..STREAMS {
            let store = store.clone();
            tasks.spawn(async move {
                let events = stream_events(n, s, batch);
                store
                    .append(&format!("acct-{s}"), ExpectedVersion::Any, &events)
                    .await
                    .expect("appended");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("the task");
        }
    });
}

/// The raw floor's state for concurrent rounds: a position counter and a
/// version per stream.
struct RawStreams {
    position: AtomicI64,
    versions: Vec<AtomicI64>,
}

impl RawStreams {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            position: AtomicI64::new(0),
            versions: (0..STREAMS).map(|_| AtomicI64::new(0)).collect(),
        })
    }

    /// Reserves `batch` positions and versions of stream `s`.
    fn reserve(&self, s: usize, batch: usize) -> (i64, i64) {
        let batch = batch as i64;
        (
            self.position.fetch_add(batch, Ordering::Relaxed),
            self.versions[s].fetch_add(batch, Ordering::Relaxed),
        )
    }
}

macro_rules! raw_round_fn {
    ($name:ident, $pool:ty, $insert:ident) => {
        fn $name(
            rt: &tokio::runtime::Runtime,
            pool: &$pool,
            table: &Arc<str>,
            state: &Arc<RawStreams>,
            n: u64,
            batch: usize,
        ) {
            rt.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for s in 0..STREAMS {
                    let (pool, table, state) = (pool.clone(), Arc::clone(table), Arc::clone(state));
                    tasks.spawn(async move {
                        let events = stream_events(n, s, batch);
                        let (position, version) = state.reserve(s, batch);
                        $insert(
                            &pool,
                            &table,
                            &format!("acct-{s}"),
                            &events,
                            position,
                            version,
                        )
                        .await;
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.expect("the task");
                }
            });
        }
    };
}

raw_round_fn!(raw_round_sqlite, SqlitePool, raw_insert_sqlite);
raw_round_fn!(raw_round_pg, PgPool, raw_insert_pg);

#[divan::bench_group(sample_count = 10, sample_size = 1)]
mod append_64_streams {
    use super::*;

    #[divan::bench(args = [1, 100])]
    fn event_store(bencher: Bencher<'_, '_>, batch: usize) {
        let rt = multi_thread_runtime();
        let dir = temp_dir("append64");
        let store = rt.block_on(open_store(&dir));
        let n = AtomicU64::new(0);
        bencher
            .counter(ItemsCount::new(batch * STREAMS))
            .bench_local(|| store_round(&rt, &store, n.fetch_add(1, Ordering::Relaxed), batch));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench(args = [1, 100])]
    fn raw_sqlx_insert(bencher: Bencher<'_, '_>, batch: usize) {
        let rt = multi_thread_runtime();
        let dir = temp_dir("raw64");
        let pool = rt.block_on(open_raw(&dir));
        let (table, state): (Arc<str>, _) = ("raw_events".into(), RawStreams::new());
        let n = AtomicU64::new(0);
        bencher
            .counter(ItemsCount::new(batch * STREAMS))
            .bench_local(|| {
                raw_round_sqlite(
                    &rt,
                    &pool,
                    &table,
                    &state,
                    n.fetch_add(1, Ordering::Relaxed),
                    batch,
                );
            });
        drop(pool);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench(args = [1, 100])]
    fn pg_event_store(bencher: Bencher<'_, '_>, batch: usize) {
        let Some(url) = pg_url("append_64_streams/pg_event_store") else {
            return;
        };
        let rt = multi_thread_runtime();
        let schema = pg_schema("append64");
        let store = rt.block_on(open_store_pg(&url, &schema));
        let n = AtomicU64::new(0);
        bencher
            .counter(ItemsCount::new(batch * STREAMS))
            .bench_local(|| store_round(&rt, &store, n.fetch_add(1, Ordering::Relaxed), batch));
        drop(store);
        rt.block_on(drop_schema(&url, &schema));
    }

    #[divan::bench(args = [1, 100])]
    fn pg_raw_sqlx_insert(bencher: Bencher<'_, '_>, batch: usize) {
        let Some(url) = pg_url("append_64_streams/pg_raw_sqlx_insert") else {
            return;
        };
        let rt = multi_thread_runtime();
        let schema = pg_schema("raw64");
        let pool = rt.block_on(open_raw_pg(&url, &schema));
        let table: Arc<str> = format!("{schema}.raw_events").into();
        let state = RawStreams::new();
        let n = AtomicU64::new(0);
        bencher
            .counter(ItemsCount::new(batch * STREAMS))
            .bench_local(|| {
                raw_round_pg(
                    &rt,
                    &pool,
                    &table,
                    &state,
                    n.fetch_add(1, Ordering::Relaxed),
                    batch,
                );
            });
        drop(pool);
        rt.block_on(drop_schema(&url, &schema));
    }
}

/// The bank account of the CQRS crate's example, reduced to deposits.
#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type")]
enum AccountEvent {
    Deposited { cents: i64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        "Deposited"
    }
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = i64;
    type Event = AccountEvent;
    type Error = Refused;

    fn decide(&self, cents: &i64) -> Result<Vec<AccountEvent>, Refused> {
        Ok(vec![AccountEvent::Deposited { cents: *cents }])
    }

    fn evolve(self, event: &AccountEvent) -> Self {
        match event {
            AccountEvent::Deposited { cents } => Self {
                balance: self.balance + cents,
            },
        }
    }
}

/// Appends `count` deposits of 1 cent to `stream`, 100 per append.
async fn fill(store: &EventStore, stream: &str, count: u64) {
    for b in 0..count / 100 {
        let events: Vec<NewEvent> = (0..100)
            .map(|i| {
                NewEvent::json(
                    format!("{stream}-{b}-{i}"),
                    "Deposited",
                    &AccountEvent::Deposited { cents: 1 },
                )
                .expect("json")
            })
            .collect();
        store
            .append(stream, ExpectedVersion::Any, &events)
            .await
            .expect("filled");
    }
}

/// Two accounts of `LOADED` events, `plain` and `snap`; `snap` has a
/// snapshot at its last version.
async fn fill_accounts(store: &EventStore) {
    fill(store, "account-plain", LOADED).await;
    fill(store, "account-snap", LOADED).await;
    let state = Account {
        balance: LOADED as i64,
    };
    let snapshot = Snapshot::new("account-snap", LOADED, Account::SNAPSHOT_VERSION, &state)
        .expect("a snapshot");
    store.save_snapshot(&snapshot).await.expect("saved");
}

fn load(bencher: Bencher<'_, '_>, rt: &tokio::runtime::Runtime, store: &EventStore, id: &str) {
    let handler = CommandHandler::<Account>::builder("bench", store.clone())
        .build()
        .expect("a handler");
    bencher.bench_local(|| {
        let (state, version) = rt.block_on(handler.load(id)).expect("loaded");
        assert_eq!((state.balance, version), (LOADED as i64, LOADED));
        state
    });
}

#[divan::bench_group(sample_count = 10, sample_size = 1)]
mod load_aggregate {
    use super::*;

    #[divan::bench(args = ["plain", "snap"])]
    fn sqlite(bencher: Bencher<'_, '_>, account: &str) {
        let rt = runtime();
        let dir = temp_dir("load");
        let store = rt.block_on(async {
            let store = open_store(&dir).await;
            fill_accounts(&store).await;
            store
        });
        load(bencher, &rt, &store, account);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench(args = ["plain", "snap"])]
    fn postgres(bencher: Bencher<'_, '_>, account: &str) {
        let Some(url) = pg_url("load_aggregate/postgres") else {
            return;
        };
        let rt = runtime();
        let schema = pg_schema("load");
        let store = rt.block_on(async {
            let store = open_store_pg(&url, &schema).await;
            fill_accounts(&store).await;
            store
        });
        load(bencher, &rt, &store, account);
        drop(store);
        rt.block_on(drop_schema(&url, &schema));
    }
}

/// Balances per account, upserted in the runner's transaction.
struct Balances;

impl Projection<sqlx::Sqlite> for Balances {
    type Event = AccountEvent;

    async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        event: &AccountEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), palisade_core::BoxError> {
        let AccountEvent::Deposited { cents } = event;
        sqlx::query(
            "INSERT INTO balances VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET cents = cents + excluded.cents",
        )
        .bind(envelope.stream())
        .bind(cents)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn reset(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> Result<(), palisade_core::BoxError> {
        sqlx::query("DELETE FROM balances")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[divan::bench_group(sample_count = 10, sample_size = 1)]
mod projection_catch_up {
    use super::*;

    #[divan::bench]
    fn sqlite(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        let dir = temp_dir("projection");
        let url = format!("sqlite:{}", dir.join("events.db").display());
        let (store, pool, head) = rt.block_on(async {
            let store = open_store(&dir).await;
            for s in 0..STREAMS {
                fill(&store, &format!("account-{s}"), 100).await;
            }
            // 64 × 100 events, then 3 600 more on the first streams: 10 000.
            for s in 0..36 {
                let events: Vec<NewEvent> = (0..100)
                    .map(|i| {
                        NewEvent::json(
                            format!("extra-{s}-{i}"),
                            "Deposited",
                            &AccountEvent::Deposited { cents: 1 },
                        )
                        .expect("json")
                    })
                    .collect();
                store
                    .append(&format!("account-{s}"), ExpectedVersion::Any, &events)
                    .await
                    .expect("filled");
            }
            let head = store.head_position().await.expect("head");
            let pool = SqlitePool::connect(&url)
                .await
                .expect("the read model pool");
            sqlx::query("CREATE TABLE balances (account TEXT PRIMARY KEY, cents BIGINT NOT NULL)")
                .execute(&pool)
                .await
                .expect("the read model");
            (store, pool, head)
        });
        assert_eq!(head, STORED as u64);
        let n = AtomicU64::new(0);
        bencher.counter(ItemsCount::new(STORED)).bench_local(|| {
            rt.block_on(async {
                sqlx::query("DELETE FROM balances")
                    .execute(&pool)
                    .await
                    .expect("cleared");
                let runner = ProjectionRunner::builder(
                    format!("balances_{}", n.fetch_add(1, Ordering::Relaxed)),
                    Balances,
                    SqliteReadModel::new(pool.clone(), "palisade_projection").expect("a backend"),
                    store.clone(),
                )
                .start()
                .await
                .expect("started");
                runner
                    .wait_for(head, Duration::from_secs(120))
                    .await
                    .expect("caught up");
                runner.stop();
            });
        });
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One round of commands: `STREAMS` tasks, each depositing once into its
/// own account through the handler (load, decide, append).
fn command_round(rt: &tokio::runtime::Runtime, handler: &CommandHandler<Account>) {
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for s in 0..STREAMS {
            let handler = handler.clone();
            tasks.spawn(async move {
                handler
                    .handle(Command::new(format!("{s}"), 100))
                    .await
                    .expect("handled");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("the task");
        }
    });
}

#[divan::bench_group(sample_count = 10, sample_size = 1)]
mod commands_64_streams {
    use super::*;

    #[divan::bench]
    fn sqlite(bencher: Bencher<'_, '_>) {
        let rt = multi_thread_runtime();
        let dir = temp_dir("commands");
        let store = rt.block_on(open_store(&dir));
        let handler = CommandHandler::<Account>::builder("bench", store.clone())
            .build()
            .expect("a handler");
        bencher
            .counter(ItemsCount::new(STREAMS))
            .bench_local(|| command_round(&rt, &handler));
        drop((handler, store));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench]
    fn postgres(bencher: Bencher<'_, '_>) {
        let Some(url) = pg_url("commands_64_streams/postgres") else {
            return;
        };
        let rt = multi_thread_runtime();
        let schema = pg_schema("commands");
        let store = rt.block_on(open_store_pg(&url, &schema));
        let handler = CommandHandler::<Account>::builder("bench", store.clone())
            .build()
            .expect("a handler");
        bencher
            .counter(ItemsCount::new(STREAMS))
            .bench_local(|| command_round(&rt, &handler));
        drop((handler, store));
        rt.block_on(drop_schema(&url, &schema));
    }
}

/// Per-phase wall time, summed over a bench's iterations.
struct Laps {
    names: &'static [&'static str],
    totals: Vec<AtomicU64>,
    runs: AtomicU64,
}

impl Laps {
    fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            totals: names.iter().map(|_| AtomicU64::new(0)).collect(),
            runs: AtomicU64::new(0),
        }
    }

    /// Adds the time since `t` to phase `i`, and restarts `t`.
    fn lap(&self, i: usize, t: &mut tokio::time::Instant) {
        let now = tokio::time::Instant::now();
        self.totals[i].fetch_add((now - *t).as_nanos() as u64, Ordering::Relaxed);
        *t = now;
        if i + 1 == self.names.len() {
            self.runs.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn print(&self, label: &str) {
        let runs = self.runs.load(Ordering::Relaxed).max(1);
        let means: Vec<String> = self
            .names
            .iter()
            .zip(&self.totals)
            .map(|(name, total)| {
                let mean = total.load(Ordering::Relaxed) as f64 / runs as f64 / 1e3;
                format!("{name} {mean:.1} µs")
            })
            .collect();
        println!("{label} (mean of {runs}): {}", means.join(", "));
    }
}

const STORE_PHASES: &[&str] = &["begin", "advance head", "look up", "insert", "commit"];
const RAW_PHASES: &[&str] = &["begin", "insert", "commit"];

/// The store's statements for table prefix `p` and one event.
struct StoreSql {
    bump: String,
    lookup: String,
    insert: String,
}

impl StoreSql {
    fn new(p: &str) -> Self {
        Self {
            bump: format!(
                "UPDATE {p}_head SET position = position + $1 WHERE id = 1 RETURNING position"
            ),
            lookup: format!(
                "SELECT event_id, stream, version, position FROM {p}_events WHERE event_id IN ($2) UNION ALL \
                 SELECT CAST('' AS TEXT), CAST('' AS TEXT), COALESCE(MAX(version), 0), CAST(-1 AS BIGINT) FROM {p}_events WHERE stream = $1"
            ),
            insert: insert_sql(&format!("{p}_events"), 1),
        }
    }
}

/// A single-event append's round trips issued by hand and timed one by
/// one: the store's five (its own statements), and the raw floor's three.
macro_rules! phase_fns {
    ($store_fn:ident, $raw_fn:ident, $pool:ty, $begin:literal) => {
        async fn $store_fn(pool: &$pool, sql: &StoreSql, event: &NewEvent, laps: &Laps) {
            let mut t = tokio::time::Instant::now();
            let mut tx = pool.begin_with($begin).await.expect("begin");
            laps.lap(0, &mut t);
            let (head,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.bump.as_str()))
                .bind(1_i64)
                .fetch_one(&mut *tx)
                .await
                .expect("head");
            laps.lap(1, &mut t);
            let rows: Vec<(String, String, i64, i64)> =
                sqlx::query_as(sqlx::AssertSqlSafe(sql.lookup.as_str()))
                    .bind("acct")
                    .bind(event.id())
                    .fetch_all(&mut *tx)
                    .await
                    .expect("look up");
            laps.lap(2, &mut t);
            let version = rows.iter().find(|r| r.3 < 0).map_or(0, |r| r.2);
            sqlx::query(sqlx::AssertSqlSafe(sql.insert.as_str()))
                .bind(head)
                .bind("acct")
                .bind(version + 1)
                .bind(event.id())
                .bind(event.event_type())
                .bind(1_i64)
                .bind(0_i64)
                .bind(serde_json::to_string(&Metadata::correlated("req-1")).expect("json"))
                .bind(serde_json::to_string(event.payload()).expect("json"))
                .execute(&mut *tx)
                .await
                .expect("insert");
            laps.lap(3, &mut t);
            tx.commit().await.expect("commit");
            laps.lap(4, &mut t);
        }

        async fn $raw_fn(pool: &$pool, insert: &str, event: &NewEvent, position: i64, laps: &Laps) {
            let mut t = tokio::time::Instant::now();
            let mut tx = pool.begin().await.expect("begin");
            laps.lap(0, &mut t);
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(position)
                .bind("acct")
                .bind(position)
                .bind(event.id())
                .bind(event.event_type())
                .bind(1_i64)
                .bind(0_i64)
                .bind(serde_json::to_string(&Metadata::correlated("req-1")).expect("json"))
                .bind(serde_json::to_string(event.payload()).expect("json"))
                .execute(&mut *tx)
                .await
                .expect("insert");
            laps.lap(1, &mut t);
            tx.commit().await.expect("commit");
            laps.lap(2, &mut t);
        }
    };
}

phase_fns!(
    sqlite_store_phases,
    sqlite_raw_phases,
    SqlitePool,
    "BEGIN IMMEDIATE"
);
phase_fns!(pg_store_phases, pg_raw_phases, PgPool, "BEGIN");

/// Where a single-event append's time goes: its round trips issued by hand
/// with the store's statements (and the raw floor's), each timed; the
/// means are printed after each bench.
#[divan::bench_group(sample_count = 30, sample_size = 10)]
mod append_phases {
    use super::*;

    #[divan::bench]
    fn sqlite_store_statements(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        let dir = temp_dir("phases");
        // The store creates its tables; a pool like the store's writes them.
        let store = rt.block_on(open_store(&dir));
        let options =
            SqliteConnectOptions::from_str(&format!("sqlite:{}", dir.join("events.db").display()))
                .expect("a url")
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
        let pool = rt.block_on(
            SqlitePoolOptions::new()
                .max_connections(POOL)
                .connect_with(options),
        );
        let pool = pool.expect("the pool");
        let sql = StoreSql::new("palisade_es");
        let laps = Laps::new(STORE_PHASES);
        let n = AtomicU64::new(0);
        bencher.counter(ItemsCount::new(1_usize)).bench_local(|| {
            let events = events(n.fetch_add(1, Ordering::Relaxed), 1);
            rt.block_on(sqlite_store_phases(&pool, &sql, &events[0], &laps));
        });
        laps.print("append_phases/sqlite_store_statements");
        drop((store, pool));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench]
    fn sqlite_raw_statements(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        let dir = temp_dir("rawphases");
        let pool = rt.block_on(open_raw(&dir));
        let insert = insert_sql("raw_events", 1);
        let laps = Laps::new(RAW_PHASES);
        let n = AtomicU64::new(0);
        bencher.counter(ItemsCount::new(1_usize)).bench_local(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let events = events(i, 1);
            rt.block_on(sqlite_raw_phases(
                &pool,
                &insert,
                &events[0],
                i as i64 + 1,
                &laps,
            ));
        });
        laps.print("append_phases/sqlite_raw_statements");
        drop(pool);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench]
    fn pg_store_statements(bencher: Bencher<'_, '_>) {
        let Some(url) = pg_url("append_phases/pg_store_statements") else {
            return;
        };
        let rt = runtime();
        let schema = pg_schema("phases");
        let store = rt.block_on(open_store_pg(&url, &schema));
        let pool = rt.block_on(pg_pool(&url, &schema));
        let sql = StoreSql::new(&format!("{schema}.palisade_es"));
        let laps = Laps::new(STORE_PHASES);
        let n = AtomicU64::new(0);
        bencher.counter(ItemsCount::new(1_usize)).bench_local(|| {
            let events = events(n.fetch_add(1, Ordering::Relaxed), 1);
            rt.block_on(pg_store_phases(&pool, &sql, &events[0], &laps));
        });
        laps.print("append_phases/pg_store_statements");
        drop((store, pool));
        rt.block_on(drop_schema(&url, &schema));
    }

    #[divan::bench]
    fn pg_raw_statements(bencher: Bencher<'_, '_>) {
        let Some(url) = pg_url("append_phases/pg_raw_statements") else {
            return;
        };
        let rt = runtime();
        let schema = pg_schema("rawphases");
        let pool = rt.block_on(open_raw_pg(&url, &schema));
        let insert = insert_sql(&format!("{schema}.raw_events"), 1);
        let laps = Laps::new(RAW_PHASES);
        let n = AtomicU64::new(0);
        bencher.counter(ItemsCount::new(1_usize)).bench_local(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let events = events(i, 1);
            rt.block_on(pg_raw_phases(
                &pool,
                &insert,
                &events[0],
                i as i64 + 1,
                &laps,
            ));
        });
        laps.print("append_phases/pg_raw_statements");
        drop(pool);
        rt.block_on(drop_schema(&url, &schema));
    }
}
