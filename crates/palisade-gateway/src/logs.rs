//! What the gateway logs per request, and how much: the access log (a
//! setting, off by default) and a rate limit on per-call upstream failures.
//!
//! Under an outage at thousands of requests a second, a line per request or
//! per refused call fills a disk in hours, just when an operator needs the
//! machine. The gateway's metrics and dashboard already count every call;
//! the log says what changed and gives samples:
//!
//! - **Transitions, always**: a circuit breaker opening (`WARN`, "circuit
//!   breaker opened") and changing state again (`INFO`, "circuit breaker
//!   changed state") is logged by the breaker crate; admin changes by the
//!   admin API.
//! - **Per-call upstream failures, rate-limited** ([`FailureLog`]): at most
//!   one `WARN` "upstream call failed" line per upstream and
//!   [`FailureReason`] per second. Each line carries `suppressed`: how many
//!   failures of that upstream and reason were not logged since the one
//!   before. A second that ended with failures not logged yet is reported
//!   by the once-a-second upkeep ([`AppState::upkeep`](crate::AppState::upkeep)),
//!   and whatever is left at shutdown before "gateway stopped": "upstream
//!   call failures not logged", with `suppressed`. No failure goes
//!   uncounted.
//! - **The access log, a setting** (`[log] access_log`, see
//!   [`AccessLog`]): `"off"` (the default), `"sampled"` (a fraction of
//!   requests, `access_log_sample`) or `"all"`; one structured `INFO` line
//!   per logged request, target [`ACCESS_TARGET`], with `method`, `path`,
//!   `status`, `latency_ms` and `request_id` as fields (keys of their own
//!   with `--log-format json`), like nginx's `access_log` and Envoy's access
//!   log filters.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade::retry::error::{AttemptTimedOut, DeadlineExceeded};
use palisade::{Rejection, cause_ref, rejection};
use tokio::time::Instant;
use tower::timeout::error::Elapsed;

pub use crate::config::AccessLog;

/// The target of access log lines, so `RUST_LOG` can filter them alone
/// (`info,palisade_gateway::access=off`).
pub const ACCESS_TARGET: &str = "palisade_gateway::access";

/// How often at most one failure line is written per upstream and reason.
pub const FAILURE_LOG_PERIOD_MS: u64 = 1000;

/// Why an upstream call failed, as the failure log groups it: a small fixed
/// set, so the limiter's state is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// A circuit breaker refused the call.
    CircuitOpen,
    /// A bulkhead refused the call.
    BulkheadFull,
    /// A rate limiter refused the call.
    RateLimited,
    /// A timeout: the overall or per-attempt one, the retry layer's
    /// deadline, or the request's deadline passing.
    Timeout,
    /// The upstream could not be reached (connection refused, unreachable,
    /// connect timeout).
    Unreachable,
    /// Anything else (a reset, a malformed answer, ...).
    Error,
}

impl FailureReason {
    const ALL: [Self; 6] = [
        Self::CircuitOpen,
        Self::BulkheadFull,
        Self::RateLimited,
        Self::Timeout,
        Self::Unreachable,
        Self::Error,
    ];

    /// The reason of a failed call's error (found anywhere in its chain).
    #[must_use]
    pub fn of(err: &(dyn Error + 'static)) -> Self {
        match rejection(err) {
            Some(Rejection::CircuitOpen(_)) => return Self::CircuitOpen,
            Some(Rejection::BulkheadFull(_)) => return Self::BulkheadFull,
            Some(_) => return Self::RateLimited,
            None => {}
        }
        if cause_ref::<Elapsed>(err).is_some()
            || cause_ref::<palisade::DeadlineExpired>(err).is_some()
            || cause_ref::<DeadlineExceeded>(err).is_some()
            || cause_ref::<AttemptTimedOut>(err).is_some()
        {
            Self::Timeout
        } else if cause_ref::<hyper_util::client::legacy::Error>(err)
            .is_some_and(|e| e.is_connect())
        {
            Self::Unreachable
        } else {
            Self::Error
        }
    }

    /// Its name in log lines: `circuit_open`, `bulkhead_full`,
    /// `rate_limited`, `timeout`, `unreachable`, `error`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::BulkheadFull => "bulkhead_full",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Error => "error",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// `u64::MAX`: no window yet.
const NEVER: u64 = u64::MAX;

/// One upstream and reason: when the current one-second window began, and
/// the failures not logged since the last line (or report).
struct Slot {
    window_ms: AtomicU64,
    suppressed: AtomicU64,
}

/// The per-call failure log of one upstream: at most one line per reason
/// per [`FAILURE_LOG_PERIOD_MS`], the others counted. Lock-free (two atomics
/// per reason); shared by every worker thread's stack of the upstream.
pub struct FailureLog {
    epoch: Instant,
    slots: [Slot; 6],
}

impl Default for FailureLog {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FailureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLog").finish_non_exhaustive()
    }
}

impl FailureLog {
    /// A log with nothing written yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            slots: std::array::from_fn(|_| Slot {
                window_ms: AtomicU64::new(NEVER),
                suppressed: AtomicU64::new(0),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.epoch)
                .as_millis(),
        )
        .unwrap_or(NEVER - 1)
    }

    /// A call failed for `reason`: `Some(suppressed)` if this failure gets a
    /// line (`suppressed`: failures of this reason not logged since the
    /// previous line or report), `None` if it is only counted.
    #[must_use]
    pub fn admit(&self, reason: FailureReason) -> Option<u64> {
        let slot = &self.slots[reason.index()];
        let now = self.now_ms();
        let start = slot.window_ms.load(Ordering::Acquire);
        if (start == NEVER || now >= start.saturating_add(FAILURE_LOG_PERIOD_MS))
            && slot
                .window_ms
                .compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(slot.suppressed.swap(0, Ordering::AcqRel));
        }
        slot.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }

    /// The failures not logged, by reason, taken (each is reported once):
    /// those of windows that have ended, or with `all` (at shutdown) every
    /// one. What the once-a-second upkeep logs, so the count of the last
    /// second of an outage is not left unsaid.
    pub fn take_suppressed(&self, all: bool) -> impl Iterator<Item = (FailureReason, u64)> + '_ {
        let now = self.now_ms();
        FailureReason::ALL.into_iter().filter_map(move |reason| {
            let slot = &self.slots[reason.index()];
            let start = slot.window_ms.load(Ordering::Acquire);
            let ended = start != NEVER && now >= start.saturating_add(FAILURE_LOG_PERIOD_MS);
            if !(ended || all) || slot.suppressed.load(Ordering::Acquire) == 0 {
                return None;
            }
            let n = slot.suppressed.swap(0, Ordering::AcqRel);
            (n > 0).then_some((reason, n))
        })
    }

    /// Logs what [`take_suppressed`](Self::take_suppressed) gives, for
    /// `upstream`.
    pub fn report_suppressed(&self, upstream: &str, all: bool) {
        for (reason, suppressed) in self.take_suppressed(all) {
            tracing::warn!(
                upstream,
                reason = reason.as_str(),
                suppressed,
                "upstream call failures not logged (at most one line per upstream and reason per second)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn one_line_per_reason_per_second_and_every_failure_counted() {
        let log = FailureLog::new();
        let mut lines = 0u64;
        let mut counted = 0u64;
        // 5 000 refusals over 5 s, and 50 timeouts.
        for i in 0..5_000u64 {
            tokio::time::advance(Duration::from_millis(1)).await;
            if let Some(suppressed) = log.admit(FailureReason::CircuitOpen) {
                lines += 1;
                counted += 1 + suppressed;
            }
            if i % 100 == 0
                && let Some(suppressed) = log.admit(FailureReason::Timeout)
            {
                lines += 1;
                counted += 1 + suppressed;
            }
        }
        assert!(lines <= 2 * 5 + 2, "{lines} lines");
        // The last second's count comes with the report, once.
        assert_eq!(
            log.take_suppressed(false).count(),
            0,
            "the last window has not ended"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        for (_, suppressed) in log.take_suppressed(false) {
            counted += suppressed;
        }
        assert_eq!(counted, 5_000 + 50);
        assert_eq!(log.take_suppressed(true).count(), 0, "reported once");
        // After a quiet second the next failure is logged at once, with
        // nothing suppressed; at shutdown the open window's count is taken.
        assert_eq!(log.admit(FailureReason::CircuitOpen), Some(0));
        assert_eq!(log.admit(FailureReason::CircuitOpen), None);
        assert_eq!(log.take_suppressed(false).count(), 0);
        assert_eq!(
            log.take_suppressed(true).collect::<Vec<_>>(),
            [(FailureReason::CircuitOpen, 1)]
        );
    }

    #[test]
    fn reasons_come_from_the_error_chain() {
        let open: palisade::BoxError = palisade::CircuitOpen::new("u", None).into();
        assert_eq!(FailureReason::of(&*open), FailureReason::CircuitOpen);
        let full: palisade::BoxError = palisade::BulkheadFull::new("u").into();
        assert_eq!(FailureReason::of(&*full), FailureReason::BulkheadFull);
        let elapsed: palisade::BoxError = Elapsed::new().into();
        assert_eq!(FailureReason::of(&*elapsed), FailureReason::Timeout);
        let other: palisade::BoxError = "reset".into();
        assert_eq!(FailureReason::of(&*other), FailureReason::Error);
    }
}
