//! What a bulkhead's layer owns in one `Arc`: its pools, and for a
//! partitioned bulkhead the bounded, self-cleaning map from keys to pools.
//! Shared by every service the layer builds, every clone and every handle.

mod partitions;
pub(crate) mod pool;

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::Listeners;

use crate::event::BulkheadEvent;
use crate::metrics::describe;
use crate::partition::UNKEYED;
use crate::settings::BulkheadSettings;
use crate::state::table::read;

pub(crate) use partitions::Partitions;
pub(crate) use pool::{Common, Enqueued, Permit, Pool, Ticket, TryAcquire};

/// A pool picked for one call: the layer's own pool is borrowed, a
/// partition's pool comes out of the map with a reference count.
#[derive(Debug)]
pub(crate) enum Selected<'a> {
    Borrowed(&'a Arc<Pool>),
    Owned(Arc<Pool>),
}

impl Selected<'_> {
    /// The permit taken by a successful [`Pool::try_take`] on this pool: a
    /// partition's reference count moves into it, the layer's pool is
    /// referenced once more.
    #[inline]
    pub(crate) fn into_permit(self) -> Permit {
        match self {
            Self::Borrowed(pool) => Permit::taken(Arc::clone(pool)),
            Self::Owned(pool) => Permit::taken(pool),
        }
    }
}

impl Deref for Selected<'_> {
    type Target = Arc<Pool>;

    #[inline]
    fn deref(&self) -> &Arc<Pool> {
        match self {
            Self::Borrowed(pool) => pool,
            Self::Owned(pool) => pool,
        }
    }
}

/// Everything a bulkhead's layer, services, clones and handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) common: Arc<Common>,
    /// The only pool of an unpartitioned bulkhead; the [`UNKEYED`] pool of a
    /// partitioned one.
    pub(crate) default_pool: Arc<Pool>,
    pub(crate) partitions: Option<Partitions>,
    pub(crate) backpressure: bool,
    /// The limit new partition pools start with (for an unpartitioned
    /// bulkhead, unused: its pool's limit is the limit).
    pub(crate) default_limit: AtomicUsize,
    /// The settings it was built with (the handle reports them with its
    /// runtime changes applied).
    pub(crate) settings: BulkheadSettings,
}

/// Settings of the partition map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartitionConfig {
    pub(crate) max_partitions: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) overflow_limit: usize,
}

impl Shared {
    /// The state of a bulkhead called `name` with valid `settings`,
    /// partitioned or not. Resolves its metric handles.
    pub(crate) fn new(
        name: Arc<str>,
        settings: BulkheadSettings,
        partitioned: bool,
        listeners: Listeners<BulkheadEvent>,
    ) -> Self {
        describe();
        let limit = settings.initial_limit();
        let partitions = partitioned.then(|| PartitionConfig {
            max_partitions: settings.max_partitions,
            idle_timeout: settings.partition_idle_timeout,
            overflow_limit: settings.overflow_limit.unwrap_or(limit),
        });
        let common = Arc::new(Common::new(
            name,
            settings.effective_max_wait(),
            settings.max_queue,
            listeners,
            settings.adaptive.clone(),
            settings.partition_metrics,
        ));
        let default_label = partitions.is_some().then(|| Arc::from(UNKEYED));
        let default_pool = Arc::new(Pool::new(Arc::clone(&common), default_label, limit));
        let partitions = partitions.map(|config| Partitions::new(&common, config));
        Self {
            common,
            default_pool,
            partitions,
            backpressure: settings.backpressure,
            default_limit: AtomicUsize::new(limit),
            settings,
        }
    }

    /// The pool for a request with `key`.
    #[inline]
    pub(crate) fn select(&self, key: Option<&str>) -> Selected<'_> {
        match (key, &self.partitions) {
            (Some(key), Some(partitions)) => partitions.get_or_create(key, self),
            _ => Selected::Borrowed(&self.default_pool),
        }
    }

    /// The limit for a new pool of `key`.
    fn limit_for(&self, partitions: &Partitions, key: &str) -> usize {
        read(&partitions.overrides)
            .get(key)
            .copied()
            .unwrap_or_else(|| self.default_limit.load(Ordering::Relaxed))
    }

    /// Every pool: the default one, then (partitioned) the overflow pool and
    /// the keyed ones.
    pub(crate) fn pools(&self) -> Vec<Arc<Pool>> {
        let mut pools = vec![Arc::clone(&self.default_pool)];
        if let Some(partitions) = &self.partitions {
            pools.push(Arc::clone(&partitions.overflow));
            pools.extend(partitions.pools());
        }
        pools
    }
}
