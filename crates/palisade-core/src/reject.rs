//! Rejections: errors that mean "a resilience layer refused this call without
//! sending it downstream".
//!
//! A rejection is an overload signal. Retrying it only adds load where the
//! system asked for less, so `palisade-retry` never retries one, and the
//! gateway answers it with `503 Service Unavailable`. The types live here,
//! not in the crate that raises them, so any layer can recognise them through
//! [`is_rejection`] without depending on every pattern crate, even when a
//! `Buffer` or another layer has wrapped them.
//!
//! # Detecting a rejection
//!
//! A layer's error is a `BoxError`, and other layers may have wrapped the
//! rejection in errors of their own, so look for it through the `source()`
//! chain, never with a string match:
//!
//! | question | call |
//! |---|---|
//! | was the call refused by any layer? | [`is_rejection`]`(&*err)` |
//! | which rejection, and its `retry_after`? | [`rejection`]`(&*err)` → [`Rejection`] |
//! | a breaker's, to read its fields? | [`cause_ref`](crate::cause_ref)`::<`[`CircuitOpen`]`>(&*err)` |
//! | a bulkhead's? | `cause_ref::<`[`BulkheadFull`]`>(&*err)` |
//! | a rate limiter's? | `cause_ref::<`[`RateLimited`]`>(&*err)` |
//!
//! `err.downcast_ref::<CircuitOpen>()` finds it only when nothing wrapped it.
//! Each rejection's alternate form (`{:#}`) says the same in the message, for
//! logs read by someone who has not seen this page:
//!
//! ```
//! use palisade_core::{BoxError, CircuitOpen, is_rejection};
//!
//! let err: BoxError = CircuitOpen::new("orders", None).into();
//! assert!(is_rejection(&*err));
//! assert_eq!(err.to_string(), "circuit breaker `orders` is open");
//! assert_eq!(
//!     format!("{err:#}"),
//!     "circuit breaker `orders` is open (a rejection: detect it with \
//!      palisade_core::is_rejection, or find palisade_core::CircuitOpen with \
//!      palisade_core::cause_ref)"
//! );
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// In the alternate form (`{:#}`), says how to detect the rejection `ty`.
fn how_to_detect(f: &mut fmt::Formatter<'_>, ty: &str) -> fmt::Result {
    if f.alternate() {
        write!(
            f,
            " (a rejection: detect it with palisade_core::is_rejection, or find \
             palisade_core::{ty} with palisade_core::cause_ref)"
        )?;
    }
    Ok(())
}

/// A circuit breaker refused the call: it is open (or forced open), or its
/// half-open probes are all taken.
///
/// Raised by `palisade-circuit-breaker`. [`retry_after`](Self::retry_after)
/// says how long until the breaker lets a probe through, when it knows.
///
/// A rejection: detect it with [`is_rejection`], or find it behind other
/// layers' wrappers with [`cause_ref`](crate::cause_ref)`::<CircuitOpen>`
/// (see [Detecting a rejection](self#detecting-a-rejection)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection by the breaker called `name`; `retry_after` is the time
    /// until the next probe is admitted, if known.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Option<Duration>) -> Self {
        Self {
            name: name.into(),
            retry_after,
        }
    }

    /// The name of the breaker that refused the call.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until the breaker admits a probe, if it knows (`None` when it
    /// is forced open or its half-open probes are all in flight).
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}` is open", self.name)?;
        if let Some(after) = self.retry_after {
            write!(f, "; next probe in {after:?}")?;
        }
        how_to_detect(f, "CircuitOpen")
    }
}

impl Error for CircuitOpen {}

/// A bulkhead refused the call: its pool was full and the call could not wait
/// (no queue room, or it waited as long as allowed).
///
/// Raised by `palisade-bulkhead`.
///
/// A rejection: detect it with [`is_rejection`], or find it behind other
/// layers' wrappers with [`cause_ref`](crate::cause_ref)`::<BulkheadFull>`
/// (see [Detecting a rejection](self#detecting-a-rejection)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadFull {
    name: Arc<str>,
    partition: Option<Arc<str>>,
    waited: Option<Duration>,
}

impl BulkheadFull {
    /// A rejection by the bulkhead called `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            partition: None,
            waited: None,
        }
    }

    /// Names the partition (the key's pool) that was full.
    #[must_use]
    pub fn with_partition(mut self, partition: impl Into<Arc<str>>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// Records how long the call waited for a permit before giving up.
    #[must_use]
    pub const fn with_waited(mut self, waited: Duration) -> Self {
        self.waited = Some(waited);
        self
    }

    /// The name of the bulkhead that refused the call.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The partition that was full, for a partitioned bulkhead.
    #[must_use]
    pub fn partition(&self) -> Option<&str> {
        self.partition.as_deref()
    }

    /// How long the call waited before it was refused (`None`: refused at once).
    #[must_use]
    pub const fn waited(&self) -> Option<Duration> {
        self.waited
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bulkhead `{}`", self.name)?;
        if let Some(partition) = &self.partition {
            write!(f, " partition `{partition}`")?;
        }
        f.write_str(" is full")?;
        if let Some(waited) = self.waited {
            write!(f, " after waiting {waited:?}")?;
        }
        how_to_detect(f, "BulkheadFull")
    }
}

impl Error for BulkheadFull {}

/// A rate limiter refused the call: the caller's key has used its allowance
/// and the call could not wait for the next slot.
///
/// Raised by `palisade-rate-limit`. [`retry_after`](Self::retry_after) says
/// when the key's next call would be admitted.
///
/// A rejection: detect it with [`is_rejection`], or find it behind other
/// layers' wrappers with [`cause_ref`](crate::cause_ref)`::<RateLimited>`
/// (see [Detecting a rejection](self#detecting-a-rejection)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    name: Arc<str>,
    class: Option<Arc<str>>,
    retry_after: Option<Duration>,
}

impl RateLimited {
    /// A rejection by the rate limiter called `name`; `retry_after` is the
    /// time until the key's next call would be admitted, if known.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Option<Duration>) -> Self {
        Self {
            name: name.into(),
            class: None,
            retry_after,
        }
    }

    /// Names the key's class (a tier such as `free` or `paid`); never the raw
    /// key, which may be a secret or unbounded in number.
    #[must_use]
    pub fn with_class(mut self, class: impl Into<Arc<str>>) -> Self {
        self.class = Some(class.into());
        self
    }

    /// The name of the rate limiter that refused the call.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The class of the key that was limited, when the limiter has tiers.
    #[must_use]
    pub fn class(&self) -> Option<&str> {
        self.class.as_deref()
    }

    /// How long until the key's next call would be admitted, if known.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limiter `{}`", self.name)?;
        if let Some(class) = &self.class {
            write!(f, " class `{class}`")?;
        }
        f.write_str(" refused the call")?;
        if let Some(after) = self.retry_after {
            write!(f, "; next slot in {after:?}")?;
        }
        how_to_detect(f, "RateLimited")
    }
}

impl Error for RateLimited {}

/// A view of the rejection found in an error chain.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Rejection<'a> {
    /// A circuit breaker refused the call.
    CircuitOpen(&'a CircuitOpen),
    /// A bulkhead refused the call.
    BulkheadFull(&'a BulkheadFull),
    /// A rate limiter refused the call.
    RateLimited(&'a RateLimited),
}

impl Rejection<'_> {
    /// The suggested wait before trying again, if the rejecting layer knows it.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CircuitOpen(open) => open.retry_after(),
            Self::BulkheadFull(_) => None,
            Self::RateLimited(limited) => limited.retry_after(),
        }
    }

    /// The name of the layer instance that refused the call.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::CircuitOpen(open) => open.name(),
            Self::BulkheadFull(full) => full.name(),
            Self::RateLimited(limited) => limited.name(),
        }
    }
}

/// Finds the rejection in `error`'s source chain, if there is one.
///
/// ```
/// use palisade_core::{rejection, BoxError, BulkheadFull, Rejection};
///
/// let err: BoxError = BulkheadFull::new("reviews").into();
/// assert!(matches!(rejection(&*err), Some(Rejection::BulkheadFull(_))));
/// ```
#[must_use]
pub fn rejection<'a>(error: &'a (dyn Error + 'static)) -> Option<Rejection<'a>> {
    // One walk of the chain, checking each link for every rejection type.
    let mut next = Some(error);
    while let Some(err) = next {
        if let Some(open) = err.downcast_ref::<CircuitOpen>() {
            return Some(Rejection::CircuitOpen(open));
        }
        if let Some(full) = err.downcast_ref::<BulkheadFull>() {
            return Some(Rejection::BulkheadFull(full));
        }
        if let Some(limited) = err.downcast_ref::<RateLimited>() {
            return Some(Rejection::RateLimited(limited));
        }
        next = err.source();
    }
    None
}

/// `true` if a resilience layer refused the call (anywhere in the chain):
/// an overload signal that must not be retried.
#[must_use]
pub fn is_rejection(error: &(dyn Error + 'static)) -> bool {
    rejection(error).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;

    #[derive(Debug)]
    struct Wrapped(BoxError);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn display_is_lowercase_and_informative() {
        let open = CircuitOpen::new("orders", Some(Duration::from_secs(3)));
        assert_eq!(
            open.to_string(),
            "circuit breaker `orders` is open; next probe in 3s"
        );
        let full = BulkheadFull::new("reviews")
            .with_partition("tenant-a")
            .with_waited(Duration::from_millis(50));
        assert_eq!(
            full.to_string(),
            "bulkhead `reviews` partition `tenant-a` is full after waiting 50ms"
        );
        assert_eq!(BulkheadFull::new("x").to_string(), "bulkhead `x` is full");
    }

    #[test]
    fn the_alternate_form_names_how_to_detect_it() {
        let hint = |ty: &str| {
            format!(
                " (a rejection: detect it with palisade_core::is_rejection, or find palisade_core::{ty} with palisade_core::cause_ref)"
            )
        };
        let open = CircuitOpen::new("orders", Some(Duration::from_secs(3)));
        assert_eq!(
            format!("{open:#}"),
            format!("{open}{}", hint("CircuitOpen"))
        );
        let full = BulkheadFull::new("reviews");
        assert_eq!(
            format!("{full:#}"),
            format!("{full}{}", hint("BulkheadFull"))
        );
        let limited = RateLimited::new("api", None);
        assert_eq!(
            format!("{limited:#}"),
            format!("{limited}{}", hint("RateLimited"))
        );
        // Through a `BoxError`, as a layer returns it.
        let err: BoxError = full.into();
        assert!(format!("{err:#}").ends_with(&hint("BulkheadFull")));
    }

    #[test]
    fn rejections_are_found_through_wrappers() {
        let err: BoxError = Box::new(Wrapped(Box::new(Wrapped(
            CircuitOpen::new("a", Some(Duration::from_secs(1))).into(),
        ))));
        let found = rejection(&*err).expect("rejection in chain");
        assert_eq!(found.name(), "a");
        assert_eq!(found.retry_after(), Some(Duration::from_secs(1)));
        assert!(is_rejection(&*err));

        let err: BoxError = Box::new(Wrapped(BulkheadFull::new("b").into()));
        assert!(matches!(rejection(&*err), Some(Rejection::BulkheadFull(f)) if f.name() == "b"));

        let err: BoxError = Box::new(Wrapped(
            RateLimited::new("api", Some(Duration::from_millis(250)))
                .with_class("free")
                .into(),
        ));
        let found = rejection(&*err).expect("rate limit in chain");
        assert_eq!(found.name(), "api");
        assert_eq!(found.retry_after(), Some(Duration::from_millis(250)));
        let Rejection::RateLimited(limited) = found else {
            panic!("expected a rate limit, found {found:?}");
        };
        assert_eq!(limited.class(), Some("free"));
        assert_eq!(
            limited.to_string(),
            "rate limiter `api` class `free` refused the call; next slot in 250ms"
        );

        let err: BoxError = "plain".into();
        assert!(!is_rejection(&*err));
    }
}
