use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, ErrorsAsFailures, Listeners, Registry};
use tower_layer::Layer;

use crate::event::BulkheadEvent;
use crate::handle::BulkheadHandle;
use crate::limiter::AdaptiveLimit;
use crate::partition::{KeyFn, Unpartitioned};
use crate::pool::{Common, MAX_LIMIT, MAX_WAITERS};
use crate::service::Bulkhead;
use crate::shared::{PartitionConfig, Shared};

/// The default of [`BulkheadBuilder::max_concurrent_calls`] (Resilience4j's).
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 25;
/// The default of [`BulkheadBuilder::max_partitions`].
pub const DEFAULT_MAX_PARTITIONS: usize = 1024;
/// The default of [`BulkheadBuilder::partition_idle_timeout`].
pub const DEFAULT_PARTITION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest [`BulkheadBuilder::max_partitions`] accepted.
pub const MAX_PARTITIONS: usize = 1 << 20;

/// Applies a [`Bulkhead`] to services.
///
/// The layer owns the bulkhead's state (its pools, limits and counters) in an
/// `Arc`: every service it builds, every clone of the layer and of those
/// services, and every [`BulkheadHandle`] share it. Cloning the layer or the
/// service does not create new state; calling [`Layer::layer`] again does not
/// either. Build another layer (or use another name in a registry) for a
/// separate bulkhead.
///
/// Built with [`BulkheadLayer::builder`].
pub struct BulkheadLayer<P = Unpartitioned, C = ErrorsAsFailures> {
    shared: Arc<Shared>,
    partition: P,
    classifier: C,
}

impl<P: Clone, C: Clone> Clone for BulkheadLayer<P, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            partition: self.partition.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<P, C> fmt::Debug for BulkheadLayer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("name", &self.shared.common.name)
            .field("partitioned", &self.shared.partitions.is_some())
            .finish_non_exhaustive()
    }
}

impl BulkheadLayer {
    /// A builder for a bulkhead called `name` (it labels metrics, logs,
    /// errors, the registry entry and the `x-palisade-bulkhead` header).
    pub fn builder(name: impl Into<Arc<str>>) -> BulkheadBuilder {
        BulkheadBuilder::new(name.into())
    }
}

impl<P, C> BulkheadLayer<P, C> {
    /// The handle to read figures and change limits at runtime.
    #[must_use]
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(Arc::clone(&self.shared))
    }

    /// The bulkhead's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.common.name
    }
}

impl<S, P: Clone, C: Clone> Layer<S> for BulkheadLayer<P, C> {
    type Service = Bulkhead<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(
            inner,
            Arc::clone(&self.shared),
            self.partition.clone(),
            self.classifier.clone(),
        )
    }
}

// ===== BulkheadBuilder =====

/// Configures a [`BulkheadLayer`]; [`build`](Self::build) validates.
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
    max_concurrent_calls: usize,
    max_wait: Option<Duration>,
    max_queue: Option<usize>,
    backpressure: bool,
    partition: P,
    partitioned: bool,
    max_partitions: usize,
    partition_idle_timeout: Duration,
    overflow_limit: Option<usize>,
    partition_metrics: bool,
    adaptive: Option<AdaptiveLimit>,
    classifier: C,
    listeners: Listeners<BulkheadEvent>,
    registry: Option<Registry<BulkheadHandle>>,
}

impl<P, C> fmt::Debug for BulkheadBuilder<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("name", &self.name)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("max_wait", &self.max_wait)
            .field("max_queue", &self.max_queue)
            .field("backpressure", &self.backpressure)
            .field("partitioned", &self.partitioned)
            .field("max_partitions", &self.max_partitions)
            .field("partition_idle_timeout", &self.partition_idle_timeout)
            .field("overflow_limit", &self.overflow_limit)
            .field("adaptive", &self.adaptive)
            .finish_non_exhaustive()
    }
}

impl BulkheadBuilder {
    fn new(name: Arc<str>) -> Self {
        Self {
            name,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            max_wait: None,
            max_queue: None,
            backpressure: false,
            partition: Unpartitioned,
            partitioned: false,
            max_partitions: DEFAULT_MAX_PARTITIONS,
            partition_idle_timeout: DEFAULT_PARTITION_IDLE_TIMEOUT,
            overflow_limit: None,
            partition_metrics: true,
            adaptive: None,
            classifier: ErrorsAsFailures,
            listeners: Listeners::new(),
            registry: None,
        }
    }
}

impl<P, C> BulkheadBuilder<P, C> {
    /// At most this many calls in flight at once (per partition when
    /// partitioned). Ignored by an adaptive bulkhead, whose limit starts at
    /// the limiter's `initial_limit`.
    #[must_use]
    pub const fn max_concurrent_calls(mut self, max: usize) -> Self {
        self.max_concurrent_calls = max;
        self
    }

    /// How long a call may wait for a permit when the pool is full. Zero
    /// refuses at once; `Duration::MAX` waits without a deadline. Waiters are
    /// served first come, first served. Defaults to zero, or, with
    /// [`backpressure`](Self::backpressure), to no deadline (tower's
    /// `ConcurrencyLimit` semantics).
    #[must_use]
    pub const fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// At most this many calls wait per pool; the next is refused at once.
    #[must_use]
    pub const fn max_queue(mut self, max_queue: usize) -> Self {
        self.max_queue = Some(max_queue);
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
        self.backpressure = enabled;
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
            max_concurrent_calls: self.max_concurrent_calls,
            max_wait: self.max_wait,
            max_queue: self.max_queue,
            backpressure: self.backpressure,
            partition,
            partitioned: true,
            max_partitions: self.max_partitions,
            partition_idle_timeout: self.partition_idle_timeout,
            overflow_limit: self.overflow_limit,
            partition_metrics: self.partition_metrics,
            adaptive: self.adaptive,
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
        self.max_partitions = max;
        self
    }

    /// A partition idle (nothing in flight, nobody waiting, nothing
    /// admitted) for this long is reclaimed, at the latest twice this long
    /// after its last call (sweeps run at most once per timeout, when a new
    /// key arrives or on [`BulkheadHandle::reclaim_idle`]).
    #[must_use]
    pub const fn partition_idle_timeout(mut self, timeout: Duration) -> Self {
        self.partition_idle_timeout = timeout;
        self
    }

    /// The limit of the shared overflow pool (0 refuses every call of a key
    /// that found no room). Defaults to `max_concurrent_calls`.
    #[must_use]
    pub const fn overflow_limit(mut self, limit: usize) -> Self {
        self.overflow_limit = Some(limit);
        self
    }

    /// `true` (the default): partition pools report metrics with a
    /// `partition` label. `false`: they add into the bulkhead's name-only
    /// series, for keys of unbounded cardinality that a metrics backend
    /// should not see.
    #[must_use]
    pub const fn partition_metrics(mut self, enabled: bool) -> Self {
        self.partition_metrics = enabled;
        self
    }

    /// Lets the limit of every pool adapt itself to observed latency and
    /// errors, within the limiter's bounds: [`Aimd`](crate::limiter::Aimd)
    /// or [`Gradient`](crate::limiter::Gradient). Outcomes are classified by
    /// [`classifier`](Self::classifier).
    #[must_use]
    pub fn adaptive(mut self, limit: impl Into<AdaptiveLimit>) -> Self {
        self.adaptive = Some(limit.into());
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
            max_concurrent_calls: self.max_concurrent_calls,
            max_wait: self.max_wait,
            max_queue: self.max_queue,
            backpressure: self.backpressure,
            partition: self.partition,
            partitioned: self.partitioned,
            max_partitions: self.max_partitions,
            partition_idle_timeout: self.partition_idle_timeout,
            overflow_limit: self.overflow_limit,
            partition_metrics: self.partition_metrics,
            adaptive: self.adaptive,
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

    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.max_concurrent_calls == 0 {
            return Err(ConfigError::new(
                "max_concurrent_calls",
                "must be at least 1, got 0",
            ));
        }
        if self.max_concurrent_calls > MAX_LIMIT {
            return Err(ConfigError::new(
                "max_concurrent_calls",
                format!(
                    "must be at most {MAX_LIMIT}, got {}",
                    self.max_concurrent_calls
                ),
            ));
        }
        if let Some(n) = self.max_queue {
            if n > MAX_WAITERS {
                return Err(ConfigError::new(
                    "max_queue",
                    format!("must be at most {MAX_WAITERS}, got {n}"),
                ));
            }
        }
        if self.backpressure && self.partitioned {
            return Err(ConfigError::new(
                "backpressure",
                "needs an unpartitioned bulkhead: the partition key is not known in poll_ready",
            ));
        }
        if self.partitioned {
            if self.max_partitions == 0 || self.max_partitions > MAX_PARTITIONS {
                return Err(ConfigError::new(
                    "max_partitions",
                    format!(
                        "must be within 1..={MAX_PARTITIONS}, got {}",
                        self.max_partitions
                    ),
                ));
            }
            if self.partition_idle_timeout.is_zero() {
                return Err(ConfigError::new(
                    "partition_idle_timeout",
                    "must be greater than zero",
                ));
            }
            if self.partition_idle_timeout > Duration::from_secs(365 * 24 * 3600) {
                return Err(ConfigError::new(
                    "partition_idle_timeout",
                    format!(
                        "must be at most a year, got {:?}",
                        self.partition_idle_timeout
                    ),
                ));
            }
        }
        if let Some(limit) = self.overflow_limit {
            if limit > MAX_LIMIT {
                return Err(ConfigError::new(
                    "overflow_limit",
                    format!("must be at most {MAX_LIMIT}, got {limit}"),
                ));
            }
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate()?;
        }
        Ok(())
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting: an empty `name`;
    /// `max_concurrent_calls` of 0 or above 2^29; `max_queue` above 2^30 − 1;
    /// `backpressure` with partitions; `max_partitions` of 0 or above 2^20;
    /// a zero or over-a-year `partition_idle_timeout`; `overflow_limit`
    /// above 2^29; an invalid adaptive limit (`min_limit`, `max_limit`,
    /// `initial_limit`, ...); or `registry` when a bulkhead of this name but
    /// of another shape (partitioned or not, backpressure or not) is
    /// registered.
    pub fn build(self) -> Result<BulkheadLayer<P, C>, ConfigError> {
        self.validate()?;
        let Self {
            name,
            max_concurrent_calls,
            max_wait,
            max_queue,
            backpressure,
            partition,
            partitioned,
            max_partitions,
            partition_idle_timeout,
            overflow_limit,
            partition_metrics,
            adaptive,
            classifier,
            listeners,
            registry,
        } = self;
        let registered_name = Arc::clone(&name);
        let make = move || {
            crate::metrics::describe();
            let limit = adaptive
                .as_ref()
                .map_or(max_concurrent_calls, AdaptiveLimit::initial_limit);
            let partitions = partitioned.then(|| PartitionConfig {
                max_partitions,
                idle_timeout: partition_idle_timeout,
                overflow_limit: overflow_limit.unwrap_or(limit),
            });
            let max_wait = max_wait.unwrap_or(if backpressure {
                Duration::MAX
            } else {
                Duration::ZERO
            });
            let common = Arc::new(Common::new(
                name,
                max_wait,
                max_queue,
                listeners,
                adaptive,
                partition_metrics,
            ));
            Arc::new(Shared::new(common, limit, partitions, backpressure))
        };
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
        Ok(BulkheadLayer {
            shared,
            partition,
            classifier,
        })
    }
}
