//! [`RateLimitBuilder`]: one setter per setting, then `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::DefaultHashBuilder;
use palisade_core::{ConfigError, Listeners};

use crate::backend::Backend;
use crate::backend::memory::MemoryStore;
use crate::event::RateLimitEvent;
use crate::handle::RateLimitRegistry;
use crate::key::{Key, KeyFn, Unkeyed};
use crate::layer::RateLimitLayer;
use crate::settings::{FailureMode, Limit, MissingKey, Rate, RateLimitSettings};
use crate::shared::{Parts, Shared};

/// Configures a [`RateLimitLayer`]; start with [`RateLimitLayer::builder`].
/// Nothing is checked until [`build`](Self::build), which returns a
/// [`ConfigError`] naming the first bad setting.
///
/// Each setter sets the [`RateLimitSettings`] field of the same name (see
/// its table for defaults); [`settings`](Self::settings) sets them all.
#[must_use = "a builder does nothing until `build` is called"]
pub struct RateLimitBuilder<K = Unkeyed> {
    name: Arc<str>,
    settings: RateLimitSettings,
    key: K,
    listeners: Listeners<RateLimitEvent>,
    registry: Option<RateLimitRegistry>,
    #[cfg(feature = "redis")]
    redis: Option<crate::backend::RedisBackend>,
    #[cfg(feature = "redis")]
    backend_breaker: Option<palisade_circuit_breaker::CircuitBreakerLayer>,
}

impl RateLimitLayer {
    /// A builder for the limiter called `name` (it labels metrics, logs,
    /// errors, the registry entry, the `x-palisade-rate-limit` header and,
    /// by default, its Redis keys).
    pub fn builder(name: impl Into<Arc<str>>) -> RateLimitBuilder {
        RateLimitBuilder::new(name.into())
    }
}

impl<K> fmt::Debug for RateLimitBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RateLimitBuilder {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            settings: RateLimitSettings::default(),
            key: Unkeyed,
            listeners: Listeners::new(),
            registry: None,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            backend_breaker: None,
        }
    }
}

impl<K> RateLimitBuilder<K> {
    /// Replaces every setting with `settings` (read from a config file, say).
    pub fn settings(mut self, settings: RateLimitSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The default tier's sustained rate (default 100/s).
    pub const fn rate(mut self, rate: Rate) -> Self {
        self.settings.rate = rate;
        self
    }

    /// The default tier's burst (default 100).
    pub const fn burst(mut self, burst: u32) -> Self {
        self.settings.burst = burst;
        self
    }

    /// Adds (or replaces) the tier `name` with `limit`: keys whose class is
    /// `name`, or assigned to it by [`key_tier`](Self::key_tier), are held
    /// to it.
    pub fn tier(mut self, name: impl Into<String>, limit: Limit) -> Self {
        self.settings.tiers.insert(name.into(), limit);
        self
    }

    /// Assigns the key `key` (its text; an IP address in its usual form for
    /// client-IP keys) to the tier `tier`.
    pub fn key_tier(mut self, key: impl Into<String>, tier: impl Into<String>) -> Self {
        self.settings.key_tiers.insert(key.into(), tier.into());
        self
    }

    /// Throttling: a call over the limit waits up to `max_delay` for its slot
    /// instead of being refused (default zero: refuse at once).
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.settings.max_delay = max_delay;
        self
    }

    /// The most keys held at once (default 100 000).
    pub const fn max_keys(mut self, max_keys: usize) -> Self {
        self.settings.max_keys = max_keys;
        self
    }

    /// Longer keys are refused as invalid (default 256 bytes).
    pub const fn max_key_len(mut self, max_key_len: usize) -> Self {
        self.settings.max_key_len = max_key_len;
        self
    }

    /// What to do with a request that has no key (default: share one key).
    pub const fn missing_key(mut self, missing_key: MissingKey) -> Self {
        self.settings.missing_key = missing_key;
        self
    }

    /// HTTP: whether admitted responses carry `RateLimit` and
    /// `RateLimit-Policy` too (default `true`; refusals always do).
    pub const fn headers(mut self, headers: bool) -> Self {
        self.settings.headers = headers;
        self
    }

    /// Remote backend: what to do when it fails (default: the local limiter).
    pub const fn failure_mode(mut self, failure_mode: FailureMode) -> Self {
        self.settings.failure_mode = failure_mode;
        self
    }

    /// Remote backend: the longest a decision may take (default 50 ms).
    pub const fn backend_timeout(mut self, timeout: Duration) -> Self {
        self.settings.backend_timeout = timeout;
        self
    }

    /// Remote backend: the prefix of its keys (default
    /// `palisade:rate-limit:<name>:`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.key_prefix = Some(prefix.into());
        self
    }

    /// The clock read on every call (default: tokio's, which tests can
    /// pause); [`ClockSource::Tsc`](crate::ClockSource::Tsc) is cheaper.
    pub const fn clock(mut self, clock: crate::ClockSource) -> Self {
        self.settings.clock = clock;
        self
    }

    /// Keys requests with `key` (a [`KeyExtractor`](crate::KeyExtractor):
    /// the `http` extractors, combinators, your own).
    pub fn key<K2>(self, key: K2) -> RateLimitBuilder<K2> {
        RateLimitBuilder {
            name: self.name,
            settings: self.settings,
            key,
            listeners: self.listeners,
            registry: self.registry,
            #[cfg(feature = "redis")]
            redis: self.redis,
            #[cfg(feature = "redis")]
            backend_breaker: self.backend_breaker,
        }
    }

    /// Keys requests with a closure; borrow from the request so that a key
    /// already held costs no allocation:
    ///
    /// ```
    /// use palisade_rate_limit::{Key, RateLimitLayer, Rate};
    ///
    /// struct Job { tenant: String }
    ///
    /// let layer = RateLimitLayer::builder("jobs")
    ///     .rate(Rate::per_second(5))
    ///     .key_by(|job: &Job| Some(Key::text(&job.tenant)))
    ///     .build()?;
    /// # Ok::<(), palisade_core::ConfigError>(())
    /// ```
    pub fn key_by<Req, F>(self, key: F) -> RateLimitBuilder<KeyFn<F>>
    where
        F: for<'r> Fn(&'r Req) -> Option<Key<'r>>,
    {
        self.key(KeyFn(key))
    }

    /// Calls `listener` for every [`RateLimitEvent`]. Events are only built
    /// when a listener is registered; a panicking listener is caught.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&RateLimitEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the limiter in `registry` under its name. If a limiter of
    /// that name is already registered, [`build`](Self::build) returns a
    /// layer sharing its state (its settings win; this builder's, except the
    /// key extractor, are unused).
    pub fn registry(mut self, registry: &RateLimitRegistry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Keeps the limiter's state in Redis, shared by every instance using
    /// the same name (or `key_prefix`) on that server (feature `redis`).
    /// See the crate docs, "Distributed".
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, backend: crate::backend::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// The circuit breaker in front of the Redis backend (feature `redis`).
    /// The default opens after 3 failures in a row (or half of the last 100
    /// calls), stays open 1 s (doubling while Redis stays down, up to 30 s),
    /// then lets one probe through. Its errors are the backend's: leave its
    /// classifier at the default.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn backend_breaker(
        mut self,
        breaker: palisade_circuit_breaker::CircuitBreakerLayer,
    ) -> Self {
        self.backend_breaker = Some(breaker);
        self
    }

    /// The settings this builder holds.
    pub const fn current_settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// Validates the settings and builds the layer, which owns the limiter's
    /// state.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose `field` names the first invalid setting.
    pub fn build(self) -> Result<RateLimitLayer<K>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        if let Some(registry) = &self.registry
            && let Some(existing) = registry.get(&self.name)
        {
            return Ok(RateLimitLayer::from_shared(existing.shared(), self.key));
        }
        let hasher = DefaultHashBuilder::default();
        let base = crate::shared::Clock::new(self.settings.clock);
        let backend = self.backend(hasher.clone())?;
        let shared = Arc::new(Shared::new(
            &self.settings,
            Parts {
                name: Arc::clone(&self.name),
                listeners: self.listeners,
                hasher,
                base,
                backend,
            },
        ));
        let layer = RateLimitLayer::from_shared(shared, self.key);
        if let Some(registry) = &self.registry {
            // Another builder may have registered the name meanwhile: the
            // first one wins, and this layer shares its state.
            let registered = registry.get_or_insert_with(&self.name, || layer.handle());
            return Ok(RateLimitLayer::from_shared(
                registered.shared(),
                layer.into_key(),
            ));
        }
        Ok(layer)
    }

    #[cfg(not(feature = "redis"))]
    #[allow(clippy::unnecessary_wraps, reason = "fallible with the redis feature")]
    fn backend(&self, hasher: DefaultHashBuilder) -> Result<Backend, ConfigError> {
        Ok(Backend::Memory(MemoryStore::new(
            self.settings.max_keys,
            0,
            hasher,
        )))
    }

    #[cfg(feature = "redis")]
    fn backend(&self, hasher: DefaultHashBuilder) -> Result<Backend, ConfigError> {
        use crate::backend::redis::{RedisParts, RedisStore};
        use crate::metrics::BackendMetrics;

        let Some(redis) = &self.redis else {
            return Ok(Backend::Memory(MemoryStore::new(
                self.settings.max_keys,
                0,
                hasher,
            )));
        };
        self.settings.default_limit().check_micros("rate")?;
        for limit in self.settings.tiers.values() {
            limit.check_micros("tiers")?;
        }
        let breaker = match &self.backend_breaker {
            Some(breaker) => breaker.clone(),
            None => default_breaker(&self.name, &self.listeners, self.settings.failure_mode)?,
        };
        let prefix = self
            .settings
            .key_prefix
            .clone()
            .unwrap_or_else(|| format!("palisade:rate-limit:{}:", self.name));
        Ok(Backend::Redis(Box::new(RedisStore::new(
            RedisParts {
                backend: redis.clone(),
                breaker,
                prefix,
                failure_mode: self.settings.failure_mode,
                timeout: self.settings.backend_timeout,
                max_keys: self.settings.max_keys,
                hasher,
            },
            BackendMetrics::new(&self.name, self.settings.failure_mode.as_str()),
            0,
        ))))
    }
}

#[cfg(feature = "redis")]
fn default_breaker(
    name: &Arc<str>,
    listeners: &Listeners<RateLimitEvent>,
    failure_mode: FailureMode,
) -> Result<palisade_circuit_breaker::CircuitBreakerLayer, ConfigError> {
    use palisade_circuit_breaker::{CircuitBreakerEvent, CircuitBreakerLayer, State};

    let limiter = Arc::clone(name);
    let listeners = listeners.clone();
    CircuitBreakerLayer::builder(format!("{name}.backend"))
        .consecutive_failures(3)
        .wait_in_open(Duration::from_secs(1))
        .wait_in_open_multiplier(2.0)
        .max_wait_in_open(Duration::from_secs(30))
        .permitted_calls_in_half_open(1)
        .on_event(move |event: &CircuitBreakerEvent| {
            let CircuitBreakerEvent::StateTransition(t) = event else {
                return;
            };
            match t.to {
                State::Open => {
                    tracing::warn!(
                        name = %limiter,
                        failure_mode = failure_mode.as_str(),
                        "rate limit backend is down; its failure mode decides until it is back"
                    );
                    listeners.emit_with(|| RateLimitEvent::BackendDown {
                        name: Arc::clone(&limiter),
                        failure_mode,
                    });
                }
                State::Closed if t.from == State::HalfOpen => {
                    tracing::info!(name = %limiter, "rate limit backend is back");
                    listeners.emit_with(|| RateLimitEvent::BackendUp {
                        name: Arc::clone(&limiter),
                    });
                }
                _ => {}
            }
        })
        .build()
}
