//! [`Policy`]: how one request type is cached, and [`KeyFn`], the policy of
//! a key function and a TTL for any request type.
//!
//! The cache's engine (lookup, freshness, coalescing, stale serving,
//! background refresh, tiers) is the same for every request type; a policy
//! supplies what depends on the type: the key, whether and how long a
//! response is stored, and how a stored value answers a request. The HTTP
//! policy (feature `http`) is [`HttpPolicy`](crate::http::HttpPolicy).

use std::borrow::Cow;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;

use crate::event::Served;
use crate::state::{Lifetime, NotStored};

/// A cache key: hashed and compared in the process tier, rendered as text
/// for invalidation and the shared tier.
///
/// Implemented for strings and integers; implement it for your own key type
/// with one method.
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// The text that names the entry: what
    /// [`CacheHandle::invalidate`](crate::CacheHandle::invalidate) matches,
    /// and what a prefix is matched against. For HTTP, the URI: every method
    /// and variant of a URI share it.
    fn base(&self) -> Cow<'_, str>;

    /// The full text, unique per key (the shared tier's key). Defaults to
    /// [`base`](Self::base).
    fn text(&self) -> Cow<'_, str> {
        self.base()
    }
}

macro_rules! display_keys {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            fn base(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}
display_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, char
);

impl CacheKey for String {
    fn base(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl CacheKey for Arc<str> {
    fn base(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl CacheKey for Box<str> {
    fn base(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl CacheKey for &'static str {
    fn base(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

/// What the cache does with a request, as its policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<K> {
    /// Look it up (and store its response) under this key.
    Key(K),
    /// Not cacheable: straight to the backend.
    Bypass,
    /// Not cacheable, and a successful response makes the entries of this
    /// key stale (HTTP: `POST`, `PUT`, `PATCH`, `DELETE` to a cached URI).
    Invalidate(K),
}

/// Whether a stored value is the answer, or points at the entry of a
/// variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variant<K> {
    /// The stored value answers the request.
    Itself,
    /// The stored value is a marker (HTTP: the names of the `Vary`
    /// headers); the answer is stored under this key.
    At(K),
}

/// What the engine passes to [`Policy::admit`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct AdmitContext {
    /// The configured TTL and stale windows.
    pub base: Lifetime,
    /// HTTP: how long a 404 is stored, if at all.
    pub negative_ttl: Option<Duration>,
    /// The largest entry stored, in bytes.
    pub max_entry_bytes: u64,
}

/// What a policy made of a backend response.
#[derive(Debug)]
pub enum Admitted<K, V, R> {
    /// Store the value, answer with it, and share it with the requests that
    /// waited.
    Store {
        /// The value.
        value: V,
        /// How long it lives.
        lifetime: Lifetime,
        /// The age it arrived with.
        age: Duration,
        /// HTTP `Vary`: store the value under this key instead, and this
        /// marker under the key that was looked up.
        vary: Option<(K, V)>,
        /// The backend confirmed the stale entry (`304 Not Modified`): the
        /// value is the stale one, refreshed.
        revalidated: bool,
    },
    /// Answer with the value and share it with the requests that waited,
    /// but do not store it.
    Share {
        /// The value.
        value: V,
        /// Why it is not stored.
        reason: NotStored,
        /// It reports a failure of the backend: a stale entry is served
        /// instead, within `stale_if_error`.
        failure: bool,
    },
    /// Answer only the request that made the call; the others call the
    /// backend themselves (a response too large to buffer).
    Pass {
        /// The response.
        response: R,
        /// Why it is not stored.
        reason: NotStored,
        /// It reports a failure of the backend.
        failure: bool,
    },
    /// The response could not be read (its body failed): an error.
    Failed(BoxError),
}

/// What a cache stores: its key and value types, how entries are weighed
/// and how values are encoded for the shared tier.
pub trait Storage: Send + Sync + 'static {
    /// The key of an entry.
    type Key: CacheKey;
    /// What an entry holds, shared (behind an `Arc`) by every request it
    /// answers.
    type Value: Send + Sync + 'static;

    /// The weight of an entry in bytes, for the memory bound (the cache
    /// adds a fixed overhead per entry).
    fn weigh(&self, key: &Self::Key, value: &Self::Value) -> usize;

    /// Encodes a value for the shared tier; `None`: it stays in process.
    fn encode(&self, value: &Self::Value) -> Option<Vec<u8>> {
        let _ = value;
        None
    }

    /// Decodes a value read from the shared tier; `None`: unreadable (a
    /// miss).
    fn decode(&self, bytes: &[u8]) -> Option<Self::Value> {
        let _ = bytes;
        None
    }
}

/// How one request type is cached.
///
/// The cache's engine (lookup, freshness, coalescing, stale serving,
/// background refresh, tiers) is the same for every request type; a policy
/// supplies what depends on the type: the key, whether and how long a
/// response is stored, and how a stored value answers a request. The
/// provided policies are [`KeyFn`] and, with `http`,
/// [`HttpPolicy`](crate::http::HttpPolicy).
///
/// `Req` is the request type and `Res` the inner service's response type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not cache requests of type `{Req}` answered with `{Res}`",
    note = "give the builder a key function over `&{Req}` with `.key(..)`, or use `CacheLayer::http_builder` for HTTP"
)]
pub trait Policy<Req, Res>: Storage {
    /// Whether [`respond`](Self::respond) reads its `age` (HTTP's `Age`
    /// header); when `false` a hit does not compute it.
    const USES_AGE: bool = true;

    /// The cache service's response.
    type Response;
    /// What is kept of a request to answer it after the request itself has
    /// gone to the backend (HTTP: `HEAD`, `If-None-Match`).
    type Meta: Send + 'static;
    /// What is kept of a request sent to the backend to read its response
    /// (HTTP: the request headers named by a `Vary`).
    type Pending: Send + 'static;
    /// Reads a backend response (HTTP: buffers its body).
    type Admit: Future<Output = Admitted<Self::Key, Self::Value, Self::Response>> + Send + 'static;

    /// The request's key, or how it bypasses the cache. Called on every
    /// request: keep it cheap.
    fn lookup(&self, request: &Req) -> Lookup<Self::Key>;

    /// Whether the value stored under `key` answers `request` or points at
    /// a variant. Called on every hit.
    fn variant(&self, request: &Req, key: &Self::Key, stored: &Self::Value) -> Variant<Self::Key>;

    /// What to keep of `request` before it goes to the backend.
    fn meta(&self, request: &Req) -> Self::Meta;

    /// Answers a request from a stored value `age` old.
    fn respond(
        &self,
        meta: &Self::Meta,
        value: &Self::Value,
        served: Served,
        age: Duration,
    ) -> Self::Response;

    /// Readies `request` for the backend (HTTP: drops the caller's
    /// validators, adds the stale entry's `If-None-Match`) and keeps what
    /// [`admit`](Self::admit) needs.
    fn prepare(&self, request: &mut Req, stale: Option<&Self::Value>) -> Self::Pending;

    /// Reads the backend's response to a request looked up under `key`.
    fn admit(
        &self,
        response: Res,
        key: &Self::Key,
        pending: Self::Pending,
        stale: Option<&Self::Value>,
        cx: &AdmitContext,
    ) -> Self::Admit;

    /// Turns the response to a bypassed request into the cache's response;
    /// `true` if it was a success (for [`Lookup::Invalidate`]).
    fn pass(&self, response: Res) -> (Self::Response, bool);
}

/// Encodes and decodes values for the shared tier (feature `redis`) of a
/// [`KeyFn`] cache.
pub trait Codec<V>: Send + Sync + 'static {
    /// The value as bytes; `None` keeps it in process only.
    fn encode(&self, value: &V) -> Option<Vec<u8>>;
    /// The value read back; `None` when unreadable.
    fn decode(&self, bytes: &[u8]) -> Option<V>;
}

/// No codec: values stay in process.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCodec;

impl<V> Codec<V> for NoCodec {
    fn encode(&self, _: &V) -> Option<Vec<u8>> {
        None
    }
    fn decode(&self, _: &[u8]) -> Option<V> {
        None
    }
}

/// A codec from an encoding and a decoding function.
///
/// ```
/// use palisade_cache::{Codec, FnCodec};
///
/// let codec = FnCodec::new(
///     |v: &u64| Some(v.to_be_bytes().to_vec()),
///     |b: &[u8]| Some(u64::from_be_bytes(b.try_into().ok()?)),
/// );
/// assert_eq!(codec.decode(&codec.encode(&7).unwrap()), Some(7));
/// ```
#[derive(Clone, Copy)]
pub struct FnCodec<E, D> {
    encode: E,
    decode: D,
}

impl<E, D> FnCodec<E, D> {
    /// A codec calling `encode` and `decode`.
    pub const fn new(encode: E, decode: D) -> Self {
        Self { encode, decode }
    }
}

impl<E, D> fmt::Debug for FnCodec<E, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnCodec")
    }
}

impl<V, E, D> Codec<V> for FnCodec<E, D>
where
    E: Fn(&V) -> Option<Vec<u8>> + Send + Sync + 'static,
    D: Fn(&[u8]) -> Option<V> + Send + Sync + 'static,
{
    fn encode(&self, value: &V) -> Option<Vec<u8>> {
        (self.encode)(value)
    }
    fn decode(&self, bytes: &[u8]) -> Option<V> {
        (self.decode)(bytes)
    }
}

/// The fixed weight counted for each entry besides its key and value: the
/// store's own bookkeeping and the entry's timestamps, roughly.
pub const ENTRY_OVERHEAD: usize = 160;

/// The default weigher: the sizes of the key and value types plus the
/// entry overhead. Give a real one with
/// [`CacheBuilder::weigher`](crate::CacheBuilder::weigher) when values own
/// heap memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct SizeOf;

/// Weighs a [`KeyFn`] cache's entries.
pub trait Weigher<K, V>: Send + Sync + 'static {
    /// The entry's weight in bytes (the overhead is added by the cache).
    fn weigh(&self, key: &K, value: &V) -> usize;
}

impl<K, V> Weigher<K, V> for SizeOf {
    fn weigh(&self, _: &K, _: &V) -> usize {
        size_of::<K>() + size_of::<V>()
    }
}

impl<K, V, F> Weigher<K, V> for F
where
    F: Fn(&K, &V) -> usize + Send + Sync + 'static,
{
    fn weigh(&self, key: &K, value: &V) -> usize {
        self(key, value)
    }
}

/// The policy for any request type: a key function, the configured TTL and
/// stale windows, a weigher and an optional codec for the shared tier.
///
/// Every `Ok` response is stored and answers later requests with a clone,
/// so the response type is `Clone` (wrap large values in an `Arc`); errors
/// are never stored. A key function returning `None` bypasses the cache.
///
/// `V` is the response type, usually inferred from the service the layer
/// wraps.
pub struct KeyFn<F, K, V, W = SizeOf, C = NoCodec> {
    key: F,
    weigher: W,
    codec: C,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<F, K, V> KeyFn<F, K, V> {
    /// A policy keyed by `key`.
    pub const fn new(key: F) -> Self {
        Self {
            key,
            weigher: SizeOf,
            codec: NoCodec,
            _types: PhantomData,
        }
    }
}

impl<F, K, V, W, C> KeyFn<F, K, V, W, C> {
    /// The same policy weighing entries with `weigher`.
    pub fn with_weigher<W2>(self, weigher: W2) -> KeyFn<F, K, V, W2, C> {
        KeyFn {
            key: self.key,
            weigher,
            codec: self.codec,
            _types: PhantomData,
        }
    }

    /// The same policy encoding values for the shared tier with `codec`.
    pub fn with_codec<C2>(self, codec: C2) -> KeyFn<F, K, V, W, C2> {
        KeyFn {
            key: self.key,
            weigher: self.weigher,
            codec,
            _types: PhantomData,
        }
    }
}

impl<F, K, V, W: fmt::Debug, C: fmt::Debug> fmt::Debug for KeyFn<F, K, V, W, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn")
            .field("weigher", &self.weigher)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<F, K, V, W, C> Storage for KeyFn<F, K, V, W, C>
where
    F: Send + Sync + 'static,
    K: CacheKey,
    V: Send + Sync + 'static,
    W: Weigher<K, V>,
    C: Codec<V>,
{
    type Key = K;
    type Value = V;

    #[inline]
    fn weigh(&self, key: &K, value: &V) -> usize {
        self.weigher.weigh(key, value)
    }

    fn encode(&self, value: &V) -> Option<Vec<u8>> {
        self.codec.encode(value)
    }

    fn decode(&self, bytes: &[u8]) -> Option<V> {
        self.codec.decode(bytes)
    }
}

impl<Req, Res, F, K, W, C> Policy<Req, Res> for KeyFn<F, K, Res, W, C>
where
    F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    K: CacheKey,
    Res: Clone + Send + Sync + 'static,
    W: Weigher<K, Res>,
    C: Codec<Res>,
{
    const USES_AGE: bool = false;

    type Response = Res;
    type Meta = ();
    type Pending = ();
    type Admit = Ready<Admitted<K, Res, Res>>;

    #[inline]
    fn lookup(&self, request: &Req) -> Lookup<K> {
        match (self.key)(request) {
            Some(key) => Lookup::Key(key),
            None => Lookup::Bypass,
        }
    }

    #[inline]
    fn variant(&self, _: &Req, _: &K, _: &Res) -> Variant<K> {
        Variant::Itself
    }

    #[inline]
    fn meta(&self, _: &Req) {}

    #[inline]
    fn respond(&self, (): &(), value: &Res, _: Served, _: Duration) -> Res {
        value.clone()
    }

    #[inline]
    fn prepare(&self, _: &mut Req, _: Option<&Res>) {}

    fn admit(
        &self,
        response: Res,
        key: &K,
        (): (),
        _: Option<&Res>,
        cx: &AdmitContext,
    ) -> Self::Admit {
        let bytes = self.weigher.weigh(key, &response);
        ready(if bytes as u64 > cx.max_entry_bytes {
            Admitted::Share {
                value: response,
                reason: NotStored::TooLarge,
                failure: false,
            }
        } else {
            Admitted::Store {
                value: response,
                lifetime: cx.base,
                age: Duration::ZERO,
                vary: None,
                revalidated: false,
            }
        })
    }

    #[inline]
    fn pass(&self, response: Res) -> (Res, bool) {
        (response, true)
    }
}
