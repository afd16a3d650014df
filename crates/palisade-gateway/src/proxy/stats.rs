//! Per-upstream request statistics for the dashboard: a rolling window of
//! one-second buckets, each with request, error and refusal counts and a
//! latency histogram, all atomics; and a history of the last
//! [`HISTORY_SECS`] seconds, one small point per second, for the
//! dashboard's sparklines.
//!
//! # How the figures are computed
//!
//! - The window is the last [`WINDOW_SECS`] seconds, the current (partial)
//!   second included. A bucket is reused when its second comes round again:
//!   the first call that sees a stale bucket resets it.
//! - Rate: requests in the window divided by the time the window covers
//!   (less than [`WINDOW_SECS`] right after start-up).
//! - Error %: calls that ended in an error (timeout, unreachable upstream,
//!   a rejection) or a 5xx response, over all calls in the window. A call
//!   that failed through the client's own fault (a request body over the
//!   limit, cut short or malformed: `proxy::is_client_fault`) counts as a
//!   call but not as an upstream error.
//! - Refused: calls a resilience layer refused (a rejection anywhere in the
//!   error's chain: an open breaker, a full bulkhead), in the same window;
//!   they are calls and errors too, as the caller saw them, with the
//!   breaker's and the bulkhead's shares counted apart.
//! - Latency: time to response headers, of the calls that were not refused
//!   (a refusal takes microseconds and says nothing about the upstream: with
//!   only refusals in the window there is no p50 or p99). Percentiles come
//!   from a log-linear
//!   histogram in microseconds with 8 sub-buckets per power of two (values
//!   below 8 µs exact), merged over the window; the figure reported is the
//!   upper bound of the bucket holding the rank, so it overstates the true
//!   percentile by at most 12.5 %.
//!
//! Recording is lock-free: three relaxed atomic adds, plus one
//! compare-and-swap when a second turns over. A call racing a bucket reset
//! may be lost or counted in the new second; for a dashboard that is fine.
//!
//! # History
//!
//! Once a second ([`UpstreamStats::fold_history`], from the gateway's
//! upkeep and from each dashboard snapshot) every second that has ended
//! since the last fold is read from its bucket into a [`HistoryPoint`]
//! (calls, errors, refusals, p99, the breaker's state at the fold) kept in a
//! ring of [`HISTORY_SECS`] points: bounded memory (a few kilobytes per
//! upstream), kept server-side so a dashboard opened during an outage shows
//! the minutes before it. The ring is behind a mutex taken only by the
//! fold and the dashboard, never on the request path. A second whose bucket
//! was reused before it was folded (no fold for [`WINDOW_SECS`] seconds) is
//! left out: the points carry their second, so a gap shows as a gap.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use palisade::{Rejection, rejection};
use pin_project_lite::pin_project;
use serde::Serialize;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Seconds in the rolling window.
pub const WINDOW_SECS: u64 = 10;
/// Seconds of history kept per upstream (one point each): five minutes.
pub const HISTORY_SECS: u64 = 300;
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// The largest exponent kept: values above 2^36 µs (19 hours) share the
/// last bucket.
const MAX_EXP: u32 = 36;
const BUCKETS: usize = (SUB + (MAX_EXP as u64 - SUB_BITS as u64 + 1) * SUB) as usize;

/// The histogram bucket of a latency of `micros`.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB {
        return usize::try_from(micros).unwrap_or(0);
    }
    let exp = (63 - micros.leading_zeros()).min(MAX_EXP);
    let micros = micros.min((1 << (MAX_EXP + 1)) - 1);
    let sub = (micros >> (exp - SUB_BITS)) & (SUB - 1);
    usize::try_from(SUB + u64::from(exp - SUB_BITS) * SUB + sub).unwrap_or(BUCKETS - 1)
}

/// The exclusive upper bound, in µs, of bucket `index`.
fn bucket_upper(index: usize) -> u64 {
    let i = index as u64;
    if i < SUB {
        return i + 1;
    }
    let exp = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    (SUB + sub + 1) << (exp - u64::from(SUB_BITS))
}

struct Bucket {
    second: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Refused by any layer; of those, by a breaker and by a bulkhead.
    refused: AtomicU64,
    circuit_open: AtomicU64,
    bulkhead_full: AtomicU64,
    histogram: Box<[AtomicU64]>,
}

impl Bucket {
    fn new() -> Self {
        Self {
            second: AtomicU64::new(u64::MAX),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            circuit_open: AtomicU64::new(0),
            bulkhead_full: AtomicU64::new(0),
            histogram: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// `true` if the bucket holds `second`'s figures (stale ones are older).
    fn holds(&self, second: u64) -> bool {
        self.second.load(Ordering::Acquire) == second
    }
}

/// How a completed call counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// An answer the caller can use (2xx to 4xx), or a failure that was the
    /// client's own fault.
    Success,
    /// A 5xx answer or an error (a timeout, an unreachable upstream).
    Error,
    /// A layer refused it (an error too, as the caller saw it).
    Refused(RefusedBy),
}

/// Which layer refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedBy {
    /// A circuit breaker (`CircuitOpen`).
    CircuitBreaker,
    /// A bulkhead (`BulkheadFull`).
    Bulkhead,
    /// Another layer (a rate limiter).
    Other,
}

/// One second of an upstream's history, for the dashboard's sparklines.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// The second: whole seconds since the statistics began (a gap in the
    /// numbers is a second that was not folded in time).
    pub t: u64,
    /// Calls completed in that second.
    pub requests: u64,
    /// Of those, errors and 5xx answers (refusals included).
    pub errors: u64,
    /// Of those, refusals.
    pub refused: u64,
    /// The 99th percentile latency of the calls not refused, ms (`None`
    /// without any).
    pub p99_ms: Option<f64>,
    /// The circuit breaker's state when the second was folded (`None`
    /// without a breaker).
    pub breaker: Option<&'static str>,
}

/// The ring of [`HistoryPoint`]s and the last second folded into it.
#[derive(Default)]
struct History {
    points: VecDeque<HistoryPoint>,
    /// The next second to fold.
    next: u64,
}

struct Inner {
    name: Arc<str>,
    started: Instant,
    buckets: Box<[Bucket]>,
    in_flight: AtomicU64,
    history: Mutex<History>,
}

/// The statistics of one upstream, shared by its stack's every clone.
#[derive(Clone)]
pub struct UpstreamStats {
    inner: Arc<Inner>,
}

/// What the dashboard reads from [`UpstreamStats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Calls completed in the window.
    pub requests: u64,
    /// Of those, errors and 5xx responses (refusals included).
    pub errors: u64,
    /// Of those, calls a layer refused.
    pub refused: u64,
    /// Of the refused, those a circuit breaker refused.
    pub refused_by_breaker: u64,
    /// Of the refused, those a bulkhead refused.
    pub refused_by_bulkhead: u64,
    /// Requests per second over the window.
    pub rate_per_sec: f64,
    /// Errors as a percentage of requests (0 when there were none).
    pub error_pct: f64,
    /// Median latency to response headers of the calls not refused, in ms
    /// (`None` without any).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency to response headers of the calls not
    /// refused, in ms.
    pub p99_ms: Option<f64>,
    /// Calls in flight now.
    pub in_flight: u64,
    /// Seconds the window covers (less than [`WINDOW_SECS`] at start-up).
    pub window_secs: f64,
}

impl UpstreamStats {
    /// Empty statistics for the upstream called `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: Arc::from(name),
                started: Instant::now(),
                buckets: (0..WINDOW_SECS).map(|_| Bucket::new()).collect(),
                in_flight: AtomicU64::new(0),
                history: Mutex::new(History::default()),
            }),
        }
    }

    /// The upstream's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The layer recording into these statistics.
    #[must_use]
    pub fn layer(&self) -> StatsLayer {
        StatsLayer {
            stats: self.clone(),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.inner.started).as_secs()
    }

    fn bucket(&self, second: u64) -> &Bucket {
        &self.inner.buckets[usize::try_from(second % WINDOW_SECS).unwrap_or(0)]
    }

    /// Records one completed call that took `latency`.
    pub fn record(&self, latency: Duration, counted: Counted) {
        let second = self.second(Instant::now());
        let bucket = self.bucket(second);
        let seen = bucket.second.load(Ordering::Acquire);
        if seen != second
            && bucket
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.requests.store(0, Ordering::Relaxed);
            bucket.errors.store(0, Ordering::Relaxed);
            bucket.refused.store(0, Ordering::Relaxed);
            bucket.circuit_open.store(0, Ordering::Relaxed);
            bucket.bulkhead_full.store(0, Ordering::Relaxed);
            for h in &bucket.histogram {
                h.store(0, Ordering::Relaxed);
            }
        }
        bucket.requests.fetch_add(1, Ordering::Relaxed);
        match counted {
            Counted::Success => {}
            Counted::Error => {
                bucket.errors.fetch_add(1, Ordering::Relaxed);
            }
            Counted::Refused(by) => {
                bucket.errors.fetch_add(1, Ordering::Relaxed);
                bucket.refused.fetch_add(1, Ordering::Relaxed);
                match by {
                    RefusedBy::CircuitBreaker => {
                        bucket.circuit_open.fetch_add(1, Ordering::Relaxed);
                    }
                    RefusedBy::Bulkhead => {
                        bucket.bulkhead_full.fetch_add(1, Ordering::Relaxed);
                    }
                    RefusedBy::Other => {}
                }
                // No latency: a refusal says nothing about the upstream.
                return;
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        bucket.histogram[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Folds every second that has ended since the last fold into the
    /// history, each with the breaker's state `breaker` (`None`: no
    /// breaker); see the [module docs](self).
    pub fn fold_history(&self, breaker: Option<&'static str>) {
        let current = self.second(Instant::now());
        let Ok(mut history) = self.inner.history.lock() else {
            return;
        };
        // No more than the history holds.
        let from = history.next.max(current.saturating_sub(HISTORY_SECS));
        for t in from..current {
            let bucket = self.bucket(t);
            let point = if bucket.holds(t) {
                let histogram: Vec<u64> = bucket
                    .histogram
                    .iter()
                    .map(|h| h.load(Ordering::Relaxed))
                    .collect();
                HistoryPoint {
                    t,
                    requests: bucket.requests.load(Ordering::Relaxed),
                    errors: bucket.errors.load(Ordering::Relaxed),
                    refused: bucket.refused.load(Ordering::Relaxed),
                    p99_ms: percentile(&histogram, 0.99),
                    breaker,
                }
            } else if bucket.second.load(Ordering::Acquire) > t
                && bucket.second.load(Ordering::Acquire) != u64::MAX
            {
                // Reused by a later second before this fold: unknown.
                continue;
            } else {
                // No call completed in that second.
                HistoryPoint {
                    t,
                    requests: 0,
                    errors: 0,
                    refused: 0,
                    p99_ms: None,
                    breaker,
                }
            };
            if history.points.len() as u64 >= HISTORY_SECS {
                history.points.pop_front();
            }
            history.points.push_back(point);
        }
        history.next = history.next.max(current);
    }

    /// The history points after second `after` (all with `None`), oldest
    /// first.
    #[must_use]
    pub fn history_since(&self, after: Option<u64>) -> Vec<HistoryPoint> {
        let Ok(history) = self.inner.history.lock() else {
            return Vec::new();
        };
        history
            .points
            .iter()
            .filter(|p| after.is_none_or(|a| p.t > a))
            .copied()
            .collect()
    }

    /// The figures over the window ending now.
    #[must_use]
    pub fn snapshot(&self) -> StatsSnapshot {
        let now = Instant::now();
        let current = self.second(now);
        let mut requests = 0;
        let mut errors = 0;
        let (mut refused, mut by_breaker, mut by_bulkhead) = (0, 0, 0);
        let mut histogram = vec![0u64; BUCKETS];
        for bucket in &self.inner.buckets {
            let second = bucket.second.load(Ordering::Acquire);
            if second == u64::MAX || second > current || current - second >= WINDOW_SECS {
                continue;
            }
            requests += bucket.requests.load(Ordering::Relaxed);
            errors += bucket.errors.load(Ordering::Relaxed);
            refused += bucket.refused.load(Ordering::Relaxed);
            by_breaker += bucket.circuit_open.load(Ordering::Relaxed);
            by_bulkhead += bucket.bulkhead_full.load(Ordering::Relaxed);
            for (sum, h) in histogram.iter_mut().zip(bucket.histogram.iter()) {
                *sum += h.load(Ordering::Relaxed);
            }
        }
        let uptime = now
            .saturating_duration_since(self.inner.started)
            .as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // WINDOW_SECS is small
        let window_secs = uptime.clamp(1e-3, WINDOW_SECS as f64);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^53
        let (rate_per_sec, error_pct) = (
            requests as f64 / window_secs,
            if requests == 0 {
                0.0
            } else {
                errors as f64 * 100.0 / requests as f64
            },
        );
        StatsSnapshot {
            requests,
            errors,
            refused,
            refused_by_breaker: by_breaker,
            refused_by_bulkhead: by_bulkhead,
            rate_per_sec,
            error_pct,
            p50_ms: percentile(&histogram, 0.50),
            p99_ms: percentile(&histogram, 0.99),
            in_flight: self.inner.in_flight.load(Ordering::Relaxed),
            window_secs,
        }
    }
}

impl std::fmt::Debug for UpstreamStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStats")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// The `q` quantile of `histogram` in ms: the upper bound of the bucket
/// holding rank `ceil(q * n)`.
fn percentile(histogram: &[u64], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            #[allow(clippy::cast_precision_loss)]
            return Some(bucket_upper(i) as f64 / 1000.0);
        }
    }
    None
}

// ===== layer =====

/// Records every call of the service it wraps into an [`UpstreamStats`].
#[derive(Clone, Debug)]
pub struct StatsLayer {
    stats: UpstreamStats,
}

impl<S> Layer<S> for StatsLayer {
    type Service = Stats<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Stats {
            inner,
            stats: self.stats.clone(),
        }
    }
}

/// The service of [`StatsLayer`].
#[derive(Clone, Debug)]
pub struct Stats<S> {
    inner: S,
    stats: UpstreamStats,
}

impl<S, Req, B> Service<Req> for Stats<S>
where
    S: Service<Req, Response = Response<B>, Error = palisade::BoxError>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = StatsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.stats.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        StatsFuture {
            inner: self.inner.call(req),
            guard: InFlight {
                stats: self.stats.clone(),
                start: Instant::now(),
                done: false,
            },
        }
    }
}

/// Decrements the in-flight gauge however the call ends; a call dropped
/// before completion (the client went away) is not recorded.
struct InFlight {
    stats: UpstreamStats,
    start: Instant,
    done: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The response future of [`Stats`].
    pub struct StatsFuture<F> {
        #[pin]
        inner: F,
        guard: InFlight,
    }
}

impl<F, B> Future for StatsFuture<F>
where
    F: Future<Output = Result<Response<B>, palisade::BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if !this.guard.done {
            this.guard.done = true;
            let counted = match &out {
                Ok(res) if res.status().is_server_error() => Counted::Error,
                Ok(_) => Counted::Success,
                Err(err) => match rejection(&**err) {
                    Some(Rejection::CircuitOpen(_)) => Counted::Refused(RefusedBy::CircuitBreaker),
                    Some(Rejection::BulkheadFull(_)) => Counted::Refused(RefusedBy::Bulkhead),
                    Some(_) => Counted::Refused(RefusedBy::Other),
                    None if crate::proxy::is_client_fault(&**err) => Counted::Success,
                    None => Counted::Error,
                },
            };
            this.guard.stats.record(this.guard.start.elapsed(), counted);
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounded() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, 1 << 30, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} -> {b}");
            assert!(b >= last || v > 100_000, "monotonic");
            last = b;
            if v < (1 << (MAX_EXP + 1)) {
                assert!(
                    v < bucket_upper(b),
                    "{v} below the upper bound of its bucket"
                );
                // Relative error of the bound is at most 1/8.
                assert!(
                    bucket_upper(b) as f64 <= (v as f64 + 1.0) * 1.125 + 1.0,
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = vec![0u64; BUCKETS];
        // 99 calls at 1 ms, 1 at 100 ms.
        h[bucket_of(1_000)] += 99;
        h[bucket_of(100_000)] += 1;
        let p50 = percentile(&h, 0.5).unwrap();
        let p99 = percentile(&h, 0.99).unwrap();
        assert!((1.0..=1.125).contains(&p50), "{p50}");
        assert!(
            (1.0..=1.125).contains(&p99),
            "{p99}: rank 99 of 100 is still 1 ms"
        );
        let p100 = percentile(&h, 1.0).unwrap();
        assert!((100.0..=112.5).contains(&p100), "{p100}");
        assert_eq!(percentile(&vec![0; BUCKETS], 0.5), None);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_window_rolls() {
        let stats = UpstreamStats::new("u");
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..30 {
            stats.record(Duration::from_millis(2), Counted::Success);
        }
        for _ in 0..10 {
            stats.record(Duration::from_millis(2), Counted::Error);
        }
        let s = stats.snapshot();
        assert_eq!((s.requests, s.errors), (40, 10));
        assert!((s.error_pct - 25.0).abs() < 1e-9);
        assert!((s.rate_per_sec - 4.0).abs() < 1e-9, "{}", s.rate_per_sec);
        assert!(s.p50_ms.unwrap() >= 2.0 && s.p50_ms.unwrap() <= 2.25);

        tokio::time::advance(Duration::from_secs(5)).await;
        stats.record(Duration::from_millis(1), Counted::Success);
        assert_eq!(stats.snapshot().requests, 41, "still in the window");

        tokio::time::advance(Duration::from_secs(6)).await;
        let s = stats.snapshot();
        assert_eq!(s.requests, 1, "the first second left the window");
        tokio::time::advance(Duration::from_secs(10)).await;
        let s = stats.snapshot();
        assert_eq!((s.requests, s.p50_ms), (0, None));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn refused_calls_count_in_the_window_but_not_in_the_latency() {
        let stats = UpstreamStats::new("u");
        for _ in 0..7 {
            stats.record(Duration::ZERO, Counted::Refused(RefusedBy::CircuitBreaker));
        }
        stats.record(Duration::ZERO, Counted::Refused(RefusedBy::Bulkhead));
        let s = stats.snapshot();
        assert_eq!((s.requests, s.errors, s.refused), (8, 8, 8));
        assert_eq!((s.refused_by_breaker, s.refused_by_bulkhead), (7, 1));
        assert_eq!(
            (s.p50_ms, s.p99_ms),
            (None, None),
            "no latency for refusals"
        );
        stats.record(Duration::from_millis(40), Counted::Error);
        let s = stats.snapshot();
        assert!((40.0..=45.0).contains(&s.p50_ms.unwrap()), "{s:?}");
        // Out of the window with everything else.
        tokio::time::advance(Duration::from_secs(WINDOW_SECS)).await;
        assert_eq!(stats.snapshot().refused, 0);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_history_keeps_a_point_per_second_within_its_bound() {
        let stats = UpstreamStats::new("u");
        // Second 0: 3 calls, one refused; second 1: nothing; second 2: one
        // slow call.
        stats.record(Duration::from_millis(5), Counted::Success);
        stats.record(Duration::from_millis(5), Counted::Error);
        stats.record(Duration::ZERO, Counted::Refused(RefusedBy::CircuitBreaker));
        tokio::time::advance(Duration::from_secs(2)).await;
        stats.record(Duration::from_millis(300), Counted::Success);
        stats.fold_history(Some("closed"));
        assert_eq!(
            stats.history_since(None),
            [
                HistoryPoint {
                    t: 0,
                    requests: 3,
                    errors: 2,
                    refused: 1,
                    p99_ms: Some(5.12),
                    breaker: Some("closed")
                },
                HistoryPoint {
                    t: 1,
                    requests: 0,
                    errors: 0,
                    refused: 0,
                    p99_ms: None,
                    breaker: Some("closed")
                },
            ],
            "the current second is not folded before it ends"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        stats.fold_history(Some("open"));
        stats.fold_history(Some("open"));
        let since = stats.history_since(Some(1));
        assert_eq!(since.len(), 1, "each second once: {since:?}");
        assert_eq!(
            (since[0].t, since[0].requests, since[0].breaker),
            (2, 1, Some("open"))
        );
        assert!((300.0..=340.0).contains(&since[0].p99_ms.unwrap()));
        // Folded every second for longer than the history holds: bounded,
        // the newest kept.
        for _ in 0..(HISTORY_SECS + 50) {
            tokio::time::advance(Duration::from_secs(1)).await;
            stats.fold_history(None);
        }
        let all = stats.history_since(None);
        assert_eq!(all.len() as u64, HISTORY_SECS);
        assert_eq!(all.last().unwrap().t, 3 + HISTORY_SECS + 50 - 1);
        // Not folded for longer than the window: a second whose bucket a
        // later second reused is left out, not made up; the others are
        // still known (a bucket not reused saw no call since).
        let lost = all.last().unwrap().t + 1;
        stats.record(Duration::from_millis(1), Counted::Success);
        tokio::time::advance(Duration::from_secs(WINDOW_SECS)).await;
        stats.record(Duration::from_millis(1), Counted::Error);
        tokio::time::advance(Duration::from_secs(2)).await;
        stats.fold_history(None);
        let last = stats.history_since(Some(lost - 1));
        let ts: Vec<u64> = last.iter().map(|p| p.t).collect();
        let expected: Vec<u64> = (lost + 1..=lost + WINDOW_SECS + 1).collect();
        assert_eq!(ts, expected, "second {lost} was lost");
        let reused = last.iter().find(|p| p.t == lost + WINDOW_SECS).unwrap();
        assert_eq!((reused.requests, reused.errors), (1, 1));
        assert!(
            last.iter()
                .filter(|p| p.t != lost + WINDOW_SECS)
                .all(|p| p.requests == 0)
        );
    }
}
