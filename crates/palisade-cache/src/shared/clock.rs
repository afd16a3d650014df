//! [`Clock`]: what a cache reads, once per request, to judge freshness and
//! age (the [`ClockSource`] of its settings).

use std::time::Duration;

use tokio::time::Instant;

use crate::settings::ClockSource;

/// The clock of one cache.
#[derive(Debug)]
pub(crate) enum Clock {
    /// tokio's clock (paused in tests).
    Tokio,
    /// The kernel's coarse monotonic clock, as an offset from `base`.
    #[cfg_attr(
        not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
        allow(dead_code, reason = "a coarse clock only where the kernel has one")
    )]
    Coarse {
        /// tokio's instant when the cache was built...
        base: Instant,
        /// ...and the coarse clock's reading then.
        coarse_base: Duration,
    },
}

impl Clock {
    pub(crate) fn new(source: ClockSource) -> Self {
        match source {
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            ClockSource::Coarse => Self::Coarse {
                coarse_base: coarse(),
                base: Instant::now(),
            },
            _ => Self::Tokio,
        }
    }

    /// Now, on this clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match self {
            Self::Tokio => Instant::now(),
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            Self::Coarse { base, coarse_base } => *base + coarse().saturating_sub(*coarse_base),
            #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
            Self::Coarse { .. } => Instant::now(),
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE`, from the vDSO: no time-stamp counter read.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[inline]
fn coarse() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    #[allow(
        clippy::cast_sign_loss,
        clippy::cast_possible_truncation,
        reason = "a monotonic clock's seconds and nanoseconds are never negative; nanoseconds < 10^9"
    )]
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_moves_forward_from_tokios_now() {
        let clock = Clock::new(ClockSource::Coarse);
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        let tokio = Clock::new(ClockSource::Tokio);
        assert!(matches!(tokio, Clock::Tokio));
    }
}
