//! The boxed error type shared by every layer, and walkers over an error's
//! `source()` chain.

use std::error::Error;

/// A type-erased error, as used by `tower`: what every Palisade layer that adds
/// a failure mode returns.
///
/// Layers that add no failure mode of their own pass the inner error through
/// unchanged; layers that may fail themselves (an open breaker, a full
/// bulkhead) bound `S::Error: Into<BoxError>` and return `BoxError`.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Returns `true` if `error`, or any error in its [`source`](Error::source)
/// chain, is an `E`.
///
/// Layers wrap errors (tower's `Buffer` wraps in `ServiceError`, a retry may
/// wrap the last attempt's error), so `error.is::<E>()` misses an `E` one level
/// down. Walk the chain instead:
///
/// ```
/// use palisade_core::{is_caused_by, BoxError, CircuitOpen};
///
/// let err: BoxError = CircuitOpen::new("orders", None).into();
/// assert!(is_caused_by::<CircuitOpen>(&*err));
/// ```
pub fn is_caused_by<E>(error: &(dyn Error + 'static)) -> bool
where
    E: Error + 'static,
{
    cause_ref::<E>(error).is_some()
}

/// Returns the first `E` found walking `error` and its
/// [`source`](Error::source) chain, outermost first.
///
/// ```
/// use palisade_core::{cause_ref, BoxError, CircuitOpen};
///
/// let err: BoxError = CircuitOpen::new("orders", None).into();
/// assert_eq!(cause_ref::<CircuitOpen>(&*err).map(CircuitOpen::name), Some("orders"));
/// ```
pub fn cause_ref<'a, E>(error: &'a (dyn Error + 'static)) -> Option<&'a E>
where
    E: Error + 'static,
{
    let mut next = Some(error);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Leaf;
    impl fmt::Display for Leaf {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("leaf")
        }
    }
    impl Error for Leaf {}

    #[derive(Debug)]
    struct Wrap(BoxError);
    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrap")
        }
    }
    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[derive(Debug)]
    struct Other;
    impl fmt::Display for Other {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("other")
        }
    }
    impl Error for Other {}

    #[test]
    fn finds_the_error_itself() {
        let err: BoxError = Box::new(Leaf);
        assert!(is_caused_by::<Leaf>(&*err));
        assert!(!is_caused_by::<Other>(&*err));
    }

    #[test]
    fn finds_a_cause_several_levels_down() {
        let err: BoxError = Box::new(Wrap(Box::new(Wrap(Box::new(Leaf)))));
        assert!(is_caused_by::<Leaf>(&*err));
        assert!(is_caused_by::<Wrap>(&*err));
        assert!(!is_caused_by::<Other>(&*err));
        assert!(cause_ref::<Leaf>(&*err).is_some());
    }

    #[test]
    fn cause_ref_returns_the_outermost_match() {
        let err: BoxError = Box::new(Wrap(Box::new(Wrap(Box::new(Other)))));
        let outer = cause_ref::<Wrap>(&*err).expect("a Wrap is in the chain");
        assert!(outer.0.is::<Wrap>(), "the outer Wrap holds the inner one");
    }
}
