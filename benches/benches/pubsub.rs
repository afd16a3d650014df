//! Benchmarks for publish-subscribe, side by side with the raw peers in one
//! run.
//!
//! - `in_process`: publish a batch of 1 024 messages, then every subscriber
//!   receives all of them (1 and 8 subscribers, buffers large enough that
//!   nothing is dropped), through Palisade's `MemoryBus` and through a raw
//!   `tokio::sync::broadcast` channel of the same capacity. The message is
//!   a pre-built `Message` cloned per publish (a reference count) on both
//!   sides, so only the transport differs. Receives are polled with a no-op
//!   waker (each is ready: the batch is buffered). Reported per message
//!   published.
//! - `jetstream`: publish 200 messages to a JetStream stream, then create a
//!   consumer and consume and ack all 200: through `NatsBus` and the
//!   `Consumer` driver (an always-ok handler, up to 64 in flight), and
//!   through raw async-nats doing the same work: the same three headers
//!   (`Nats-Msg-Id`, `Correlation-Id`, `traceparent`, same lengths) and
//!   64-byte payload, the same consumer configuration, the same pull batch
//!   (64, the `pull_batch` default) and heartbeat, and the same acks: a
//!   plain `+ACK` sent without waiting for the server's confirmation
//!   (`double_ack: false`, the default), on both sides. `one_by_one` waits
//!   for each publish's acknowledgement before sending the next (`publish`;
//!   `send_publish(..).await?.await`); `pipelined` sends all 200, then awaits
//!   the acknowledgements (`NatsBus::send`; `send_publish`, then the ack
//!   futures). Each sample starts from an empty stream with no consumers,
//!   made outside the timing. The Palisade side ends when its handler has
//!   seen all 200 and the consumer has acked them (`run_until`, no polling);
//!   the raw side when it has acked the 200th. Needs a NATS server
//!   (`PALISADE_TEST_NATS_URL`, default `nats://127.0.0.1:4222`); skipped
//!   with a message when none answers.
//! - `relay`: the outbox relay publishing 4 096 committed events (batches of
//!   256, one checkpoint per batch) from the in-memory outbox to the
//!   in-process bus, with the checkpoint in memory, in SQLite (a file) and
//!   in PostgreSQL (`PALISADE_TEST_POSTGRES_URL`, skipped when unset); and
//!   from an event store (`EventStoreOutbox`, the store's gap-safe global
//!   read) on SQLite and on PostgreSQL, the checkpoint in the same database.
//!
//! Run: `cargo bench -p palisade-benches --bench pubsub`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use divan::{AllocProfiler, Bencher};
use futures_util::StreamExt;
use palisade_benches::poll_now;
use palisade_pubsub::backend::memory::MemoryBus;
use palisade_pubsub::backend::nats::NatsBus;
use palisade_pubsub::outbox::{CheckpointStore, MemoryCheckpoints, MemoryOutbox, Relay};
use palisade_pubsub::{Consumer, Message, NatsSettings};
use tower::service_fn;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const BATCH: usize = 1024;

fn message() -> Message {
    Message::builder("orders.created")
        .id("order-1")
        .payload(vec![0u8; 64])
        .build()
        .expect("a valid message")
}

mod in_process {
    use super::*;

    #[divan::bench(args = [1, 8], sample_count = 200, sample_size = 1)]
    fn palisade_memory_bus(bencher: Bencher<'_, '_>, subscribers: usize) {
        let bus = MemoryBus::builder("bench").capacity(BATCH).build().unwrap();
        let mut subs: Vec<_> = (0..subscribers)
            .map(|_| bus.subscribe("orders.*").unwrap())
            .collect();
        let msg = message();
        bencher
            .counter(divan::counter::ItemsCount::new(BATCH))
            .bench_local(|| {
                for _ in 0..BATCH {
                    bus.try_publish(&msg).unwrap();
                }
                for sub in &mut subs {
                    for _ in 0..BATCH {
                        black_box(poll_now(sub.recv()).unwrap().unwrap());
                    }
                }
            });
    }

    #[divan::bench(args = [1, 8], sample_count = 200, sample_size = 1)]
    fn tokio_broadcast(bencher: Bencher<'_, '_>, subscribers: usize) {
        let (tx, _) = tokio::sync::broadcast::channel::<Message>(BATCH);
        let mut subs: Vec<_> = (0..subscribers).map(|_| tx.subscribe()).collect();
        let msg = message();
        bencher
            .counter(divan::counter::ItemsCount::new(BATCH))
            .bench_local(|| {
                for _ in 0..BATCH {
                    tx.send(msg.clone()).unwrap();
                }
                for sub in &mut subs {
                    for _ in 0..BATCH {
                        black_box(poll_now(sub.recv()).unwrap());
                    }
                }
            });
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

mod jetstream {
    use super::*;
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};

    const N: usize = 200;

    fn nats_url() -> String {
        std::env::var("PALISADE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
    }

    /// A connected client, or `None` (printed) when no server answers.
    fn connect(rt: &tokio::runtime::Runtime) -> Option<async_nats::Client> {
        rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(2), async_nats::connect(nats_url()))
                .await
            {
                Ok(Ok(c)) => Some(c),
                _ => {
                    println!(
                        "jetstream benches skipped: no NATS server at {}",
                        nats_url()
                    );
                    None
                }
            }
        })
    }

    /// An empty stream `name` with no consumers (deleted and created again):
    /// every sample starts from the same state, outside the timing.
    fn fresh_stream(rt: &tokio::runtime::Runtime, client: &async_nats::Client, name: &str) {
        rt.block_on(async {
            let js = async_nats::jetstream::new(client.clone());
            let _ = js.delete_stream(name).await;
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.to_owned(),
                subjects: vec![format!("{name}.>")],
                duplicate_window: Duration::from_secs(1),
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
        });
    }

    fn teardown(rt: &tokio::runtime::Runtime, client: &async_nats::Client, stream: &str) {
        rt.block_on(async {
            let _ = async_nats::jetstream::new(client.clone())
                .delete_stream(stream)
                .await;
        });
    }

    /// The consumer `NatsBus::subscribe` creates with default settings, for
    /// the raw side.
    fn consumer_config(subject: &str) -> pull::Config {
        let settings = NatsSettings::default();
        pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: -1,
            filter_subject: subject.to_owned(),
            max_ack_pending: i64::try_from(settings.max_ack_pending).unwrap(),
            inactive_threshold: Duration::from_secs(300),
            ..Default::default()
        }
    }

    static ROUND: AtomicU64 = AtomicU64::new(0);

    /// How the 200 messages are published: `one_by_one` waits for each
    /// acknowledgement before sending the next; `pipelined` sends them all,
    /// then waits for the acknowledgements.
    const PUBLISH: [&str; 2] = ["one_by_one", "pipelined"];

    #[divan::bench(args = PUBLISH, sample_count = 20, sample_size = 1)]
    fn palisade_nats_bus_and_consumer(bencher: Bencher<'_, '_>, publish: &str) {
        let rt = runtime();
        let stream = format!("bench_ps_{}", std::process::id());
        let Some(client) = connect(&rt) else {
            return;
        };
        // async-nats spawns its acknowledgement task: build inside the runtime.
        let bus = {
            let _runtime = rt.enter();
            NatsBus::new(client.clone(), "bench", NatsSettings::default()).unwrap()
        };
        bencher
            .counter(divan::counter::ItemsCount::new(N))
            .with_inputs(|| fresh_stream(&rt, &client, &stream))
            .bench_local_values(|()| {
                rt.block_on(async {
                    let round = ROUND.fetch_add(1, Ordering::Relaxed);
                    let subject = format!("{stream}.r{round}");
                    let mut pending = Vec::with_capacity(N);
                    for i in 0..N {
                        let msg = Message::builder(subject.clone())
                            .id(format!("r{round}-{i}"))
                            .payload(vec![0u8; 64])
                            .build()
                            .unwrap();
                        if publish == "pipelined" {
                            pending.push(bus.send(msg).await.unwrap());
                        } else {
                            bus.publish(msg).await.unwrap();
                        }
                    }
                    for ack in pending {
                        ack.await.unwrap();
                    }
                    let sub = bus.subscribe(&stream, &subject).await.unwrap();
                    // The handler signals the N-th call; stopping then waits
                    // for every message in flight to be acked.
                    let handled = Arc::new(AtomicU64::new(0));
                    let all_handled = Arc::new(tokio::sync::Notify::new());
                    let consumer = Consumer::builder("bench")
                        .max_in_flight(64)
                        .build(
                            sub,
                            service_fn({
                                let handled = Arc::clone(&handled);
                                let all_handled = Arc::clone(&all_handled);
                                move |_m: Message| {
                                    if handled.fetch_add(1, Ordering::Relaxed) + 1 == N as u64 {
                                        all_handled.notify_one();
                                    }
                                    std::future::ready(Ok::<_, palisade_core::BoxError>(()))
                                }
                            }),
                            bus.clone(),
                        )
                        .unwrap();
                    let stats = consumer.handle();
                    consumer.run_until(all_handled.notified()).await;
                    assert_eq!(stats.snapshot().acked, N as u64);
                });
            });
        teardown(&rt, &client, &stream);
    }

    #[divan::bench(args = PUBLISH, sample_count = 20, sample_size = 1)]
    fn raw_async_nats(bencher: Bencher<'_, '_>, publish: &str) {
        let rt = runtime();
        let stream = format!("bench_raw_{}", std::process::id());
        let Some(client) = connect(&rt) else {
            return;
        };
        let js = {
            let _runtime = rt.enter();
            async_nats::jetstream::new(client.clone())
        };
        let batch = NatsSettings::default().pull_batch;
        bencher
            .counter(divan::counter::ItemsCount::new(N))
            .with_inputs(|| fresh_stream(&rt, &client, &stream))
            .bench_local_values(|()| {
                rt.block_on(async {
                    let round = ROUND.fetch_add(1, Ordering::Relaxed);
                    let subject = format!("{stream}.r{round}");
                    let mut pending = Vec::with_capacity(N);
                    for i in 0..N {
                        // The same headers as a Palisade message: its id, a
                        // correlation id (the id) and a W3C traceparent.
                        let id = format!("r{round}-{i}");
                        let traceparent = format!(
                            "00-{:032x}-{:016x}-01",
                            fastrand::u128(1..),
                            fastrand::u64(1..)
                        );
                        let message = async_nats::jetstream::message::PublishMessage::build()
                            .payload(vec![0u8; 64].into())
                            .header("Correlation-Id", id.as_str())
                            .header("traceparent", traceparent)
                            .message_id(id);
                        let ack = js.send_publish(subject.clone(), message).await.unwrap();
                        if publish == "pipelined" {
                            pending.push(ack);
                        } else {
                            ack.await.unwrap();
                        }
                    }
                    for ack in pending {
                        ack.await.unwrap();
                    }
                    let consumer = js
                        .get_stream(&stream)
                        .await
                        .unwrap()
                        .create_consumer(consumer_config(&subject))
                        .await
                        .unwrap();
                    let mut messages = consumer
                        .stream()
                        .max_messages_per_batch(batch)
                        .heartbeat(Duration::from_secs(5))
                        .messages()
                        .await
                        .unwrap();
                    for _ in 0..N {
                        let m = messages.next().await.unwrap().unwrap();
                        m.ack().await.unwrap();
                    }
                });
            });
        teardown(&rt, &client, &stream);
    }
}

mod relay {
    use super::*;

    const EVENTS: usize = 4096;

    fn outbox() -> MemoryOutbox {
        let outbox = MemoryOutbox::new();
        for i in 0..EVENTS {
            outbox.append(
                Message::builder("orders.created")
                    .id(format!("ev-{i}"))
                    .payload(vec![0u8; 64])
                    .build()
                    .unwrap(),
            );
        }
        outbox
    }

    fn relay_all<C: CheckpointStore + Clone>(
        bencher: Bencher<'_, '_>,
        rt: &tokio::runtime::Runtime,
        checkpoints: &C,
    ) {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let bus = MemoryBus::builder("bench").build().unwrap();
        bencher
            .counter(divan::counter::ItemsCount::new(EVENTS))
            .with_inputs(|| {
                let name = format!("relay{}", RUN.fetch_add(1, Ordering::Relaxed));
                Relay::builder(name)
                    .batch_size(256)
                    .build(outbox(), checkpoints.clone(), bus.clone())
                    .unwrap()
            })
            .bench_local_values(|mut relay| {
                rt.block_on(async {
                    let mut total = 0;
                    loop {
                        let n = relay.run_once().await.unwrap();
                        if n == 0 {
                            break;
                        }
                        total += n;
                    }
                    assert_eq!(total, EVENTS);
                });
            });
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn memory_checkpoints(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        relay_all(bencher, &rt, &MemoryCheckpoints::new());
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn sqlite_checkpoints(bencher: Bencher<'_, '_>) {
        use palisade_pubsub::backend::sqlite::SqliteCheckpoints;
        let rt = runtime();
        let path = std::env::temp_dir().join(format!(
            "palisade_bench_relay_{}.sqlite",
            std::process::id()
        ));
        let store = rt.block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
            let store = SqliteCheckpoints::new(pool);
            store.migrate().await.unwrap();
            store
        });
        relay_all(bencher, &rt, &store);
        let _ = std::fs::remove_file(path);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn postgres_checkpoints(bencher: Bencher<'_, '_>) {
        use palisade_pubsub::backend::postgres::PgCheckpoints;
        let Ok(url) = std::env::var("PALISADE_TEST_POSTGRES_URL") else {
            println!("postgres relay bench skipped: PALISADE_TEST_POSTGRES_URL is not set");
            return;
        };
        let rt = runtime();
        let schema = format!("bench_relay_{}", std::process::id());
        let (store, pool) = rt.block_on(async {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&pool)
            .await
            .unwrap();
            let store =
                PgCheckpoints::with_table(pool.clone(), &format!("{schema}.checkpoints")).unwrap();
            store.migrate().await.unwrap();
            (store, pool)
        });
        relay_all(bencher, &rt, &store);
        rt.block_on(async {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&pool)
                .await;
        });
    }

    /// 4 096 events in an event store (64 streams, appended in batches of
    /// 64 before timing), read by `EventStoreOutbox` in the store's global
    /// order, published to the bus, the checkpoint in the same database.
    fn store_source<B, C>(
        bencher: Bencher<'_, '_>,
        rt: &tokio::runtime::Runtime,
        store: &palisade_event_store::EventStore<B>,
        checkpoints: &C,
    ) where
        B: palisade_event_store::backend::Backend,
        C: CheckpointStore + Clone,
    {
        use palisade_event_store::{ExpectedVersion, NewEvent};
        use palisade_pubsub::outbox::EventStoreOutbox;
        static RUN: AtomicU64 = AtomicU64::new(0);
        rt.block_on(async {
            for s in 0..64 {
                let batch: Vec<NewEvent> = (0..EVENTS / 64)
                    .map(|i| {
                        NewEvent::new(
                            format!("ev-{s}-{i}"),
                            "OrderCreated",
                            serde_json::json!({ "order": i, "lines": [1, 2, 3] }),
                        )
                    })
                    .collect();
                store
                    .append(&format!("order-{s}"), ExpectedVersion::NoStream, &batch)
                    .await
                    .unwrap();
            }
        });
        let bus = MemoryBus::builder("bench").build().unwrap();
        bencher
            .counter(divan::counter::ItemsCount::new(EVENTS))
            .with_inputs(|| {
                let name = format!("store-relay{}", RUN.fetch_add(1, Ordering::Relaxed));
                let source =
                    EventStoreOutbox::new(store.clone(), |e| format!("orders.{}", e.event_type()));
                Relay::builder(name)
                    .batch_size(256)
                    .build(source, checkpoints.clone(), bus.clone())
                    .unwrap()
            })
            .bench_local_values(|mut relay| {
                rt.block_on(async {
                    let mut total = 0;
                    loop {
                        let n = relay.run_once().await.unwrap();
                        if n == 0 {
                            break;
                        }
                        total += n;
                    }
                    assert_eq!(total, EVENTS);
                });
            });
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn sqlite_event_store_source(bencher: Bencher<'_, '_>) {
        use palisade_pubsub::backend::sqlite::SqliteCheckpoints;
        let rt = runtime();
        let dir =
            std::env::temp_dir().join(format!("palisade_bench_es_relay_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (store, checkpoints) = rt.block_on(async {
            let store = palisade_event_store::EventStore::builder("bench")
                .url(format!("sqlite:{}", dir.join("events.db").display()))
                .open()
                .await
                .unwrap();
            let palisade_event_store::backend::AnyBackend::Sqlite(backend) = store.backend() else {
                unreachable!("a sqlite: URL opens SQLite")
            };
            let checkpoints = SqliteCheckpoints::new(backend.pool().clone());
            checkpoints.migrate().await.unwrap();
            (store, checkpoints)
        });
        store_source(bencher, &rt, &store, &checkpoints);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn postgres_event_store_source(bencher: Bencher<'_, '_>) {
        use palisade_pubsub::backend::postgres::PgCheckpoints;
        let Ok(url) = std::env::var("PALISADE_TEST_POSTGRES_URL") else {
            println!(
                "postgres event-store relay bench skipped: PALISADE_TEST_POSTGRES_URL is not set"
            );
            return;
        };
        let rt = runtime();
        let schema = format!("bench_es_relay_{}", std::process::id());
        let (store, checkpoints, pool) = rt.block_on(async {
            let store = palisade_event_store::EventStore::builder("bench")
                .url(&url)
                .table_prefix(format!("{schema}.es"))
                .open()
                .await
                .unwrap();
            let palisade_event_store::backend::AnyBackend::Postgres(backend) = store.backend()
            else {
                unreachable!("a postgres:// URL opens PostgreSQL")
            };
            let pool = backend.pool().clone();
            let checkpoints =
                PgCheckpoints::with_table(pool.clone(), &format!("{schema}.checkpoints")).unwrap();
            checkpoints.migrate().await.unwrap();
            (store, checkpoints, pool)
        });
        store_source(bencher, &rt, &store, &checkpoints);
        rt.block_on(async {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&pool)
                .await;
        });
    }
}
