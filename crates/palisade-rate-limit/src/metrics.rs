//! Metric handles, resolved when a limiter or a tier is created so the call
//! path never looks a metric up or builds a label; and the counters behind
//! the handle's snapshot.
//!
//! Labels are the limiter's `name` and a key's `class` (its tier: a bounded
//! set), never a key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::error::KeyProblem;
use crate::settings::Limit;

pub(crate) const CALLS: &str = "palisade_rate_limit_calls_total";
pub(crate) const DELAY: &str = "palisade_rate_limit_delay_seconds";
pub(crate) const RATE: &str = "palisade_rate_limit_rate";
pub(crate) const BURST: &str = "palisade_rate_limit_burst";
pub(crate) const KEYS: &str = "palisade_rate_limit_keys";
pub(crate) const OVERFLOW: &str = "palisade_rate_limit_overflow_total";
pub(crate) const INVALID_KEYS: &str = "palisade_rate_limit_invalid_keys_total";
pub(crate) const BACKEND_CALLS: &str = "palisade_rate_limit_backend_calls_total";
pub(crate) const FALLBACK: &str = "palisade_rate_limit_fallback_total";
pub(crate) const CACHE_HITS: &str = "palisade_rate_limit_cache_hits_total";

/// Describes every metric to the installed recorder (help text and unit).
pub(crate) fn describe() {
    metrics::describe_counter!(
        CALLS,
        "Calls seen by the rate limiter, by tier and outcome (admitted, delayed, limited)"
    );
    metrics::describe_histogram!(
        DELAY,
        Unit::Seconds,
        "How long throttled calls waited for their slot"
    );
    metrics::describe_gauge!(RATE, "A tier's sustained rate, in calls per second");
    metrics::describe_gauge!(BURST, "A tier's burst");
    metrics::describe_gauge!(KEYS, "Keys held in the limiter's table");
    metrics::describe_counter!(
        OVERFLOW,
        "Calls of new keys decided on the shared overflow key (the key table was full)"
    );
    metrics::describe_counter!(
        INVALID_KEYS,
        "Requests refused because their key was missing (when refused), empty, too long or malformed"
    );
    metrics::describe_counter!(
        BACKEND_CALLS,
        "Decisions asked of the remote backend, by result (ok, error, not_permitted)"
    );
    metrics::describe_counter!(
        FALLBACK,
        "Calls decided by the failure mode because the remote backend failed or its breaker was open"
    );
    metrics::describe_counter!(
        CACHE_HITS,
        "Calls refused from the local over-the-limit cache, without a round trip"
    );
}

// ===== Striped counters =====

/// Stripes that belong to one thread each: their thread adds with a plain
/// load and store, no atomic read-modify-write.
const OWNED: usize = 8;
/// Stripes shared by the threads beyond the first [`OWNED`] alive at once:
/// they add with an atomic `fetch_add`.
const SHARED: usize = 4;

#[repr(align(128))]
#[derive(Default)]
struct Cell(AtomicU64);

/// A counter split over a few cache lines, so threads counting the same
/// thing do not contend on one line; summed when read.
///
/// Each of the first [`OWNED`] threads alive at once owns a stripe (in every
/// `Striped` of the process) and is its only writer, so its add is a plain
/// load and store; a thread's stripe goes back to the pool when the thread
/// ends, and the next owner carries on from the count it left. The other
/// threads share [`SHARED`] stripes with an atomic add.
#[derive(Default)]
pub(crate) struct Striped([Cell; OWNED + SHARED]);

/// Bit `i` set: stripe `i` (below [`OWNED`]) has an owner.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// A thread's stripe; gives an owned stripe back when the thread ends.
struct Claim(usize);

impl Claim {
    fn take() -> Self {
        let mut claimed = CLAIMED.load(Ordering::Relaxed);
        loop {
            let free = !claimed & ((1 << OWNED) - 1);
            if free == 0 {
                break;
            }
            let i = free.trailing_zeros();
            // Acquire: the previous owner's adds happen before ours.
            match CLAIMED.compare_exchange_weak(
                claimed,
                claimed | 1 << i,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Self(i as usize),
                Err(now) => claimed = now,
            }
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Self(OWNED + NEXT.fetch_add(1, Ordering::Relaxed) % SHARED)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.0 < OWNED {
            // Release: this thread's adds happen before the next owner's.
            CLAIMED.fetch_and(!(1 << self.0), Ordering::Release);
        }
    }
}

thread_local! {
    static CLAIM: Claim = Claim::take();
}

impl Striped {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        // During the thread's teardown (its claim gone): a shared stripe.
        let i = CLAIM.try_with(|c| c.0).unwrap_or(OWNED);
        let cell = &self.0[i].0;
        if i < OWNED {
            // This thread is the stripe's only writer.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.0
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl std::fmt::Debug for Striped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

// ===== Per tier =====

/// A tier's counters and metric handles. Outlives limit changes (the tier's
/// limit is swapped, its counts stay).
#[derive(Debug)]
pub(crate) struct TierStats {
    pub(crate) admitted: Striped,
    pub(crate) delayed: Striped,
    pub(crate) limited: Striped,
    admitted_total: Counter,
    delayed_total: Counter,
    limited_total: Counter,
    delay: Histogram,
    rate: Gauge,
    burst: Gauge,
}

impl TierStats {
    pub(crate) fn new(limiter: &Arc<str>, class: &Arc<str>) -> Self {
        let labels = [("name", limiter.to_string()), ("class", class.to_string())];
        let outcome = |o: &'static str| {
            metrics::counter!(
                CALLS,
                &[
                    ("name", labels[0].1.clone()),
                    ("class", labels[1].1.clone()),
                    ("outcome", o.to_owned()),
                ]
            )
        };
        Self {
            admitted_total: outcome("admitted"),
            delayed_total: outcome("delayed"),
            limited_total: outcome("limited"),
            delay: metrics::histogram!(DELAY, &labels),
            rate: metrics::gauge!(RATE, &labels),
            burst: metrics::gauge!(BURST, &labels),
            admitted: Striped::default(),
            delayed: Striped::default(),
            limited: Striped::default(),
        }
    }

    #[inline]
    pub(crate) fn admitted(&self) {
        self.admitted.add(1);
        self.admitted_total.increment(1);
    }

    pub(crate) fn delayed(&self, delay_nanos: u64) {
        self.delayed.add(1);
        self.delayed_total.increment(1);
        #[allow(clippy::cast_precision_loss, reason = "a delay in seconds")]
        self.delay.record(delay_nanos as f64 / 1e9);
    }

    pub(crate) fn limited(&self) {
        self.limited.add(1);
        self.limited_total.increment(1);
    }

    /// Publishes the tier's limit.
    pub(crate) fn set_limit(&self, limit: Limit) {
        let per = limit.rate.per().as_secs_f64();
        self.rate.set(f64::from(limit.rate.count()) / per);
        self.burst.set(f64::from(limit.burst));
    }
}

// ===== Per limiter =====

/// The limiter's own handles.
#[derive(Debug)]
pub(crate) struct LimiterMetrics {
    keys: Gauge,
    pub(crate) overflow: Counter,
    invalid: [Counter; 4],
    pub(crate) overflowed: Striped,
    pub(crate) invalid_keys: Striped,
}

impl LimiterMetrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let n = name.to_string();
        let invalid = |p: KeyProblem| metrics::counter!(INVALID_KEYS, "name" => n.clone(), "reason" => p.as_str());
        Self {
            keys: metrics::gauge!(KEYS, "name" => n.clone()),
            overflow: metrics::counter!(OVERFLOW, "name" => n.clone()),
            invalid: [
                invalid(KeyProblem::Missing),
                invalid(KeyProblem::Empty),
                invalid(KeyProblem::TooLong),
                invalid(KeyProblem::Malformed),
            ],
            overflowed: Striped::default(),
            invalid_keys: Striped::default(),
        }
    }

    pub(crate) fn invalid_key(&self, problem: KeyProblem) {
        self.invalid_keys.add(1);
        let index = match problem {
            KeyProblem::Missing => 0,
            KeyProblem::Empty => 1,
            KeyProblem::TooLong => 2,
            KeyProblem::Malformed => 3,
        };
        self.invalid[index].increment(1);
    }

    pub(crate) fn overflow(&self) {
        self.overflowed.add(1);
        self.overflow.increment(1);
    }

    #[allow(clippy::cast_precision_loss, reason = "key counts are far below 2^52")]
    pub(crate) fn keys(&self, keys: usize) {
        self.keys.set(keys as f64);
    }
}

/// The remote backend's handles and counts.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub(crate) struct BackendMetrics {
    ok: Counter,
    error: Counter,
    not_permitted: Counter,
    fallback: Counter,
    cache_hits: Counter,
    pub(crate) remote_ok: Striped,
    pub(crate) remote_errors: Striped,
    pub(crate) skipped: Striped,
    pub(crate) fallbacks: Striped,
    pub(crate) cache_hit: Striped,
}

#[cfg(feature = "redis")]
impl BackendMetrics {
    pub(crate) fn new(name: &Arc<str>, mode: &'static str) -> Self {
        let n = name.to_string();
        let result =
            |r: &'static str| metrics::counter!(BACKEND_CALLS, "name" => n.clone(), "result" => r);
        Self {
            ok: result("ok"),
            error: result("error"),
            not_permitted: result("not_permitted"),
            fallback: metrics::counter!(FALLBACK, "name" => n.clone(), "mode" => mode),
            cache_hits: metrics::counter!(CACHE_HITS, "name" => n),
            remote_ok: Striped::default(),
            remote_errors: Striped::default(),
            skipped: Striped::default(),
            fallbacks: Striped::default(),
            cache_hit: Striped::default(),
        }
    }

    pub(crate) fn ok(&self) {
        self.remote_ok.add(1);
        self.ok.increment(1);
    }

    pub(crate) fn error(&self) {
        self.remote_errors.add(1);
        self.error.increment(1);
    }

    pub(crate) fn not_permitted(&self) {
        self.skipped.add(1);
        self.not_permitted.increment(1);
    }

    pub(crate) fn fallback(&self) {
        self.fallbacks.add(1);
        self.fallback.increment(1);
    }

    pub(crate) fn cache_hit(&self) {
        self.cache_hit.add(1);
        self.cache_hits.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counts_every_add_from_owners_sharers_and_later_owners() {
        let counter = Striped::default();
        // More threads alive at once than owned stripes: some share.
        std::thread::scope(|s| {
            for _ in 0..(OWNED + SHARED + 3) {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        counter.add(1);
                    }
                });
            }
        });
        assert_eq!(counter.get(), (OWNED + SHARED + 3) as u64 * 1_000);
        // Threads that start after others ended take their stripes over.
        for _ in 0..(2 * OWNED) {
            std::thread::scope(|s| {
                s.spawn(|| counter.add(2));
            });
        }
        assert_eq!(
            counter.get(),
            (OWNED + SHARED + 3) as u64 * 1_000 + 4 * OWNED as u64
        );
    }
}
