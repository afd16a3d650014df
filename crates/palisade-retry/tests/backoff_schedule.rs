//! The backoff schedule, on tokio's paused clock.

mod support;

use std::time::Duration;

use palisade_retry::{Backoff, Jitter, MAX_DURATION, RetryLayer};
use support::{backend, boom};
use tower::{Layer, ServiceExt};

const MS: Duration = Duration::from_millis(1);

fn always_failing() -> support::Backend<impl Fn(usize, u32) -> Result<u32, palisade_core::BoxError>>
{
    backend(|_, _: u32| Err(boom()))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exponential_schedule_hits_exact_instants_without_jitter() {
    let layer = RetryLayer::builder("exp")
        .max_attempts(6)
        .backoff(Backoff::exponential(MS * 100, 2.0, MS * 1000))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let inner = always_failing();
    let calls = inner.calls.clone();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "connection reset",
        "the last outcome is returned"
    );
    // Delays 100, 200, 400, 800, then capped at 1000.
    assert_eq!(calls.millis(), vec![0, 100, 300, 700, 1500, 2500]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_longest_backoff_is_waited_out_never_skipped() {
    // The longest delay the builder accepts, without jitter: each retry
    // waits a whole year of (paused) time.
    let layer = RetryLayer::builder("year")
        .max_attempts(3)
        .backoff(Backoff::fixed(MAX_DURATION))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let inner = always_failing();
    let calls = inner.calls.clone();
    let start = tokio::time::Instant::now();
    let _ = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(calls.count(), 3);
    let year = MAX_DURATION.as_millis();
    assert_eq!(calls.millis(), vec![0, year, 2 * year]);
    assert_eq!(start.elapsed(), MAX_DURATION * 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn nothing_happens_before_the_backoff_ends() {
    let layer = RetryLayer::builder("fixed")
        .max_attempts(3)
        .backoff(Backoff::fixed(MS * 250))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let inner = always_failing();
    let calls = inner.calls.clone();
    let call = tokio::spawn(layer.layer(inner).oneshot(1));
    support::settle().await;
    assert_eq!(calls.count(), 1);
    tokio::time::advance(MS * 249).await;
    support::settle().await;
    assert_eq!(calls.count(), 1, "still backing off at 249 ms");
    tokio::time::advance(MS).await;
    support::settle().await;
    assert_eq!(calls.count(), 2, "second attempt at 250 ms");
    tokio::time::advance(MS * 250).await;
    assert!(call.await.unwrap().is_err());
    assert_eq!(calls.millis(), vec![0, 250, 500]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn zero_backoff_retries_at_once() {
    let layer = RetryLayer::builder("now")
        .max_attempts(4)
        .backoff(Backoff::none())
        .no_budget()
        .build()
        .unwrap();
    let inner = always_failing();
    let calls = inner.calls.clone();
    let _ = layer.layer(inner).oneshot(1).await;
    assert_eq!(calls.millis(), vec![0, 0, 0, 0]);
}

/// Runs one always-failing call and returns the gaps between attempts.
async fn gaps(layer: RetryLayer) -> Vec<Duration> {
    let inner = always_failing();
    let calls = inner.calls.clone();
    let _ = layer.layer(inner).oneshot(1).await;
    let at = calls.millis();
    at.windows(2)
        .map(|w| MS * u32::try_from(w[1] - w[0]).unwrap())
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn seeded_jitter_is_reproducible_and_within_the_ceiling() {
    let build = |seed| {
        RetryLayer::builder("seeded")
            .max_attempts(6)
            .backoff(Backoff::exponential(MS * 100, 2.0, MS * 1000))
            .jitter(Jitter::Full)
            .jitter_seed(seed)
            .no_budget()
            .build()
            .unwrap()
    };
    let a = gaps(build(42)).await;
    let b = gaps(build(42)).await;
    let c = gaps(build(7)).await;
    assert_eq!(a, b, "same seed, same schedule");
    assert_ne!(a, c, "another seed, another schedule");
    let ceilings = [100, 200, 400, 800, 1000];
    for (gap, ceiling) in a.iter().zip(ceilings) {
        // Timers fire on whole milliseconds, so a gap may round up by 1 ms.
        assert!(*gap <= MS * (ceiling + 1), "{gap:?} above {ceiling} ms");
    }
    assert!(
        a.iter().any(|g| *g < MS * 99),
        "full jitter spreads below the ceiling: {a:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn equal_jitter_keeps_half_the_delay() {
    let layer = RetryLayer::builder("equal")
        .max_attempts(8)
        .backoff(Backoff::fixed(MS * 200))
        .jitter(Jitter::Equal)
        .jitter_seed(3)
        .no_budget()
        .build()
        .unwrap();
    for gap in gaps(layer).await {
        assert!(gap >= MS * 100 && gap <= MS * 201, "{gap:?}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn decorrelated_jitter_stays_between_base_and_three_times_the_previous() {
    let layer = RetryLayer::builder("decorrelated")
        .max_attempts(10)
        .backoff(Backoff::decorrelated(MS * 10, MS * 500))
        .jitter_seed(11)
        .no_budget()
        .build()
        .unwrap();
    let gaps = gaps(layer).await;
    assert_eq!(gaps.len(), 9);
    let mut previous = MS * 10;
    for gap in gaps {
        let upper = (previous * 3).min(MS * 500);
        assert!(
            gap >= MS * 10 && gap <= upper + MS,
            "{gap:?} outside [10ms, {upper:?}]"
        );
        previous = gap;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_attempt_means_no_retry() {
    let layer = RetryLayer::builder("once").max_attempts(1).build().unwrap();
    let inner = always_failing();
    let calls = inner.calls.clone();
    assert!(layer.layer(inner).oneshot(1).await.is_err());
    assert_eq!(calls.count(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_success_after_failures_is_returned() {
    let layer = RetryLayer::builder("flaky")
        .max_attempts(5)
        .backoff(Backoff::fixed(MS * 10))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let inner = backend(|n, req: u32| if n < 3 { Err(boom()) } else { Ok(req * 10) });
    let calls = inner.calls.clone();
    assert_eq!(layer.layer(inner).oneshot(4).await.unwrap(), 40);
    assert_eq!(calls.millis(), vec![0, 10, 20]);
}
