//! What an injected failure looks like to the caller.

use std::fmt;

use crate::error::InjectedFault;

/// Turns an injected fault into the result the caller sees: an error of the
/// service's own error type, or (feature `http`) a response.
///
/// Called once per injected error or outage, never for calls that pass, so
/// it may allocate. Implemented for [`InjectError`] (the default),
/// [`ErrorWith`] (a closure building your error) and, with the `http`
/// feature, `http::InjectStatus`.
pub trait Injector<T, E> {
    /// The result of a call that fails because of `fault`.
    fn inject(&self, fault: &InjectedFault) -> Result<T, E>;
}

/// The default injector: fails with the [`InjectedFault`] itself, converted
/// into the service's error (`BoxError`, or any `E: From<InjectedFault>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectError;

impl<T, E> Injector<T, E> for InjectError
where
    E: From<InjectedFault>,
{
    fn inject(&self, fault: &InjectedFault) -> Result<T, E> {
        Err(E::from(fault.clone()))
    }
}

/// Fails with the error a closure builds from the fault: for services whose
/// error type is your own.
///
/// ```
/// use palisade_chaos::{ErrorWith, InjectedFault, Injector};
///
/// let inject = ErrorWith::new(|fault: &InjectedFault| std::io::Error::other(fault.to_string()));
/// let result: Result<(), std::io::Error> = inject.inject(&InjectedFault::new("db", false));
/// assert_eq!(result.unwrap_err().to_string(), "error injected by chaos layer `db`");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorWith<F> {
    make: F,
}

impl<F> ErrorWith<F> {
    /// An injector failing with `make(fault)`.
    pub const fn new(make: F) -> Self {
        Self { make }
    }
}

impl<F> fmt::Debug for ErrorWith<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorWith").finish_non_exhaustive()
    }
}

impl<T, E, F> Injector<T, E> for ErrorWith<F>
where
    F: Fn(&InjectedFault) -> E,
{
    fn inject(&self, fault: &InjectedFault) -> Result<T, E> {
        Err((self.make)(fault))
    }
}
