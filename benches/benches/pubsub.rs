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
//! - `jetstream`: publish 200 messages to a JetStream stream (each awaiting
//!   its ack), then consume and ack all 200: through `NatsBus` and the
//!   `Consumer` driver (an always-ok handler), and through raw async-nats
//!   doing the same (publish with a message id, pull consumer, ack each).
//!   Needs a NATS server (`PALISADE_TEST_NATS_URL`, default
//!   `nats://127.0.0.1:4222`); skipped with a message when none answers.
//! - `relay`: the outbox relay publishing 4 096 committed events (batches of
//!   256, one checkpoint per batch) from the in-memory outbox to the
//!   in-process bus, with the checkpoint in memory, in SQLite (a file) and
//!   in PostgreSQL (`PALISADE_TEST_POSTGRES_URL`, skipped when unset).
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

    const N: usize = 200;

    fn nats_url() -> String {
        std::env::var("PALISADE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
    }

    /// A connected client and a fresh stream, or `None` (printed) when no
    /// server answers.
    fn setup(rt: &tokio::runtime::Runtime, stream: &str) -> Option<async_nats::Client> {
        rt.block_on(async {
            let client =
                match tokio::time::timeout(Duration::from_secs(2), async_nats::connect(nats_url()))
                    .await
                {
                    Ok(Ok(c)) => c,
                    _ => {
                        println!(
                            "jetstream benches skipped: no NATS server at {}",
                            nats_url()
                        );
                        return None;
                    }
                };
            let js = async_nats::jetstream::new(client.clone());
            let _ = js.delete_stream(stream).await;
            js.create_stream(async_nats::jetstream::stream::Config {
                name: stream.to_owned(),
                subjects: vec![format!("{stream}.>")],
                duplicate_window: Duration::from_secs(1),
                ..Default::default()
            })
            .await
            .unwrap();
            Some(client)
        })
    }

    fn teardown(rt: &tokio::runtime::Runtime, client: &async_nats::Client, stream: &str) {
        rt.block_on(async {
            let _ = async_nats::jetstream::new(client.clone())
                .delete_stream(stream)
                .await;
        });
    }

    static ROUND: AtomicU64 = AtomicU64::new(0);

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn palisade_nats_bus_and_consumer(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        let stream = format!("bench_ps_{}", std::process::id());
        let Some(client) = setup(&rt, &stream) else {
            return;
        };
        // async-nats spawns its acknowledgement task: build inside the runtime.
        let bus = {
            let _runtime = rt.enter();
            NatsBus::new(client.clone(), "bench", NatsSettings::default()).unwrap()
        };
        bencher
            .counter(divan::counter::ItemsCount::new(N))
            .bench_local(|| {
                rt.block_on(async {
                    let round = ROUND.fetch_add(1, Ordering::Relaxed);
                    let subject = format!("{stream}.r{round}");
                    for i in 0..N {
                        let msg = Message::builder(subject.clone())
                            .id(format!("r{round}-{i}"))
                            .payload(vec![0u8; 64])
                            .build()
                            .unwrap();
                        bus.publish(msg).await.unwrap();
                    }
                    let sub = bus.subscribe(&stream, &subject).await.unwrap();
                    let consumer = Consumer::builder("bench")
                        .max_in_flight(64)
                        .build(
                            sub,
                            service_fn(|_m: Message| async {
                                Ok::<_, palisade_core::BoxError>(())
                            }),
                            bus.clone(),
                        )
                        .unwrap();
                    let handle = consumer.handle();
                    let done = Arc::new(tokio::sync::Notify::new());
                    let d = Arc::clone(&done);
                    let watcher = tokio::spawn(async move {
                        while handle.snapshot().acked < N as u64 {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                        d.notify_one();
                    });
                    consumer.run_until(done.notified()).await;
                    watcher.await.unwrap();
                });
            });
        teardown(&rt, &client, &stream);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn raw_async_nats(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        let stream = format!("bench_raw_{}", std::process::id());
        let Some(client) = setup(&rt, &stream) else {
            return;
        };
        let js = {
            let _runtime = rt.enter();
            async_nats::jetstream::new(client.clone())
        };
        bencher
            .counter(divan::counter::ItemsCount::new(N))
            .bench_local(|| {
                rt.block_on(async {
                    let round = ROUND.fetch_add(1, Ordering::Relaxed);
                    let subject = format!("{stream}.r{round}");
                    for i in 0..N {
                        let publish = async_nats::jetstream::message::PublishMessage::build()
                            .payload(vec![0u8; 64].into())
                            .message_id(format!("r{round}-{i}"));
                        js.send_publish(subject.clone(), publish)
                            .await
                            .unwrap()
                            .await
                            .unwrap();
                    }
                    let consumer = js
                        .get_stream(&stream)
                        .await
                        .unwrap()
                        .create_consumer(async_nats::jetstream::consumer::pull::Config {
                            filter_subject: subject.clone(),
                            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    let mut messages = consumer.messages().await.unwrap();
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
}
