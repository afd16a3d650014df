//! Where the limiter keeps its words: in process (the default) or, with the
//! `redis` feature, in Redis for a whole fleet (`RedisBackend`).

// In this crate the backends sit between `shared` and the leaves: the shared
// state owns its backend, and a backend imports only `metrics` and the
// leaves.
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{GCRA_SCRIPT, RedisBackend};

use memory::MemoryStore;

/// The backend of one limiter.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per limiter, inside its Arc: never moved on the call path"
)]
pub(crate) enum Backend {
    /// In process.
    Memory(MemoryStore),
    /// Redis, with its local cache and fallback.
    #[cfg(feature = "redis")]
    Redis(Box<redis::RedisStore>),
}

impl Backend {
    /// The in-process store: the backend itself, or the remote backend's
    /// fallback. Reservations are taken and given back here.
    pub(crate) const fn local(&self) -> &MemoryStore {
        match self {
            Self::Memory(store) => store,
            #[cfg(feature = "redis")]
            Self::Redis(store) => store.fallback(),
        }
    }

    /// `"memory"` or `"redis"`.
    pub(crate) const fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
        }
    }
}

/// A decision in flight to a remote backend; without one (no `redis`
/// feature), a type with no values.
#[cfg(feature = "redis")]
pub(crate) type RemoteCall = redis::RemoteCall;

/// A decision in flight to a remote backend; without one (no `redis`
/// feature), a type with no values.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub(crate) enum RemoteCall {}
