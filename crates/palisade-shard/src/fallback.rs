//! How a router treats a request for a key that moved: [`Forward`]
//! (the default) or [`FallBack`] to the previous owner.

use std::fmt;

/// What a router does with a request for a key that moved, while a move is
/// under way ([`MovePolicy`](crate::MovePolicy)).
pub trait MoveFallback<Req, Res, E> {
    /// A copy of `request` to send to the key's previous owner if the new
    /// one fails it, or `None` to send it once only.
    fn copy(&self, request: &Req) -> Option<Req>;

    /// Whether the new owner's `result` sends the copy to the previous owner.
    fn falls_back(&self, result: &Result<Res, E>) -> bool;
}

/// Every request goes to its key's owner in the newest map, once
/// ([`MovePolicy::Forward`](crate::MovePolicy::Forward)). The default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Forward;

impl<Req, Res, E> MoveFallback<Req, Res, E> for Forward {
    #[inline]
    fn copy(&self, _: &Req) -> Option<Req> {
        None
    }

    #[inline]
    fn falls_back(&self, _: &Result<Res, E>) -> bool {
        false
    }
}

/// Read from the new owner, fall back to the previous one
/// ([`MovePolicy::FallBackToPrevious`](crate::MovePolicy::FallBackToPrevious)):
/// built by [`ShardRouterBuilder::fall_back_to_previous`](crate::ShardRouterBuilder::fall_back_to_previous).
#[derive(Clone, Copy)]
pub struct FallBack<C, W> {
    pub(crate) copy: C,
    pub(crate) when: W,
}

impl<C, W> fmt::Debug for FallBack<C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallBack").finish_non_exhaustive()
    }
}

impl<Req, Res, E, C, W> MoveFallback<Req, Res, E> for FallBack<C, W>
where
    C: Fn(&Req) -> Option<Req>,
    W: Fn(&Result<Res, E>) -> bool,
{
    fn copy(&self, request: &Req) -> Option<Req> {
        (self.copy)(request)
    }

    fn falls_back(&self, result: &Result<Res, E>) -> bool {
        (self.when)(result)
    }
}

/// Whether a move policy can send a request to the previous owner (sealed).
pub trait IsFallback: sealed::Sealed {
    /// `true` for [`FallBack`].
    const FALLS_BACK: bool;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Forward {}
    impl<C, W> Sealed for super::FallBack<C, W> {}
}

impl IsFallback for Forward {
    const FALLS_BACK: bool = false;
}

impl<C, W> IsFallback for FallBack<C, W> {
    const FALLS_BACK: bool = true;
}
