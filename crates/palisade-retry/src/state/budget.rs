//! The retry budget: retries may add at most a fraction of the request rate,
//! plus a small floor per second.
//!
//! A [`RetryBudget`] is shared by everything that retries against the same
//! downstream: every service a [`RetryLayer`](crate::RetryLayer) builds and
//! every clone of them (the layer owns it in an `Arc`), and any other layer
//! you hand the same `Arc` to. Each original request
//! [deposits](RetryBudget::deposit); each retry must
//! [withdraw](RetryBudget::withdraw). A withdrawal is granted when
//!
//! - the retries granted by ratio over the last `ttl` seconds stay within
//!   `retry_ratio ×` the requests deposited over the same seconds, or else
//! - fewer than `min_retries_per_sec` retries were granted by the floor in the
//!   current second.
//!
//! Both hold exactly, whatever `retry_ratio` is: 0.6 means 60 %, 0.01 means
//! 1 %, 2.0 means two retries per request. Against a steady request rate they
//! give, over a run that spans `T` seconds of the budget's clock (its seconds
//! count from when it was built), retries ≤ `retry_ratio ×` requests +
//! `min_retries_per_sec × T`. A run lasting `T` seconds that does not start
//! on one of those whole seconds touches `T + 1` of them, and its floor adds
//! up to `min_retries_per_sec × (T + 1)`. The defaults are Finagle's and
//! Linkerd's: 20 %, 10 per second, a 10 s window.
//!
//! # Cost
//!
//! A deposit is on every request's path, so it takes no lock, performs no
//! read-modify-write and reads no clock: each thread bumps its own
//! cache-line-sized stripe of a cumulative counter with a plain load and
//! store. Threads that happen to share a stripe may lose concurrent
//! increments; that only ever under-counts requests, which makes the budget
//! stricter, never looser. One deposit in 1024 per stripe reads the clock to
//! keep the per-second window current.
//!
//! A withdrawal (only on the retry path) reads the clock, moves the window to
//! the current second if needed (one thread at a time, through a try-flag
//! nobody waits on), sums the stripes and takes a slot with a
//! compare-and-swap. Deposits are dated by these observations: a deposit not
//! yet seen when the window moves to a new second counts as made in the
//! earlier second, so it may leave the window a little early but is never
//! counted where it was not made. The budget can only under-count requests,
//! so the rules above always hold; observations come with every withdrawal
//! and every 1024 deposits per stripe, so a busy service is counted exactly.
//!
//! ```
//! use palisade_retry::RetryBudget;
//! use std::time::Duration;
//!
//! let budget = RetryBudget::builder()
//!     .retry_ratio(0.5)
//!     .min_retries_per_sec(0)
//!     .ttl(Duration::from_secs(10))
//!     .build()
//!     .unwrap();
//! for _ in 0..4 {
//!     budget.deposit();
//! }
//! // Four requests at 50 % allow two retries.
//! assert!(budget.withdraw());
//! assert!(budget.withdraw());
//! assert!(!budget.withdraw());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::ConfigError;
use palisade_core::stripe::thread_index;
use tokio::time::Instant;

/// Deposits per stripe between two clock reads on the deposit path (a power
/// of two).
const OBSERVE_EVERY: u64 = 1024;
const NANOS_PER_SEC: u64 = 1_000_000_000;
const PPM: u128 = 1_000_000;

/// A shared, lock-free retry budget. See the [module docs](self).
///
/// `Send + Sync`; share it with `Arc` (the layer does).
pub struct RetryBudget {
    ratio_ppm: u64,
    ratio: f64,
    min_per_sec: u64,
    origin: Instant,
    /// Cumulative deposits, one stripe per group of threads.
    stripes: Box<[Stripe]>,
    mask: usize,
    /// One slot per second of the window, indexed by `second % len`.
    ring: Box<[Slot]>,
    /// The second (since `origin`) the ring was last rolled to.
    epoch: AtomicU64,
    /// Held by the one thread moving the window; others never wait on it.
    rolling: AtomicBool,
}

#[repr(align(64))]
struct Stripe(AtomicU64);

#[repr(align(64))]
struct Slot {
    /// Cumulative deposits at the start of this slot's second.
    start: AtomicU64,
    /// Retries granted by ratio in this second.
    retries: AtomicU64,
    /// Retries granted by the floor in this second.
    floor: AtomicU64,
}

/// Which rule granted a withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    Ratio,
    Floor,
}

/// What a budget holds at one instant, for dashboards and tests
/// (`Serialize` with the `serde` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// Requests deposited over the window.
    pub requests: u64,
    /// Retries granted by ratio over the window.
    pub retries: u64,
    /// Retries the ratio allows over the window (`retry_ratio × requests`).
    pub allowed: u64,
    /// Retries granted by the floor in the current second.
    pub floor_used: u64,
}

impl RetryBudget {
    /// A builder with Finagle's defaults: `retry_ratio` 0.2,
    /// `min_retries_per_sec` 10, `ttl` 10 s.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::default()
    }

    /// A budget allowing `retry_ratio` retries per request over `ttl`, plus
    /// `min_retries_per_sec`. Same checks as the [builder](Self::builder).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `retry_ratio` is not finite or outside
    /// `[0, 1000]`, or `ttl` is not a whole number of seconds in `1..=60`.
    pub fn new(
        retry_ratio: f64,
        min_retries_per_sec: u32,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        Self::builder()
            .retry_ratio(retry_ratio)
            .min_retries_per_sec(min_retries_per_sec)
            .ttl(ttl)
            .build()
    }

    /// Records one original request (not a retry): it earns
    /// `retry_ratio` of a retry for the next `ttl`.
    ///
    /// Lock-free and without a read-modify-write; see the [module docs](self).
    #[inline]
    pub fn deposit(&self) {
        self.deposit_at(thread_index());
    }

    /// [`deposit`](Self::deposit) for the thread whose
    /// [`thread_index`](palisade_core::stripe::thread_index) is `thread`.
    #[inline]
    pub(crate) fn deposit_at(&self, thread: usize) {
        let stripe = &self.stripes[thread & self.mask].0;
        let before = stripe.load(Ordering::Relaxed);
        stripe.store(before.wrapping_add(1), Ordering::Relaxed);
        if before & (OBSERVE_EVERY - 1) == OBSERVE_EVERY - 1 {
            self.observe_now();
        }
    }

    /// Asks for one retry now; `true` if granted (and counted).
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }

    /// Asks for one retry at `now`; `true` if granted (and counted). For
    /// simulations that drive time themselves.
    pub fn withdraw_at(&self, now: Instant) -> bool {
        self.try_withdraw_at(now).is_some()
    }

    pub(crate) fn try_withdraw_at(&self, now: Instant) -> Option<Grant> {
        self.observe(self.nanos_since_origin(now));
        let epoch = self.epoch.load(Ordering::Acquire);
        let allowed = self.allowed(epoch);
        let current = &self.ring[self.index(epoch)];

        // By ratio: the window's ratio-granted retries stay within the
        // allowance. A CAS on the current second, checked against a fresh sum
        // of the others, so concurrent withdrawals cannot overshoot it.
        let others = self.retries_except(epoch);
        let mut taken = current.retries.load(Ordering::Acquire);
        while others.saturating_add(taken) < allowed {
            match current.retries.compare_exchange_weak(
                taken,
                taken + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Grant::Ratio),
                Err(now_taken) => taken = now_taken,
            }
        }

        // By the floor: at most `min_per_sec` in this second.
        let mut used = current.floor.load(Ordering::Acquire);
        while used < self.min_per_sec {
            match current.floor.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Grant::Floor),
                Err(now_used) => used = now_used,
            }
        }
        None
    }

    /// What the budget holds now.
    #[must_use]
    pub fn snapshot(&self) -> BudgetSnapshot {
        self.snapshot_at(Instant::now())
    }

    /// What the budget holds at `now` (rolling the window forward first).
    #[must_use]
    pub fn snapshot_at(&self, now: Instant) -> BudgetSnapshot {
        self.observe(self.nanos_since_origin(now));
        let epoch = self.epoch.load(Ordering::Acquire);
        let current = &self.ring[self.index(epoch)];
        BudgetSnapshot {
            requests: self.requests_in_window(epoch),
            retries: self
                .retries_except(epoch)
                .saturating_add(current.retries.load(Ordering::Acquire)),
            allowed: self.allowed(epoch),
            floor_used: current.floor.load(Ordering::Acquire),
        }
    }

    /// The fraction of requests that may be retried.
    #[must_use]
    pub const fn retry_ratio(&self) -> f64 {
        self.ratio
    }

    /// The retries per second allowed whatever the request rate.
    #[must_use]
    pub const fn min_retries_per_sec(&self) -> u64 {
        self.min_per_sec
    }

    /// How long a deposit counts.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ring.len() as u64)
    }

    // ===== window =====

    fn nanos_since_origin(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn index(&self, second: u64) -> usize {
        // The ring has at most 60 slots, so the remainder fits a usize.
        usize::try_from(second % self.ring.len() as u64).unwrap_or(0)
    }

    /// The cumulative number of deposits.
    fn total(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Deposits since the start of the oldest second in the window ending
    /// with `epoch`.
    fn requests_in_window(&self, epoch: u64) -> u64 {
        // The oldest second is `epoch - len + 1`, congruent to `epoch + 1`.
        // Before the ring has wrapped, its slot still holds 0: the count
        // since the budget was created.
        let oldest = &self.ring[self.index(epoch + 1)];
        self.total()
            .saturating_sub(oldest.start.load(Ordering::Acquire))
    }

    fn allowed(&self, epoch: u64) -> u64 {
        let requests = u128::from(self.requests_in_window(epoch));
        u64::try_from(requests * u128::from(self.ratio_ppm) / PPM).unwrap_or(u64::MAX)
    }

    fn retries_except(&self, epoch: u64) -> u64 {
        let skip = self.index(epoch);
        self.ring
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, s)| s.retries.load(Ordering::Acquire))
            .fold(0, u64::saturating_add)
    }

    #[cold]
    #[inline(never)]
    fn observe_now(&self) {
        self.observe(self.nanos_since_origin(Instant::now()));
    }

    /// Moves the window forward to the second containing `now_nanos`: every
    /// second since the last move starts with the cumulative deposit count
    /// seen now (deposits not seen before count as made earlier), with no
    /// retries. One thread moves the window at a time; the others skip it and
    /// use the window as it is.
    fn observe(&self, now_nanos: u64) {
        let second = now_nanos / NANOS_PER_SEC;
        if second <= self.epoch.load(Ordering::Acquire) {
            return;
        }
        if self
            .rolling
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        if second > epoch {
            let count = self.total();
            let len = self.ring.len() as u64;
            let first = (epoch + 1).max(second.saturating_sub(len - 1));
            for s in first..=second {
                let slot = &self.ring[self.index(s)];
                slot.start.store(count, Ordering::Release);
                slot.retries.store(0, Ordering::Release);
                slot.floor.store(0, Ordering::Release);
            }
            self.epoch.store(second, Ordering::Release);
        }
        self.rolling.store(false, Ordering::Release);
    }
}

impl Default for RetryBudget {
    /// 20 % of requests, at least 10 retries per second, over 10 s.
    fn default() -> Self {
        RetryBudgetBuilder::default().build_unchecked()
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("retry_ratio", &self.ratio)
            .field("min_retries_per_sec", &self.min_per_sec)
            .field("ttl", &self.ttl())
            .field("stripes", &self.stripes.len())
            .finish_non_exhaustive()
    }
}

// ===== builder =====

/// Builds a [`RetryBudget`]; see [`RetryBudget::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RetryBudgetBuilder {
    retry_ratio: f64,
    min_retries_per_sec: u32,
    ttl: Duration,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        Self {
            retry_ratio: 0.2,
            min_retries_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl RetryBudgetBuilder {
    /// Retries allowed per original request over the window (default 0.2):
    /// any finite value in `[0, 1000]`. 0 leaves only the floor.
    pub const fn retry_ratio(mut self, ratio: f64) -> Self {
        self.retry_ratio = ratio;
        self
    }

    /// Retries allowed in every second whatever the request rate (default
    /// 10), so that a quiet client can still retry.
    pub const fn min_retries_per_sec(mut self, per_sec: u32) -> Self {
        self.min_retries_per_sec = per_sec;
        self
    }

    /// How long a deposit counts (default 10 s): whole seconds, 1 to 60.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Validates the settings and builds the budget.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `retry_ratio` or `ttl`.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        self.validate()?;
        Ok(self.build_unchecked())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_ratio("retry_ratio", self.retry_ratio)?;
        validate_ttl("ttl", self.ttl)
    }

    fn build_unchecked(self) -> RetryBudget {
        let stripes = std::thread::available_parallelism()
            .map_or(4, std::num::NonZeroUsize::get)
            .saturating_mul(2)
            .next_power_of_two()
            .clamp(1, 64);
        let len = usize::try_from(self.ttl.as_secs().clamp(1, 60)).unwrap_or(10);
        // Validated to be finite and within [0, 1000]: fits a u64 once scaled.
        let ratio_ppm = (self.retry_ratio * 1e6).round() as u64;
        RetryBudget {
            ratio_ppm,
            ratio: self.retry_ratio,
            min_per_sec: u64::from(self.min_retries_per_sec),
            origin: Instant::now(),
            stripes: (0..stripes).map(|_| Stripe(AtomicU64::new(0))).collect(),
            mask: stripes - 1,
            ring: (0..len)
                .map(|_| Slot {
                    start: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                    floor: AtomicU64::new(0),
                })
                .collect(),
            epoch: AtomicU64::new(0),
            rolling: AtomicBool::new(false),
        }
    }
}

/// `Ok` for a ratio the budget accepts; `field` names the setting.
pub(crate) fn validate_ratio(field: &'static str, ratio: f64) -> Result<(), ConfigError> {
    if ratio.is_finite() && (0.0..=1000.0).contains(&ratio) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a finite number in [0, 1000], got {ratio}"),
        ))
    }
}

/// `Ok` for a window the budget accepts; `field` names the setting.
pub(crate) fn validate_ttl(field: &'static str, ttl: Duration) -> Result<(), ConfigError> {
    if ttl.subsec_nanos() == 0 && (1..=60).contains(&ttl.as_secs()) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a whole number of seconds from 1 to 60, got {ttl:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, floor: u32, ttl: u64) -> RetryBudget {
        RetryBudget::new(ratio, floor, Duration::from_secs(ttl)).unwrap()
    }

    #[test]
    fn ratio_allows_a_fraction_of_deposits() {
        for (ratio, deposits, expected) in [
            (0.2, 100, 20),
            (0.6, 10, 6),
            (0.01, 1000, 10),
            (1.0, 7, 7),
            (2.5, 4, 10),
            (0.0, 100, 0),
        ] {
            let b = budget(ratio, 0, 10);
            let now = b.origin;
            for _ in 0..deposits {
                b.deposit();
            }
            let granted = (0..10_000).take_while(|_| b.withdraw_at(now)).count();
            assert_eq!(granted, expected, "ratio {ratio} with {deposits} deposits");
        }
    }

    #[test]
    fn floor_refills_every_second_and_does_not_burst() {
        let b = budget(0.0, 3, 10);
        let t0 = b.origin;
        let granted = (0..100).take_while(|_| b.withdraw_at(t0)).count();
        assert_eq!(granted, 3);
        assert!(!b.withdraw_at(t0 + Duration::from_millis(999)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).take_while(|_| b.withdraw_at(t1)).count(), 3);
        // A long quiet spell does not bank floor retries.
        let t9 = t0 + Duration::from_secs(9);
        assert_eq!((0..100).take_while(|_| b.withdraw_at(t9)).count(), 3);
    }

    #[test]
    fn deposits_expire_after_the_ttl() {
        let b = budget(1.0, 0, 2);
        let t0 = b.origin;
        for _ in 0..5 {
            b.deposit();
        }
        assert!(b.withdraw_at(t0));
        // Still counted 1.9 s later.
        assert!(b.withdraw_at(t0 + Duration::from_millis(1900)));
        // Gone once the window has moved past second 0.
        assert!(!b.withdraw_at(t0 + Duration::from_millis(2100)));
        let snap = b.snapshot_at(t0 + Duration::from_millis(2100));
        assert_eq!(snap.requests, 0);
    }

    #[test]
    fn retries_expire_with_the_window() {
        let b = budget(0.5, 0, 2);
        let t0 = b.origin;
        for _ in 0..4 {
            b.deposit();
        }
        assert_eq!((0..10).take_while(|_| b.withdraw_at(t0)).count(), 2);
        // Second 1: the deposits of second 0 still count, and so do its retries.
        let t1 = t0 + Duration::from_secs(1);
        b.observe(b.nanos_since_origin(t1));
        for _ in 0..4 {
            b.deposit();
        }
        assert_eq!((0..10).take_while(|_| b.withdraw_at(t1)).count(), 2);
        let snap = b.snapshot_at(t1);
        assert_eq!((snap.requests, snap.retries, snap.allowed), (8, 4, 4));
    }

    #[test]
    fn deposits_not_seen_before_a_new_second_count_in_the_earlier_one() {
        let b = budget(1.0, 0, 10);
        let t0 = b.origin;
        b.observe(b.nanos_since_origin(t0));
        for _ in 0..100 {
            b.deposit();
        }
        // Within 10 s of second 0 they count...
        assert_eq!(b.snapshot_at(t0 + Duration::from_secs(5)).requests, 100);
        // ...and never in a window that starts after the second they were
        // last seen in.
        let later = budget(1.0, 0, 10);
        for _ in 0..100 {
            later.deposit();
        }
        assert_eq!(
            later
                .snapshot_at(later.origin + Duration::from_secs(20))
                .requests,
            0
        );
    }

    #[test]
    fn validation_names_the_setting() {
        for ratio in [-0.1, f64::NAN, f64::INFINITY, 1000.5] {
            let err = RetryBudget::new(ratio, 10, Duration::from_secs(10)).unwrap_err();
            assert_eq!(err.field(), "retry_ratio");
        }
        for ttl in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(61),
        ] {
            let err = RetryBudget::new(0.2, 10, ttl).unwrap_err();
            assert_eq!(err.field(), "ttl");
        }
        assert!(RetryBudget::new(1000.0, 0, Duration::from_secs(60)).is_ok());
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        fn ratio() -> impl Strategy<Value = f64> {
            prop_oneof![Just(0.6), Just(0.2), Just(0.01), Just(1.0), 0.0..3.0f64]
        }

        proptest! {
            /// When the ratio grants a retry, the window's ratio grants
            /// (this one included) never exceed `ratio ×` the deposits
            /// really made in the window; the floor never grants more than
            /// `floor` in a second.
            #[test]
            fn grants_stay_within_ratio_of_deposits_plus_floor(
                ratio in ratio(),
                floor in 0u32..5,
                ttl in 1u64..6,
                events in proptest::collection::vec((0u64..1_500, 0u32..20, 0u32..20), 1..150),
            ) {
                let b = budget(ratio, floor, ttl);
                let ppm = u128::from(b.ratio_ppm);
                let mut now_ms = 0u64;
                let mut deposits: Vec<(u64, u32)> = Vec::new();
                let mut grants: Vec<(u64, Grant)> = Vec::new();
                for (step, deposit, withdraw) in events {
                    now_ms += step;
                    for _ in 0..deposit {
                        b.deposit();
                    }
                    deposits.push((now_ms / 1000, deposit));
                    let now = b.origin + Duration::from_millis(now_ms);
                    for _ in 0..withdraw {
                        let Some(grant) = b.try_withdraw_at(now) else { continue };
                        let second = now_ms / 1000;
                        grants.push((second, grant));
                        let oldest = (second + 1).saturating_sub(ttl);
                        let in_window = |s: u64| s >= oldest && s <= second;
                        let real: u128 = deposits
                            .iter()
                            .filter(|(s, _)| in_window(*s))
                            .map(|(_, n)| u128::from(*n))
                            .sum();
                        if grant == Grant::Ratio {
                            let by_ratio = grants
                                .iter()
                                .filter(|(s, g)| in_window(*s) && *g == Grant::Ratio)
                                .count() as u128;
                            prop_assert!(
                                by_ratio <= real * ppm / PPM,
                                "{by_ratio} ratio grants for {real} deposits at ratio {ratio}"
                            );
                        }
                        let by_floor = grants
                            .iter()
                            .filter(|(s, g)| *s == second && *g == Grant::Floor)
                            .count();
                        prop_assert!(by_floor <= floor as usize);
                    }
                }
            }
        }
    }
}
