//! The error a fallback layer adds.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use palisade_core::BoxError;

use crate::settings::FallbackClass;

/// The call failed, and so did its fallback.
///
/// [`source`](Error::source) is the fallback's own error; the call's failure
/// is described by [`class`](Self::class) and [`primary`](Self::primary).
/// A rejection or an expired deadline in the fallback's error is found
/// through the chain as usual.
#[derive(Debug)]
pub struct FallbackFailed {
    name: Arc<str>,
    class: FallbackClass,
    primary: String,
    source: BoxError,
}

impl FallbackFailed {
    /// The fallback of layer `name`, answering a failure of `class`
    /// (described by `primary`), failed with `source`.
    pub fn new(
        name: impl Into<Arc<str>>,
        class: FallbackClass,
        primary: impl Into<String>,
        source: BoxError,
    ) -> Self {
        Self {
            name: name.into(),
            class,
            primary: primary.into(),
            source,
        }
    }

    /// The fallback layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The class of the call's failure.
    #[must_use]
    pub const fn class(&self) -> FallbackClass {
        self.class
    }

    /// The call's failure, as text (its error's message, or the failed
    /// response's description).
    #[must_use]
    pub fn primary(&self) -> &str {
        &self.primary
    }
}

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fallback `{}` failed answering {} ({}): {}",
            self.name, self.class, self.primary, self.source
        )
    }
}

impl Error for FallbackFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{CircuitOpen, is_caused_by};

    #[test]
    fn display_and_chain() {
        let e = FallbackFailed::new(
            "recs",
            FallbackClass::Error,
            "connection reset",
            CircuitOpen::new("cache", None).into(),
        );
        assert_eq!(
            e.to_string(),
            "fallback `recs` failed answering error (connection reset): circuit breaker `cache` is open"
        );
        assert_eq!(e.name(), "recs");
        assert_eq!(e.primary(), "connection reset");
        let boxed: BoxError = e.into();
        assert!(is_caused_by::<CircuitOpen>(&*boxed));
    }
}
