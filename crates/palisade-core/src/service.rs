//! The boilerplate every middleware service writes the same way, written once.
//!
//! A tower middleware service wraps an inner service and offers
//! `get_ref`/`get_mut`/`into_inner` to reach it, and a hand-written `Clone`:
//! hand-written because a clone must share the layer's state but never copy a
//! reservation its original made in `poll_ready` (a permit, a probe slot, a
//! pending error). [`inner_service!`](crate::inner_service) writes both from
//! one declaration.

/// Writes a middleware service's accessors (`get_ref`, `get_mut`,
/// `into_inner`) and, optionally, its `Clone`.
///
/// The service's inner service must be in a field called `inner`. The
/// `clone` section lists the fields a clone *shares* (cloned with
/// `Clone::clone`: `Arc`s, classifiers, key functions) and the fields it
/// *resets* (readiness: a reservation, a pending error, a timer), and the
/// bounds the clone needs beyond `S: Clone` (`where: [P: Clone]`). A field
/// listed nowhere is a compile error, so a new field cannot be forgotten.
///
/// ```
/// use std::sync::Arc;
///
/// pub struct Limit<S, K> {
///     inner: S,
///     shared: Arc<()>,
///     key: K,
///     reserved: Option<u32>,
/// }
///
/// palisade_core::inner_service! {
///     Limit<S, K> {
///         inner: S,
///         clone: { share: [shared, key], reset: [reserved = None], where: [K: Clone] },
///     }
/// }
///
/// let mut a = Limit { inner: 1_u8, shared: Arc::new(()), key: "k", reserved: Some(3) };
/// *a.get_mut() += 1;
/// let b = a.clone();
/// assert_eq!((*b.get_ref(), b.key, b.reserved), (2, "k", None));
/// assert!(Arc::ptr_eq(&a.shared, &b.shared));
/// assert_eq!(b.into_inner(), 2);
/// ```
///
/// Without a `clone` section only the accessors are written (for a service
/// that derives `Clone`, or is not `Clone`).
#[macro_export]
macro_rules! inner_service {
    (
        $ty:ident < $($g:ident),+ $(,)? > {
            inner: $s:ident
            $(,)?
        }
    ) => {
        $crate::inner_service!(@accessors $ty < $($g),+ > $s);
    };
    (
        $ty:ident < $($g:ident),+ $(,)? > {
            inner: $s:ident,
            clone: {
                share: [$($share:ident),* $(,)?]
                $(, reset: [$($reset:ident = $value:expr),* $(,)?])?
                $(, where: [$($bound:tt)*])?
                $(,)?
            }
            $(,)?
        }
    ) => {
        $crate::inner_service!(@accessors $ty < $($g),+ > $s);

        impl<$($g),+> ::core::clone::Clone for $ty<$($g),+>
        where
            $s: ::core::clone::Clone,
            $($($bound)*)?
        {
            /// Clones the inner service and shares the layer's state; a
            /// clone holds no reservation of its original's (it must be
            /// polled ready itself).
            #[inline]
            fn clone(&self) -> Self {
                Self {
                    inner: ::core::clone::Clone::clone(&self.inner),
                    $($share: ::core::clone::Clone::clone(&self.$share),)*
                    $($($reset: $value,)*)?
                }
            }
        }
    };
    (@accessors $ty:ident < $($g:ident),+ > $s:ident) => {
        impl<$($g),+> $ty<$($g),+> {
            /// The inner service.
            #[inline]
            pub const fn get_ref(&self) -> &$s {
                &self.inner
            }

            /// The inner service, mutably.
            #[inline]
            pub const fn get_mut(&mut self) -> &mut $s {
                &mut self.inner
            }

            /// Consumes this service, returning the inner one (a reservation
            /// it held is released).
            #[inline]
            pub fn into_inner(self) -> $s {
                self.inner
            }
        }
    };
}
