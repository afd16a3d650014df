//! The pure state: GCRA arithmetic on one number per key, and the table of
//! keys ([`table`]). Synchronous, no I/O, no clock: times are nanoseconds
//! since the limiter's base instant, passed in.
//!
//! # GCRA
//!
//! The generic cell rate algorithm keeps one number per key: the
//! *theoretical arrival time* (TAT), the time at which the key's allowance
//! would be whole again had it made no more calls. With emission interval
//! `T` (the period divided by the rate's count) and burst `b`, the tolerance
//! is `τ = (b - 1)·T`. A call at time `now`:
//!
//! ```text
//! tat      = max(TAT, now)
//! earliest = tat - τ                   the first time this call conforms
//! earliest ≤ now           → admit now,          TAT := tat + T
//! earliest - now ≤ delay   → admit at earliest,  TAT := tat + T   (throttle: a reserved slot)
//! otherwise                → refuse; retry after earliest - now
//! ```
//!
//! It is a token bucket of `b` tokens refilled one per `T`, stored as one
//! time instead of a count and a timestamp, so one compare-and-swap updates
//! it. A key whose TAT is in the past has its whole allowance: forgetting it
//! loses nothing, which is what makes idle keys free to evict.

pub(crate) mod table;

use crate::settings::Limit;

/// The GCRA parameters of one limit, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    emission: u64,
    tolerance: u64,
    burst: u32,
}

/// What one call gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admitted; `tat` is the key's new TAT. `wait` is zero, or the time
    /// until the call's reserved slot (throttling).
    Admit { tat: u64, wait: u64 },
    /// Refused; `tat` is the key's TAT (unchanged), `retry_after` the time
    /// until a call would be admitted without waiting.
    Reject { tat: u64, retry_after: u64 },
}

/// What a key has left, for the `RateLimit` header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quota {
    /// Calls that would be admitted at once.
    pub(crate) remaining: u32,
    /// Nanoseconds until one more call is allowed (0 when the allowance is
    /// whole).
    pub(crate) reset: u64,
}

impl Gcra {
    /// The parameters of a valid `limit` (see `Limit::check`).
    pub(crate) fn new(limit: Limit) -> Self {
        let emission = limit.rate.emission_nanos().unwrap_or(u64::MAX).max(1);
        let burst = limit.burst.max(1);
        Self {
            emission,
            tolerance: emission.saturating_mul(u64::from(burst - 1)),
            burst,
        }
    }

    /// The emission interval `T`, in nanoseconds.
    pub(crate) const fn emission(&self) -> u64 {
        self.emission
    }

    /// The tolerance `τ = (b - 1)·T`, in nanoseconds.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) const fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// One call at `now` against stored TAT `tat` (0 for a key never seen),
    /// allowed to wait up to `max_delay` for its slot.
    #[inline]
    pub(crate) const fn decide(&self, tat: u64, now: u64, max_delay: u64) -> Decision {
        let tat = if tat > now { tat } else { now };
        let earliest = tat.saturating_sub(self.tolerance);
        if earliest <= now {
            return Decision::Admit {
                tat: tat.saturating_add(self.emission),
                wait: 0,
            };
        }
        let wait = earliest - now;
        if wait <= max_delay {
            Decision::Admit {
                tat: tat.saturating_add(self.emission),
                wait,
            }
        } else {
            Decision::Reject {
                tat,
                retry_after: wait,
            }
        }
    }

    /// The new TAT for a call at `now` against `tat`, or `None` if refused:
    /// the compare-and-swap step.
    #[inline]
    pub(crate) const fn step(&self, tat: u64, now: u64, max_delay: u64) -> Option<u64> {
        match self.decide(tat, now, max_delay) {
            Decision::Admit { tat, .. } => Some(tat),
            Decision::Reject { .. } => None,
        }
    }

    /// What is left at `now` of an allowance whose TAT is `tat`.
    pub(crate) const fn quota(&self, tat: u64, now: u64) -> Quota {
        let debt = tat.saturating_sub(now);
        // The allowance is b·T of "time credit": whole when the debt is 0.
        let window = self.tolerance.saturating_add(self.emission);
        if debt == 0 {
            return Quota {
                remaining: self.burst,
                reset: 0,
            };
        }
        if debt >= window {
            return Quota {
                remaining: 0,
                reset: debt - window + self.emission,
            };
        }
        let credit = window - debt;
        let whole = credit / self.emission;
        // `whole` < b, so it fits.
        let remaining = whole as u32;
        Quota {
            remaining,
            reset: (whole + 1) * self.emission - credit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Rate;
    use proptest::prelude::*;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn gcra(per_second: u32, burst: u32) -> Gcra {
        Gcra::new(Limit::new(Rate::per_second(per_second), burst))
    }

    #[test]
    fn burst_then_steady_rate_with_exact_boundaries() {
        // 10/s, burst 3: T = 100 ms, τ = 200 ms.
        let g = gcra(10, 3);
        assert_eq!(
            (g.emission(), g.tolerance(), g.burst),
            (100 * MS, 200 * MS, 3)
        );
        let now = 1_000 * MS;
        let mut tat = 0;
        for n in 0..3 {
            match g.decide(tat, now, 0) {
                Decision::Admit { tat: t, wait: 0 } => tat = t,
                other => panic!("call {n} of the burst: {other:?}"),
            }
        }
        assert_eq!(tat, now + 300 * MS);
        assert_eq!(
            g.decide(tat, now, 0),
            Decision::Reject {
                tat,
                retry_after: 100 * MS
            }
        );
        // One nanosecond early: still refused, 1 ns to go.
        assert_eq!(
            g.decide(tat, now + 100 * MS - 1, 0),
            Decision::Reject {
                tat,
                retry_after: 1
            }
        );
        // Exactly on the boundary: admitted.
        assert_eq!(
            g.decide(tat, now + 100 * MS, 0),
            Decision::Admit {
                tat: tat + 100 * MS,
                wait: 0
            }
        );
        // After a long quiet period the whole burst is back, no more.
        let later = tat + 10_000 * MS;
        assert_eq!(
            g.quota(tat, later),
            Quota {
                remaining: 3,
                reset: 0
            }
        );
        assert_eq!(
            g.decide(tat, later, 0),
            Decision::Admit {
                tat: later + 100 * MS,
                wait: 0
            }
        );
    }

    #[test]
    fn throttle_reserves_a_slot_within_the_delay() {
        let g = gcra(10, 1);
        let now = 5 * MS;
        let Decision::Admit { tat, wait: 0 } = g.decide(0, now, 250 * MS) else {
            panic!()
        };
        assert_eq!(
            g.decide(tat, now, 250 * MS),
            Decision::Admit {
                tat: tat + 100 * MS,
                wait: 100 * MS
            }
        );
        assert_eq!(
            g.decide(tat + 100 * MS, now, 250 * MS),
            Decision::Admit {
                tat: tat + 200 * MS,
                wait: 200 * MS
            }
        );
        // The next slot is 300 ms away: beyond the delay, refused at once.
        assert_eq!(
            g.decide(tat + 200 * MS, now, 250 * MS),
            Decision::Reject {
                tat: tat + 200 * MS,
                retry_after: 300 * MS
            }
        );
    }

    #[test]
    fn quota_counts_whole_calls_and_the_time_to_the_next() {
        let g = gcra(10, 5); // T 100 ms, window 500 ms
        let now = 1_000 * MS;
        assert_eq!(
            g.quota(0, now),
            Quota {
                remaining: 5,
                reset: 0
            }
        );
        assert_eq!(
            g.quota(now + 100 * MS, now),
            Quota {
                remaining: 4,
                reset: 100 * MS
            }
        );
        assert_eq!(
            g.quota(now + 130 * MS, now),
            Quota {
                remaining: 3,
                reset: 30 * MS
            }
        );
        assert_eq!(
            g.quota(now + 500 * MS, now),
            Quota {
                remaining: 0,
                reset: 100 * MS
            }
        );
        // Reserved beyond the window (throttling): nothing left, and the
        // next call is further away.
        assert_eq!(
            g.quota(now + 750 * MS, now),
            Quota {
                remaining: 0,
                reset: 350 * MS
            }
        );
    }

    #[test]
    fn extreme_values_saturate() {
        let g = Gcra::new(Limit::new(
            Rate::new(1, Duration::from_secs(365 * 86_400)),
            1 << 20,
        ));
        assert!(matches!(
            g.decide(u64::MAX - 1, 0, u64::MAX),
            Decision::Admit { tat: u64::MAX, .. }
        ));
        assert!(matches!(
            g.decide(0, u64::MAX, 0),
            Decision::Admit { tat: u64::MAX, .. }
        ));
        let _ = g.quota(u64::MAX, 0);
        let _ = g.quota(0, u64::MAX);
    }

    /// A token bucket in exact integer arithmetic: `credit` nanoseconds of
    /// allowance out of `b·T`, refilled one for one with time, a call costs
    /// `T` and may borrow up to `max_delay` (then waits that long).
    #[derive(Debug)]
    struct Bucket {
        credit: i128,
        cap: i128,
        t: i128,
        last: u64,
    }

    impl Bucket {
        fn call(&mut self, now: u64, max_delay: u64) -> Result<u64, u64> {
            self.credit = (self.credit + i128::from(now - self.last)).min(self.cap);
            self.last = now;
            let short = self.t - self.credit;
            if short <= 0 {
                self.credit -= self.t;
                Ok(0)
            } else if short <= i128::from(max_delay) {
                self.credit -= self.t;
                Ok(short as u64)
            } else {
                Err(short as u64)
            }
        }

        fn remaining(&self) -> u32 {
            if self.credit <= 0 {
                0
            } else {
                (self.credit / self.t) as u32
            }
        }
    }

    proptest! {
        #[test]
        fn matches_a_token_bucket(
            per_second in 1u32..2_000,
            burst in 1u32..20,
            max_delay_ms in prop_oneof![Just(0u64), 0u64..500],
            steps in proptest::collection::vec((0u64..400, 1usize..6), 1..60),
        ) {
            let g = gcra(per_second, burst);
            let t = i128::from(g.emission());
            let mut bucket = Bucket { credit: t * i128::from(burst), cap: t * i128::from(burst), t, last: 0 };
            let max_delay = max_delay_ms * MS;
            let mut tat = 0u64;
            let mut now = 0u64;
            for (advance_ms, calls) in steps {
                now += advance_ms * MS;
                for _ in 0..calls {
                    let expected = bucket.call(now, max_delay);
                    match g.decide(tat, now, max_delay) {
                        Decision::Admit { tat: next, wait } => {
                            prop_assert_eq!(expected, Ok(wait));
                            tat = next;
                            prop_assert_eq!(g.quota(tat, now).remaining, bucket.remaining());
                        }
                        Decision::Reject { retry_after, .. } => {
                            prop_assert_eq!(expected, Err(retry_after));
                            let quota = g.quota(tat, now);
                            prop_assert_eq!(quota.remaining, 0);
                            // `RateLimit: t` and `Retry-After` agree on a refusal.
                            prop_assert_eq!(quota.reset, retry_after);
                        }
                    }
                }
            }
        }
    }
}
