//! [`ScatterGather`]: one request to every shard at once, merged with
//! palisade-fan-out; rebuilt when the map changes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_core::{BoxError, ConfigError};
use palisade_fan_out::{Branch, FanOut, Gathered, JsonMerge, Merge, MergeFn};
use tower_service::Service;

use crate::handle::ShardHandle;
use crate::service::ShardService;
use crate::shared::Shared;

type MapFn<Req> = Arc<dyn Fn(&Req) -> Req + Send + Sync>;
type ShardFanOut<S, Req, M> = FanOut<ShardService<S>, Req, Req, M>;

struct Built<S, Req, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    epoch: u64,
    fan_out: FanOut<ShardService<S>, Req, Req, M>,
}

struct Inner<S, Req, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    shared: Arc<Shared<S>>,
    name: Arc<str>,
    map: MapFn<Req>,
    merge: M,
    deadline: Option<Duration>,
    timeout: Option<Duration>,
    current: ArcSwap<Built<S, Req, M>>,
}

/// Sends one request to every shard of a router at once and merges the
/// answers: a query that needs every shard (a count, a search), as a tower
/// [`Service`]. From [`ShardHandle::scatter`].
///
/// It is a [`palisade_fan_out::FanOut`] with one branch per shard (named
/// after the shard; each branch a [`ShardService`], so replicas, breakers
/// and the readiness bound apply as for routed calls), rebuilt on the first
/// call after the map changes, so a shard added at runtime is asked too.
/// Branches are optional: a shard that fails leaves the answer partial, with
/// its reason, as the fan-out documents; the merge decides the response
/// ([`JsonMerge::keyed`] by default, or any [`Merge`]).
///
/// ```
/// use palisade_shard::{Shard, ShardRouter};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade_core::BoxError> {
/// // Each shard counts its own users.
/// let count = |n: u64| service_fn(move |_: ()| async move { Ok::<_, palisade_core::BoxError>(n) });
/// let router = ShardRouter::builder("users")
///     .shard(Shard::new("users-0", count(10)))
///     .shard(Shard::new("users-1", count(32)))
///     .key_fn(|_: &()| None::<u64>)
///     .build()?;
/// let total = router
///     .handle()
///     .scatter("count-users", |req: &()| *req)
///     .merge_fn(|gathered| Ok(gathered.into_iter().filter_map(|(_, r)| r.into_value()).sum::<u64>()))
///     .build()?;
/// assert_eq!(total.oneshot(()).await?, 42);
/// # Ok(())
/// # }
/// ```
pub struct ScatterGather<S, Req, M = JsonMerge>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    inner: Arc<Inner<S, Req, M>>,
}

/// Builds a [`ScatterGather`]; from [`ShardHandle::scatter`].
pub struct ScatterBuilder<S, Req, M> {
    handle: ShardHandle<S>,
    name: Arc<str>,
    map: MapFn<Req>,
    merge: M,
    deadline: Option<Duration>,
    timeout: Option<Duration>,
}

impl<S> ShardHandle<S> {
    /// Starts building a scatter-gather called `name` (its fan-out's name,
    /// in metrics and traces) over every shard of this router; `request`
    /// makes each shard's request from the incoming one.
    pub fn scatter<Req, F>(
        &self,
        name: impl Into<Arc<str>>,
        request: F,
    ) -> ScatterBuilder<S, Req, JsonMerge>
    where
        F: Fn(&Req) -> Req + Send + Sync + 'static,
    {
        ScatterBuilder {
            handle: self.clone(),
            name: name.into(),
            map: Arc::new(request),
            merge: JsonMerge::keyed(),
            deadline: None,
            timeout: None,
        }
    }
}

impl<S, Req, M> ScatterBuilder<S, Req, M> {
    /// The deadline for the whole gather (see
    /// [`FanOutBuilder::deadline`](palisade_fan_out::FanOutBuilder::deadline)).
    #[must_use]
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Each shard's own timeout (see
    /// [`Branch::timeout`](palisade_fan_out::Branch::timeout)).
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Merges with `merge` (cloned each time the fan-out is rebuilt).
    pub fn merge<M2>(self, merge: M2) -> ScatterBuilder<S, Req, M2> {
        ScatterBuilder {
            handle: self.handle,
            name: self.name,
            map: self.map,
            merge,
            deadline: self.deadline,
            timeout: self.timeout,
        }
    }

    /// Merges with a function of the gathered results.
    pub fn merge_fn<F, R, T>(self, merge: F) -> ScatterBuilder<S, Req, MergeFn<F>>
    where
        F: Fn(Gathered<'_, T>) -> Result<R, BoxError>,
    {
        self.merge(MergeFn::new(merge))
    }

    /// Builds the scatter-gather over the shards in the map now.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] from the fan-out's builder (`deadline` or
    /// `timeout` zero, or a shard name the merge reserves, such as
    /// `errors` for [`JsonMerge`]).
    pub fn build(self) -> Result<ScatterGather<S, Req, M>, ConfigError>
    where
        S: Service<Req> + Clone,
        S::Error: Into<BoxError>,
        M: Merge<S::Response> + Clone,
        Req: 'static,
    {
        let shared = Arc::clone(self.handle.shared());
        let (epoch, fan_out) = build_fan_out(
            &shared,
            &self.name,
            &self.map,
            &self.merge,
            self.deadline,
            self.timeout,
        )?;
        Ok(ScatterGather {
            inner: Arc::new(Inner {
                shared,
                name: self.name,
                map: self.map,
                merge: self.merge,
                deadline: self.deadline,
                timeout: self.timeout,
                current: ArcSwap::from_pointee(Built { epoch, fan_out }),
            }),
        })
    }
}

fn build_fan_out<S, Req, M>(
    shared: &Arc<Shared<S>>,
    name: &Arc<str>,
    map: &MapFn<Req>,
    merge: &M,
    deadline: Option<Duration>,
    timeout: Option<Duration>,
) -> Result<(u64, ShardFanOut<S, Req, M>), ConfigError>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    M: Merge<S::Response> + Clone,
    Req: 'static,
{
    let version = shared.current.load();
    let branches = version.slots.iter().map(|slot| {
        let map = Arc::clone(map);
        let branch = Branch::new(
            Arc::clone(&slot.name),
            ShardService::new(Arc::clone(shared), Arc::clone(slot)),
            move |req: &Req| map(req),
        );
        match timeout {
            Some(timeout) => branch.timeout(timeout),
            None => branch,
        }
    });
    let builder = FanOut::builder(Arc::clone(name))
        .branches(branches)
        .merge(merge.clone());
    let builder = match deadline {
        Some(deadline) => builder.deadline(deadline),
        None => builder,
    };
    Ok((version.epoch, builder.build()?))
}

impl<S, Req, M> ScatterGather<S, Req, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    /// The scatter-gather's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl<S, Req, M> Clone for ScatterGather<S, Req, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, Req, M> fmt::Debug for ScatterGather<S, Req, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScatterGather")
            .field("name", &self.inner.name)
            .field("router", &self.inner.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, Req, M> fmt::Debug for ScatterBuilder<S, Req, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScatterBuilder")
            .field("name", &self.name)
            .field("deadline", &self.deadline)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S, Req, M> Service<Req> for ScatterGather<S, Req, M>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    M: Merge<S::Response> + Clone,
    Req: 'static,
{
    type Response = M::Response;
    type Error = M::Error;
    type Future = palisade_fan_out::future::ResponseFuture<ShardService<S>, Req, Req, M>;

    /// Always ready, reserving nothing: every shard is driven to readiness
    /// inside the gather, on its own.
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let inner = &*self.inner;
        let epoch = inner.shared.current.load().epoch;
        let mut built = inner.current.load_full();
        if built.epoch != epoch {
            match build_fan_out(
                &inner.shared,
                &inner.name,
                &inner.map,
                &inner.merge,
                inner.deadline,
                inner.timeout,
            ) {
                Ok((epoch, fan_out)) => {
                    built = Arc::new(Built { epoch, fan_out });
                    inner.current.store(Arc::clone(&built));
                }
                Err(error) => tracing::warn!(
                    name = %inner.name,
                    error = %error,
                    "the shard map changed but the scatter-gather cannot include the new shards; asking the old ones"
                ),
            }
        }
        let mut fan_out = built.fan_out.clone();
        fan_out.call(request)
    }
}
