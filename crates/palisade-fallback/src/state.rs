//! Which class a failed call belongs to: pure, no I/O.

use std::error::Error;

use palisade_core::{Outcome, Rejection, is_deadline_expired, rejection};

use crate::settings::FallbackClass;

/// The class of a call that ended with `error`, which the classifier called
/// `outcome`: a rejection or an expired deadline anywhere in the chain
/// whatever the classifier says, otherwise `error` if it is a failure;
/// `None` for an error the classifier does not call a failure.
pub(crate) fn class_of_error(
    error: &(dyn Error + 'static),
    outcome: Outcome,
) -> Option<FallbackClass> {
    match rejection(error) {
        Some(Rejection::CircuitOpen(_)) => return Some(FallbackClass::CircuitOpen),
        Some(Rejection::BulkheadFull(_)) => return Some(FallbackClass::BulkheadFull),
        Some(Rejection::RateLimited(_)) => return Some(FallbackClass::RateLimited),
        // A rejection added to core later: answered as an error.
        Some(_) | None => {}
    }
    if is_deadline_expired(error) {
        return Some(FallbackClass::Deadline);
    }
    outcome.is_failure().then_some(FallbackClass::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{BoxError, BulkheadFull, CircuitOpen, DeadlineExpired, RateLimited};

    #[test]
    fn classes() {
        let e = |e: BoxError, o| class_of_error(&*e, o);
        assert_eq!(
            e(CircuitOpen::new("a", None).into(), Outcome::Ignored),
            Some(FallbackClass::CircuitOpen)
        );
        assert_eq!(
            e(BulkheadFull::new("a").into(), Outcome::Failure),
            Some(FallbackClass::BulkheadFull)
        );
        assert_eq!(
            e(RateLimited::new("a", None).into(), Outcome::Success),
            Some(FallbackClass::RateLimited)
        );
        assert_eq!(
            e(DeadlineExpired::new("a").into(), Outcome::Failure),
            Some(FallbackClass::Deadline)
        );
        assert_eq!(
            e("boom".into(), Outcome::Failure),
            Some(FallbackClass::Error)
        );
        assert_eq!(e("boom".into(), Outcome::Ignored), None);
        assert_eq!(e("boom".into(), Outcome::Success), None);
    }
}
