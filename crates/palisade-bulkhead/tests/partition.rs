//! Partitions: per-key isolation, the live-key bound, idle reclamation.

mod support;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_bulkhead::partition::{MAX_KEY_LEN, OVERFLOW, UNKEYED};
use palisade_bulkhead::{BulkheadEvent, BulkheadLayer};
use support::{Probe, full, settle};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready};
use tower::{Layer, ServiceExt};

/// Requests are `(key, id)`; an empty key means "no key".
type Req = (&'static str, u64);

fn key(req: &Req) -> Option<Cow<'_, str>> {
    (!req.0.is_empty()).then_some(Cow::Borrowed(req.0))
}

#[derive(Clone)]
struct Slow(Probe);

impl tower::Service<Req> for Slow {
    type Response = u64;
    type Error = std::convert::Infallible;
    type Future = <Probe as tower::Service<u64>>::Future;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<u64>::poll_ready(&mut self.0, cx)
    }
    fn call(&mut self, req: Req) -> Self::Future {
        self.0.call(req.1)
    }
}

fn slow(latency: Duration) -> Slow {
    Slow(Probe::sleeping(move |_| latency))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_saturated_key_leaves_another_key_admitted_at_once() {
    let layer = BulkheadLayer::builder("tenants")
        .max_concurrent_calls(2)
        .max_wait(Duration::from_secs(5))
        .partition_by(key)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(slow(Duration::from_secs(1)));

    // Tenant a: 2 in flight, 10 waiting.
    let mut noisy: Vec<_> = (0..12)
        .map(|i| tokio_test::task::spawn(svc.clone().oneshot(("a", i))))
        .collect();
    for call in &mut noisy {
        assert_pending!(call.poll());
    }
    let a = handle.partition("a").unwrap();
    assert_eq!((a.in_flight, a.queued), (2, 10));

    // Tenant b is admitted on the first poll: its call is inside the inner
    // service at once, and nothing of b waits.
    let mut quiet = tokio_test::task::spawn(svc.clone().oneshot(("b", 100)));
    assert_pending!(quiet.poll());
    let b = handle.partition("b").unwrap();
    assert_eq!((b.in_flight, b.queued), (1, 0));
    advance(Duration::from_secs(1)).await;
    assert_eq!(assert_ready!(quiet.poll()).unwrap(), 100);

    // The unkeyed pool is separate too.
    let mut unkeyed = tokio_test::task::spawn(svc.clone().oneshot(("", 7)));
    assert_pending!(unkeyed.poll());
    assert_eq!(handle.partition(UNKEYED).unwrap().in_flight, 1);
    drop((noisy, unkeyed));
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rejection_names_its_partition() {
    let layer = BulkheadLayer::builder("named")
        .max_concurrent_calls(1)
        .partition_by(key)
        .build()
        .unwrap();
    let svc = layer.layer(slow(Duration::from_secs(1)));
    let _held = tokio::spawn(svc.clone().oneshot(("t1", 0)));
    settle().await;
    let err = svc.clone().oneshot(("t1", 1)).await.unwrap_err();
    assert_eq!(full(&err).partition(), Some("t1"));
    assert_eq!(err.to_string(), "bulkhead `named` partition `t1` is full");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn beyond_max_partitions_new_keys_share_the_overflow_pool() {
    let layer = BulkheadLayer::builder("bounded-keys")
        .max_concurrent_calls(5)
        .partition_by(key)
        .max_partitions(3)
        .overflow_limit(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(slow(Duration::from_secs(1)));
    let mut calls = Vec::new();
    for k in ["k1", "k2", "k3"] {
        calls.push(tokio::spawn(svc.clone().oneshot((k, 0))));
    }
    settle().await;
    assert_eq!(handle.partition_count(), 3);
    // k4 and k5 find no room: they share the overflow pool of 2.
    calls.push(tokio::spawn(svc.clone().oneshot(("k4", 0))));
    calls.push(tokio::spawn(svc.clone().oneshot(("k5", 0))));
    settle().await;
    assert_eq!(handle.partition_count(), 3);
    assert_eq!(handle.partition(OVERFLOW).unwrap().in_flight, 2);
    let err = svc.clone().oneshot(("k6", 0)).await.unwrap_err();
    assert_eq!(full(&err).partition(), Some(OVERFLOW));
    // Known keys are unaffected.
    calls.push(tokio::spawn(svc.clone().oneshot(("k1", 1))));
    settle().await;
    assert_eq!(handle.partition("k1").unwrap().in_flight, 2);
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_overflow_limit_of_zero_refuses_new_keys() {
    let layer = BulkheadLayer::builder("strict-keys")
        .partition_by(key)
        .max_partitions(1)
        .overflow_limit(0)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let svc = layer.layer(slow(Duration::from_millis(1)));
    assert!(svc.clone().oneshot(("first", 0)).await.is_ok());
    let err = svc.clone().oneshot(("second", 0)).await.unwrap_err();
    let full = full(&err);
    assert_eq!(full.partition(), Some(OVERFLOW));
    assert_eq!(full.waited(), None, "refused at once, not after max_wait");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn over_long_keys_use_the_overflow_pool() {
    static LONG: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| "x".repeat(MAX_KEY_LEN + 1));
    let layer = BulkheadLayer::builder("long-keys")
        .partition_by(|_: &u64| Some(Cow::Borrowed(LONG.as_str())))
        .build()
        .unwrap();
    let svc = layer.layer(Probe::sleeping(|_| Duration::from_millis(1)));
    svc.oneshot(1).await.unwrap();
    assert_eq!(layer.handle().partition_count(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_partitions_are_reclaimed_and_busy_ones_kept() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let layer = BulkheadLayer::builder("reclaim")
        .partition_by(|k: &String| Some(Cow::Borrowed(k.as_str())))
        .partition_idle_timeout(Duration::from_secs(60))
        .on_event(move |e| {
            if let BulkheadEvent::PartitionReclaimed { partition, .. } = e {
                seen.lock().unwrap().push(partition.to_string());
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let probe = Probe::sleeping(|i| {
        if i == 999 {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(1)
        }
    });
    let svc = layer.layer(tower::service_fn({
        let probe = probe.clone();
        move |k: String| {
            let mut p = probe.clone();
            tower::Service::call(&mut p, if k == "busy" { 999 } else { 0 })
        }
    }));
    for i in 0..100 {
        svc.clone().oneshot(format!("tenant-{i}")).await.unwrap();
    }
    let busy = tokio::spawn(svc.clone().oneshot("busy".to_owned()));
    settle().await;
    assert_eq!(handle.partition_count(), 101);

    // Idle for less than the timeout: nothing goes.
    advance(Duration::from_secs(30)).await;
    assert_eq!(handle.sweep_if_due(), 0);
    // The first sweep after the timeout sees them used since creation and
    // keeps them; the next one reclaims them.
    advance(Duration::from_secs(31)).await;
    assert_eq!(handle.sweep_if_due(), 0);
    advance(Duration::from_secs(60)).await;
    // A new key triggers the sweep.
    svc.clone().oneshot("newcomer".to_owned()).await.unwrap();
    assert_eq!(
        handle.partition_count(),
        2,
        "only `busy` and `newcomer` are left"
    );
    assert_eq!(events.lock().unwrap().len(), 100);
    assert!(handle.partition("busy").is_some());
    assert!(handle.partition("tenant-0").is_none());
    // A reclaimed key comes back as a fresh pool.
    svc.clone().oneshot("tenant-0".to_owned()).await.unwrap();
    assert_eq!(handle.partition("tenant-0").unwrap().in_flight, 0);
    busy.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_live_key_count_stays_bounded_over_100_000_keys() {
    let layer = BulkheadLayer::builder("churn")
        .partition_by(|k: &u64| Some(Cow::Owned(format!("key-{k}"))))
        .max_partitions(500)
        .partition_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Probe::sleeping(|_| Duration::from_millis(1)));
    let mut peak = 0;
    for k in 0..100_000u64 {
        svc.clone().oneshot(k).await.unwrap();
        peak = peak.max(handle.partition_count());
        if k % 100 == 99 {
            advance(Duration::from_millis(300)).await;
        }
    }
    assert_eq!(peak, 500, "the bound is reached and held");
    advance(Duration::from_secs(3)).await;
    handle.sweep_if_due();
    advance(Duration::from_secs(1)).await;
    handle.sweep_if_due();
    assert_eq!(handle.partition_count(), 0, "idle keys are all reclaimed");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_partition_limit_outlives_its_pool() {
    let layer = BulkheadLayer::builder("override")
        .max_concurrent_calls(1)
        .partition_by(key)
        .partition_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(slow(Duration::from_millis(10)));
    assert_eq!(handle.set_partition_limit("vip", 3).unwrap(), 3);
    svc.clone().oneshot(("vip", 0)).await.unwrap();
    assert_eq!(handle.partition("vip").unwrap().limit, 3);
    for _ in 0..3 {
        advance(Duration::from_secs(1)).await;
        handle.sweep_if_due();
    }
    assert!(handle.partition("vip").is_none(), "reclaimed");
    let calls: Vec<_> = (0..3)
        .map(|i| tokio::spawn(svc.clone().oneshot(("vip", i))))
        .collect();
    settle().await;
    assert_eq!(handle.partition("vip").unwrap().in_flight, 3);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert!(handle.clear_partition_limit("vip"));
    assert_eq!(handle.partition("vip").unwrap().limit, 1);
    // The default limit applies to every partition without its own.
    handle.set_limit(4).unwrap();
    assert_eq!(handle.partition("vip").unwrap().limit, 4);
    assert_eq!(handle.partition(UNKEYED).unwrap().limit, 4);
    assert_eq!(handle.limit(), 4);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reclaim_idle_reclaims_every_idle_partition_at_once() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let layer = BulkheadLayer::builder("admin")
        .max_concurrent_calls(1)
        .partition_by(key)
        .partition_idle_timeout(Duration::from_secs(60))
        .on_event(move |e| {
            if let BulkheadEvent::PartitionReclaimed { partition, .. } = e {
                seen.lock().unwrap().push(partition.to_string());
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    // Call 99 takes an hour; the others 10 ms.
    let svc = layer.layer(Slow(Probe::sleeping(|id| {
        Duration::from_millis(if id == 99 { 3_600_000 } else { 10 })
    })));
    for tenant in ["a", "b", "c"] {
        svc.clone().oneshot((tenant, 0)).await.unwrap();
    }
    // `busy` holds its permit, and a call waits behind it on `queued`.
    let busy = tokio::spawn(svc.clone().oneshot(("busy", 99)));
    let waiting = BulkheadLayer::builder("admin-waiting")
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(60))
        .partition_by(key)
        .build()
        .unwrap();
    let waiting_handle = waiting.handle();
    let waiting_svc = waiting.layer(slow(Duration::from_secs(10)));
    let holder = tokio::spawn(waiting_svc.clone().oneshot(("queued", 0)));
    let waiter = tokio::spawn(waiting_svc.clone().oneshot(("queued", 1)));
    settle().await;
    assert_eq!(handle.partition_count(), 4);
    handle.set_partition_limit("a", 3).unwrap();

    // Just used, never swept, a sweep ran less than a timeout ago: the
    // periodic sweep would keep them all, an operator's reclaim does not.
    assert_eq!(handle.sweep_if_due(), 0);
    assert_eq!(handle.reclaim_idle(), 3, "a, b and c are idle now");
    assert_eq!(handle.partition_count(), 1);
    assert!(handle.partition("busy").is_some());
    let mut reclaimed = events.lock().unwrap().clone();
    reclaimed.sort();
    assert_eq!(reclaimed, ["a", "b", "c"]);
    // Nothing idle is left: a second call reclaims nothing.
    assert_eq!(handle.reclaim_idle(), 0);
    // A partition with a waiting call is kept, as one with a call in flight.
    assert_eq!(waiting_handle.reclaim_idle(), 0);
    assert_eq!(waiting_handle.partition("queued").unwrap().queued, 1);

    // A reclaimed key comes back with a fresh pool and keeps its own limit.
    svc.clone().oneshot(("a", 1)).await.unwrap();
    assert_eq!(handle.partition("a").unwrap().limit, 3);
    assert_eq!(handle.partition("a").unwrap().in_flight, 0);
    // The unkeyed and overflow pools are never reclaimed.
    svc.clone().oneshot(("", 2)).await.unwrap();
    assert_eq!(handle.reclaim_idle(), 1, "only `a`");
    assert!(handle.partition(UNKEYED).is_some() && handle.partition(OVERFLOW).is_some());

    busy.await.unwrap().unwrap();
    assert_eq!(handle.reclaim_idle(), 1, "`busy` once its call is done");
    assert_eq!(handle.partition_count(), 0);
    holder.await.unwrap().unwrap();
    waiter.await.unwrap().unwrap();
    assert_eq!(waiting_handle.reclaim_idle(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reclaim_idle_leaves_the_periodic_sweep_on_its_schedule() {
    let layer = BulkheadLayer::builder("schedule")
        .partition_by(key)
        .partition_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(slow(Duration::from_millis(1)));
    svc.clone().oneshot(("a", 0)).await.unwrap();
    advance(Duration::from_secs(30)).await;
    assert_eq!(handle.reclaim_idle(), 1);
    svc.clone().oneshot(("b", 0)).await.unwrap();
    // The first periodic sweep is still due 60 s after the bulkhead was
    // built, and sees `b` used since: kept, then reclaimed a timeout later.
    advance(Duration::from_secs(31)).await;
    assert_eq!(handle.sweep_if_due(), 0);
    assert_eq!(handle.partition_count(), 1);
    advance(Duration::from_secs(60)).await;
    assert_eq!(handle.sweep_if_due(), 1);
    // An unpartitioned bulkhead has nothing to reclaim.
    let plain = BulkheadLayer::builder("plain").build().unwrap();
    assert_eq!(plain.handle().reclaim_idle(), 0);
    assert_eq!(plain.handle().sweep_if_due(), 0);
}
