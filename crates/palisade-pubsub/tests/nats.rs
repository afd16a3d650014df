//! NATS JetStream, against a real server: `PALISADE_TEST_NATS_URL` for the
//! shared one, and a server of the test's own (`nats-server -js` on an
//! ephemeral port) for the outage test. Each test uses its own stream and
//! subjects and deletes its streams.
#![cfg(feature = "nats")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_pubsub::backend::nats::NatsBus;
use palisade_pubsub::error::PublishErrorKind;
use palisade_pubsub::{
    Consumer, DEAD_LETTER_KIND, DEAD_LETTER_REASON, DELIVERIES, IdempotentLayer, Message,
    NatsSettings,
};
use palisade_test_util::{NATS_URL_VAR, service_url, unique_name};
use parking_lot::Mutex;
use tokio::time::timeout;
use tower::{ServiceBuilder, service_fn};

const WAIT: Duration = Duration::from_secs(20);

fn settings() -> NatsSettings {
    NatsSettings {
        ack_wait: Duration::from_secs(1),
        publish_timeout: Duration::from_secs(2),
        ..NatsSettings::default()
    }
}

fn msg(subject: &str, id: &str) -> Message {
    Message::builder(subject)
        .id(id)
        .payload(id.to_owned())
        .build()
        .unwrap()
}

/// Waits (real time, bounded) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_deduplicated_by_message_id() {
    let Some(url) = service_url(NATS_URL_VAR, "publish_is_deduplicated_by_message_id") else {
        return;
    };
    let name = unique_name("ps_dedup");
    let bus = NatsBus::connect(&url, "dedup", settings()).await.unwrap();
    bus.ensure_stream(&name, &[&format!("{name}.>")], Duration::from_secs(60))
        .await
        .unwrap();
    let subject = format!("{name}.orders");
    let first = bus.publish(msg(&subject, "order-1")).await.unwrap();
    let again = bus.publish(msg(&subject, "order-1")).await.unwrap();
    let other = bus.publish(msg(&subject, "order-2")).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    assert_eq!(other.sequence, first.sequence + 1);
    // A subject no stream captures is refused, not silently dropped.
    let err = bus
        .publish(msg(&format!("{name}_nowhere.x"), "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            PublishErrorKind::Rejected | PublishErrorKind::Unavailable
        ),
        "{err}"
    );
    bus.delete_stream(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_redelivers_and_dead_letters_a_poison_message() {
    let Some(url) = service_url(
        NATS_URL_VAR,
        "acks_redelivers_and_dead_letters_a_poison_message",
    ) else {
        return;
    };
    let name = unique_name("ps_dlq");
    let dead_subject = format!("{name}_dead.orders");
    let bus = NatsBus::connect(&url, "dlq", settings()).await.unwrap();
    bus.ensure_stream(&name, &[&format!("{name}.>")], Duration::from_secs(60))
        .await
        .unwrap();
    bus.ensure_stream(
        &format!("{name}_dead"),
        &[&format!("{name}_dead.>")],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let handler = service_fn(move |m: Message| {
        let mut seen = s.lock();
        seen.push(m.id().to_owned());
        let fail = m.id() == "poison"
            || (m.id() == "flaky" && seen.iter().filter(|i| *i == "flaky").count() == 1);
        async move {
            if fail {
                Err(BoxError::from(format!("cannot handle {}", "it")))
            } else {
                Ok(())
            }
        }
    });
    let sub = bus
        .queue_subscribe(&name, &format!("{name}.>"), "orders")
        .await
        .unwrap();
    let consumer = Consumer::builder("orders")
        .max_deliver(3)
        .redelivery_delay(Duration::from_millis(50))
        .dead_letter_subject(&dead_subject)
        .build(sub, handler, bus.clone())
        .unwrap();
    let handle = consumer.handle();
    let run = tokio::spawn(consumer.run());
    let traced = Message::builder(format!("{name}.orders"))
        .id("ok-1")
        .correlation_id("order-5")
        .build()
        .unwrap();
    bus.publish(traced.clone()).await.unwrap();
    bus.publish(msg(&format!("{name}.orders"), "poison"))
        .await
        .unwrap();
    bus.publish(msg(&format!("{name}.orders"), "flaky"))
        .await
        .unwrap();
    bus.publish(msg(&format!("{name}.orders"), "ok-2"))
        .await
        .unwrap();
    until("acks and a dead letter", || {
        let s = handle.snapshot();
        s.acked == 3 && s.dead_lettered == 1
    })
    .await;
    let seen = seen.lock().clone();
    assert_eq!(seen.iter().filter(|i| *i == "poison").count(), 3);
    assert_eq!(seen.iter().filter(|i| *i == "flaky").count(), 2);
    assert!(handle.snapshot().redelivered >= 3);

    // The dead letter carries its reason, in the dead-letter stream.
    let mut dead = bus
        .subscribe(&format!("{name}_dead"), &format!("{name}_dead.>"))
        .await
        .unwrap();
    use futures_util::StreamExt;
    use palisade_pubsub::Delivery;
    let letter = timeout(WAIT, dead.next()).await.unwrap().unwrap().unwrap();
    let h = letter.message().headers();
    assert_eq!(letter.message().id(), "orders:poison");
    assert_eq!(h.get(DEAD_LETTER_KIND), Some("max_deliver"));
    assert_eq!(h.get(DEAD_LETTER_REASON), Some("cannot handle it"));
    assert_eq!(h.get(DELIVERIES), Some("3"));
    letter.ack().await.unwrap();

    run.abort();
    bus.delete_stream(&name).await.unwrap();
    bus.delete_stream(&format!("{name}_dead")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_pipeline_and_keep_their_order() {
    let Some(url) = service_url(NATS_URL_VAR, "sends_pipeline_and_keep_their_order") else {
        return;
    };
    let name = unique_name("ps_send");
    let bus = NatsBus::connect(&url, "send", settings()).await.unwrap();
    bus.ensure_stream(&name, &[&format!("{name}.>")], Duration::from_secs(60))
        .await
        .unwrap();
    let subject = format!("{name}.orders");
    // Every message is handed over before any acknowledgement is awaited;
    // one id twice in the batch is stored once.
    let ids = ["a", "b", "c", "b", "d"];
    let mut pending = Vec::new();
    for id in ids {
        let sent = bus.send(msg(&subject, id)).await.unwrap();
        assert_eq!(sent.message().id(), id);
        pending.push(sent);
    }
    let mut receipts = Vec::new();
    for ack in pending {
        receipts.push(ack.await.unwrap());
    }
    let sequences: Vec<u64> = receipts.iter().map(|r| r.sequence).collect();
    let first = sequences[0];
    assert_eq!(
        sequences,
        [first, first + 1, first + 2, first + 1, first + 3],
        "stored in send order, the repeated id as a duplicate of the first"
    );
    assert_eq!(
        receipts.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        [false, false, false, true, false]
    );
    // A subject no stream captures: the send goes out, its acknowledgement
    // says it was refused.
    let refused = bus
        .send(msg(&format!("{name}_nowhere.x"), "x"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.kind(),
            PublishErrorKind::Rejected | PublishErrorKind::Unavailable
        ),
        "{refused}"
    );
    let mut sub = bus.subscribe(&name, &subject).await.unwrap();
    use futures_util::StreamExt;
    use palisade_pubsub::Delivery;
    let mut got = Vec::new();
    for _ in 0..4 {
        let d = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
        got.push(d.message().id().to_owned());
        d.ack().await.unwrap();
    }
    assert_eq!(got, ["a", "b", "c", "d"]);
    bus.delete_stream(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trace_and_correlation_survive_the_broker() {
    let Some(url) = service_url(
        NATS_URL_VAR,
        "headers_trace_and_correlation_survive_the_broker",
    ) else {
        return;
    };
    let name = unique_name("ps_hdr");
    let bus = NatsBus::connect(&url, "hdr", settings()).await.unwrap();
    bus.ensure_stream(&name, &[&format!("{name}.>")], Duration::from_secs(60))
        .await
        .unwrap();
    let sent = Message::builder(format!("{name}.a"))
        .id("m-1")
        .correlation_id("saga-3")
        .header("Tenant", "eu")
        .payload("body")
        .build()
        .unwrap();
    bus.publish(sent.clone()).await.unwrap();
    let mut sub = bus.subscribe(&name, &format!("{name}.*")).await.unwrap();
    use futures_util::StreamExt;
    use palisade_pubsub::Delivery;
    let got = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    let m = got.message();
    assert_eq!(m.id(), "m-1");
    assert_eq!(m.subject(), format!("{name}.a"));
    assert_eq!(m.correlation_id(), Some("saga-3"));
    assert_eq!(m.headers().get("Tenant"), Some("eu"));
    assert_eq!(m.trace_context(), sent.trace_context());
    assert_eq!(&m.payload()[..], b"body");
    assert_eq!(got.delivery(), 1);
    got.ack().await.unwrap();
    bus.delete_stream(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_shares_the_work_across_consumers() {
    let Some(url) = service_url(
        NATS_URL_VAR,
        "a_queue_group_shares_the_work_across_consumers",
    ) else {
        return;
    };
    let name = unique_name("ps_group");
    let bus = NatsBus::connect(&url, "group", settings()).await.unwrap();
    bus.ensure_stream(&name, &[&format!("{name}.>")], Duration::from_secs(60))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut runs = Vec::new();
    let mut handles = Vec::new();
    for member in 0..2 {
        let s = Arc::clone(&seen);
        let sub = bus
            .queue_subscribe(&name, &format!("{name}.*"), "analytics")
            .await
            .unwrap();
        let consumer = Consumer::builder(format!("analytics-{member}"))
            .build(
                sub,
                service_fn(move |m: Message| {
                    s.lock().push(m.id().to_owned());
                    async { Ok::<_, BoxError>(()) }
                }),
                bus.clone(),
            )
            .unwrap();
        handles.push(consumer.handle());
        runs.push(tokio::spawn(consumer.run()));
    }
    for i in 0..40 {
        bus.publish(msg(&format!("{name}.e"), &format!("e{i}")))
            .await
            .unwrap();
    }
    until("40 acks", || {
        handles.iter().map(|h| h.snapshot().acked).sum::<u64>() == 40
    })
    .await;
    let mut seen = seen.lock().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 40, "each message handled by one member");
    for run in runs {
        run.abort();
    }
    bus.delete_stream(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_message_is_redelivered_and_handled_once() {
    let Some(url) = service_url(
        NATS_URL_VAR,
        "a_consumer_killed_mid_message_is_redelivered_and_handled_once",
    ) else {
        return;
    };
    let name = unique_name("ps_kill");
    let bus = NatsBus::connect(&url, "kill", settings()).await.unwrap();
    bus.ensure_stream(&name, &[&format!("{name}.>")], Duration::from_secs(60))
        .await
        .unwrap();
    let dedup = IdempotentLayer::builder("kill").build().unwrap();
    let effects = Arc::new(AtomicU32::new(0));
    let stall = Arc::new(AtomicBool::new(true));
    let make = || {
        let (e, s) = (Arc::clone(&effects), Arc::clone(&stall));
        ServiceBuilder::new()
            .layer(dedup.clone())
            .service(service_fn(move |_m: Message| {
                let (e, s) = (Arc::clone(&e), Arc::clone(&s));
                async move {
                    if s.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    e.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, BoxError>(())
                }
            }))
    };
    bus.publish(msg(&format!("{name}.job"), "job-1"))
        .await
        .unwrap();
    let sub = bus
        .queue_subscribe(&name, &format!("{name}.>"), "workers")
        .await
        .unwrap();
    let first = Consumer::builder("workers")
        .build(sub, make(), bus.clone())
        .unwrap();
    let first_handle = first.handle();
    let run = tokio::spawn(first.run());
    until("the first delivery", || {
        first_handle.snapshot().delivered == 1
    })
    .await;
    run.abort();
    let _ = run.await;
    stall.store(false, Ordering::SeqCst);
    let sub = bus
        .queue_subscribe(&name, &format!("{name}.>"), "workers")
        .await
        .unwrap();
    let second = Consumer::builder("workers")
        .build(sub, make(), bus.clone())
        .unwrap();
    let handle = second.handle();
    let run = tokio::spawn(second.run());
    until("the redelivery acked", || handle.snapshot().acked == 1).await;
    assert_eq!(handle.snapshot().redelivered, 1);
    // Nothing else comes back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(effects.load(Ordering::SeqCst), 1);
    assert_eq!(handle.snapshot().delivered, 1);
    run.abort();
    bus.delete_stream(&name).await.unwrap();
}

/// A nats-server of this test's own, on an ephemeral port, with its store in
/// a temporary directory; killed on drop.
struct OwnServer {
    child: Option<tokio::process::Child>,
    port: u16,
    dir: std::path::PathBuf,
}

const NATS_SERVER: &str = "/usr/sbin/nats-server";

impl OwnServer {
    async fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = tokio::process::Command::new(NATS_SERVER)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            child: Some(child),
            port,
            dir: dir.to_owned(),
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
            let _ = child.wait().await;
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_then_back_publishers_fail_clearly_consumers_resume() {
    if !std::path::Path::new(NATS_SERVER).exists() {
        assert!(
            !palisade_test_util::in_ci(),
            "CI=true: {NATS_SERVER} must exist"
        );
        println!("skipped: {NATS_SERVER} is missing");
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(unique_name("ps_nats_store"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = OwnServer::start(port, &dir).await;
    let url = format!("nats://127.0.0.1:{}", server.port);
    let name = unique_name("ps_outage");
    let bus = NatsBus::connect(&url, "outage", settings()).await.unwrap();
    bus.ensure_stream(&name, &[&format!("{name}.>")], Duration::from_secs(120))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = Arc::clone(&seen);
    let sub = bus
        .queue_subscribe(&name, &format!("{name}.>"), "resilient")
        .await
        .unwrap();
    let consumer = Consumer::builder("resilient")
        .build(
            sub,
            service_fn(move |m: Message| {
                s.lock().push(m.id().to_owned());
                async { Ok::<_, BoxError>(()) }
            }),
            bus.clone(),
        )
        .unwrap();
    let handle = consumer.handle();
    let run = tokio::spawn(consumer.run());
    let mut published = Vec::new();
    for i in 0..5 {
        bus.publish(msg(&format!("{name}.e"), &format!("before-{i}")))
            .await
            .unwrap();
        published.push(format!("before-{i}"));
    }
    until("the first five handled", || handle.snapshot().acked >= 5).await;

    server.kill().await;
    // A publisher gets a clear, transient error within the publish timeout.
    let started = tokio::time::Instant::now();
    let err = bus
        .publish(msg(&format!("{name}.e"), "during"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Unavailable, "{err}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut server = OwnServer::start(port, &dir).await;
    // Publishing again with the same id is safe once the server is back.
    let mut republished = false;
    for _ in 0..100 {
        if bus
            .publish(msg(&format!("{name}.e"), "during"))
            .await
            .is_ok()
        {
            republished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(republished, "the client reconnected");
    published.push("during".to_owned());
    for i in 0..5 {
        bus.publish(msg(&format!("{name}.e"), &format!("after-{i}")))
            .await
            .unwrap();
        published.push(format!("after-{i}"));
    }
    until("every acknowledged publish handled", || {
        let seen = seen.lock();
        published.iter().all(|id| seen.contains(id))
    })
    .await;
    run.abort();
    let _ = bus.delete_stream(&name).await;
    server.kill().await;
}
