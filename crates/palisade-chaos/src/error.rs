//! The error a chaos layer injects by default.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A fault injected by a chaos layer: what an [`Injector`](crate::Injector)
/// turns into the caller's error or response.
///
/// It is also the error itself under the default injector,
/// [`InjectError`](crate::InjectError), for services whose error type is
/// `BoxError` or implements `From<InjectedFault>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectedFault {
    name: Arc<str>,
    outage: bool,
}

impl InjectedFault {
    /// A fault injected by the chaos layer called `name`; `outage` tells an
    /// outage from a rate-based error.
    pub fn new(name: impl Into<Arc<str>>, outage: bool) -> Self {
        Self {
            name: name.into(),
            outage,
        }
    }

    /// The name of the chaos layer that injected the fault.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `true` when the fault comes from a switched-on outage rather than the
    /// error rate.
    #[must_use]
    pub const fn is_outage(&self) -> bool {
        self.outage
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.outage {
            write!(f, "outage injected by chaos layer `{}`", self.name)
        } else {
            write!(f, "error injected by chaos layer `{}`", self.name)
        }
    }
}

impl Error for InjectedFault {}
