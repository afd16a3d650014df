//! The in-process bus: routing, queue groups, the slow-subscriber policies,
//! bounded memory, closing.
#![cfg(feature = "memory")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_pubsub::backend::memory::MemoryBus;
use palisade_pubsub::error::{PublishErrorKind, SubscribeErrorKind};
use palisade_pubsub::{Message, PubSubEvent, SlowSubscriber};
use palisade_test_util::MetricsCapture;

fn msg(subject: &str, n: u32) -> Message {
    Message::builder(subject)
        .id(format!("m{n}"))
        .payload(n.to_string())
        .build()
        .unwrap()
}

fn payload(m: &Message) -> u32 {
    std::str::from_utf8(m.payload()).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn routes_by_subject_and_wildcards() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut exact = bus.subscribe("orders.created").unwrap();
    let mut one = bus.subscribe("orders.*").unwrap();
    let mut rest = bus.subscribe("orders.>").unwrap();
    let mut other = bus.subscribe("payments.>").unwrap();
    bus.publish(msg("orders.created", 1)).await.unwrap();
    bus.publish(msg("orders.created.eu", 2)).await.unwrap();
    bus.publish(msg("orders", 3)).await.unwrap();

    assert_eq!(payload(&exact.recv().await.unwrap().unwrap()), 1);
    assert_eq!(exact.buffered(), 0);
    assert_eq!(payload(&one.recv().await.unwrap().unwrap()), 1);
    assert_eq!(one.buffered(), 0);
    assert_eq!(payload(&rest.recv().await.unwrap().unwrap()), 1);
    assert_eq!(payload(&rest.recv().await.unwrap().unwrap()), 2);
    assert_eq!(rest.buffered(), 0);
    assert_eq!(other.buffered(), 0);
    bus.close();
    assert!(other.recv().await.is_none());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_queue_group_gets_each_message_once_and_members_compete() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut a = bus.queue_subscribe("jobs.*", "workers").unwrap();
    let mut b = bus.queue_subscribe("jobs.*", "workers").unwrap();
    let mut audit = bus.subscribe("jobs.*").unwrap();
    assert_eq!(bus.subscriptions(), 2, "the group shares one buffer");
    for n in 0..10 {
        bus.publish(msg("jobs.run", n)).await.unwrap();
    }
    assert_eq!(audit.buffered(), 10);
    // Members take turns from one buffer; between them they see each
    // message exactly once.
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(payload(&a.recv().await.unwrap().unwrap()));
        seen.push(payload(&b.recv().await.unwrap().unwrap()));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert_eq!(a.buffered(), 0);
    for n in 0..10 {
        assert_eq!(payload(&audit.recv().await.unwrap().unwrap()), n);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiting_group_member_is_woken_even_if_another_is_busy() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let a = bus.queue_subscribe("jobs", "w").unwrap();
    let mut b = bus.queue_subscribe("jobs", "w").unwrap();
    // `b` waits in a task; `a` is never polled (busy elsewhere).
    let got = tokio::spawn(async move { b.recv().await.unwrap().unwrap() });
    tokio::task::yield_now().await;
    bus.publish(msg("jobs", 7)).await.unwrap();
    assert_eq!(payload(&got.await.unwrap()), 7);
    drop(a);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn drop_oldest_bounds_the_buffer_and_reports_the_lag() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let lagged = Arc::new(Mutex::new(0u64));
    let seen = Arc::clone(&lagged);
    let bus = MemoryBus::builder("fast")
        .capacity(4)
        .on_event(move |e: &PubSubEvent| {
            if let PubSubEvent::Lagged { dropped, .. } = e {
                *seen.lock().unwrap() += dropped;
            }
        })
        .build()
        .unwrap();
    let mut slow = bus.subscribe("ticks").unwrap();
    let mut keeping_up = bus.subscribe("ticks").unwrap();
    for n in 0..1000 {
        bus.publish(msg("ticks", n)).await.unwrap();
        assert!(slow.buffered() <= 4, "memory stays bounded");
        assert_eq!(payload(&keeping_up.recv().await.unwrap().unwrap()), n);
    }
    // The slow subscriber first learns how many it missed, then gets the
    // newest four.
    let err = slow.recv().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), SubscribeErrorKind::Lagged(996));
    for n in 996..1000 {
        assert_eq!(payload(&slow.recv().await.unwrap().unwrap()), n);
    }
    assert_eq!(*lagged.lock().unwrap(), 996);
    assert_eq!(
        capture.counter("palisade_pubsub_dropped_total", &[("name", "fast")]),
        996
    );
    assert_eq!(
        capture.counter("palisade_pubsub_published_total", &[("name", "fast")]),
        1000
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_pushes_back_on_the_publisher_and_never_drops() {
    let bus = MemoryBus::builder("lossless")
        .capacity(2)
        .slow_subscriber(SlowSubscriber::Wait)
        .publish_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut sub = bus.subscribe("x").unwrap();
    bus.publish(msg("x", 0)).await.unwrap();
    bus.publish(msg("x", 1)).await.unwrap();
    assert_eq!(
        bus.try_publish(&msg("x", 2)).unwrap_err().kind(),
        PublishErrorKind::Full
    );
    // A publisher waits for room; the subscriber makes some.
    let publisher = bus.clone();
    let blocked = tokio::spawn(async move { publisher.publish(msg("x", 2)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !blocked.is_finished(),
        "the publisher waits while the buffer is full"
    );
    assert_eq!(payload(&sub.recv().await.unwrap().unwrap()), 0);
    blocked.await.unwrap().unwrap();
    for n in 1..3 {
        assert_eq!(payload(&sub.recv().await.unwrap().unwrap()), n);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_times_out_all_or_nothing() {
    let bus = MemoryBus::builder("lossless")
        .capacity(1)
        .slow_subscriber(SlowSubscriber::Wait)
        .publish_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut stuck = bus.subscribe("x").unwrap();
    let mut fine = bus.subscribe("x").unwrap();
    bus.publish(msg("x", 0)).await.unwrap();
    assert_eq!(payload(&fine.recv().await.unwrap().unwrap()), 0);
    let err = bus.publish(msg("x", 1)).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Full);
    assert!(err.is_transient());
    assert_eq!(fine.buffered(), 0, "a timed-out message reaches nobody");
    assert_eq!(payload(&stuck.recv().await.unwrap().unwrap()), 0);
    // A subscriber that goes away releases a waiting publisher.
    let publisher = bus.clone();
    bus.publish(msg("x", 2)).await.unwrap();
    let waiting = tokio::spawn(async move { publisher.publish(msg("x", 3)).await });
    tokio::task::yield_now().await;
    drop(stuck);
    assert_eq!(payload(&fine.recv().await.unwrap().unwrap()), 2);
    waiting.await.unwrap().unwrap();
    assert_eq!(payload(&fine.recv().await.unwrap().unwrap()), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn closing_or_dropping_the_bus_ends_subscriptions_after_draining() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut sub = bus.subscribe(">").unwrap();
    bus.publish(msg("a", 1)).await.unwrap();
    drop(bus);
    assert_eq!(payload(&sub.recv().await.unwrap().unwrap()), 1);
    assert!(sub.recv().await.is_none());

    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut sub = bus.subscribe(">").unwrap();
    let waiting = tokio::spawn(async move { sub.recv().await.is_none() });
    tokio::task::yield_now().await;
    bus.close();
    assert!(
        waiting.await.unwrap(),
        "a waiting receiver is woken by close"
    );
    let err = bus.publish(msg("a", 2)).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_subscription_unsubscribes() {
    let bus = MemoryBus::builder("bus").build().unwrap();
    let a = bus.queue_subscribe("x", "g").unwrap();
    let b = bus.queue_subscribe("x", "g").unwrap();
    let c = bus.subscribe("x").unwrap();
    assert_eq!(bus.subscriptions(), 2);
    drop(a);
    assert_eq!(
        bus.subscriptions(),
        2,
        "the group lives while a member does"
    );
    drop(b);
    drop(c);
    assert_eq!(bus.subscriptions(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refuses_bad_input() {
    let bus = MemoryBus::builder("bus").max_payload(8).build().unwrap();
    assert!(bus.subscribe("a..b").is_err());
    assert!(bus.subscribe("a.>.b").is_err());
    assert!(bus.queue_subscribe("a", "").is_err());
    let big = Message::new("a", vec![0u8; 9]).unwrap();
    assert_eq!(
        bus.publish(big).await.unwrap_err().kind(),
        PublishErrorKind::TooLarge
    );
    assert_eq!(
        MemoryBus::builder("bad name").build().unwrap_err().field(),
        "name"
    );
    assert_eq!(
        MemoryBus::builder("b")
            .capacity(0)
            .build()
            .unwrap_err()
            .field(),
        "capacity"
    );
}

#[test]
fn public_types_are_send_sync() {
    palisade_test_util::assert_send_sync_clone::<MemoryBus>();
    palisade_test_util::assert_send_sync::<palisade_pubsub::backend::memory::MemorySubscription>();
    palisade_test_util::assert_send_sync_clone::<Message>();
}
