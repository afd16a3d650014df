//! Keys: whose allowance a request spends.
//!
//! A [`KeyExtractor`] reads a request's [`Key`]: text borrowed from the
//! request (a header value, a path), an IP address, or text a closure built.
//! Borrowing means looking up a key the limiter already holds allocates
//! nothing. A key may name its *class* (`free`, `paid`, `anonymous`): the
//! tier whose limit applies, unless the limiter's `key_tiers` assigns the key
//! to another one.
//!
//! An extractor says one of three things about a request:
//!
//! - `Ok(Some(key))`: the key;
//! - `Ok(None)`: the request has no key (no such header, no client address):
//!   the limiter's [`MissingKey`](crate::MissingKey) setting decides;
//! - `Err(problem)`: the key is there but unusable (malformed): the request
//!   is refused with [`InvalidKey`](crate::error::InvalidKey) (HTTP 400) and
//!   not counted.
//!
//! Keys longer than the limiter's `max_key_len` are refused the same way.
//!
//! Combinators: [`or`](KeyExtractorExt::or) falls back to a second extractor
//! when the first finds no key; [`class`](KeyExtractorExt::class) names the
//! class of the keys an extractor gives. The gateway's "API key, else client
//! IP" with tiers, using the `http` feature's extractors:
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use palisade_rate_limit::KeyExtractorExt;
//! use palisade_rate_limit::http::{client_ip, header};
//!
//! let key = header("x-api-key").class("free").or(client_ip().class("anonymous"));
//! # let _ = key;
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use crate::error::KeyProblem;
use crate::state::table::{KeyRef, TAG_TEXT, TAG_V4, TAG_V6};

/// What an extractor returns: a key, no key, or an unusable one.
pub type KeyResult<'r> = Result<Option<Key<'r>>, KeyProblem>;

/// A request's key.
///
/// ```
/// use palisade_rate_limit::Key;
/// use std::net::{IpAddr, Ipv4Addr};
///
/// let by_text = Key::text("tenant-7").with_class("paid");
/// assert_eq!(by_text.class(), Some("paid"));
/// assert_eq!(by_text.to_string(), "tenant-7");
/// let by_ip = Key::ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
/// assert_eq!(by_ip.to_string(), "127.0.0.1");
/// // The text "127.0.0.1" and the address 127.0.0.1 are different keys.
/// assert_ne!(Key::text("127.0.0.1"), by_ip);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Key<'r> {
    repr: Repr<'r>,
    class: Option<&'r str>,
}

#[derive(Clone, PartialEq, Eq)]
enum Repr<'r> {
    Text(Cow<'r, [u8]>),
    V4([u8; 4]),
    V6([u8; 16]),
}

impl<'r> Key<'r> {
    /// A key of text borrowed from the request.
    #[must_use]
    pub const fn text(text: &'r str) -> Self {
        Self::bytes(text.as_bytes())
    }

    /// A key of bytes borrowed from the request (a header value's bytes).
    #[must_use]
    pub const fn bytes(bytes: &'r [u8]) -> Self {
        Self {
            repr: Repr::Text(Cow::Borrowed(bytes)),
            class: None,
        }
    }

    /// A key of text built for this request (it allocated; prefer
    /// [`text`](Self::text) when the text is in the request).
    #[must_use]
    pub fn owned(text: String) -> Key<'static> {
        Key {
            repr: Repr::Text(Cow::Owned(text.into_bytes())),
            class: None,
        }
    }

    /// A key of an IP address. An IPv4 address mapped into IPv6
    /// (`::ffff:1.2.3.4`) is the same key as the IPv4 address.
    #[must_use]
    pub fn ip(addr: IpAddr) -> Self {
        let repr = match addr.to_canonical() {
            IpAddr::V4(v4) => Repr::V4(v4.octets()),
            IpAddr::V6(v6) => Repr::V6(v6.octets()),
        };
        Self { repr, class: None }
    }

    /// This key, of class `class` (a tier's name).
    #[must_use]
    pub const fn with_class(mut self, class: &'r str) -> Self {
        self.class = Some(class);
        self
    }

    /// The class this key names, if any.
    #[must_use]
    pub const fn class(&self) -> Option<&'r str> {
        self.class
    }

    /// The key's length in bytes (an IPv4 address: 4, IPv6: 16).
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Text(bytes) => bytes.len(),
            Repr::V4(_) => 4,
            Repr::V6(_) => 16,
        }
    }

    /// `true` for an empty text key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn as_ref(&self) -> KeyRef<'_> {
        match &self.repr {
            Repr::Text(bytes) => KeyRef {
                tag: TAG_TEXT,
                bytes,
            },
            Repr::V4(octets) => KeyRef {
                tag: TAG_V4,
                bytes: octets,
            },
            Repr::V6(octets) => KeyRef {
                tag: TAG_V6,
                bytes: octets,
            },
        }
    }

    /// The key for a `key_tiers` entry: an IP address in its usual text
    /// form becomes an address key; any other text a text key.
    pub(crate) fn parse_assigned(text: &str) -> Key<'_> {
        match text.parse::<IpAddr>() {
            Ok(addr) => Key::ip(addr),
            Err(_) => Key::text(text),
        }
    }
}

/// Writes a key's text: for an address key, as an address; for text, the
/// text with anything that is not printable ASCII escaped.
pub(crate) fn write_key(key: KeyRef<'_>, out: &mut impl fmt::Write) -> fmt::Result {
    match key.tag {
        TAG_V4 => {
            let octets: [u8; 4] = key.bytes.try_into().map_err(|_| fmt::Error)?;
            write!(out, "{}", std::net::Ipv4Addr::from(octets))
        }
        TAG_V6 => {
            let octets: [u8; 16] = key.bytes.try_into().map_err(|_| fmt::Error)?;
            write!(out, "{}", std::net::Ipv6Addr::from(octets))
        }
        _ => {
            for chunk in key.bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c.is_ascii_graphic() || c == ' ' {
                        out.write_char(c)?;
                    } else {
                        write!(out, "{}", c.escape_default())?;
                    }
                }
                for b in chunk.invalid() {
                    write!(out, "\\x{b:02x}")?;
                }
            }
            Ok(())
        }
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(self.as_ref(), f)
    }
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("key", &format_args!("{self}"))
            .field("class", &self.class)
            .finish()
    }
}

impl<'r> From<&'r str> for Key<'r> {
    fn from(text: &'r str) -> Self {
        Self::text(text)
    }
}

impl From<String> for Key<'static> {
    fn from(text: String) -> Self {
        Self::owned(text)
    }
}

impl From<IpAddr> for Key<'static> {
    fn from(addr: IpAddr) -> Self {
        Key::ip(addr)
    }
}

/// Reads the key of a request.
///
/// Implemented by [`Unkeyed`] (one allowance for every call), by closures
/// given to [`RateLimitBuilder::key_by`](crate::RateLimitBuilder::key_by)
/// (as [`KeyFn`]), by the combinators [`Or`] and [`WithClass`] and, with the
/// `http` feature, by the extractors in `palisade_rate_limit::http`. Called
/// once per call: keep it cheap and borrow from the request.
pub trait KeyExtractor<Req> {
    /// The request's key; see the [module docs](self).
    ///
    /// # Errors
    ///
    /// The key's [`KeyProblem`] when the request carries one that cannot be
    /// used.
    fn extract<'r>(&'r self, req: &'r Req) -> KeyResult<'r>;

    /// `true` only for [`Unkeyed`]: every call shares one allowance and no
    /// table is kept.
    #[doc(hidden)]
    const UNKEYED: bool = false;
}

/// No key: every call spends the same allowance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unkeyed;

impl<Req> KeyExtractor<Req> for Unkeyed {
    #[inline]
    fn extract<'r>(&'r self, _: &'r Req) -> KeyResult<'r> {
        Ok(None)
    }

    const UNKEYED: bool = true;
}

/// A closure used as a key extractor; see
/// [`RateLimitBuilder::key_by`](crate::RateLimitBuilder::key_by).
#[derive(Clone, Copy)]
pub struct KeyFn<F>(pub(crate) F);

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFn")
    }
}

impl<Req, F> KeyExtractor<Req> for KeyFn<F>
where
    F: for<'r> Fn(&'r Req) -> Option<Key<'r>>,
{
    #[inline]
    fn extract<'r>(&'r self, req: &'r Req) -> KeyResult<'r> {
        Ok((self.0)(req))
    }
}

/// The first extractor's key, or the second's when the first finds none; see
/// [`KeyExtractorExt::or`]. A key the first finds unusable is refused, not
/// replaced: the client sent a malformed key and should hear about it.
#[derive(Clone, Copy, Debug)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<Req, A, B> KeyExtractor<Req> for Or<A, B>
where
    A: KeyExtractor<Req>,
    B: KeyExtractor<Req>,
{
    #[inline]
    fn extract<'r>(&'r self, req: &'r Req) -> KeyResult<'r> {
        match self.first.extract(req)? {
            Some(key) => Ok(Some(key)),
            None => self.second.extract(req),
        }
    }
}

/// Gives the keys of an extractor a class (unless they name their own); see
/// [`KeyExtractorExt::class`].
#[derive(Clone, Debug)]
pub struct WithClass<E> {
    inner: E,
    class: Cow<'static, str>,
}

impl<Req, E> KeyExtractor<Req> for WithClass<E>
where
    E: KeyExtractor<Req>,
{
    #[inline]
    fn extract<'r>(&'r self, req: &'r Req) -> KeyResult<'r> {
        Ok(self.inner.extract(req)?.map(|key| {
            if key.class.is_some() {
                key
            } else {
                key.with_class(&self.class)
            }
        }))
    }
}

/// Combinators for key extractors: implemented by every extractor of this
/// crate; implement it for your own with an empty `impl` to get them.
pub trait KeyExtractorExt: Sized {
    /// Uses `other` when this extractor finds no key.
    fn or<B>(self, other: B) -> Or<Self, B> {
        Or {
            first: self,
            second: other,
        }
    }

    /// Gives this extractor's keys the class `class`: the tier of that name
    /// limits them (unless `key_tiers` assigns a key elsewhere).
    fn class(self, class: impl Into<Cow<'static, str>>) -> WithClass<Self> {
        WithClass {
            inner: self,
            class: class.into(),
        }
    }
}

impl KeyExtractorExt for Unkeyed {}
impl<F> KeyExtractorExt for KeyFn<F> {}
impl<A, B> KeyExtractorExt for Or<A, B> {}
impl<E> KeyExtractorExt for WithClass<E> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    struct Req {
        api_key: Option<&'static str>,
        ip: Option<IpAddr>,
        bad: bool,
    }

    fn api_key(req: &Req) -> Option<Key<'_>> {
        req.api_key.map(Key::text)
    }

    struct Strict;
    impl KeyExtractorExt for Strict {}
    impl KeyExtractor<Req> for Strict {
        fn extract<'r>(&'r self, req: &'r Req) -> KeyResult<'r> {
            if req.bad {
                return Err(KeyProblem::Malformed);
            }
            Ok(req.api_key.map(Key::text))
        }
    }

    fn ip(req: &Req) -> Option<Key<'_>> {
        req.ip.map(Key::ip)
    }

    fn paid(req: &Req) -> Option<Key<'_>> {
        api_key(req).map(|k| k.with_class("paid"))
    }

    #[test]
    fn or_falls_back_only_on_a_missing_key_and_class_applies() {
        let ip = KeyFn(ip);
        let extractor = Strict.class("free").or(ip.class("anonymous"));
        let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let req = Req {
            api_key: Some("k1"),
            ip: Some(addr),
            bad: false,
        };
        let key = extractor.extract(&req).unwrap().unwrap();
        assert_eq!(
            (key.to_string(), key.class()),
            ("k1".to_owned(), Some("free"))
        );
        let req = Req {
            api_key: None,
            ip: Some(addr),
            bad: false,
        };
        let key = extractor.extract(&req).unwrap().unwrap();
        assert_eq!(
            (key.to_string(), key.class()),
            ("10.0.0.1".to_owned(), Some("anonymous"))
        );
        let req = Req {
            api_key: None,
            ip: None,
            bad: false,
        };
        assert_eq!(extractor.extract(&req), Ok(None));
        let req = Req {
            api_key: Some("k1"),
            ip: Some(addr),
            bad: true,
        };
        assert_eq!(extractor.extract(&req), Err(KeyProblem::Malformed));
        // A class the key already names wins.
        let named = KeyFn(paid).class("free");
        let req = Req {
            api_key: Some("k"),
            ip: None,
            bad: false,
        };
        assert_eq!(named.extract(&req).unwrap().unwrap().class(), Some("paid"));
    }

    #[test]
    fn keys_have_tags_and_print_safely() {
        let mapped = IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped());
        assert_eq!(
            Key::ip(mapped),
            Key::ip(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        assert_eq!(Key::ip(IpAddr::V6(Ipv6Addr::LOCALHOST)).len(), 16);
        assert_eq!(Key::bytes(b"a\x01\xff").to_string(), "a\\u{1}\\xff");
        assert_eq!(
            Key::parse_assigned("::1"),
            Key::ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(Key::parse_assigned("key-1"), Key::text("key-1"));
        assert!(Key::text("").is_empty());
        assert_eq!(Key::owned("x".repeat(3)).len(), 3);
    }

    #[test]
    fn unkeyed_is_flagged() {
        const { assert!(<Unkeyed as KeyExtractor<()>>::UNKEYED) };
        const { assert!(!<Or<Unkeyed, Unkeyed> as KeyExtractor<()>>::UNKEYED) };
        assert_eq!(Unkeyed.extract(&()), Ok(None));
    }
}
