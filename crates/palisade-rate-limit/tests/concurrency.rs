//! 1000 concurrent callers on one key never get more than the limit
//! admitted in any window: real threads racing on the key's word, the clock
//! paused between rounds so every window's allowance is known exactly.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use palisade_rate_limit::{Key, Rate, RateLimitLayer};
use support::{Bucket, Echo, admitted};
use tower::Layer;

const CALLERS: usize = 1000;
const CALLS_PER_ROUND: usize = 3;

/// Runs rounds of `CALLERS` threads, each making `CALLS_PER_ROUND` calls
/// through its own clone of `svc` at one paused instant; between rounds the
/// clock moves by the next of `gaps`. Returns the admitted count per round.
fn race<S>(svc: &S, gaps: &[Duration]) -> Vec<usize>
where
    S: tower::Service<&'static str, Error = palisade_core::BoxError> + Clone + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let start = Arc::new(Barrier::new(CALLERS + 1));
    let done = Arc::new(Barrier::new(CALLERS + 1));
    let admitted_now = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (handle, start, done) = (handle.clone(), start.clone(), done.clone());
            let (mut svc, count) = (svc.clone(), admitted_now.clone());
            let rounds = gaps.len();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let _runtime = handle.enter();
                    for _ in 0..rounds {
                        start.wait();
                        for _ in 0..CALLS_PER_ROUND {
                            if admitted(&mut svc, "one-key") {
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        done.wait();
                    }
                })
                .unwrap()
        })
        .collect();
    let mut per_round = Vec::new();
    for gap in gaps {
        rt.block_on(tokio::time::advance(*gap));
        start.wait();
        done.wait();
        per_round.push(admitted_now.swap(0, Ordering::SeqCst));
    }
    for t in threads {
        t.join().unwrap();
    }
    per_round
}

#[test]
fn a_thousand_callers_on_one_key_get_exactly_the_allowance_of_each_window() {
    // 50/s (20 ms) with a burst of 100.
    let rate = Rate::per_second(50);
    let burst = 100;
    let layer = RateLimitLayer::builder("race")
        .rate(rate)
        .burst(burst)
        .key_by(|k: &&'static str| Some(Key::text(k)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let ms = Duration::from_millis;
    // Rounds: the burst; nothing more at the same instant; one slot's time;
    // half a slot (nothing); the other half; a long pause (the whole burst
    // back, capped); 7 slots.
    let gaps = [ms(0), ms(0), ms(20), ms(10), ms(10), ms(10_000), ms(140)];
    let got = race(&svc, &gaps);

    // What an exact token bucket admits for the same offers.
    let t = rate.emission_interval().as_nanos() as u64;
    let mut bucket = Bucket::new(t, burst);
    let mut now = 0u64;
    let expected: Vec<usize> = gaps
        .iter()
        .map(|gap| {
            now += gap.as_nanos() as u64;
            (0..CALLERS * CALLS_PER_ROUND)
                .filter(|_| bucket.call(now, 0).is_ok())
                .count()
        })
        .collect();
    assert_eq!(expected, vec![100, 0, 1, 0, 1, 100, 7]);
    assert_eq!(
        got, expected,
        "admitted per round by {CALLERS} racing callers"
    );
    let tier = &layer.handle().snapshot().tiers[0];
    assert_eq!(tier.admitted, 209);
    assert_eq!(
        tier.limited as usize,
        CALLERS * CALLS_PER_ROUND * gaps.len() - 209
    );
}

#[test]
fn racing_throttled_callers_never_reserve_more_than_the_delay_allows() {
    // 100/s (10 ms), burst 10, calls may wait up to 50 ms: at one instant at
    // most 10 + 5 calls are admitted (5 of them waiting), whoever races.
    let layer = RateLimitLayer::builder("race-throttle")
        .rate(Rate::per_second(100))
        .burst(10)
        .max_delay(Duration::from_millis(50))
        .build()
        .unwrap();
    // A clone of the layer's service, kept as a plain tower service of
    // `&'static str` requests.
    let svc = layer.layer(Echo);
    let counting = support_waiting::CountWaiting::new(svc);
    let got = race(&counting, &[Duration::ZERO]);
    assert_eq!(got, vec![10]);
    assert_eq!(counting.waiting(), 5);
    let tier = &layer.handle().snapshot().tiers[0];
    assert_eq!((tier.admitted, tier.delayed), (10, 5));
}

/// A wrapper that counts calls left waiting (and keeps them, so their
/// reservations stand), reporting them as refused to `race`.
mod support_waiting {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use palisade_core::{BoxError, RateLimited};

    type Waiting = Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>>;

    #[derive(Clone)]
    pub(super) struct CountWaiting<S> {
        inner: S,
        waiting: Arc<Mutex<Vec<Waiting>>>,
    }

    impl<S> CountWaiting<S> {
        pub(super) fn new(inner: S) -> Self {
            Self {
                inner,
                waiting: Arc::default(),
            }
        }

        pub(super) fn waiting(&self) -> usize {
            self.waiting.lock().unwrap().len()
        }
    }

    impl<S> tower::Service<&'static str> for CountWaiting<S>
    where
        S: tower::Service<&'static str, Response = &'static str, Error = BoxError>,
        S::Future: Send + 'static,
    {
        type Response = &'static str;
        type Error = BoxError;
        type Future = std::future::Ready<Result<&'static str, BoxError>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: &'static str) -> Self::Future {
            let mut fut: Waiting = Box::pin(self.inner.call(req));
            let mut cx = Context::from_waker(Waker::noop());
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(out) => std::future::ready(out),
                Poll::Pending => {
                    self.waiting.lock().unwrap().push(fut);
                    std::future::ready(Err(RateLimited::new("waiting", None).into()))
                }
            }
        }
    }
}
