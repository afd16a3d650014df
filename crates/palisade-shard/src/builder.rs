//! [`ShardRouterBuilder`]: one setter per setting, the shards, the key, the
//! listeners; `build()` validates, then builds the shared state once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, Listeners, Registry};

use crate::event::ShardEvent;
use crate::fallback::{FallBack, Forward, IsFallback};
use crate::handle::ShardHandle;
use crate::key::KeyFn;
use crate::service::{RouterInner, ShardRouter};
use crate::settings::{KeyFormat, MovePolicy, Scheme, ShardSettings};
use crate::shared::{Shard, Shared};

/// No key extractor yet: [`key`](ShardRouterBuilder::key) or
/// [`key_fn`](ShardRouterBuilder::key_fn) sets one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKey;

/// Builds a [`ShardRouter`]; from [`ShardRouter::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`scheme`](Self::scheme) | rendezvous |
/// | [`virtual_nodes`](Self::virtual_nodes) | 1000 (ring only) |
/// | [`ready_timeout`](Self::ready_timeout) | 1 s |
/// | [`default_shard`](Self::default_shard) | none: requests without a key are refused |
/// | [`during_move`](Self::during_move) | forward |
/// | [`key_format`](Self::key_format) | any |
/// | [`record_latency`](Self::record_latency) | `true` |
/// | [`ewma_decay`](Self::ewma_decay) | 10 s |
/// | [`shard`](Self::shard) | at least one |
/// | [`key`](Self::key) / [`key_fn`](Self::key_fn) | required |
pub struct ShardRouterBuilder<S, K = NoKey, P = Forward> {
    name: Arc<str>,
    settings: ShardSettings,
    shards: Vec<Shard<S>>,
    key: Option<K>,
    policy: P,
    listeners: Listeners<ShardEvent>,
    registry: Option<Registry<ShardHandle<S>>>,
}

impl<S> ShardRouter<S, NoKey, Forward> {
    /// Starts building a router called `name` (the `name` label of its
    /// metrics and the `name` field of its traces).
    pub fn builder(name: impl Into<Arc<str>>) -> ShardRouterBuilder<S, NoKey, Forward> {
        ShardRouterBuilder {
            name: name.into(),
            settings: ShardSettings::default(),
            shards: Vec::new(),
            key: None,
            policy: Forward,
            listeners: Listeners::new(),
            registry: None,
        }
    }
}

impl<S, K, P> ShardRouterBuilder<S, K, P> {
    /// Replaces every setting with `settings` (shards, key and listeners are
    /// kept).
    #[must_use]
    pub fn settings(mut self, settings: ShardSettings) -> Self {
        self.settings = settings;
        self
    }

    /// How keys map to shards.
    #[must_use]
    pub const fn scheme(mut self, scheme: Scheme) -> Self {
        self.settings.scheme = scheme;
        self
    }

    /// Ring only: points per shard per unit of weight.
    #[must_use]
    pub const fn virtual_nodes(mut self, virtual_nodes: u32) -> Self {
        self.settings.virtual_nodes = virtual_nodes;
        self
    }

    /// The longest a request waits for its shard's service to be ready.
    #[must_use]
    pub const fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.settings.ready_timeout = timeout;
        self
    }

    /// The shard serving requests without a usable key.
    #[must_use]
    pub fn default_shard(mut self, shard: impl Into<String>) -> Self {
        self.settings.default_shard = Some(shard.into());
        self
    }

    /// What happens to requests for keys that moved. `FallBackToPrevious`
    /// needs [`fall_back_to_previous`](Self::fall_back_to_previous), which
    /// sets it.
    #[must_use]
    pub const fn during_move(mut self, policy: MovePolicy) -> Self {
        self.settings.during_move = policy;
        self
    }

    /// What a valid key looks like (HTTP extractors).
    #[must_use]
    pub const fn key_format(mut self, format: KeyFormat) -> Self {
        self.settings.key_format = format;
        self
    }

    /// Record each call's latency per shard (default `true`; two clock
    /// reads per call on a shard with one replica, see
    /// [`ShardSettings::record_latency`]).
    #[must_use]
    pub const fn record_latency(mut self, record: bool) -> Self {
        self.settings.record_latency = record;
        self
    }

    /// How fast a replica's peak-EWMA latency forgets a slow call.
    #[must_use]
    pub const fn ewma_decay(mut self, decay: Duration) -> Self {
        self.settings.ewma_decay = decay;
        self
    }

    /// Adds a shard. For jump hash, shards are numbered in the order added.
    #[must_use]
    pub fn shard(mut self, shard: Shard<S>) -> Self {
        self.shards.push(shard);
        self
    }

    /// Adds every shard of `shards`, in order.
    #[must_use]
    pub fn shards(mut self, shards: impl IntoIterator<Item = Shard<S>>) -> Self {
        self.shards.extend(shards);
        self
    }

    /// Finds each request's key with `key` (an [`ExtractKey`](crate::ExtractKey);
    /// with the `http` feature, `http::Header` or `http::PathParam`).
    pub fn key<K2>(self, key: K2) -> ShardRouterBuilder<S, K2, P> {
        ShardRouterBuilder {
            name: self.name,
            settings: self.settings,
            shards: self.shards,
            key: Some(key),
            policy: self.policy,
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// Finds each request's key with a closure returning an `Option` or a
    /// `Result<_, KeyError>` of anything that converts into a
    /// [`ShardKey`](crate::ShardKey).
    pub fn key_fn<F>(self, f: F) -> ShardRouterBuilder<S, KeyFn<F>, P> {
        self.key(KeyFn::new(f))
    }

    /// During a move, a request for a key that moved goes to its new owner
    /// first and, when `when` says the new owner's result is a miss (an
    /// error, a `404` because the data has not arrived), to its previous
    /// owner with the copy `copy` made before the first call (`None`: no
    /// second chance for this request). Sets
    /// [`during_move`](Self::during_move) to
    /// [`MovePolicy::FallBackToPrevious`].
    pub fn fall_back_to_previous<C, W>(
        self,
        copy: C,
        when: W,
    ) -> ShardRouterBuilder<S, K, FallBack<C, W>> {
        let mut settings = self.settings;
        settings.during_move = MovePolicy::FallBackToPrevious;
        ShardRouterBuilder {
            name: self.name,
            settings,
            shards: self.shards,
            key: self.key,
            policy: FallBack { copy, when },
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// Calls `listener` with every [`ShardEvent`].
    #[must_use]
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&ShardEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the router's handle in `registry` under its name. If the
    /// registry already holds a router of that name, the new router shares
    /// its map and figures (and this builder's shards are not used).
    #[must_use]
    pub fn registry(mut self, registry: &Registry<ShardHandle<S>>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// The settings so far.
    #[must_use]
    pub const fn get_settings(&self) -> &ShardSettings {
        &self.settings
    }

    /// Checks the settings and shards and builds the router; metric handles
    /// are resolved here, under the metrics recorder current at this point.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting: any of
    /// [`ShardSettings::validate`]'s, `name` (empty), `key` (no extractor),
    /// `shard` (none, a repeated or empty name, a bad weight, no replica,
    /// too many shards or ring points), `default_shard` (not a shard),
    /// `during_move` (`FallBackToPrevious` without
    /// [`fall_back_to_previous`](Self::fall_back_to_previous)).
    pub fn build(self) -> Result<ShardRouter<S, K, P>, ConfigError>
    where
        P: IsFallback,
    {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        let Some(key) = self.key else {
            return Err(ConfigError::new(
                "key",
                "set a key extractor with `key` or `key_fn`",
            ));
        };
        if self.settings.during_move == MovePolicy::FallBackToPrevious && !P::FALLS_BACK {
            return Err(ConfigError::new(
                "during_move",
                "fall_back_to_previous needs a way to copy requests: use `fall_back_to_previous(copy, when)`",
            ));
        }
        let registered = self
            .registry
            .as_ref()
            .and_then(|registry| registry.get(&self.name));
        let shared = if let Some(handle) = registered {
            Arc::clone(handle.shared())
        } else {
            if let Some(default) = &self.settings.default_shard
                && !self.shards.iter().any(|s| s.name() == default)
            {
                return Err(ConfigError::new(
                    "default_shard",
                    format!("`{default}` is not one of the shards"),
                ));
            }
            let shared = Shared::new(
                Arc::clone(&self.name),
                self.settings,
                self.shards,
                self.listeners,
            )
            .map_err(|e| ConfigError::new("shard", e.to_string()))?;
            let shared = Arc::new(shared);
            if let Some(registry) = &self.registry {
                let handle = registry
                    .get_or_insert_with(&self.name, || ShardHandle::new(Arc::clone(&shared)));
                Arc::clone(handle.shared())
            } else {
                shared
            }
        };
        let cached = (
            shared.generation.load(std::sync::atomic::Ordering::Acquire),
            shared.current.load_full(),
        );
        Ok(ShardRouter {
            cached,
            inner: Arc::new(RouterInner {
                shared,
                key,
                policy: Arc::new(self.policy),
            }),
        })
    }
}

impl<S, K, P> fmt::Debug for ShardRouterBuilder<S, K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardRouterBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("shards", &self.shards)
            .field("key", &self.key.is_some())
            .finish_non_exhaustive()
    }
}
