//! The error a coalesced request gets when the call it waited for failed.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use palisade_core::BoxError;

/// The backend call that this request was coalesced into failed.
///
/// N concurrent misses on one key make one backend call; when it fails,
/// the request that made it gets the error itself and every other one gets
/// this error, which shares it: [`source`](Error::source) is the original
/// error, so [`palisade_core::is_caused_by`] and
/// [`palisade_core::is_rejection`] see through it.
///
/// ```
/// use palisade_cache::error::Coalesced;
/// use palisade_core::{is_rejection, BoxError, CircuitOpen};
/// use std::sync::Arc;
///
/// let shared: Arc<BoxError> = Arc::new(CircuitOpen::new("products", None).into());
/// let err: BoxError = Coalesced::new(shared).into();
/// assert!(is_rejection(&*err));
/// assert_eq!(err.to_string(), "coalesced call failed: circuit breaker `products` is open");
/// ```
#[derive(Clone, Debug)]
pub struct Coalesced {
    source: Arc<BoxError>,
}

impl Coalesced {
    /// Shares `source` with one more request.
    #[must_use]
    pub const fn new(source: Arc<BoxError>) -> Self {
        Self { source }
    }

    /// The shared error.
    #[must_use]
    pub fn shared(&self) -> &Arc<BoxError> {
        &self.source
    }
}

impl fmt::Display for Coalesced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coalesced call failed: {}", self.source)
    }
}

impl Error for Coalesced {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&**self.source)
    }
}
