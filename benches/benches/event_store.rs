//! Benchmarks for the event store on SQLite (a file, WAL,
//! `synchronous = NORMAL`), side by side with raw sqlx in one run.
//!
//! - `append`: one append of a batch of 1 or 100 events to one stream
//!   (`ExpectedVersion::Any`) through `EventStore::append`: a
//!   `BEGIN IMMEDIATE` transaction that advances the head row (the write
//!   lock and the batch's positions), reads the stream's version and looks
//!   up the batch's ids in one statement, and inserts the rows. The floor, `raw_insert`, writes the same rows (same nine
//!   columns, same JSON text, same unique indexes) with one multi-row
//!   `INSERT` in one transaction and checks nothing. Both build the batch's
//!   events inside the timed loop. Reported per event.
//! - `read_all`: reading 1 000 events after position 0 from a store of
//!   10 000, through `EventStore::read_all` (rows decoded into
//!   `RecordedEvent`s, payload and metadata parsed as JSON), and through a
//!   raw `SELECT` of the same columns whose payloads are parsed as JSON.
//!   Reported per event.
//!
//! Run: `cargo bench -p palisade-benches --bench event_store`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use divan::counter::ItemsCount;
use divan::{AllocProfiler, Bencher};
use palisade_event_store::{EventStore, ExpectedVersion, Metadata, NewEvent};
use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const READ: usize = 1_000;
const STORED: usize = 10_000;

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
    let pool = SqlitePool::connect_with(options)
        .await
        .expect("the raw pool");
    sqlx::query(
        "CREATE TABLE raw_events (position BIGINT NOT NULL PRIMARY KEY, stream TEXT NOT NULL, \
         version BIGINT NOT NULL, event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, \
         schema_version BIGINT NOT NULL, recorded_at BIGINT NOT NULL, metadata TEXT NOT NULL, \
         payload TEXT NOT NULL, UNIQUE (stream, version))",
    )
    .execute(&pool)
    .await
    .expect("the raw table");
    pool
}

/// The raw floor: the same rows in one multi-row INSERT, no checks.
async fn raw_insert(pool: &SqlitePool, events: &[NewEvent], next: &mut i64) {
    let mut sql = String::from(
        "INSERT INTO raw_events (position, stream, version, event_id, event_type, schema_version, recorded_at, metadata, payload) VALUES ",
    );
    for row in 0..events.len() {
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
    let mut tx = pool.begin().await.expect("begin");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for event in events {
        *next += 1;
        query = query
            .bind(*next)
            .bind("acct")
            .bind(*next)
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
