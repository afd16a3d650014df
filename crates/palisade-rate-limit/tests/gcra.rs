//! GCRA arithmetic through the layer, under tokio's paused clock: the burst,
//! the steady rate, the exact boundaries, `Retry-After` and the `RateLimit`
//! fields, and a property test against a token bucket.

mod support;

use std::time::Duration;

use palisade_core::{BoxError, RateLimited};
use palisade_rate_limit::{Key, Limit, Rate, RateLimitLayer};
use proptest::prelude::*;
use std::future::Future;
use support::{Bucket, Echo, admitted, call_now};
use tokio::time::advance;
use tower::{Layer, ServiceExt};

fn retry_after(err: &BoxError) -> Duration {
    err.downcast_ref::<RateLimited>()
        .expect("a rate limit")
        .retry_after()
        .expect("a retry-after")
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn burst_then_steady_rate_with_exact_boundaries() {
    // 10/s: one call every 100 ms; a burst of 3.
    let layer = RateLimitLayer::builder("t")
        .rate(Rate::per_second(10))
        .burst(3)
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    for n in 0..3 {
        assert!(admitted(&mut svc, n), "call {n} of the burst");
    }
    let err = call_now(&mut svc, 3).unwrap().unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_millis(100));

    // One nanosecond before the slot: refused, one nanosecond to go.
    advance(Duration::from_millis(100) - Duration::from_nanos(1)).await;
    let err = call_now(&mut svc, 4).unwrap().unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_nanos(1));
    // On the slot: admitted, and only one.
    advance(Duration::from_nanos(1)).await;
    assert!(admitted(&mut svc, 5));
    assert!(!admitted(&mut svc, 6));

    // The steady rate: one call per 100 ms, never two.
    for _ in 0..20 {
        advance(Duration::from_millis(100)).await;
        assert!(admitted(&mut svc, 7));
        assert!(!admitted(&mut svc, 8));
    }

    // A long quiet period gives back the burst, and no more.
    advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        assert!(admitted(&mut svc, 9));
    }
    assert!(!admitted(&mut svc, 10));

    let snapshot = layer.handle().snapshot();
    assert_eq!(snapshot.tiers[0].admitted, 3 + 1 + 20 + 3);
    assert_eq!(snapshot.tiers[0].limited, 2 + 1 + 20 + 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_clone_and_layer_call_shares_one_limit() {
    let layer = RateLimitLayer::builder("shared")
        .rate(Rate::per_minute(1))
        .burst(4)
        .build()
        .unwrap();
    let mut a = layer.layer(Echo);
    #[allow(
        clippy::redundant_clone,
        reason = "the point: a clone of the layer shares its state"
    )]
    let mut b = layer.clone().layer(Echo);
    let mut c = a.clone();
    assert!(admitted(&mut a, 1));
    assert!(admitted(&mut b, 2));
    assert!(admitted(&mut c, 3));
    assert!(admitted(&mut a.clone(), 4));
    for svc in [&mut a, &mut b, &mut c] {
        assert!(!admitted(svc, 5));
    }
    assert!(a.handle().same_limiter(&layer.handle()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keys_have_their_own_allowance_and_tiers_their_own_limit() {
    let layer = RateLimitLayer::builder("keyed")
        .rate(Rate::per_second(1))
        .burst(2)
        .tier("paid", Limit::new(Rate::per_second(1), 5))
        .key_tier("vip", "paid")
        .key_by(|req: &(&'static str, Option<&'static str>)| {
            let key = Key::text(req.0);
            Some(match req.1 {
                Some(class) => key.with_class(class),
                None => key,
            })
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    let spend = |svc: &mut _, req| (0..10).filter(|_| admitted(svc, req)).count();
    assert_eq!(spend(&mut svc, ("a", None)), 2);
    assert_eq!(
        spend(&mut svc, ("b", None)),
        2,
        "another key is not affected"
    );
    assert_eq!(spend(&mut svc, ("c", Some("paid"))), 5, "by class");
    assert_eq!(spend(&mut svc, ("vip", None)), 5, "by assignment");
    assert_eq!(
        spend(&mut svc, ("d", Some("nope"))),
        2,
        "an unknown class: default"
    );

    // Limits change at runtime; a key keeps what it spent.
    handle
        .set_limit("default", Limit::new(Rate::per_second(1), 4))
        .unwrap();
    assert_eq!(
        spend(&mut svc, ("a", None)),
        2,
        "two more of the larger burst"
    );
    assert_eq!(spend(&mut svc, ("e", None)), 4);
    // Assigning a key at runtime.
    handle.set_key_tier("a", Some("paid")).unwrap();
    assert_eq!(
        spend(&mut svc, ("a", None)),
        1,
        "5 of paid minus the 4 spent"
    );
    let snapshot = handle.snapshot();
    let paid = snapshot.tiers.iter().find(|t| t.name == "paid").unwrap();
    assert_eq!(paid.admitted, 11);
    assert_eq!(handle.keys(), 6);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn remaining_and_reset_follow_the_allowance() {
    let layer = RateLimitLayer::builder("quota")
        .rate(Rate::per_second(4)) // 250 ms
        .burst(4)
        .key_by(|k: &&'static str| Some(Key::text(k)))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    assert_eq!(handle.remaining("k", None), None, "an unknown key is whole");
    assert!(admitted(&mut svc, "k"));
    let q = handle.remaining("k", None).unwrap();
    assert_eq!(
        (q.tier.as_str(), q.remaining, q.reset),
        ("default", 3, Duration::from_millis(250))
    );
    advance(Duration::from_millis(100)).await;
    let q = handle.remaining("k", None).unwrap();
    assert_eq!((q.remaining, q.reset), (3, Duration::from_millis(150)));
    advance(Duration::from_millis(150)).await;
    assert_eq!(handle.remaining("k", None).unwrap().remaining, 4);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn throttled_calls_wait_for_their_slot_and_later_ones_are_refused_at_once() {
    let layer = RateLimitLayer::builder("throttle")
        .rate(Rate::per_second(10))
        .burst(1)
        .max_delay(Duration::from_millis(250))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let svc = layer.layer(tower::service_fn(|n: u32| async move {
        Ok::<_, std::convert::Infallible>((n, tokio::time::Instant::now()))
    }));
    let calls: Vec<_> = (0..3)
        .map(|n| tokio::spawn(svc.clone().oneshot(n)))
        .collect();
    tokio::task::yield_now().await;
    // The fourth call's slot is 300 ms away: refused now, not after waiting.
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_millis(300));
    assert_eq!(tokio::time::Instant::now(), start);
    for (n, call) in calls.into_iter().enumerate() {
        let (m, at) = call.await.unwrap().unwrap();
        assert_eq!(m, n as u32);
        assert_eq!(
            at - start,
            Duration::from_millis(100) * m,
            "call {m} ran on its slot"
        );
    }
    let tier = &layer.handle().snapshot().tiers[0];
    assert_eq!((tier.admitted, tier.delayed, tier.limited), (1, 2, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_waiting_call_gives_back_only_what_nothing_was_built_on() {
    let layer = RateLimitLayer::builder("drop")
        .rate(Rate::per_second(10))
        .burst(1)
        .max_delay(Duration::from_secs(1))
        .build()
        .unwrap();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = ran.clone();
    let svc = layer.layer(tower::service_fn(move |_: u32| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(()) }
    }));
    // The first call is admitted; the second waits 100 ms for its slot.
    svc.clone().oneshot(0).await.unwrap();
    let mut waiting = tokio_test::task::spawn(svc.clone().oneshot(1));
    assert!(waiting.poll().is_pending());
    // Dropped as the last reservation: its slot comes back, so the next
    // call gets the same slot (100 ms), not the one after.
    drop(waiting);
    let mut next = tokio_test::task::spawn(svc.clone().oneshot(2));
    assert!(next.poll().is_pending());
    advance(Duration::from_millis(100)).await;
    assert!(next.is_woken());
    assert!(next.poll().is_ready());
    assert_eq!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the dropped call never ran"
    );

    // Two waiting calls (slots at +100 and +200 ms); the first is dropped:
    // the second reserved after it, so the first's slot is not given back
    // and a new call's slot is at +300 ms, beyond a 250 ms delay.
    layer
        .handle()
        .set_max_delay(Duration::from_millis(250))
        .unwrap();
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(3));
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(4));
    assert!(first.poll().is_pending());
    assert!(second.poll().is_pending());
    drop(first);
    let err = svc.clone().oneshot(5).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_millis(300));
    advance(Duration::from_millis(200)).await;
    assert!(second.poll().is_ready());
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_service_or_an_admitted_future_returns_nothing_and_leaks_nothing() {
    let layer = RateLimitLayer::builder("drops")
        .rate(Rate::per_hour(1))
        .burst(2)
        .build()
        .unwrap();
    // A service dropped after poll_ready holds nothing: the allowance is whole.
    let mut svc = layer.layer(Echo);
    let _ = futures_ready(&mut svc);
    drop(svc);
    let mut svc = layer.layer(Echo);
    // An admitted call dropped before it is polled has spent its slot.
    let fut = {
        let _ = futures_ready(&mut svc);
        tower::Service::call(&mut svc, 1)
    };
    drop(fut);
    assert!(admitted(&mut svc, 2));
    assert!(!admitted(&mut svc, 3));
}

fn futures_ready<S: tower::Service<u32>>(svc: &mut S) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    svc.poll_ready(&mut cx).is_ready()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_tsc_clock_limits_and_throttles_the_same_way() {
    use palisade_rate_limit::ClockSource;
    // Real time on the counter: a limit of one call an hour leaves no doubt.
    let layer = RateLimitLayer::builder("tsc")
        .clock(ClockSource::Tsc)
        .rate(Rate::per_hour(1))
        .burst(2)
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert!(admitted(&mut svc, 1));
    assert!(admitted(&mut svc, 2));
    let err = call_now(&mut svc, 3).unwrap().unwrap_err();
    let after = retry_after(&err);
    assert!(
        after > Duration::from_secs(3590) && after <= Duration::from_secs(3600),
        "{after:?}"
    );
    // Throttled on the counter, waiting on tokio's (paused) timer.
    let layer = RateLimitLayer::builder("tsc-throttle")
        .clock(ClockSource::Tsc)
        .rate(Rate::per_minute(1))
        .burst(1)
        .max_delay(Duration::from_secs(120))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    svc.clone().oneshot(1).await.unwrap();
    let start = tokio::time::Instant::now();
    svc.clone().oneshot(2).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_secs(59) && waited <= Duration::from_secs(61),
        "{waited:?}"
    );
    assert_eq!(layer.handle().snapshot().tiers[0].delayed, 1);
}

#[test]
fn public_types_are_send_sync_clone() {
    use palisade_rate_limit::{RateLimit, RateLimitHandle, Unkeyed};
    palisade_test_util::assert_send_sync_clone::<RateLimitLayer>();
    palisade_test_util::assert_send_sync_clone::<RateLimit<Echo, Unkeyed>>();
    palisade_test_util::assert_send_sync_clone::<RateLimitHandle>();
    palisade_test_util::assert_send::<palisade_rate_limit::future::ResponseFuture<Echo, u32>>();
    #[cfg(feature = "http")]
    {
        use palisade_rate_limit::KeyExtractorExt;
        use palisade_rate_limit::http::{HttpRateLimit, client_ip, header};
        type Key = palisade_rate_limit::key::Or<
            palisade_rate_limit::http::HeaderKey,
            palisade_rate_limit::key::WithClass<palisade_rate_limit::http::ClientIp>,
        >;
        let _: Key = header("x-api-key").or(client_ip().class("anonymous"));
        palisade_test_util::assert_send_sync_clone::<HttpRateLimit<Echo, Key>>();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random calls from a few keys at random times (to the nanosecond),
    /// through the service, against one exact token bucket per key.
    #[test]
    fn matches_a_token_bucket_per_key(
        per_second in 1u32..1_000,
        burst in 1u32..10,
        max_delay_ms in prop_oneof![Just(0u64), 0u64..300],
        steps in proptest::collection::vec((0u64..300_000_000, 0usize..3, 1usize..4), 1..80),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let max_delay = Duration::from_millis(max_delay_ms);
            let layer = RateLimitLayer::builder("model")
                .rate(Rate::per_second(per_second))
                .burst(burst)
                .max_delay(max_delay)
                .key_by(|k: &usize| Some(Key::owned(format!("k{k}"))))
                .build()
                .unwrap();
            let t = Rate::per_second(per_second).emission_interval();
            let mut svc = layer.layer(Echo);
            let mut buckets: Vec<Bucket> = (0..3).map(|_| Bucket::new(t.as_nanos() as u64, burst)).collect();
            let mut now = 0u64;
            // Calls waiting for their slot are kept, so their reservations
            // stand, as the model's do.
            let mut waiting = Vec::new();
            for (advance_ns, key, calls) in steps {
                advance(Duration::from_nanos(advance_ns)).await;
                now += advance_ns;
                for _ in 0..calls {
                    let expected = buckets[key].call(now, max_delay.as_nanos() as u64);
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    prop_assert!(tower::Service::poll_ready(&mut svc, &mut cx).is_ready());
                    let mut fut = Box::pin(tower::Service::call(&mut svc, key));
                    match fut.as_mut().poll(&mut cx) {
                        std::task::Poll::Ready(Ok(_)) => prop_assert_eq!(expected, Ok(0)),
                        std::task::Poll::Ready(Err(err)) => {
                            prop_assert_eq!(expected, Err(retry_after(&err).as_nanos() as u64));
                        }
                        std::task::Poll::Pending => {
                            prop_assert!(matches!(expected, Ok(wait) if wait > 0), "{:?}", expected);
                            waiting.push(fut);
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}
