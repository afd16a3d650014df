//! The outbox relay: order, commit visibility, and crashes injected between
//! commit and publish and between publish and checkpoint, with the
//! in-memory source and real SQLite and PostgreSQL checkpoint stores.
#![cfg(feature = "memory")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_pubsub::backend::memory::MemoryBus;
use palisade_pubsub::error::{PublishError, StoreError};
use palisade_pubsub::outbox::{CheckpointStore, MemoryCheckpoints, MemoryOutbox, Relay};
use palisade_pubsub::{Consumer, IdempotentLayer, Message, PubSubEvent, Publisher};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tower::{ServiceBuilder, service_fn};

fn event(position_hint: u32, subject: &str, seq: u32) -> Message {
    Message::builder(subject)
        .id(format!("ev-{position_hint}"))
        .payload(seq.to_string())
        .build()
        .unwrap()
}

/// Commits `n` events round-robin over three subjects, each subject's
/// payload counting up; returns the next id.
fn commit(outbox: &MemoryOutbox, from: u32, n: u32, seqs: &mut HashMap<String, u32>) -> u32 {
    for i in from..from + n {
        let subject = format!("orders.{}", ["a", "b", "c"][(i % 3) as usize]);
        let seq = seqs.entry(subject.clone()).or_default();
        *seq += 1;
        outbox.append(event(i, &subject, *seq));
    }
    from + n
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn relays_in_position_order_and_saves_the_checkpoint() {
    let outbox = MemoryOutbox::new();
    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut sub = bus.subscribe("orders.>").unwrap();
    let checkpoints = MemoryCheckpoints::new();
    let mut seqs = HashMap::new();
    commit(&outbox, 0, 10, &mut seqs);
    let relayed = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&relayed);
    let mut relay = Relay::builder("orders")
        .batch_size(4)
        .on_event(move |e: &PubSubEvent| {
            if let PubSubEvent::Relayed {
                position, count, ..
            } = e
            {
                r.lock().push((*position, *count));
            }
        })
        .build(outbox.clone(), checkpoints.clone(), bus.clone())
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 4);
    assert_eq!(relay.run_once().await.unwrap(), 4);
    assert_eq!(relay.run_once().await.unwrap(), 2);
    assert_eq!(relay.run_once().await.unwrap(), 0);
    assert_eq!(*relayed.lock(), vec![(4, 4), (8, 4), (10, 2)]);
    assert_eq!(checkpoints.load("orders").await.unwrap(), Some(10));
    assert_eq!(relay.handle().position(), 10);
    for i in 0..10 {
        assert_eq!(sub.recv().await.unwrap().unwrap().id(), format!("ev-{i}"));
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn nothing_is_published_before_it_is_committed() {
    let outbox = MemoryOutbox::new();
    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut sub = bus.subscribe(">").unwrap();
    let mut relay = Relay::builder("r")
        .build(outbox.clone(), MemoryCheckpoints::new(), bus.clone())
        .unwrap();
    let mut tx = outbox.begin();
    tx.stage(event(1, "a", 1));
    tx.stage(event(2, "a", 2));
    assert_eq!(relay.run_once().await.unwrap(), 0);
    assert_eq!(sub.buffered(), 0);
    let mut rolled_back = outbox.begin();
    rolled_back.stage(event(99, "a", 99));
    drop(rolled_back);
    assert_eq!(tx.commit(), Some(2));
    assert_eq!(relay.run_once().await.unwrap(), 2);
    assert_eq!(sub.recv().await.unwrap().unwrap().id(), "ev-1");
    assert_eq!(sub.recv().await.unwrap().unwrap().id(), "ev-2");
    assert_eq!(sub.buffered(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_publish_keeps_the_checkpoint_before_it_and_the_run_loop_retries() {
    let outbox = MemoryOutbox::new();
    let bus = MemoryBus::builder("bus").max_payload(4).build().unwrap();
    let mut sub = bus.subscribe(">").unwrap();
    outbox.append(event(1, "a", 1));
    outbox.append(Message::new("a", "too large").unwrap());
    let checkpoints = MemoryCheckpoints::new();
    let mut relay = Relay::builder("r")
        .build(outbox.clone(), checkpoints.clone(), bus.clone())
        .unwrap();
    assert!(relay.run_once().await.is_err());
    assert_eq!(checkpoints.load("r").await.unwrap(), Some(1));
    assert_eq!(sub.recv().await.unwrap().unwrap().id(), "ev-1");
    assert!(
        relay.run_once().await.is_err(),
        "it stops at the same event"
    );
    assert_eq!(sub.buffered(), 0);
}

/// Where the relay is killed.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// Publishing the n-th event hangs before it reaches the bus: the event
    /// is committed but never published by this run.
    BeforePublish(u32),
    /// Saving the n-th checkpoint hangs: its batch was published but the
    /// checkpoint does not say so.
    BeforeCheckpoint(u32),
}

#[derive(Clone)]
struct Injected<T> {
    inner: T,
    calls: Arc<AtomicU32>,
    hang_at: u32,
    hung: Arc<Notify>,
}

impl<T> Injected<T> {
    fn new(inner: T, hang_at: u32) -> Self {
        Self {
            inner,
            calls: Arc::default(),
            hang_at,
            hung: Arc::default(),
        }
    }

    async fn maybe_hang(&self) {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.hang_at {
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

impl<P: Publisher> Publisher for Injected<P> {
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        self.maybe_hang().await;
        self.inner.publish(message).await
    }
}

impl<C: CheckpointStore + Clone> CheckpointStore for Injected<C> {
    async fn load(&self, relay: &str) -> Result<Option<u64>, StoreError> {
        self.inner.load(relay).await
    }

    async fn save(&self, relay: &str, position: u64) -> Result<(), StoreError> {
        self.maybe_hang().await;
        self.inner.save(relay, position).await
    }
}

/// Commits events, runs a relay that is killed at `kill`, commits more,
/// runs a fresh relay over the same checkpoint store to the end, and checks
/// what an idempotent consumer did: every event's effect exactly once, in
/// order per subject. Returns how many publishes reached the bus.
async fn crash_and_recover<C>(checkpoints: C, kill: Kill) -> u32
where
    C: CheckpointStore + Clone,
{
    let outbox = MemoryOutbox::new();
    let bus = MemoryBus::builder("bus").capacity(4096).build().unwrap();
    // Counts what reaches the bus (duplicates included).
    let mut tap = bus.subscribe("orders.>").unwrap();
    let effects: Arc<Mutex<Vec<(String, u32, String)>>> = Arc::default();
    let e = Arc::clone(&effects);
    let handler = ServiceBuilder::new()
        .layer(IdempotentLayer::builder("orders").build().unwrap())
        .service(service_fn(move |m: Message| {
            let seq: u32 = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
            e.lock()
                .push((m.subject().to_owned(), seq, m.id().to_owned()));
            async { Ok::<_, BoxError>(()) }
        }));
    let consumer = Consumer::builder("orders")
        .build(bus.subscribe("orders.>").unwrap(), handler, bus.clone())
        .unwrap();
    let consumer = tokio::spawn(consumer.run());

    let mut seqs = HashMap::new();
    let next = commit(&outbox, 0, 30, &mut seqs);
    let (publisher, store, hung) = match kill {
        Kill::BeforePublish(n) => {
            let p = Injected::new(bus.clone(), n);
            let hung = Arc::clone(&p.hung);
            (p, Injected::new(checkpoints.clone(), 0), hung)
        }
        Kill::BeforeCheckpoint(n) => {
            let c = Injected::new(checkpoints.clone(), n);
            let hung = Arc::clone(&c.hung);
            (Injected::new(bus.clone(), 0), c, hung)
        }
    };
    let first = Relay::builder("orders")
        .batch_size(8)
        .poll_interval(Duration::from_millis(5))
        .build(outbox.clone(), store, publisher)
        .unwrap();
    let hung_now = hung.notified();
    let run = tokio::spawn(first.run_until(std::future::pending::<()>()));
    tokio::time::timeout(Duration::from_secs(20), hung_now)
        .await
        .expect("the injected crash point was reached");
    run.abort();
    let _ = run.await;

    // More commits while the relay is down; then a fresh relay.
    let last = commit(&outbox, next, 10, &mut seqs);
    let second = Relay::builder("orders")
        .batch_size(8)
        .poll_interval(Duration::from_millis(5))
        .build(outbox.clone(), checkpoints.clone(), bus.clone())
        .unwrap();
    let handle = second.handle();
    let run = tokio::spawn(second.run_until(std::future::pending::<()>()));
    until("the relay caught up", || {
        handle.position() == u64::from(last)
    })
    .await;
    until("every effect", || effects.lock().len() == last as usize).await;
    run.abort();
    assert_eq!(
        checkpoints.load("orders").await.unwrap(),
        Some(u64::from(last))
    );

    let effects = effects.lock().clone();
    let mut ids: Vec<&str> = effects.iter().map(|(_, _, id)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        last as usize,
        "every event's effect exactly once"
    );
    let mut by_subject: HashMap<&str, Vec<u32>> = HashMap::new();
    for (subject, seq, _) in &effects {
        by_subject.entry(subject).or_default().push(*seq);
    }
    for (subject, seen) in by_subject {
        let expected: Vec<u32> = (1..=seqs[subject]).collect();
        assert_eq!(seen, expected, "order kept on {subject}");
    }
    bus.close();
    let mut reached = 0;
    while let Some(Ok(_)) = tap.recv().await {
        reached += 1;
    }
    consumer.await.unwrap();
    reached
}

#[tokio::test(flavor = "current_thread")]
async fn crash_between_commit_and_publish_memory_checkpoints() {
    let reached = crash_and_recover(MemoryCheckpoints::new(), Kill::BeforePublish(12)).await;
    assert!(reached >= 40);
}

#[tokio::test(flavor = "current_thread")]
async fn crash_between_publish_and_checkpoint_memory_checkpoints() {
    let reached = crash_and_recover(MemoryCheckpoints::new(), Kill::BeforeCheckpoint(2)).await;
    assert!(
        reached > 40,
        "the batch published before the crash is published again"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use palisade_pubsub::backend::sqlite::SqliteCheckpoints;

    async fn store() -> (SqliteCheckpoints, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "{}.sqlite",
            palisade_test_util::unique_name("ps_outbox")
        ));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let store = SqliteCheckpoints::new(pool);
        store.migrate().await.unwrap();
        (store, path)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn crash_between_commit_and_publish() {
        let (store, path) = store().await;
        crash_and_recover(store, Kill::BeforePublish(12)).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn crash_between_publish_and_checkpoint() {
        let (store, path) = store().await;
        let reached = crash_and_recover(store, Kill::BeforeCheckpoint(2)).await;
        assert!(reached > 40);
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_checkpoint_survives_a_new_pool() {
        let (store, path) = store().await;
        store.save("r", 7).await.unwrap();
        store.save("r", 9).await.unwrap();
        let url = format!("sqlite://{}", path.display());
        let again = SqliteCheckpoints::new(sqlx::SqlitePool::connect(&url).await.unwrap());
        assert_eq!(again.load("r").await.unwrap(), Some(9));
        assert_eq!(again.load("other").await.unwrap(), None);
        assert!(SqliteCheckpoints::with_table(again_pool().await, "x; DROP TABLE y").is_err());
        let _ = std::fs::remove_file(path);
    }

    async fn again_pool() -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap()
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use palisade_pubsub::backend::postgres::PgCheckpoints;
    use palisade_test_util::{POSTGRES_URL_VAR, service_url, unique_name};

    async fn store(test: &str) -> Option<(PgCheckpoints, sqlx::PgPool, String)> {
        let url = service_url(POSTGRES_URL_VAR, test)?;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let schema = unique_name("ps_outbox");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        let store =
            PgCheckpoints::with_table(pool.clone(), &format!("{schema}.checkpoints")).unwrap();
        store.migrate().await.unwrap();
        Some((store, pool, schema))
    }

    async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(pool)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn crash_between_commit_and_publish() {
        let Some((store, pool, schema)) = store("pg_crash_between_commit_and_publish").await else {
            return;
        };
        crash_and_recover(store, Kill::BeforePublish(12)).await;
        drop_schema(&pool, &schema).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn crash_between_publish_and_checkpoint() {
        let Some((store, pool, schema)) = store("pg_crash_between_publish_and_checkpoint").await
        else {
            return;
        };
        let reached = crash_and_recover(store, Kill::BeforeCheckpoint(2)).await;
        assert!(reached > 40);
        drop_schema(&pool, &schema).await;
    }
}
