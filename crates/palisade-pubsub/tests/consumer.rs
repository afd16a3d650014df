//! The consumer driver over the in-process bus and an at-least-once test
//! broker: ack, redelivery with backoff, dead letters, rejections that pause
//! pulling, bounded in-flight messages, trace and correlation propagation,
//! and a consumer killed mid-message.
#![cfg(feature = "memory")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use palisade_bulkhead::BulkheadLayer;
use palisade_circuit_breaker::CircuitBreakerLayer;
use palisade_core::BoxError;
use palisade_pubsub::backend::memory::MemoryBus;
use palisade_pubsub::error::Terminal;
use palisade_pubsub::message::CAUSATION_ID;
use palisade_pubsub::{
    Consumer, DEAD_LETTER_KIND, DEAD_LETTER_REASON, DELIVERIES, IdempotentLayer, Message,
    ORIGINAL_ID, ORIGINAL_SUBJECT, PubSubEvent,
};
use palisade_test_util::MetricsCapture;
use parking_lot::Mutex;
use support::TestBroker;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{ServiceBuilder, service_fn};

fn msg(subject: &str, id: &str) -> Message {
    Message::builder(subject)
        .id(id)
        .payload(id.to_owned())
        .build()
        .unwrap()
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acks_after_success_and_ends_with_the_subscription() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("orders.*").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let handler = service_fn(move |m: Message| {
        s.lock().push(m.id().to_owned());
        async { Ok::<_, BoxError>(()) }
    });
    let consumer = Consumer::builder("orders")
        .build(sub, handler, bus.clone())
        .unwrap();
    let handle = consumer.handle();
    for i in 0..3 {
        bus.publish(msg("orders.created", &format!("o{i}")))
            .await
            .unwrap();
    }
    bus.close();
    consumer.run().await;
    assert_eq!(*seen.lock(), vec!["o0", "o1", "o2"]);
    let snap = handle.snapshot();
    assert_eq!((snap.delivered, snap.acked, snap.dead_lettered), (3, 3, 0));
    assert_eq!(
        capture.counter("palisade_pubsub_acked_total", &[("name", "orders")]),
        3
    );
    assert_eq!(
        capture.counter("palisade_pubsub_delivered_total", &[("name", "orders")]),
        3
    );
    assert!(
        capture
            .histogram("palisade_pubsub_handle_seconds", &[("name", "orders")])
            .len()
            == 3
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_retryable_failure_is_redelivered_after_a_growing_delay() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("x").unwrap();
    let start = Instant::now();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = Arc::clone(&calls);
    let handler = service_fn(move |_m: Message| {
        let mut calls = c.lock();
        calls.push(start.elapsed());
        let fail = calls.len() < 3;
        async move {
            if fail {
                Err(BoxError::from("flaky"))
            } else {
                Ok(())
            }
        }
    });
    let consumer = Consumer::builder("c")
        .redelivery_delay(Duration::from_secs(1))
        .max_deliver(5)
        .build(sub, handler, bus.clone())
        .unwrap();
    let handle = consumer.handle();
    bus.publish(msg("x", "m1")).await.unwrap();
    bus.close();
    consumer.run().await;
    assert_eq!(
        *calls.lock(),
        vec![
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3)
        ]
    );
    let snap = handle.snapshot();
    assert_eq!(
        (snap.acked, snap.redelivered, snap.dead_lettered),
        (1, 2, 0)
    );
    assert_eq!(
        capture.counter("palisade_pubsub_redelivered_total", &[("name", "c")]),
        2
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_poison_message_is_dead_lettered_with_its_reason_and_the_consumer_goes_on() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("orders.*").unwrap();
    let mut dead = bus.subscribe("dead_letter.orders").unwrap();
    let ok = Arc::new(AtomicU32::new(0));
    let o = Arc::clone(&ok);
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    let handler = service_fn(move |m: Message| {
        let poison = m.id() == "poison";
        if !poison {
            o.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            if poison {
                Err(BoxError::from("cannot parse line 3"))
            } else {
                Ok(())
            }
        }
    });
    let consumer = Consumer::builder("orders")
        .max_deliver(3)
        .redelivery_delay(Duration::from_millis(10))
        .on_event(move |ev: &PubSubEvent| e.lock().push(ev.clone()))
        .build(sub, handler, bus.clone())
        .unwrap();
    let handle = consumer.handle();
    bus.publish(msg("orders.created", "a")).await.unwrap();
    bus.publish(msg("orders.created", "poison")).await.unwrap();
    bus.publish(msg("orders.created", "b")).await.unwrap();
    let run = tokio::spawn(consumer.run());
    let letter = dead.recv().await.unwrap().unwrap();
    assert_eq!(letter.id(), "orders:poison");
    let h = letter.headers();
    assert_eq!(h.get(DEAD_LETTER_KIND), Some("max_deliver"));
    assert_eq!(h.get(DEAD_LETTER_REASON), Some("cannot parse line 3"));
    assert_eq!(h.get(DELIVERIES), Some("3"));
    assert_eq!(h.get(ORIGINAL_SUBJECT), Some("orders.created"));
    assert_eq!(h.get(ORIGINAL_ID), Some("poison"));
    assert_eq!(&letter.payload()[..], b"poison");
    bus.publish(msg("orders.created", "c")).await.unwrap();
    settle().await;
    assert_eq!(
        ok.load(Ordering::SeqCst),
        3,
        "messages around the poison are handled"
    );
    bus.close();
    run.await.unwrap();
    let snap = handle.snapshot();
    assert_eq!((snap.acked, snap.dead_lettered), (3, 1));
    assert_eq!(
        capture.counter(
            "palisade_pubsub_dead_lettered_total",
            &[("name", "orders"), ("kind", "max_deliver")]
        ),
        1
    );
    let events = events.lock();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, PubSubEvent::Redelivering { .. }))
            .count(),
        2
    );
    assert!(events.iter().any(
        |e| matches!(e, PubSubEvent::DeadLettered { message_id, .. } if &**message_id == "poison")
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_terminal_failure_is_dead_lettered_at_once() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("x").unwrap();
    let mut dead = bus.subscribe("dlq.x").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let handler = service_fn(move |_m: Message| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(BoxError::from(Terminal::new("unknown schema v9"))) }
    });
    let consumer = Consumer::builder("c")
        .dead_letter_subject("dlq.x")
        .build(sub, handler, bus.clone())
        .unwrap();
    bus.publish(msg("x", "m")).await.unwrap();
    let run = tokio::spawn(consumer.run());
    let letter = dead.recv().await.unwrap().unwrap();
    assert_eq!(letter.headers().get(DEAD_LETTER_KIND), Some("terminal"));
    assert_eq!(
        letter.headers().get(DEAD_LETTER_REASON),
        Some("unknown schema v9")
    );
    assert_eq!(letter.headers().get(DELIVERIES), Some("1"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    bus.close();
    run.await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_open_breaker_stops_the_pulling_instead_of_burning_deliveries() {
    let broker = TestBroker::new(Duration::from_secs(30));
    let healthy = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let (h, c) = (Arc::clone(&healthy), Arc::clone(&calls));
    let breaker = CircuitBreakerLayer::builder("handler")
        .count_window(2)
        .minimum_calls(2)
        .failure_rate_threshold(100.0)
        .wait_in_open(Duration::from_secs(10))
        .build()
        .unwrap();
    let breaker_handle = breaker.handle();
    let handler = ServiceBuilder::new()
        .layer(breaker)
        .service(service_fn(move |_m: Message| {
            c.fetch_add(1, Ordering::SeqCst);
            let ok = h.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(BoxError::from("downstream is down"))
                }
            }
        }));
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    let consumer = Consumer::builder("c")
        .max_in_flight(2)
        .max_deliver(3)
        .redelivery_delay(Duration::from_millis(100))
        .on_event(move |ev: &PubSubEvent| e.lock().push(ev.clone()))
        .build(
            broker.subscribe(),
            handler,
            MemoryBus::builder("dlq").build().unwrap(),
        )
        .unwrap();
    let handle = consumer.handle();
    for i in 0..20 {
        broker.publish(msg("x", &format!("m{i}")));
    }
    let run = tokio::spawn(consumer.run());
    settle().await;
    // Two failures open the breaker; the refused messages are held.
    assert_eq!(breaker_handle.state().as_str(), "open");
    let calls_when_open = calls.load(Ordering::SeqCst);
    assert_eq!(calls_when_open, 2);
    // For the whole open period nothing reaches the handler, nothing is
    // pulled beyond the held messages, and no delivery is spent.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), calls_when_open);
        assert!(
            broker.pending() >= 18,
            "at most the in-flight bound was pulled"
        );
    }
    assert!(handle.snapshot().rejected >= 1);
    assert!(
        events
            .lock()
            .iter()
            .any(|e| matches!(e, PubSubEvent::Paused { .. }))
    );
    // The downstream recovers; the half-open probe succeeds and everything
    // is handled, nothing dead-lettered.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let snap = handle.snapshot();
    assert_eq!(snap.acked, 20, "{snap:?}");
    assert_eq!(snap.dead_lettered, 0);
    for i in 0..20 {
        assert!(
            broker.deliveries(&format!("m{i}")) <= 3,
            "no delivery budget burnt while open"
        );
    }
    run.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_flight_messages_are_bounded() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("x").unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (g, r, p) = (Arc::clone(&gate), Arc::clone(&running), Arc::clone(&peak));
    let handler = service_fn(move |_m: Message| {
        let (g, r, p) = (Arc::clone(&g), Arc::clone(&r), Arc::clone(&p));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            g.acquire().await.unwrap().forget();
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BoxError>(())
        }
    });
    let consumer = Consumer::builder("c")
        .max_in_flight(3)
        .build(bus.subscribe("x").unwrap(), handler, bus.clone())
        .unwrap();
    drop(sub);
    let handle = consumer.handle();
    let run = tokio::spawn(consumer.run());
    for i in 0..10 {
        bus.publish(msg("x", &format!("m{i}"))).await.unwrap();
    }
    settle().await;
    assert_eq!(running.load(Ordering::SeqCst), 3);
    assert_eq!(handle.snapshot().in_flight, 3);
    gate.add_permits(10);
    settle().await;
    assert_eq!(handle.snapshot().acked, 10);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    bus.close();
    run.await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pending_service_stops_the_pulling() {
    // A bulkhead with backpressure is Pending while full: the consumer takes
    // no message it could not start.
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("x").unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    let bulkhead = BulkheadLayer::builder("h")
        .max_concurrent_calls(2)
        .backpressure(true)
        .max_wait(Duration::from_secs(3600))
        .build()
        .unwrap();
    let handler = ServiceBuilder::new()
        .layer(bulkhead)
        .service(service_fn(move |_m: Message| {
            let g = Arc::clone(&g);
            async move {
                g.acquire().await.unwrap().forget();
                Ok::<_, BoxError>(())
            }
        }));
    let consumer = Consumer::builder("c")
        .max_in_flight(16)
        .build(sub, handler, bus.clone())
        .unwrap();
    let handle = consumer.handle();
    let mut probe = bus.subscribe("x").unwrap();
    for i in 0..10 {
        bus.publish(msg("x", &format!("m{i}"))).await.unwrap();
    }
    let run = tokio::spawn(consumer.run());
    settle().await;
    assert_eq!(
        handle.snapshot().delivered,
        2,
        "only what the bulkhead admits is pulled"
    );
    assert_eq!(handle.snapshot().lag, 8);
    gate.add_permits(10);
    settle().await;
    assert_eq!(handle.snapshot().acked, 10);
    assert_eq!(probe.buffered(), 10);
    let _ = probe.recv().await;
    bus.close();
    run.await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_handler_publishing_continues_the_trace_and_the_correlation() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("orders.placed").unwrap();
    let mut followups = bus.subscribe("payments.requested").unwrap();
    let publisher = bus.clone();
    let handler = service_fn(move |_m: Message| {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish(Message::new("payments.requested", "pay")?)
                .await?;
            Ok::<_, BoxError>(())
        }
    });
    let consumer = Consumer::builder("orders")
        .build(sub, handler, bus.clone())
        .unwrap();
    let original = Message::builder("orders.placed")
        .id("order-9-placed")
        .correlation_id("order-9")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .build()
        .unwrap();
    bus.publish(original).await.unwrap();
    let run = tokio::spawn(consumer.run());
    let followup = followups.recv().await.unwrap().unwrap();
    assert_eq!(followup.correlation_id(), Some("order-9"));
    assert_eq!(followup.headers().get(CAUSATION_ID), Some("order-9-placed"));
    let trace = followup.trace_context().unwrap();
    assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        trace.span_id_hex(),
        "00f067aa0ba902b7",
        "a new span in the same trace"
    );
    bus.close();
    run.await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_consumer_killed_mid_message_redelivers_and_handles_once() {
    let broker = TestBroker::new(Duration::from_secs(30));
    let dedup = IdempotentLayer::builder("c")
        .capacity(1000)
        .build()
        .unwrap();
    let effects = Arc::new(Mutex::new(Vec::new()));
    let stall = Arc::new(AtomicBool::new(true));
    let make = |effects: Arc<Mutex<Vec<String>>>, stall: Arc<AtomicBool>| {
        ServiceBuilder::new()
            .layer(dedup.clone())
            .service(service_fn(move |m: Message| {
                let (effects, stall) = (Arc::clone(&effects), Arc::clone(&stall));
                async move {
                    if m.id() == "stall" && stall.load(Ordering::SeqCst) {
                        // Killed in the middle of this one, before any effect.
                        std::future::pending::<()>().await;
                    }
                    effects.lock().push(m.id().to_owned());
                    Ok::<_, BoxError>(())
                }
            }))
    };
    let dlq = MemoryBus::builder("dlq").build().unwrap();
    broker.publish(msg("x", "stall"));
    broker.publish(msg("x", "acked-late"));
    // The second message's handler succeeds, but the consumer dies while
    // acknowledging it.
    broker.hang_next_acks(1);
    let first = Consumer::builder("c")
        .build(
            broker.subscribe(),
            make(Arc::clone(&effects), Arc::clone(&stall)),
            dlq.clone(),
        )
        .unwrap();
    let run = tokio::spawn(first.run());
    settle().await;
    assert_eq!(*effects.lock(), vec!["acked-late"]);
    // Kill it: both deliveries are dropped unsettled.
    run.abort();
    let _ = run.await;
    stall.store(false, Ordering::SeqCst);
    let second = Consumer::builder("c")
        .build(
            broker.subscribe(),
            make(Arc::clone(&effects), Arc::clone(&stall)),
            dlq,
        )
        .unwrap();
    let handle = second.handle();
    let run = tokio::spawn(second.run());
    tokio::time::sleep(Duration::from_secs(31)).await;
    settle().await;
    let mut done = effects.lock().clone();
    done.sort();
    assert_eq!(
        done,
        vec!["acked-late", "stall"],
        "each handled exactly once"
    );
    assert_eq!(broker.deliveries("stall"), 2);
    assert_eq!(broker.deliveries("acked-late"), 2);
    let mut acked = broker.acked();
    acked.sort();
    assert_eq!(acked, vec!["acked-late", "stall"]);
    assert_eq!(handle.snapshot().redelivered, 2);
    run.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_message_past_max_deliver_on_arrival_is_dead_lettered_unhandled() {
    // Every delivery so far died mid-handling (crashes): the broker's count
    // is past max_deliver when it comes back.
    let broker = TestBroker::new(Duration::from_secs(1));
    let dlq = MemoryBus::builder("dlq").build().unwrap();
    let mut dead = dlq.subscribe(">").unwrap();
    broker.publish(msg("x", "crasher"));
    for _ in 0..2 {
        let consumer = Consumer::builder("c")
            .max_deliver(2)
            .build(
                broker.subscribe(),
                service_fn(|_m: Message| async {
                    std::future::pending::<()>().await;
                    Ok::<_, BoxError>(())
                }),
                dlq.clone(),
            )
            .unwrap();
        let run = tokio::spawn(consumer.run());
        settle().await;
        run.abort();
        let _ = run.await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let consumer = Consumer::builder("c")
        .max_deliver(2)
        .build(
            broker.subscribe(),
            service_fn(move |_m: Message| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, BoxError>(()) }
            }),
            dlq.clone(),
        )
        .unwrap();
    let run = tokio::spawn(consumer.run());
    let letter = dead.recv().await.unwrap().unwrap();
    assert_eq!(letter.headers().get(DELIVERIES), Some("3"));
    assert_eq!(letter.headers().get(DEAD_LETTER_KIND), Some("max_deliver"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(broker.termed(), vec!["crasher"]);
    run.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_finishes_what_is_in_flight() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let sub = bus.subscribe("x").unwrap();
    let done = Arc::new(AtomicU32::new(0));
    let d = Arc::clone(&done);
    let handler = service_fn(move |_m: Message| {
        let d = Arc::clone(&d);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            d.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(())
        }
    });
    let consumer = Consumer::builder("c")
        .max_in_flight(2)
        .build(sub, handler, bus.clone())
        .unwrap();
    for i in 0..5 {
        bus.publish(msg("x", &format!("m{i}"))).await.unwrap();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(consumer.run_until(async move {
        let _ = stopped.await;
    }));
    settle().await;
    stop.send(()).unwrap();
    run.await.unwrap();
    assert_eq!(
        done.load(Ordering::SeqCst),
        2,
        "the two in flight finished; no more were pulled"
    );
}

#[test]
fn bad_settings_are_refused() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let build = |b: palisade_pubsub::ConsumerBuilder| {
        b.build(
            bus.subscribe("x").unwrap(),
            service_fn(|_m: Message| async { Ok::<_, BoxError>(()) }),
            bus.clone(),
        )
        .unwrap_err()
        .field()
        .to_owned()
    };
    assert_eq!(
        build(Consumer::builder("c").max_in_flight(0)),
        "max_in_flight"
    );
    assert_eq!(build(Consumer::builder("c").max_deliver(0)), "max_deliver");
    assert_eq!(
        build(Consumer::builder("c").dead_letter_subject("a.>")),
        "dead_letter_subject"
    );
    assert_eq!(build(Consumer::builder("a.b")), "name");
}
