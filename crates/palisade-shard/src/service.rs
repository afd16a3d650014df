//! [`ShardRouter`]: extract the key, find its shard, pick a replica, and
//! call it; [`ShardService`]: one shard as a service.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tokio::time::Instant;
use tower_service::Service;

use crate::error::KeyErrorKind;
use crate::fallback::{Forward, IsFallback, MoveFallback};
use crate::future::{ResponseFuture, Retry};
use crate::handle::ShardHandle;
use crate::key::ExtractKey;
use crate::shared::{Shared, Slot, Version};
use crate::state::load::pick_two;

// ===== routing =====

/// The replica of `slot` to call: the only one, or power of two choices on
/// peak-EWMA cost among those whose breaker is not open; with the time the
/// choice was made at, when it needed the clock.
#[inline]
fn pick<S>(slot: &Slot<S>) -> (usize, Option<Instant>) {
    if slot.replicas.len() == 1 {
        return (0, None);
    }
    let at = Instant::now();
    let now = slot.nanos_since_base(at);
    let replica = pick_two(
        slot.replicas.len(),
        |i| slot.replicas[i].available(),
        |i| slot.replicas[i].load.cost(now),
        |bound| fastrand::usize(..bound),
    );
    (replica, Some(at))
}

// ===== ShardRouter =====

pub(crate) struct RouterInner<S, K, P> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) key: K,
    pub(crate) policy: Arc<P>,
}

/// Routes each request to the shard that owns its key: a key-affine router
/// as a tower [`Service`].
///
/// Built with [`ShardRouter::builder`]; see the [crate docs](crate) for the
/// behaviour. Cloning is two reference-count increments (the router's
/// state, and the map version the instance last used): the map, the shards'
/// services, the settings and the metrics are shared by every clone and by
/// the router's [`ShardHandle`].
pub struct ShardRouter<S, K, P = Forward> {
    pub(crate) inner: Arc<RouterInner<S, K, P>>,
    /// The map version this instance last used, with the generation it was
    /// read at: a call checks one atomic and reloads only after a change.
    pub(crate) cached: (u64, Arc<Version<S>>),
}

impl<S, K, P> ShardRouter<S, K, P> {
    /// The router's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// A handle on the router's map: read it, change it, take a snapshot.
    #[must_use]
    pub fn handle(&self) -> ShardHandle<S> {
        ShardHandle::new(Arc::clone(&self.inner.shared))
    }

    /// The key extractor.
    #[must_use]
    pub fn key_extractor(&self) -> &K {
        &self.inner.key
    }
}

impl<S, K, P> Clone for ShardRouter<S, K, P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            cached: (self.cached.0, Arc::clone(&self.cached.1)),
        }
    }
}

impl<S, K, P> fmt::Debug for ShardRouter<S, K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardRouter")
            .field("shared", &self.inner.shared)
            .finish_non_exhaustive()
    }
}

impl<S, K, P, Req> Service<Req> for ShardRouter<S, K, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: ExtractKey<Req>,
    P: MoveFallback<Req, S::Response, S::Error> + IsFallback,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    /// Always ready, reserving nothing: the key, and so the shard, is known
    /// only in `call`. The chosen shard's service is driven to readiness in
    /// the response future, with a bound (see "Backpressure" in the crate
    /// docs).
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        shared.refresh(&mut self.cached);
        let version = &*self.cached.1;
        let (index, key) = match inner.key.extract(&request) {
            Ok(key) => (version.map.owner(key), Some(key)),
            Err(error) => {
                let missing = error.kind() == KeyErrorKind::Missing;
                if let Some(index) = version.default_index {
                    shared.defaulted.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.defaulted.increment(1);
                    tracing::debug!(name = %shared.name, error = %error, "no usable shard key: default shard");
                    (index, None)
                } else {
                    shared.count_key_error(missing);
                    let error = error.in_router(&shared.name);
                    tracing::debug!(name = %shared.name, error = %error, "no usable shard key: refused");
                    return ResponseFuture::failed(error.into());
                }
            }
        };
        let slot = &version.slots[index];
        // Under `Forward` (known when compiling) there is never a previous
        // owner to ask.
        let previous = if P::FALLS_BACK {
            version.previous.as_ref()
        } else {
            None
        };
        let retry = match (previous, key) {
            (Some(previous), Some(key)) => {
                let before = &previous.slots[previous.map.owner(key)];
                if Arc::ptr_eq(before, slot) {
                    None
                } else {
                    inner.policy.copy(&request).map(|copy| {
                        let (replica, _) = pick(before);
                        Box::new(Retry {
                            policy: Arc::clone(&inner.policy),
                            shared: Arc::clone(&inner.shared),
                            slot: Arc::clone(before),
                            replica,
                            service: before.replicas[replica].service.clone(),
                            request: copy,
                        })
                    })
                }
            }
            _ => None,
        };
        let (replica, now) = pick(slot);
        ResponseFuture::routed(shared, slot, replica, now, request, retry)
    }
}

// ===== ShardService =====

/// One shard of a router as a service: each call goes to one of the shard's
/// replicas (power of two choices on peak-EWMA, skipping open breakers), its
/// readiness driven in the response future with the router's bound. From
/// [`ShardHandle::shard_service`]; the scatter-gather calls every shard
/// through one.
pub struct ShardService<S> {
    shared: Arc<Shared<S>>,
    slot: Arc<Slot<S>>,
}

impl<S> ShardService<S> {
    pub(crate) const fn new(shared: Arc<Shared<S>>, slot: Arc<Slot<S>>) -> Self {
        Self { shared, slot }
    }

    /// The shard's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.slot.name
    }
}

impl<S> ShardHandle<S> {
    /// The shard `name` as a service of its own (calls go to its replicas).
    #[must_use]
    pub fn shard_service(&self, name: &str) -> Option<ShardService<S>> {
        let version = self.shared().current.load();
        version
            .slots
            .iter()
            .find(|slot| &*slot.name == name)
            .map(|slot| ShardService::new(Arc::clone(self.shared()), Arc::clone(slot)))
    }
}

impl<S> Clone for ShardService<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<S> fmt::Debug for ShardService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardService")
            .field("router", &self.shared.name)
            .field("shard", &self.slot.name)
            .finish()
    }
}

impl<S, Req> Service<Req> for ShardService<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, Forward>;

    /// Always ready, reserving nothing: the replica is chosen in `call` and
    /// driven to readiness in the response future.
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let (replica, now) = pick(&self.slot);
        ResponseFuture::routed(&self.shared, &self.slot, replica, now, request, None)
    }
}
