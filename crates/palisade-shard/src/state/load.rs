//! Peak-EWMA load per replica, and the power-of-two-choices pick between
//! replicas. Lock-free: a few relaxed atomics per replica.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The latency assumed for a replica that has not answered yet: low enough
/// that a new replica gets traffic at once, high enough that a few calls in
/// flight make it look busy.
pub(crate) const DEFAULT_RTT_NS: f64 = 30_000_000.0;

/// One replica's load: the peak-EWMA of its latencies and its calls in
/// flight. Finagle's and linkerd's estimator, as tower's `PeakEwma` computes
/// it: a latency above the estimate replaces it at once (the peak), one below
/// pulls it down with a weight that grows with the time since the last
/// update (`1 - e^(-elapsed/decay)`), and the cost is
/// `estimate × (in_flight + 1)`.
///
/// Updates are relaxed loads and stores: two completions at the same instant
/// may keep only one of their samples, which a load estimate can afford; no
/// caller ever waits on another.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    /// The estimate in nanoseconds, as `f64` bits; 0 before the first sample.
    estimate: AtomicU64,
    /// When it was last updated, in nanoseconds since the router's epoch.
    updated_at: AtomicU64,
    in_flight: AtomicU32,
    decay_ns: f64,
}

impl PeakEwma {
    pub(crate) fn new(decay_ns: f64) -> Self {
        Self {
            estimate: AtomicU64::new(0),
            updated_at: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            decay_ns,
        }
    }

    /// A call started.
    #[inline]
    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A call ended (answered, failed or dropped) after `rtt_ns`, observed
    /// at `now_ns`; `None` when it was dropped unfinished (no sample).
    #[inline]
    pub(crate) fn finish(&self, rtt_ns: Option<u64>, now_ns: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(rtt) = rtt_ns {
            self.observe(rtt, now_ns);
        }
    }

    /// Calls in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    #[allow(clippy::cast_precision_loss)]
    fn observe(&self, rtt_ns: u64, now_ns: u64) {
        let rtt = rtt_ns as f64;
        let prior = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        let next = if prior == 0.0 || rtt > prior {
            rtt
        } else {
            let last = self.updated_at.load(Ordering::Relaxed);
            let elapsed = now_ns.saturating_sub(last) as f64;
            let decay = (-elapsed / self.decay_ns).exp();
            prior * decay + rtt * (1.0 - decay)
        };
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
        self.updated_at.store(now_ns, Ordering::Relaxed);
    }

    /// The estimate in nanoseconds, decayed towards zero for the time since
    /// the last sample (so a replica that was slow long ago is tried again);
    /// [`DEFAULT_RTT_NS`] before the first sample.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn estimate(&self, now_ns: u64) -> f64 {
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        if estimate == 0.0 {
            return DEFAULT_RTT_NS;
        }
        let elapsed = now_ns.saturating_sub(self.updated_at.load(Ordering::Relaxed)) as f64;
        estimate * (-elapsed / self.decay_ns).exp()
    }

    /// `estimate × (in_flight + 1)`.
    pub(crate) fn cost(&self, now_ns: u64) -> f64 {
        self.estimate(now_ns) * f64::from(self.in_flight() + 1)
    }
}

/// Power of two choices: among the `n` replicas, the ones `eligible` says
/// may take a call (their breaker is not open), pick two distinct at random
/// (`random(bound)` gives a number in `0..bound`) and keep the one with the
/// lower `cost`. With one eligible replica, that one; with none, the choice
/// is made among all (the call will meet the open breaker and be refused
/// with its `Retry-After`).
pub(crate) fn pick_two(
    n: usize,
    eligible: impl Fn(usize) -> bool,
    cost: impl Fn(usize) -> f64,
    mut random: impl FnMut(usize) -> usize,
) -> usize {
    debug_assert!(n > 0);
    if n == 1 {
        return 0;
    }
    let count = (0..n).filter(|&i| eligible(i)).count();
    // With none eligible, choose among all.
    let all = count == 0 || count == n;
    let m = if all { n } else { count };
    let nth = |k: usize| {
        if all {
            k
        } else {
            (0..n).filter(|&i| eligible(i)).nth(k).unwrap_or_default()
        }
    };
    if m == 1 {
        return nth(0);
    }
    let a = random(m);
    let mut b = random(m - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (nth(a), nth(b));
    if cost(b) < cost(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peak_replaces_the_estimate_and_a_fast_call_pulls_it_down() {
        let ewma = PeakEwma::new(10e9);
        assert_eq!(ewma.estimate(0), DEFAULT_RTT_NS);
        ewma.start();
        ewma.finish(Some(5_000_000), 0);
        assert_eq!(ewma.estimate(0), 5_000_000.0);
        ewma.start();
        ewma.finish(Some(50_000_000), 1_000);
        assert!((ewma.estimate(1_000) - 50_000_000.0).abs() < 1.0);
        // Ten seconds later (one decay period) a fast call: the estimate
        // moves most of the way to it.
        let later = 10_000_000_000 + 1_000;
        ewma.start();
        ewma.finish(Some(1_000_000), later);
        let e = ewma.estimate(later);
        assert!(e > 1_000_000.0 && e < 20_000_000.0, "{e}");
        assert_eq!(ewma.in_flight(), 0);
    }

    #[test]
    fn cost_grows_with_calls_in_flight() {
        let ewma = PeakEwma::new(1e9);
        ewma.start();
        ewma.finish(Some(1_000), 0);
        let idle = ewma.cost(0);
        ewma.start();
        ewma.start();
        assert!((ewma.cost(0) - 3.0 * idle).abs() < 1e-6);
        ewma.finish(None, 0);
        ewma.finish(None, 0);
        assert_eq!(ewma.in_flight(), 0);
    }

    #[test]
    fn pick_two_keeps_the_cheaper_and_skips_ineligible() {
        let costs = [5.0, 1.0, 9.0, 0.5];
        // Always sample (0, 1): 1 is cheaper.
        let mut draws = [0, 0].into_iter();
        assert_eq!(
            pick_two(4, |_| true, |i| costs[i], |_| draws.next().unwrap()),
            1
        );
        // 3 is the cheapest but ineligible; 0 and 2 are the only eligible.
        for seed in 0..50 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let picked = pick_two(4, |i| i % 2 == 0, |i| costs[i], |b| rng.usize(..b));
            assert_eq!(picked, 0);
        }
        // One eligible: that one.
        assert_eq!(pick_two(4, |i| i == 2, |i| costs[i], |_| 0), 2);
        // None eligible: a choice among all.
        let picked = pick_two(4, |_| false, |i| costs[i], |b| b - 1);
        assert!(picked < 4);
        assert_eq!(pick_two(1, |_| false, |_| 0.0, |_| 0), 0);
    }
}
