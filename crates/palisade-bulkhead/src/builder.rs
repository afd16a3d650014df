//! [`BulkheadBuilder`]: one setter per setting, the partition key, the
//! classifier, the listeners and the registry; `build()` validates, then
//! builds the shared state once.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, ErrorsAsFailures, Listeners, Registry};

use crate::event::BulkheadEvent;
use crate::handle::BulkheadHandle;
use crate::layer::BulkheadLayer;
use crate::partition::{KeyFn, Unpartitioned};
use crate::settings::{AdaptiveLimit, BulkheadSettings};
use crate::shared::Shared;

impl BulkheadLayer {
    /// A builder for a bulkhead called `name` (it labels metrics, logs,
    /// errors, the registry entry and the `x-palisade-bulkhead` header).
    pub fn builder(name: impl Into<Arc<str>>) -> BulkheadBuilder {
        BulkheadBuilder {
            name: name.into(),
            settings: BulkheadSettings::default(),
            partition: Unpartitioned,
            partitioned: false,
            classifier: ErrorsAsFailures,
            listeners: Listeners::new(),
            registry: None,
        }
    }
}

/// Configures a [`BulkheadLayer`]; [`build`](Self::build) validates.
///
/// Each setter sets the [`BulkheadSettings`] field of its name;
/// [`settings`](Self::settings) sets them all at once.
///
/// | setting | default |
/// |---|---|
/// | [`max_concurrent_calls`](Self::max_concurrent_calls) | 25 |
/// | [`max_wait`](Self::max_wait) | zero: refuse at once when full (with `backpressure`: no deadline) |
/// | [`max_queue`](Self::max_queue) | no bound but `max_wait` |
/// | [`backpressure`](Self::backpressure) | `false`: admission in `call` |
/// | [`partition_by`](Self::partition_by) / [`partition`](Self::partition) | unpartitioned |
/// | [`max_partitions`](Self::max_partitions) | 1024 |
/// | [`partition_idle_timeout`](Self::partition_idle_timeout) | 60 s |
/// | [`overflow_limit`](Self::overflow_limit) | `max_concurrent_calls` |
/// | [`partition_metrics`](Self::partition_metrics) | `true` |
/// | [`adaptive`](Self::adaptive) | off: a fixed limit |
/// | [`classifier`](Self::classifier) | [`ErrorsAsFailures`] |
pub struct BulkheadBuilder<P = Unpartitioned, C = ErrorsAsFailures> {
    name: Arc<str>,
    settings: BulkheadSettings,
    partition: P,
    partitioned: bool,
    classifier: C,
    listeners: Listeners<BulkheadEvent>,
    registry: Option<Registry<BulkheadHandle>>,
}

impl<P, C> fmt::Debug for BulkheadBuilder<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("partitioned", &self.partitioned)
            .finish_non_exhaustive()
    }
}

impl<P, C> BulkheadBuilder<P, C> {
    /// Replaces every setting that is plain data with `settings` (the
    /// partition key, classifier, listeners and registry are kept). The
    /// setters below change one field each.
    #[must_use]
    pub fn settings(mut self, settings: BulkheadSettings) -> Self {
        self.settings = settings;
        self
    }

    /// At most this many calls in flight at once (per partition when
    /// partitioned). Ignored by an adaptive bulkhead, whose limit starts at
    /// the limiter's `initial_limit`.
    #[must_use]
    pub const fn max_concurrent_calls(mut self, max: usize) -> Self {
        self.settings.max_concurrent_calls = max;
        self
    }

    /// How long a call may wait for a permit when the pool is full. Zero
    /// refuses at once; `Duration::MAX` waits without a deadline. Waiters are
    /// served first come, first served. Defaults to zero, or, with
    /// [`backpressure`](Self::backpressure), to no deadline (tower's
    /// `ConcurrencyLimit` semantics).
    #[must_use]
    pub const fn max_wait(mut self, max_wait: Duration) -> Self {
        self.settings.max_wait = Some(max_wait);
        self
    }

    /// At most this many calls wait per pool; the next is refused at once.
    #[must_use]
    pub const fn max_queue(mut self, max_queue: usize) -> Self {
        self.settings.max_queue = Some(max_queue);
        self
    }

    /// `true`: reserve the permit in `poll_ready` (the service is `Pending`
    /// while the pool is full, for up to `max_wait`), as tower's
    /// `ConcurrencyLimit` does. `false` (the default): `poll_ready` only
    /// polls the inner service and the permit is taken in `call`. Only for
    /// an unpartitioned bulkhead: the key is not known in `poll_ready`. See
    /// the crate docs, "Backpressure".
    #[must_use]
    pub const fn backpressure(mut self, enabled: bool) -> Self {
        self.settings.backpressure = enabled;
        self
    }

    /// Partitions calls by a key computed from the request: each key gets
    /// its own pool with its own limit. `None` sends the call to the
    /// [`UNKEYED`](crate::partition::UNKEYED) pool. Borrow from the request:
    ///
    /// ```
    /// use palisade_bulkhead::BulkheadLayer;
    /// use std::borrow::Cow;
    ///
    /// struct Job { tenant: String }
    ///
    /// let layer = BulkheadLayer::builder("jobs")
    ///     .max_concurrent_calls(4)
    ///     .partition_by(|job: &Job| Some(Cow::Borrowed(job.tenant.as_str())))
    ///     .build()?;
    /// # Ok::<(), palisade_core::ConfigError>(())
    /// ```
    #[must_use]
    pub fn partition_by<Req, F>(self, key: F) -> BulkheadBuilder<KeyFn<F>, C>
    where
        F: for<'r> Fn(&'r Req) -> Option<Cow<'r, str>>,
    {
        self.partition(KeyFn(key))
    }

    /// Partitions calls by a [`Partition`](crate::Partition) implementation
    /// (such as the HTTP keys in `palisade_bulkhead::http`).
    #[must_use]
    pub fn partition<P2>(self, partition: P2) -> BulkheadBuilder<P2, C> {
        BulkheadBuilder {
            name: self.name,
            settings: self.settings,
            partition,
            partitioned: true,
            classifier: self.classifier,
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// At most this many keyed partitions are live at once; a new key beyond
    /// it shares the [`OVERFLOW`](crate::partition::OVERFLOW) pool until
    /// idle partitions are reclaimed.
    #[must_use]
    pub const fn max_partitions(mut self, max: usize) -> Self {
        self.settings.max_partitions = max;
        self
    }

    /// A partition idle (nothing in flight, nobody waiting, nothing
    /// admitted) for this long is reclaimed, at the latest twice this long
    /// after its last call (sweeps run at most once per timeout, when a new
    /// key arrives or on [`BulkheadHandle::sweep_if_due`];
    /// [`BulkheadHandle::reclaim_idle`] reclaims every idle partition at
    /// once).
    #[must_use]
    pub const fn partition_idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.partition_idle_timeout = timeout;
        self
    }

    /// The limit of the shared overflow pool (0 refuses every call of a key
    /// that found no room). Defaults to `max_concurrent_calls`.
    #[must_use]
    pub const fn overflow_limit(mut self, limit: usize) -> Self {
        self.settings.overflow_limit = Some(limit);
        self
    }

    /// `true` (the default): partition pools report metrics with a
    /// `partition` label. `false`: they add into the bulkhead's name-only
    /// series, for keys of unbounded cardinality that a metrics backend
    /// should not see.
    #[must_use]
    pub const fn partition_metrics(mut self, enabled: bool) -> Self {
        self.settings.partition_metrics = enabled;
        self
    }

    /// Lets the limit of every pool adapt itself to observed latency and
    /// errors, within the limiter's bounds: [`Aimd`](crate::limiter::Aimd)
    /// or [`Gradient`](crate::limiter::Gradient). Outcomes are classified by
    /// [`classifier`](Self::classifier).
    #[must_use]
    pub fn adaptive(mut self, limit: impl Into<AdaptiveLimit>) -> Self {
        self.settings.adaptive = Some(limit.into());
        self
    }

    /// How completed calls count for the adaptive limit (a
    /// [`Classify`](palisade_core::Classify): `ErrorsAsFailures`,
    /// `StatusClassifier` for HTTP, or a closure). Unused with a fixed limit.
    ///
    /// It classifies the inner service's own `Result<S::Response, S::Error>`,
    /// as the circuit breaker's and the retry layer's classifiers do: one
    /// classifier value serves all three over the same service.
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> BulkheadBuilder<P, C2> {
        BulkheadBuilder {
            name: self.name,
            settings: self.settings,
            partition: self.partition,
            partitioned: self.partitioned,
            classifier,
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// Calls `listener` for every [`BulkheadEvent`]. Events are only built
    /// when a listener is registered; a panicking listener is caught.
    #[must_use]
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&BulkheadEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the bulkhead in `registry` under its name. If a bulkhead of
    /// that name is already registered, [`build`](Self::build) returns a
    /// layer sharing its state (its settings win; this builder's other
    /// settings, except the key function and classifier, are unused): one
    /// bulkhead per downstream, however many times the stack is built.
    ///
    /// ```
    /// use palisade_bulkhead::{BulkheadHandle, BulkheadLayer, Registry};
    ///
    /// let registry = Registry::<BulkheadHandle>::new();
    /// let a = BulkheadLayer::builder("payments").registry(&registry).build()?;
    /// let b = BulkheadLayer::builder("payments").registry(&registry).build()?;
    /// assert!(a.handle().same_as(&b.handle()));
    /// assert_eq!(registry.names(), vec!["payments".to_owned()]);
    /// assert_eq!(registry.snapshots()[0].limit, 25);
    /// # Ok::<(), palisade_core::ConfigError>(())
    /// ```
    #[must_use]
    pub fn registry(mut self, registry: &Registry<BulkheadHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting: an empty `name`;
    /// whatever [`BulkheadSettings::validate`] refuses (`max_concurrent_calls`
    /// of 0 or above 2^29; `max_queue` above 2^30 − 1; `max_partitions` of 0
    /// or above 2^20; a zero or over-a-year `partition_idle_timeout`;
    /// `overflow_limit` above 2^29; an invalid adaptive limit: `min_limit`,
    /// `max_limit`, `initial_limit`, ...); `backpressure` with partitions; or
    /// `registry` when a bulkhead of this name but of another shape
    /// (partitioned or not, backpressure or not) is registered.
    pub fn build(self) -> Result<BulkheadLayer<P, C>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        if self.settings.backpressure && self.partitioned {
            return Err(ConfigError::new(
                "backpressure",
                "needs an unpartitioned bulkhead: the partition key is not known in poll_ready",
            ));
        }
        let Self {
            name,
            settings,
            partition,
            partitioned,
            classifier,
            listeners,
            registry,
        } = self;
        let backpressure = settings.backpressure;
        let registered_name = Arc::clone(&name);
        let make = move || Arc::new(Shared::new(name, settings, partitioned, listeners));
        let shared = match registry {
            None => make(),
            Some(registry) => {
                let handle =
                    registry.get_or_insert_with(&registered_name, || BulkheadHandle::new(make()));
                let shared = handle.shared;
                if shared.partitions.is_some() != partitioned || shared.backpressure != backpressure
                {
                    return Err(ConfigError::new(
                        "registry",
                        format!(
                            "a bulkhead named `{registered_name}` of another shape is registered \
                             (partitioned: {}, backpressure: {})",
                            shared.partitions.is_some(),
                            shared.backpressure
                        ),
                    ));
                }
                shared
            }
        };
        Ok(BulkheadLayer::new(shared, partition, classifier))
    }
}
