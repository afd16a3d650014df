//! The sequence-gap problem, with two real transactions: a writer holding
//! a lower position commits after a later writer started. A reader
//! following global positions must see both, in order, and never advance
//! past the lower one before it commits.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

use palisade_event_store::backend::AnyBackend;
use palisade_event_store::{EventStore, ExpectedVersion, NewEvent};
use serde_json::json;

fn ev(id: &str) -> NewEvent {
    NewEvent::new(id, "Deposited", json!({"cents": 1}))
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reader_never_skips_a_later_commit() {
    use palisade_test_util::{POSTGRES_URL_VAR, service_url, unique_name};
    let Some(url) = service_url(
        POSTGRES_URL_VAR,
        "postgres_reader_never_skips_a_later_commit",
    ) else {
        return;
    };
    let schema = unique_name("es_gap");
    let store = EventStore::builder("gap")
        .url(&url)
        .table_prefix(format!("{schema}.es"))
        .open()
        .await
        .unwrap();
    let AnyBackend::Postgres(pg) = store.backend() else {
        panic!("a PostgreSQL backend");
    };

    // Writer 1 takes position 1 and holds its transaction open.
    let mut tx1 = pg.begin().await.unwrap();
    let first = pg
        .append_in(&mut tx1, "a", ExpectedVersion::Any, &[ev("w1")])
        .await
        .unwrap();
    assert_eq!(first.positions(), &[1]);

    // Writer 2 starts a transaction and tries to append to another stream.
    let writer2 = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append("b", ExpectedVersion::Any, &[ev("w2")])
                .await
                .unwrap()
        })
    };
    // Wait until PostgreSQL reports writer 2 blocked on a lock (its
    // transaction is open and waiting for writer 1's).
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let waiting = format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%{schema}.es_head%'"
    );
    let mut seen_waiting = false;
    for _ in 0..2_000 {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(waiting.as_str()))
            .fetch_one(&admin)
            .await
            .unwrap();
        if n == 1 {
            seen_waiting = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(seen_waiting, "writer 2 waits for writer 1's transaction");

    // A reader (and a subscription) sees nothing yet: position 1 is not
    // committed, and no later position can be committed before it.
    let mut sub = store.subscribe_all(0);
    assert!(store.read_all(0, 10).await.unwrap().is_empty());
    assert!(sub.next_batch(10).await.unwrap().is_empty());
    assert_eq!(store.head_position().await.unwrap(), 0);
    assert!(!writer2.is_finished());

    // Writer 1 commits; writer 2 then gets the next position and commits.
    tx1.commit().await.unwrap();
    let second = writer2.await.unwrap();
    assert_eq!(second.positions(), &[2]);

    let all = store.read_all(0, 10).await.unwrap();
    let seen: Vec<(&str, u64)> = all.iter().map(|e| (e.id(), e.position())).collect();
    assert_eq!(seen, [("w1", 1), ("w2", 2)]);
    let batch = sub.next_batch(10).await.unwrap();
    assert_eq!(
        batch.iter().map(|e| e.position()).collect::<Vec<_>>(),
        [1, 2],
        "the follower sees both, in order, nothing skipped"
    );

    // A refused append inside the caller's transaction leaves the caller
    // free to commit its own writes, and takes no position.
    let mut tx = pg.begin().await.unwrap();
    let err = pg
        .append_in(&mut tx, "a", ExpectedVersion::NoStream, &[ev("w3")])
        .await
        .unwrap_err();
    assert!(err.as_conflict().is_some());
    tx.commit().await.unwrap();
    assert_eq!(store.head_position().await.unwrap(), 2);

    drop(store);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}

/// On SQLite the write lock is the file's (`BEGIN IMMEDIATE`): the second
/// writer cannot allocate a position until the first ends, and WAL readers
/// are not blocked meanwhile.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reader_never_skips_a_later_commit() {
    let dir = std::env::temp_dir().join(palisade_test_util::unique_name("es_gap"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = EventStore::builder("gap")
        .url(format!("sqlite:{}", dir.join("events.db").display()))
        .busy_timeout(std::time::Duration::from_secs(60))
        .open()
        .await
        .unwrap();
    let AnyBackend::Sqlite(lite) = store.backend() else {
        panic!("a SQLite backend");
    };
    let mut tx1 = lite.begin().await.unwrap();
    lite.append_in(&mut tx1, "a", ExpectedVersion::Any, &[ev("w1")])
        .await
        .unwrap();
    let writer2 = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append("b", ExpectedVersion::Any, &[ev("w2")])
                .await
                .unwrap()
        })
    };
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(store.read_all(0, 10).await.unwrap().is_empty());
    assert!(!writer2.is_finished());
    tx1.commit().await.unwrap();
    assert_eq!(writer2.await.unwrap().positions(), &[2]);
    let all = store.read_all(0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (e.id(), e.position()))
            .collect::<Vec<_>>(),
        [("w1", 1), ("w2", 2)]
    );

    // The file is in WAL mode, and the events outlive the store.
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(lite.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let url = format!("sqlite:{}", dir.join("events.db").display());
    drop(store);
    let reopened = EventStore::builder("gap").url(url).open().await.unwrap();
    assert_eq!(reopened.stream_version("a").await.unwrap(), 1);
    assert_eq!(reopened.head_position().await.unwrap(), 2);
    drop(reopened);
    let _ = std::fs::remove_dir_all(dir);
}
