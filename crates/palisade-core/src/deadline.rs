//! Deadlines that travel with a request, and the error for one that passed.
//!
//! A [`Deadline`] is the instant by which the caller stops waiting. It is set
//! once, where a request enters (by `palisade-deadline`'s layer, from a
//! configured budget or from the caller's `grpc-timeout` header), carried
//! with the request as an extension (feature `http`: [`Deadline::of`],
//! [`Deadline::set_on`]), and read by every layer below: a retry does not
//! start an attempt the deadline cannot fit, a per-try timeout is the smaller
//! of its own value and what is left, a fan-out branch gets what is left of
//! the gather. The type lives here, not in the deadline crate, so those
//! layers depend on this vocabulary only.
//!
//! ```
//! use palisade_core::Deadline;
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let deadline = Deadline::after(Duration::from_millis(300));
//! tokio::time::advance(Duration::from_millis(100)).await;
//! assert_eq!(deadline.remaining(), Duration::from_millis(200));
//! // A per-try timeout of 500 ms is cut to what is left.
//! assert_eq!(deadline.cap(Duration::from_millis(500)), Duration::from_millis(200));
//! tokio::time::advance(Duration::from_millis(200)).await;
//! assert!(deadline.is_expired());
//! # });
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The longest budget a deadline is given from now: a year. A longer one (or
/// an instant the clock cannot represent) is clamped to it, so no arithmetic
/// on a deadline can overflow.
pub const MAX_BUDGET: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The instant by which the caller stops waiting for a request.
///
/// `Copy`, 8 to 16 bytes: carried in a request's extensions (feature `http`)
/// and compared, never shared. Read it with [`remaining`](Self::remaining);
/// combine two with [`min`](Ord::min) (the earlier wins: a deadline only ever
/// shrinks on its way down a stack).
///
/// It uses [`tokio::time::Instant`], so tests run it under tokio's paused
/// clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline at `at`.
    #[must_use]
    pub const fn at(at: Instant) -> Self {
        Self { at }
    }

    /// The deadline `budget` from now (at most [`MAX_BUDGET`]).
    #[must_use]
    pub fn after(budget: Duration) -> Self {
        Self::after_from(Instant::now(), budget)
    }

    /// The deadline `budget` after `now` (at most [`MAX_BUDGET`]).
    #[must_use]
    pub fn after_from(now: Instant, budget: Duration) -> Self {
        let budget = budget.min(MAX_BUDGET);
        // `MAX_BUDGET` past any instant a running program has is representable;
        // fall back to `now` itself (expired) only on a clock that cannot.
        Self {
            at: now.checked_add(budget).unwrap_or(now),
        }
    }

    /// The instant of the deadline.
    #[must_use]
    pub const fn instant(&self) -> Instant {
        self.at
    }

    /// The time left until the deadline, zero once it passed.
    #[must_use]
    pub fn remaining(&self) -> Duration {
        self.remaining_at(Instant::now())
    }

    /// The time left from `now` until the deadline, zero once it passed.
    #[must_use]
    pub fn remaining_at(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// `true` once the deadline has passed.
    #[must_use]
    pub fn is_expired(&self) -> bool {
        self.is_expired_at(Instant::now())
    }

    /// `true` if the deadline has passed at `now`.
    #[must_use]
    pub fn is_expired_at(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// `timeout` cut to the time left: what a per-try timeout becomes under
    /// this deadline.
    #[must_use]
    pub fn cap(&self, timeout: Duration) -> Duration {
        timeout.min(self.remaining())
    }

    /// The earlier of this deadline and `other`, when there is one.
    #[must_use]
    pub fn earliest(self, other: Option<Self>) -> Self {
        other.map_or(self, |other| self.min(other))
    }
}

// ===== DeadlineExpired =====

/// The request's [`Deadline`] passed before it was answered: the caller has
/// stopped waiting.
///
/// Raised by `palisade-deadline`'s layer and by any layer that enforces the
/// deadline carried with a request (retry, fan-out). A timeout, not a
/// rejection: it says the call took too long, not that a layer refused load.
/// Over HTTP it is a `504 Gateway Timeout` (`to_problem`, feature `http`);
/// over gRPC, `DEADLINE_EXCEEDED` (feature `grpc`).
///
/// When the call below failed on its own once the deadline had passed (a
/// timer of its own, such as tonic's channel timeout, fired in the same
/// instant), that error is kept as the [`source`](Error::source).
#[derive(Clone, Debug)]
pub struct DeadlineExpired {
    name: Arc<str>,
    budget: Option<Duration>,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl PartialEq for DeadlineExpired {
    /// Equal when the layer and budget are; the source is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.budget == other.budget
    }
}

impl Eq for DeadlineExpired {}

impl DeadlineExpired {
    /// The layer called `name` found the deadline passed.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            budget: None,
            source: None,
        }
    }

    /// Records the time the request had when that layer first saw it.
    #[must_use]
    pub const fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Records the error the call below failed with after the deadline
    /// passed.
    #[must_use]
    pub fn with_source(mut self, source: crate::BoxError) -> Self {
        self.source = Some(Arc::from(source));
        self
    }

    /// The name of the layer that found the deadline passed.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time the request had when that layer first saw it, if recorded.
    #[must_use]
    pub const fn budget(&self) -> Option<Duration> {
        self.budget
    }
}

impl fmt::Display for DeadlineExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline expired in `{}`", self.name)?;
        if let Some(budget) = self.budget {
            write!(f, " (it had {budget:?} left on arrival)")?;
        }
        Ok(())
    }
}

impl Error for DeadlineExpired {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// `true` if `error`, or any error in its source chain, is a
/// [`DeadlineExpired`].
#[must_use]
pub fn is_deadline_expired(error: &(dyn Error + 'static)) -> bool {
    crate::is_caused_by::<DeadlineExpired>(error)
}

// ===== HTTP =====

#[cfg(feature = "http")]
impl Deadline {
    /// The deadline carried by `req`, if any (feature `http`).
    #[must_use]
    pub fn of<B>(req: &http::Request<B>) -> Option<Self> {
        req.extensions().get::<Self>().copied()
    }

    /// Carries this deadline with `req`, or the one it carries already if
    /// that is earlier (feature `http`): a deadline only shrinks. Returns
    /// the deadline `req` now carries.
    pub fn set_on<B>(self, req: &mut http::Request<B>) -> Self {
        let extensions = req.extensions_mut();
        match extensions.get_mut::<Self>() {
            Some(existing) => {
                if self < *existing {
                    *existing = self;
                }
                *existing
            }
            None => {
                extensions.insert(self);
                self
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn remaining_shrinks_and_saturates() {
        let d = Deadline::after(Duration::from_millis(50));
        assert_eq!(d.remaining(), Duration::from_millis(50));
        assert!(!d.is_expired());
        tokio::time::advance(Duration::from_millis(80)).await;
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(d.is_expired());
        assert_eq!(d.cap(Duration::from_secs(1)), Duration::ZERO);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn huge_budgets_are_clamped() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d.remaining(), MAX_BUDGET);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_earlier_deadline_wins() {
        let a = Deadline::after(Duration::from_millis(10));
        let b = Deadline::after(Duration::from_millis(20));
        assert_eq!(a.earliest(Some(b)), a);
        assert_eq!(b.earliest(Some(a)), a);
        assert_eq!(b.earliest(None), b);
    }

    #[test]
    fn display() {
        assert_eq!(
            DeadlineExpired::new("api").to_string(),
            "deadline expired in `api`"
        );
        let e = DeadlineExpired::new("api").with_budget(Duration::from_millis(40));
        assert_eq!(
            e.to_string(),
            "deadline expired in `api` (it had 40ms left on arrival)"
        );
        assert_eq!(e.budget(), Some(Duration::from_millis(40)));
        let boxed: crate::BoxError = e.into();
        assert!(is_deadline_expired(&*boxed));
        let wrapped = DeadlineExpired::new("api").with_source("timer fired".into());
        assert_eq!(wrapped, DeadlineExpired::new("api"));
        assert_eq!(wrapped.source().unwrap().to_string(), "timer fired");
    }

    #[cfg(feature = "http")]
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn set_on_keeps_the_earlier() {
        let mut req = http::Request::new(());
        assert_eq!(Deadline::of(&req), None);
        let late = Deadline::after(Duration::from_secs(2));
        let early = Deadline::after(Duration::from_secs(1));
        assert_eq!(late.set_on(&mut req), late);
        assert_eq!(early.set_on(&mut req), early);
        assert_eq!(late.set_on(&mut req), early);
        assert_eq!(Deadline::of(&req), Some(early));
    }
}
