//! [`CacheBuilder`]: one setter per setting, then `build()`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, Listeners, Registry};

use crate::event::CacheEvent;
use crate::handle::CacheHandle;
use crate::layer::CacheLayer;
use crate::metrics::Telemetry;
use crate::policy::{CacheKey, Codec, KeyFn, Storage};
use crate::settings::{CacheSettings, ClockSource};
use crate::shared::{Shared, SharedTier};

/// The policy of a builder that has no key function yet; give it one with
/// [`CacheBuilder::key`]. A cache built without one caches nothing: it is
/// not a [`Policy`](crate::Policy) for any request type.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unkeyed;

impl Storage for Unkeyed {
    type Key = String;
    type Value = ();

    fn weigh(&self, _: &String, (): &()) -> usize {
        0
    }
}

/// Builds a [`CacheLayer`]; start with [`CacheLayer::builder`] (any request
/// type, with [`key`](Self::key)) or `CacheLayer::http_builder` (feature
/// `http`).
///
/// Every setter is named after its field of [`CacheSettings`] (the gateway's
/// TOML keys use the same names), where the defaults and bounds are listed.
/// Nothing is checked until [`build`](Self::build), which returns a
/// [`ConfigError`] naming the first bad setting.
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheBuilder<P> {
    name: Arc<str>,
    policy: P,
    settings: CacheSettings,
    listeners: Listeners<CacheEvent>,
    registry: Option<Registry<CacheHandle>>,
    tier: Option<TierParts>,
}

/// Builds a shared tier for the cache named by its argument.
type BuildTier = Box<dyn FnOnce(&str) -> Result<Arc<dyn SharedTier>, ConfigError> + Send>;

/// A shared tier as the builder keeps it until `build`.
pub(crate) struct TierParts {
    pub(crate) build: BuildTier,
}

impl CacheLayer<Unkeyed> {
    /// A builder for the cache called `name` (it labels metrics, logs,
    /// events and registry entries). Give it a key function with
    /// [`CacheBuilder::key`].
    pub fn builder(name: impl Into<Arc<str>>) -> CacheBuilder<Unkeyed> {
        CacheBuilder::new(name, Unkeyed)
    }

    /// A builder for an HTTP cache called `name` (feature `http`): keys
    /// from method, URI and `Vary`, freshness from `Cache-Control`.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http_builder(name: impl Into<Arc<str>>) -> CacheBuilder<crate::http::HttpPolicy> {
        CacheBuilder::new(name, crate::http::HttpPolicy::default())
    }
}

impl<P: fmt::Debug> fmt::Debug for CacheBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("settings", &self.settings)
            .field("listeners", &self.listeners.len())
            .field("shared_tier", &self.tier.is_some())
            .finish_non_exhaustive()
    }
}

impl<P> CacheBuilder<P> {
    pub(crate) fn new(name: impl Into<Arc<str>>, policy: P) -> Self {
        Self {
            name: name.into(),
            policy,
            settings: CacheSettings::default(),
            listeners: Listeners::new(),
            registry: None,
            tier: None,
        }
    }

    fn with_policy<P2>(self, policy: P2) -> CacheBuilder<P2> {
        CacheBuilder {
            name: self.name,
            policy,
            settings: self.settings,
            listeners: self.listeners,
            registry: self.registry,
            tier: self.tier,
        }
    }

    /// Replaces every setting at once (from a config file, say).
    pub fn settings(mut self, settings: CacheSettings) -> Self {
        self.settings = settings;
        self
    }

    /// How long an entry is fresh when the response says nothing (default
    /// 60 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// How long a stale entry is served at once while one background
    /// refresh runs (default 10 s; zero: off).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.settings.stale_while_revalidate = window;
        self
    }

    /// How long a stale entry is served when the backend fails, times out
    /// or is refused (default 5 min; zero: off).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.settings.stale_if_error = window;
        self
    }

    /// HTTP: store 404 answers for this long (default: never).
    pub fn negative_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.settings.negative_ttl = ttl.into();
        self
    }

    /// The memory bound of the process tier, in bytes (default 64 MiB).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.settings.max_bytes = bytes;
        self
    }

    /// The largest entry stored, in bytes (default 1 MiB).
    pub fn max_entry_bytes(mut self, bytes: u64) -> Self {
        self.settings.max_entry_bytes = bytes;
        self
    }

    /// Whether concurrent misses on one key share one backend call (default
    /// `true`).
    pub fn coalesce(mut self, enabled: bool) -> Self {
        self.settings.coalesce = enabled;
        self
    }

    /// How long a coalesced request waits before calling the backend on its
    /// own (default 10 s; `None`: as long as the call it joined takes).
    pub fn coalesce_timeout(mut self, wait: impl Into<Option<Duration>>) -> Self {
        self.settings.coalesce_timeout = wait.into();
        self
    }

    /// The longest a background refresh may run (default 30 s).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.settings.refresh_timeout = timeout;
        self
    }

    /// The clock that judges freshness (default [`ClockSource::Tokio`]);
    /// [`ClockSource::Coarse`] makes a hit cheaper, a tick coarse.
    pub fn clock(mut self, clock: ClockSource) -> Self {
        self.settings.clock = clock;
        self
    }

    /// Adds a listener for the cache's [`CacheEvent`]s. Listeners run on the
    /// request's task; a panicking one is caught.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&CacheEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the cache's handle in `registry` under its name. Building a
    /// second cache under a name the registry holds shares the first one's
    /// state (its settings win), so a framework that builds the stack
    /// twice gets one cache.
    pub fn registry(mut self, registry: &Registry<CacheHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Adds the Redis tier (feature `redis`): entries are written there and
    /// read from there on a process-tier miss, behind a circuit breaker.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, tier: crate::backend::redis::RedisTier) -> Self {
        self.tier = Some(TierParts {
            build: Box::new(move |name| tier.build(name)),
        });
        self
    }
}

impl CacheBuilder<Unkeyed> {
    /// Keys requests with `key`; a request it returns `None` for bypasses
    /// the cache. Every `Ok` response is stored for the configured TTL and
    /// answers later requests with a clone (wrap large values in an `Arc`);
    /// errors are never stored.
    pub fn key<F, Req, K, V>(self, key: F) -> CacheBuilder<KeyFn<F, K, V>>
    where
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
        K: CacheKey,
    {
        self.with_policy(KeyFn::new(key))
    }
}

impl<F, K, V, W, C> CacheBuilder<KeyFn<F, K, V, W, C>> {
    /// Weighs entries with `weigher` (bytes of the key and value; the cache
    /// adds a fixed overhead). Default: the sizes of the key and value
    /// types, which undercounts values that own heap memory.
    pub fn weigher<W2>(self, weigher: W2) -> CacheBuilder<KeyFn<F, K, V, W2, C>>
    where
        W2: Fn(&K, &V) -> usize + Send + Sync + 'static,
    {
        let Self {
            name,
            policy,
            settings,
            listeners,
            registry,
            tier,
        } = self;
        CacheBuilder {
            name,
            policy: policy.with_weigher(weigher),
            settings,
            listeners,
            registry,
            tier,
        }
    }

    /// Encodes values for the shared tier with `codec` (see
    /// [`FnCodec`](crate::FnCodec)); without one, values stay in process.
    pub fn codec<C2>(self, codec: C2) -> CacheBuilder<KeyFn<F, K, V, W, C2>>
    where
        C2: Codec<V>,
    {
        let Self {
            name,
            policy,
            settings,
            listeners,
            registry,
            tier,
        } = self;
        CacheBuilder {
            name,
            policy: policy.with_codec(codec),
            settings,
            listeners,
            registry,
            tier,
        }
    }
}

impl<P: Storage> CacheBuilder<P> {
    /// The cache's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Validates the settings and builds the layer and its shared state
    /// (or, with a [`registry`](Self::registry) holding the name, returns a
    /// layer over the registered cache).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting, or `registry` when
    /// the registered cache under this name has another policy type.
    pub fn build(self) -> Result<CacheLayer<P>, ConfigError> {
        self.settings.validate()?;
        if let Some(registry) = &self.registry
            && let Some(existing) = registry.get(&self.name)
        {
            return downcast::<P>(&existing, &self.name).map(CacheLayer::from_shared);
        }
        let tier = match self.tier {
            Some(parts) => Some((parts.build)(&self.name)?),
            None => None,
        };
        let telemetry = Telemetry::new(Arc::clone(&self.name), self.listeners);
        let shared = Arc::new(Shared::new(self.policy, self.settings, telemetry, tier));
        let layer = CacheLayer::from_shared(shared);
        if let Some(registry) = &self.registry {
            let handle = registry.get_or_insert_with(&self.name, || layer.handle());
            return downcast::<P>(&handle, &self.name).map(CacheLayer::from_shared);
        }
        Ok(layer)
    }
}

fn downcast<P: Storage>(handle: &CacheHandle, name: &str) -> Result<Arc<Shared<P>>, ConfigError> {
    let any: Arc<dyn Any + Send + Sync> = handle.as_any();
    any.downcast::<Shared<P>>().map_err(|_| {
        ConfigError::new(
            "registry",
            format!("a cache named `{name}` with another request or key type is registered"),
        )
    })
}
