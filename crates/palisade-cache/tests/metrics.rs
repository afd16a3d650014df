//! Metrics and events: every series labelled by name; listeners see hits,
//! misses, stale serves, coalescing and stores.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_cache::{CacheEvent, CacheLayer, StaleReason};
use palisade_test_util::MetricsCapture;
use support::{Answer, Backend, settle};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};

const S: Duration = Duration::from_secs(1);

#[test]
fn metrics_are_emitted_with_the_name_label() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let gate = Arc::new(Semaphore::new(1));
        let backend = Backend::new("v").gated(&gate);
        let layer = CacheLayer::builder("metered")
            .key(|n: &u32| Some(*n))
            .weigher(|_: &u32, v: &String| v.len())
            .ttl(10 * S)
            .stale_while_revalidate(Duration::ZERO)
            .build()
            .unwrap();
        let svc = layer.layer(backend.clone());
        svc.clone().oneshot(1).await.unwrap(); // miss, stored
        svc.clone().oneshot(1).await.unwrap(); // hit
        // Two concurrent misses on key 2: one coalesced.
        let a = tokio::spawn(svc.clone().oneshot(2));
        let b = tokio::spawn(svc.clone().oneshot(2));
        settle().await;
        gate.add_permits(1);
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        // Stale if error.
        backend.answer(Answer::Err("down".into()));
        tokio::time::advance(11 * S).await;
        gate.add_permits(1);
        svc.clone().oneshot(1).await.unwrap();
        let _ = layer.handle().snapshot();
    });
    let name = [("name", "metered")];
    assert_eq!(capture.counter("palisade_cache_hits_total", &name), 1);
    assert_eq!(capture.counter("palisade_cache_misses_total", &name), 4);
    assert_eq!(capture.counter("palisade_cache_coalesced_total", &name), 1);
    assert_eq!(capture.counter("palisade_cache_stored_total", &name), 2);
    assert_eq!(
        capture.counter(
            "palisade_cache_stale_served_total",
            &[("name", "metered"), ("reason", "error")]
        ),
        1
    );
    assert_eq!(
        capture.counter(
            "palisade_cache_stale_served_total",
            &[("name", "metered"), ("reason", "revalidating")]
        ),
        0
    );
    let bytes = capture.gauge("palisade_cache_bytes", &name).unwrap();
    assert!(bytes > 0.0, "{bytes}");
    assert_eq!(capture.gauge("palisade_cache_entries", &name), Some(2.0));
    for metric in capture.names() {
        assert!(metric.starts_with("palisade_cache_"), "{metric}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn listeners_see_what_happened() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let backend = Backend::new("v");
    let layer = CacheLayer::builder("events")
        .key(|n: &u32| Some(*n))
        .ttl(10 * S)
        .stale_while_revalidate(30 * S)
        .on_event(move |e: &CacheEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend.clone());
    svc.clone().oneshot(1).await.unwrap();
    svc.clone().oneshot(1).await.unwrap();
    tokio::time::advance(11 * S).await;
    svc.clone().oneshot(1).await.unwrap();
    settle().await;
    handle.invalidate("1");
    let events = events.lock().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            CacheEvent::Miss { .. } => "miss",
            CacheEvent::Stored { .. } => "stored",
            CacheEvent::Hit { .. } => "hit",
            CacheEvent::StaleServed {
                reason: StaleReason::Revalidating,
                ..
            } => "stale",
            CacheEvent::Refreshed { success: true, .. } => "refreshed",
            CacheEvent::Invalidated { removed: 1, .. } => "invalidated",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "miss",
            "stored",
            "hit",
            "stale",
            "stored",
            "refreshed",
            "invalidated"
        ]
    );
    let CacheEvent::Hit { name, key } = &events[2] else {
        unreachable!()
    };
    assert_eq!((&**name, key.as_str()), ("events", "1"));
}
