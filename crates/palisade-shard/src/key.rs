//! Where a request's key comes from: [`ExtractKey`], implemented by
//! [`KeyFn`] (a closure) and, with the `http` feature, by the HTTP
//! extractors.

use std::fmt;

use crate::error::KeyError;
use crate::settings::{KeyFormat, MAX_KEY_LEN};
use crate::state::ShardKey;

/// Finds a request's shard key.
///
/// An extractor is called once per request, on the request path: it should
/// not allocate. It answers a [`KeyError`] when the key is missing or
/// unusable; the router then uses its default shard, if it has one, or
/// fails the request (`400` over HTTP).
pub trait ExtractKey<Req> {
    /// The key of `request`.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] when the request has no usable key.
    fn extract(&self, request: &Req) -> Result<ShardKey, KeyError>;
}

/// What a key closure may return: an `Option` (where `None` means the key is
/// missing) or a `Result` with a [`KeyError`], of anything that converts
/// into a [`ShardKey`] (strings, bytes, integers).
pub trait IntoKeyResult {
    /// The key, or why there is none.
    ///
    /// # Errors
    ///
    /// `None` becomes [`KeyError::missing`]; an `Err` is passed on.
    fn into_key_result(self) -> Result<ShardKey, KeyError>;
}

impl<K: Into<ShardKey>> IntoKeyResult for Option<K> {
    #[inline]
    fn into_key_result(self) -> Result<ShardKey, KeyError> {
        self.map(Into::into)
            .ok_or_else(|| KeyError::missing("the key function found no key"))
    }
}

impl<K: Into<ShardKey>> IntoKeyResult for Result<K, KeyError> {
    #[inline]
    fn into_key_result(self) -> Result<ShardKey, KeyError> {
        self.map(Into::into)
    }
}

/// A closure as a key extractor
/// ([`ShardRouterBuilder::key_fn`](crate::ShardRouterBuilder::key_fn)).
///
/// ```
/// use palisade_shard::{ExtractKey, KeyFn, ShardKey};
///
/// struct GetUser { id: u64 }
/// let key = KeyFn::new(|req: &GetUser| Some(req.id));
/// assert_eq!(key.extract(&GetUser { id: 7 }).unwrap(), ShardKey::from(7u64));
/// ```
#[derive(Clone, Copy)]
pub struct KeyFn<F> {
    f: F,
}

impl<F> KeyFn<F> {
    /// Wraps `f`.
    pub const fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}

impl<F, Req, R> ExtractKey<Req> for KeyFn<F>
where
    F: Fn(&Req) -> R,
    R: IntoKeyResult,
{
    #[inline]
    fn extract(&self, request: &Req) -> Result<ShardKey, KeyError> {
        (self.f)(request).into_key_result()
    }
}

/// The key of raw key bytes found in a request (a header value, a path
/// segment), after the router's format checks: present, not empty, at most
/// [`MAX_KEY_LEN`] bytes, and digits only under [`KeyFormat::Digits`].
///
/// # Errors
///
/// A malformed [`KeyError`] naming the broken rule.
pub fn checked_key(bytes: &[u8], format: KeyFormat) -> Result<ShardKey, KeyError> {
    if bytes.is_empty() {
        return Err(KeyError::malformed("the key is empty"));
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(KeyError::malformed(format!(
            "the key is {} bytes long, more than {MAX_KEY_LEN}",
            bytes.len()
        )));
    }
    if format == KeyFormat::Digits && !bytes.iter().all(u8::is_ascii_digit) {
        return Err(KeyError::malformed("the key is not a number (digits only)"));
    }
    Ok(ShardKey::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KeyErrorKind;

    #[test]
    fn closures_return_options_or_results() {
        let opt = KeyFn::new(|n: &Option<u32>| *n);
        assert_eq!(opt.extract(&Some(3)).unwrap(), ShardKey::from(3u32));
        assert_eq!(
            opt.extract(&None).unwrap_err().kind(),
            KeyErrorKind::Missing
        );
        let res = KeyFn::new(|s: &&str| {
            s.parse::<u64>()
                .map_err(|_| KeyError::malformed("not a number"))
        });
        assert_eq!(res.extract(&"12").unwrap(), ShardKey::from("12"));
        assert_eq!(
            res.extract(&"x").unwrap_err().kind(),
            KeyErrorKind::Malformed
        );
    }

    #[test]
    fn checked_keys() {
        assert!(checked_key(b"42", KeyFormat::Digits).is_ok());
        assert!(checked_key(b"4a", KeyFormat::Any).is_ok());
        for (bytes, format) in [
            (&b""[..], KeyFormat::Any),
            (b"4a", KeyFormat::Digits),
            (&[b'1'; MAX_KEY_LEN + 1][..], KeyFormat::Any),
        ] {
            assert_eq!(
                checked_key(bytes, format).unwrap_err().kind(),
                KeyErrorKind::Malformed
            );
        }
    }
}
