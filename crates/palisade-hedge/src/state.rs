//! [`LatencyWindow`]: the observed latency percentile over a sliding window,
//! kept without a lock.
//!
//! Latencies are counted in log-linear buckets (exact below 16 µs, then 8
//! buckets per power of two: every bucket is at most 1/8 wider than its
//! lower bound), in atomic counters. The window is four slices, each a
//! quarter of it; a slice is recycled for the next quarter by the first
//! thread to see that quarter start. Each slice has a few stripes of
//! buckets, and a thread counts into its own stripe, so concurrent answers
//! do not all bump the same cache line.
//!
//! Recording an answer is a bucket index and one relaxed `fetch_add` (plus
//! a rare recycle), with the instant the caller read anyway. The percentile
//! is not computed per call: it is recomputed by one thread at a time (a
//! try-flag nobody waits on) when a slice is recycled, at most every 1/64 of
//! the window otherwise, and on every answer while the window holds too few
//! answers to trust; it is kept in one atomic that callers load.
//!
//! Approximations: a percentile is the middle of its bucket (within 1/16 of
//! the true value, or half a microsecond below 16 µs); answers recorded while
//! a slice is being recycled may be lost or counted in the new quarter.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Slices in the window (the window moves a quarter at a time).
pub(crate) const SLICES: usize = 4;
/// Stripes of buckets per slice.
const STRIPES: usize = 4;
/// Exact buckets below 16 µs, then 8 per power of two up to 2^36 µs.
const LINEAR: usize = 16;
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXP: u32 = 35;
pub(crate) const BUCKETS: usize = LINEAR + (MAX_EXP as usize - 3) * SUB;
/// Recomputations per window, at most (besides recycles and warm-up).
const REFRESHES_PER_WINDOW: u64 = 64;
/// "No delay": not enough answers in the window.
const NONE: u64 = u64::MAX;
/// A slice never used.
const EMPTY: u64 = u64::MAX;

/// The bucket of a latency of `micros` microseconds.
pub(crate) const fn bucket(micros: u64) -> usize {
    if micros < LINEAR as u64 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((micros >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    LINEAR + (exp as usize - 4) * SUB + sub
}

/// The inclusive lower and exclusive upper bounds, in microseconds, of
/// bucket `index`.
pub(crate) const fn bounds_micros(index: usize) -> (u64, u64) {
    if index < LINEAR {
        return (index as u64, index as u64 + 1);
    }
    let i = index - LINEAR;
    let exp = (i / SUB) as u32 + 4;
    let sub = (i % SUB) as u64;
    let width = 1 << (exp - SUB_BITS);
    ((SUB as u64 + sub) * width, (SUB as u64 + sub + 1) * width)
}

/// The middle of bucket `index`, in nanoseconds: the value a percentile
/// falling in it is given.
pub(crate) const fn middle_nanos(index: usize) -> u64 {
    let (lower, upper) = bounds_micros(index);
    (lower + upper) * 500
}

#[repr(align(128))]
struct Stripe {
    counts: [AtomicU32; BUCKETS],
}

impl Stripe {
    fn new() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn clear(&self) {
        for count in &self.counts {
            count.store(0, Ordering::Relaxed);
        }
    }
}

struct Slice {
    /// Which quarter (since the window's origin) the slice counts; `EMPTY`
    /// before its first use.
    epoch: AtomicU64,
    stripes: [Stripe; STRIPES],
}

/// The latency percentile over a sliding window; see the [module docs](self).
pub(crate) struct LatencyWindow {
    origin: Instant,
    slice_nanos: u64,
    refresh_nanos: u64,
    /// When (nanoseconds since `origin`) the percentile is next recomputed.
    next_refresh: AtomicU64,
    /// The percentile as a fraction, in millionths (`p / 100 × 10^6`).
    quantile_ppm: u64,
    min_samples: u64,
    min_delay_nanos: u64,
    slices: Box<[Slice]>,
    delay_nanos: AtomicU64,
    samples: AtomicU64,
    computing: AtomicBool,
}

impl LatencyWindow {
    /// A window of `window`, giving the `percentile` (in `(0, 100)`) once
    /// it holds `min_samples` answers, never less than `min_delay`.
    pub(crate) fn new(
        origin: Instant,
        window: Duration,
        percentile: f64,
        min_samples: u32,
        min_delay: Duration,
    ) -> Self {
        let slice_nanos = u64::try_from(window.as_nanos() / SLICES as u128)
            .unwrap_or(u64::MAX)
            .max(1);
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            origin,
            slice_nanos,
            refresh_nanos: (window_nanos / REFRESHES_PER_WINDOW).max(1),
            next_refresh: AtomicU64::new(0),
            // Validated to be in (0, 100): fits.
            quantile_ppm: (percentile * 10_000.0).round() as u64,
            min_samples: u64::from(min_samples.max(1)),
            min_delay_nanos: u64::try_from(min_delay.as_nanos()).unwrap_or(u64::MAX),
            slices: (0..SLICES)
                .map(|_| Slice {
                    epoch: AtomicU64::new(EMPTY),
                    stripes: std::array::from_fn(|_| Stripe::new()),
                })
                .collect(),
            delay_nanos: AtomicU64::new(NONE),
            samples: AtomicU64::new(0),
            computing: AtomicBool::new(false),
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records an answer that took `latency`, observed at `now`, counted in
    /// stripe `stripe` (the caller's thread index).
    pub(crate) fn record(&self, now: Instant, latency: Duration, stripe: usize) {
        let nanos = self.nanos(now);
        let epoch = nanos / self.slice_nanos;
        let slice = &self.slices[(epoch % SLICES as u64) as usize];
        let mut recycled = false;
        let seen = slice.epoch.load(Ordering::Acquire);
        if seen != epoch {
            if seen != EMPTY && seen > epoch {
                // Older than what the slice holds now: out of the window.
                return;
            }
            if slice
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                for stripe in &slice.stripes {
                    stripe.clear();
                }
                recycled = true;
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        slice.stripes[stripe % STRIPES].counts[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        if recycled
            || self.samples.load(Ordering::Relaxed) < self.min_samples
            || nanos >= self.next_refresh.load(Ordering::Relaxed)
        {
            self.next_refresh
                .store(nanos.saturating_add(self.refresh_nanos), Ordering::Relaxed);
            self.recompute(epoch);
        }
    }

    /// Recomputes the percentile now (tests, and a handle that wants the
    /// latest figure).
    pub(crate) fn refresh(&self, now: Instant) {
        self.recompute(self.nanos(now) / self.slice_nanos);
    }

    /// Recomputes the percentile over the slices of the window ending in
    /// quarter `epoch`, unless another thread is at it.
    fn recompute(&self, epoch: u64) {
        if self.computing.swap(true, Ordering::Acquire) {
            return;
        }
        let mut histogram = [0u64; BUCKETS];
        let mut total = 0u64;
        for slice in self.slices.iter() {
            let seen = slice.epoch.load(Ordering::Acquire);
            if seen == EMPTY || seen > epoch || epoch - seen >= SLICES as u64 {
                continue;
            }
            for stripe in &slice.stripes {
                for (sum, count) in histogram.iter_mut().zip(&stripe.counts) {
                    let c = u64::from(count.load(Ordering::Relaxed));
                    *sum += c;
                    total += c;
                }
            }
        }
        let delay = if total < self.min_samples {
            NONE
        } else {
            // The rank of the percentile: ceil(total × q), at least 1.
            let rank = (u128::from(total) * u128::from(self.quantile_ppm)).div_ceil(1_000_000);
            let rank = u64::try_from(rank).unwrap_or(total).clamp(1, total);
            let mut seen = 0u64;
            let index = histogram
                .iter()
                .position(|&c| {
                    seen += c;
                    seen >= rank
                })
                .unwrap_or(BUCKETS - 1);
            middle_nanos(index).max(self.min_delay_nanos)
        };
        self.delay_nanos.store(delay, Ordering::Relaxed);
        self.samples.store(total, Ordering::Relaxed);
        self.computing.store(false, Ordering::Release);
    }

    /// The percentile, once the window holds enough answers.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.delay_nanos.load(Ordering::Relaxed) {
            NONE => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// The answers in the window at the last recomputation.
    pub(crate) fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

// ===== thread stripes =====

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A small number per thread, handed out round-robin on first use: the
/// stripe a thread counts into.
#[inline]
pub(crate) fn thread_index() -> usize {
    THREAD_INDEX
        .try_with(|index| {
            let i = index.get();
            if i == usize::MAX {
                let i = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % (usize::MAX - 1);
                index.set(i);
                i
            } else {
                i
            }
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn buckets_are_ordered_and_bounded() {
        let mut last = 0;
        for micros in (0..1_000_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let b = bucket(micros);
            assert!(b >= last, "{micros}");
            assert!(b < BUCKETS);
            last = b;
            if micros < (1 << 36) {
                let (lower, upper) = bounds_micros(b);
                assert!(
                    lower <= micros && micros < upper,
                    "{micros} outside its bucket"
                );
                // At most 1/8 of the value wide (or 1 µs in the exact range).
                assert!(upper - lower <= (micros / 8).max(1), "{micros}");
            }
        }
        assert_eq!(bucket(5_000), bucket(5_100));
        assert_eq!(bounds_micros(bucket(5_000)), (4_608, 5_120));
        assert_eq!(middle_nanos(bucket(5_000)), 4_864_000);
        assert_eq!(middle_nanos(bucket(3)), 3_500);
    }

    fn window(min_samples: u32) -> (Instant, LatencyWindow) {
        let origin = Instant::now();
        let w = LatencyWindow::new(origin, Duration::from_secs(4), 95.0, min_samples, MS);
        (origin, w)
    }

    #[test]
    fn no_delay_until_enough_answers() {
        let (now, w) = window(10);
        for _ in 0..9 {
            w.record(now, 5 * MS, 0);
        }
        assert_eq!(w.delay(), None);
        w.record(now, 5 * MS, 0);
        assert_eq!(w.delay(), Some(Duration::from_micros(4_864)));
        assert_eq!(w.samples(), 10);
    }

    #[test]
    fn the_percentile_of_a_mix() {
        let (now, w) = window(1);
        // 94 fast, 6 slow: p95 is slow. 96 fast, 4 slow: p95 is fast.
        for i in 0..100 {
            w.record(now, if i < 94 { MS } else { 200 * MS }, i);
        }
        w.refresh(now);
        assert!(w.delay().unwrap() >= 200 * MS);
        let (now, w) = window(1);
        for i in 0..100 {
            w.record(now, if i < 96 { MS } else { 200 * MS }, i);
        }
        w.refresh(now);
        // 992 µs, the middle of 1 ms's bucket, raised to the 1 ms minimum.
        assert_eq!(w.delay(), Some(MS));
    }

    #[test]
    fn the_percentile_is_recomputed_as_time_passes() {
        let (start, w) = window(1);
        w.record(start, 2 * MS, 0);
        assert_eq!(w.delay(), Some(Duration::from_micros(1_984)));
        // Within 1/64 of the window, new answers wait for the next refresh.
        for _ in 0..10 {
            w.record(start, 50 * MS, 0);
        }
        assert_eq!(w.delay(), Some(Duration::from_micros(1_984)));
        let later = start + Duration::from_micros(4_000_000 / 64);
        w.record(later, 50 * MS, 0);
        assert_eq!(w.delay(), Some(Duration::from_micros(51_200)));
        assert_eq!(w.samples(), 12);
    }

    #[test]
    fn the_delay_is_never_below_the_minimum() {
        let (now, w) = window(1);
        w.record(now, Duration::from_micros(3), 0);
        assert_eq!(w.delay(), Some(MS));
    }

    #[test]
    fn old_answers_leave_the_window() {
        let (start, w) = window(1);
        for _ in 0..10 {
            w.record(start, 100 * MS, 0);
        }
        w.refresh(start);
        assert_eq!(w.delay(), Some(Duration::from_micros(102_400)));
        // A quarter later the old slice still counts; four quarters later
        // it is gone, and fresh answers decide alone.
        let later = start + Duration::from_secs(4);
        w.record(later, 2 * MS, 0);
        assert_eq!(w.delay(), Some(Duration::from_micros(1_984)));
        assert_eq!(w.samples(), 1);
        // An answer dated before the slice's current quarter is dropped.
        w.record(start, 300 * MS, 0);
        assert_eq!(w.samples(), 1);
    }

    proptest! {
        /// Against a sorted list: the percentile is within 1/16 of the true
        /// one (or half a microsecond).
        #[test]
        fn matches_a_sorted_reference(
            micros in proptest::collection::vec(0u64..5_000_000, 1..400),
            percentile in 1.0f64..99.0,
        ) {
            let origin = Instant::now();
            let w = LatencyWindow::new(origin, Duration::from_secs(4), percentile, 1, Duration::ZERO);
            for (i, m) in micros.iter().enumerate() {
                w.record(origin, Duration::from_micros(*m), i);
            }
            w.refresh(origin);
            let mut sorted = micros;
            sorted.sort_unstable();
            let ppm = (percentile * 10_000.0).round() as usize;
            let rank = (sorted.len() * ppm).div_ceil(1_000_000).max(1);
            let exact = sorted[rank.min(sorted.len()) - 1];
            let got = u64::try_from(w.delay().unwrap().as_nanos()).unwrap();
            let exact = exact * 1_000;
            prop_assert!(got.abs_diff(exact) <= (exact / 16).max(500), "{got} ns, true {exact} ns");
        }
    }
}
