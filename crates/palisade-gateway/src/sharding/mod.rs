//! Sharded upstreams (`[upstreams.<name>.shards]`): an upstream served by
//! several shards, each request sent by `palisade-shard`'s router to the
//! shard that owns its key (the demo's user service: three shards, users by
//! id).
//!
//! # How a sharded upstream is built
//!
//! ```text
//! proxy route /api/user, aggregator branch `user`
//!   ShardRouter "user"            key from the path (`/users/{id}`), rendezvous hashing,
//!   │                             a versioned map changed at runtime (admin API)
//!   ├─ shard user-0 ─ the stack of upstream `user-0`: statistics, timeout, retry,
//!   │                 circuit breaker, attempt timeout, bulkhead, client
//!   ├─ shard user-1 ─ the stack of upstream `user-1`
//!   └─ shard user-2 ─ the stack of upstream `user-2`
//! ```
//!
//! Each shard is an [`Upstream`] of its own, named after the shard, built
//! from the sharded upstream's config (its timeouts, `retry`,
//! `circuit_breaker` and `bulkhead` tables) with the shard's address: its
//! own breaker, bulkhead and retry budget, registered under its name (the
//! admin API's `/admin/circuit-breakers/user-1`), its own dashboard tile. So
//! one failing shard trips only its own breaker, and requests for the other
//! shards' users never notice. The router sits above the shards' stacks (the
//! order `palisade-shard` documents) and is given each shard's breaker
//! handle, so its snapshot shows the breaker's state.
//!
//! The router, its map and the shards' layers are built once and shared by
//! every worker thread: a change through the admin API reaches every worker
//! at its next request. The HTTP client is not shared: a shard's stack is
//! built per call over the calling thread's own client ([`ShardMember`]), so
//! a request, its upstream connection and the connection's task stay on one
//! thread, as for every other upstream. Building it is a few reference-count
//! increments and two small allocations.
//!
//! # Readiness
//!
//! The router is always ready and drives only the chosen shard's stack to
//! readiness (a bulkhead permit), bounded by `ready_timeout`; a shard whose
//! bulkhead is full never holds up requests for the other shards.
//!
//! # Changing the map
//!
//! [`ShardedUpstream::add`], [`remove`](ShardedUpstream::remove) and
//! [`set_weight`](ShardedUpstream::set_weight) go through the crate's
//! [`ShardHandle`]: the next map is built aside and swapped in whole, calls
//! in flight finish on the map they started with, and only the keys the
//! change must move move (rendezvous: a removed shard's keys spread over the
//! others by their next choice; an added shard takes about its share from
//! every other). A shard added at runtime is an upstream like the others,
//! built from the same config; it has no dashboard tile (the tiles are the
//! upstreams the gateway started with), but the shard panel and the admin
//! API show it, and its breaker and bulkhead are registered under its name
//! (re-adding a removed shard reuses them).
//!
//! The demo's shards serve the same deterministic data, so a key that moves
//! needs no data copied: every request goes to the key's owner in the
//! newest map at once (`during_move = "forward"`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, Uri};
use palisade::bulkhead::BulkheadHandle;
use palisade::circuit_breaker::CircuitBreakerHandle;
use palisade::shard::http::HttpKey;
use palisade::shard::{
    MapChange, MapError, MapErrorKind, Replica, Shard, ShardHandle, ShardRouter, ShardSnapshot,
};
use palisade::{BoxError, Registry};
use tower::Service;
use tower::util::Either;

use crate::config::shards::{MAX_SHARDS_PER_UPSTREAM, valid_shard_name, valid_weight};
use crate::config::target::parse_target;
pub use crate::config::{MemberConfig, ShardsConfig};
use crate::config::{UpstreamConfig, UpstreamTarget};
use crate::logs::FailureLog;
use crate::proxy::HttpClient;
use crate::proxy::upstream::{Upstream, UpstreamStack};

thread_local! {
    /// The calling thread's HTTP client for shards' stacks: each worker
    /// thread runs one runtime, so this is the worker's own.
    static CLIENT: HttpClient = crate::proxy::http_client();
}

/// A sharded upstream's router over its shards' stacks.
pub type ShardedStack = ShardRouter<ShardMember, HttpKey>;

/// What a proxy route or an aggregator branch calls: an upstream's stack,
/// or a sharded upstream's router. One type for both, nothing boxed.
pub type UpstreamRoute = Either<UpstreamStack, ShardedStack>;

/// The registry of the sharded upstreams' routers, by upstream name.
pub type ShardRegistry = Registry<ShardHandle<ShardMember>>;

// ===== ShardMember =====

/// One shard's service as the router holds it: the shard's [`Upstream`].
/// Driven to readiness, it builds the upstream's stack over the calling
/// thread's HTTP client and polls it (its bulkhead reserves a permit); the
/// call goes to that stack. A request with an absolute URI (the
/// aggregator's) is sent in origin form, to the shard's own address.
///
/// Cloning it shares the upstream (its layers' state) and never the stack
/// being readied: a clone is not ready.
pub struct ShardMember {
    upstream: Arc<Upstream>,
    stack: Option<UpstreamStack>,
}

impl ShardMember {
    /// The shard served by `upstream`.
    #[must_use]
    pub fn new(upstream: Upstream) -> Self {
        Self {
            upstream: Arc::new(upstream),
            stack: None,
        }
    }

    /// The shard's upstream.
    #[must_use]
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

impl Clone for ShardMember {
    fn clone(&self) -> Self {
        Self {
            upstream: Arc::clone(&self.upstream),
            stack: None,
        }
    }
}

impl fmt::Debug for ShardMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardMember")
            .field("upstream", &self.upstream.name())
            .field("ready", &self.stack.is_some())
            .finish()
    }
}

/// A [`ShardMember`] was called without being driven to readiness first (a
/// caller's bug; the shard router never does it).
#[derive(Debug)]
pub struct CalledBeforeReady;

impl fmt::Display for CalledBeforeReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shard called before it was ready")
    }
}

impl std::error::Error for CalledBeforeReady {}

impl Service<Request<Body>> for ShardMember {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = futures_util::future::Either<
        <UpstreamStack as Service<Request<Body>>>::Future,
        std::future::Ready<Result<Response<Body>, BoxError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let upstream = &self.upstream;
        self.stack
            .get_or_insert_with(|| CLIENT.with(|client| upstream.stack(client.clone())))
            .poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let Some(mut stack) = self.stack.take() else {
            return futures_util::future::Either::Right(std::future::ready(Err(Box::new(
                CalledBeforeReady,
            ))));
        };
        if req.uri().authority().is_some() {
            let origin = req
                .uri()
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
            *req.uri_mut() = origin;
        }
        futures_util::future::Either::Left(stack.call(req))
    }
}

// ===== ShardedUpstream =====

/// A sharded upstream: its router, its config (the template of every
/// shard's stack), and the address of each shard it has had.
#[derive(Clone)]
pub struct ShardedUpstream {
    inner: Arc<Sharded>,
}

struct Sharded {
    name: String,
    config: UpstreamConfig,
    router: ShardedStack,
    /// Every shard the router has had, by name: its URL as given.
    urls: Mutex<BTreeMap<String, String>>,
    /// The shards of the config, which may be added back after a removal.
    configured: Vec<String>,
    failures: Arc<FailureLog>,
}

/// The address of `target`: a URL as it is, a demo backend through
/// `backend_addr`. With the demo backend's name for `demo://` targets.
///
/// # Errors
///
/// A demo backend that is not running, or a target that is not a place.
pub fn base_of(
    target: &UpstreamTarget,
    backend_addr: &dyn Fn(&str) -> Option<SocketAddr>,
) -> Result<(Uri, Option<String>), String> {
    match target {
        UpstreamTarget::Url(uri) => Ok((uri.clone(), None)),
        UpstreamTarget::Demo(backend) => {
            let addr = backend_addr(backend)
                .ok_or_else(|| format!("demo backend `{backend}` is not running"))?;
            let uri: Uri = format!("http://{addr}")
                .parse()
                .map_err(|e| format!("demo backend `{backend}`: {e}"))?;
            Ok((uri, Some(backend.clone())))
        }
        UpstreamTarget::Shards => Err("a shard cannot itself be sharded".to_owned()),
    }
}

/// The registries a shard's layers are registered in.
#[derive(Clone, Copy, Debug)]
pub struct Registries<'a> {
    /// The circuit breakers, by upstream name.
    pub breakers: &'a Registry<CircuitBreakerHandle>,
    /// The bulkheads, by upstream name.
    pub bulkheads: &'a Registry<BulkheadHandle>,
    /// The shard routers, by sharded upstream name.
    pub routers: &'a ShardRegistry,
}

/// The upstream of shard `name` at `target`, with the stack of `config`.
fn member_upstream(
    name: &str,
    target: &UpstreamTarget,
    config: &UpstreamConfig,
    backend_addr: &dyn Fn(&str) -> Option<SocketAddr>,
    registries: Registries<'_>,
) -> Result<Upstream, String> {
    let (base, demo_backend) = base_of(target, backend_addr)?;
    let member_config = UpstreamConfig {
        target: target.clone(),
        shards: None,
        ..config.clone()
    };
    Upstream::new(
        name,
        base,
        demo_backend,
        member_config,
        registries.breakers,
        registries.bulkheads,
    )
    .map_err(|e| e.to_string())
}

/// The router's shard for `upstream`, weighted `weight`, with its breaker's
/// handle.
fn shard_of(upstream: Upstream, weight: f64) -> Shard<ShardMember> {
    let name = upstream.name().to_owned();
    let breaker = upstream.layers().circuit_breaker();
    let mut replica = Replica::new(name.clone(), ShardMember::new(upstream));
    if let Some(breaker) = breaker {
        replica = replica.breaker(breaker);
    }
    Shard::replicated(name, [replica]).weight(weight)
}

/// What refused a change of a sharded upstream's map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeErrorKind {
    /// Bad input: a name, a weight or a URL that cannot be used.
    Invalid,
    /// The name is taken (a shard of the map, another upstream) or the map
    /// cannot do it (its last shard; jump hash: a weight, a shard not last).
    Conflict,
    /// No shard of that name in the map.
    UnknownShard,
}

/// A change of a sharded upstream's map was refused; the map is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeError {
    kind: ChangeErrorKind,
    reason: &'static str,
    message: String,
}

impl ChangeError {
    fn new(kind: ChangeErrorKind, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            reason,
            message: message.into(),
        }
    }

    fn of(err: &MapError) -> Self {
        let kind = match err.kind() {
            MapErrorKind::UnknownShard => ChangeErrorKind::UnknownShard,
            MapErrorKind::DuplicateShard | MapErrorKind::Empty | MapErrorKind::Unsupported => {
                ChangeErrorKind::Conflict
            }
            _ => ChangeErrorKind::Invalid,
        };
        Self::new(kind, err.kind().as_str(), err.to_string())
    }

    /// What kind of refusal.
    #[must_use]
    pub const fn kind(&self) -> ChangeErrorKind {
        self.kind
    }

    /// A snake_case label: the crate's `MapErrorKind` (`duplicate_shard`,
    /// `empty`, ...), or the gateway's `invalid_name`, `invalid_url`,
    /// `name_taken`, `too_many_shards`.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChangeError {}

/// A shard to add: its name, URL and weight.
#[derive(Clone, Debug, PartialEq)]
pub struct NewShard {
    /// The shard's name (and its upstream's).
    pub name: String,
    /// `demo://<backend>` or `http://host:port[/base]`.
    pub url: String,
    /// Its weight (relative; 1 by default).
    pub weight: f64,
}

impl ShardedUpstream {
    /// Builds the sharded upstream `name` of `config` (whose `shards` table
    /// is `shards`): an upstream per shard (returned, for the state to
    /// list), registered in `registries`, and the router over them.
    ///
    /// # Errors
    ///
    /// A shard's demo backend is not running, or a builder refuses its
    /// settings (not for a config that loaded).
    pub fn build(
        name: &str,
        config: &UpstreamConfig,
        shards: &ShardsConfig,
        backend_addr: &dyn Fn(&str) -> Option<SocketAddr>,
        registries: Registries<'_>,
    ) -> Result<(Self, Vec<Upstream>), String> {
        let mut upstreams = Vec::with_capacity(shards.members.len());
        let mut router_shards = Vec::with_capacity(shards.members.len());
        for m in &shards.members {
            let upstream = member_upstream(&m.name, &m.target, config, backend_addr, registries)
                .map_err(|e| format!("shard `{}`: {e}", m.name))?;
            router_shards.push(shard_of(upstream.clone(), m.weight));
            upstreams.push(upstream);
        }
        let router = ShardRouter::builder(name)
            .settings(shards.settings.clone())
            .shards(router_shards)
            .registry(registries.routers)
            .http_key()
            .and_then(palisade::shard::ShardRouterBuilder::build)
            .map_err(|e| e.to_string())?;
        let sharded = Sharded {
            name: name.to_owned(),
            config: config.clone(),
            router,
            urls: Mutex::new(
                shards
                    .members
                    .iter()
                    .map(|m| (m.name.clone(), m.url.clone()))
                    .collect(),
            ),
            configured: shards.members.iter().map(|m| m.name.clone()).collect(),
            failures: Arc::new(FailureLog::new()),
        };
        Ok((
            Self {
                inner: Arc::new(sharded),
            },
            upstreams,
        ))
    }

    /// The upstream's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its config: the template of every shard's stack.
    #[must_use]
    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    /// Its per-call failure log, shared by every worker's proxy route to it.
    #[must_use]
    pub fn failure_log(&self) -> &Arc<FailureLog> {
        &self.inner.failures
    }

    /// Its router (a clone: every clone shares the map).
    #[must_use]
    pub fn router(&self) -> ShardedStack {
        self.inner.router.clone()
    }

    /// The router's handle.
    #[must_use]
    pub fn handle(&self) -> ShardHandle<ShardMember> {
        self.inner.router.handle()
    }

    /// The router's snapshot now.
    #[must_use]
    pub fn snapshot(&self) -> ShardSnapshot {
        self.inner.router.handle().snapshot()
    }

    /// The URL of each shard in the map, by name.
    #[must_use]
    pub fn urls(&self) -> BTreeMap<String, String> {
        let snapshot = self.snapshot();
        let urls = self
            .inner
            .urls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        snapshot
            .shards
            .iter()
            .filter_map(|s| urls.get(&*s.name).map(|u| (s.name.to_string(), u.clone())))
            .collect()
    }

    /// Adds the shard `shard`: an upstream of its own named after it, with
    /// this upstream's stack, at its URL. `taken` says whether a name is
    /// another upstream's (or another sharded upstream's shard).
    ///
    /// # Errors
    ///
    /// A [`ChangeError`]: a bad name, weight or URL (`Invalid`), a name
    /// taken or too many shards (`Conflict`); the map is unchanged.
    pub fn add(
        &self,
        shard: &NewShard,
        taken: &dyn Fn(&str) -> bool,
        backend_addr: &dyn Fn(&str) -> Option<SocketAddr>,
        registries: Registries<'_>,
    ) -> Result<MapChange, ChangeError> {
        let name = shard.name.as_str();
        if !valid_shard_name(name) {
            return Err(ChangeError::new(
                ChangeErrorKind::Invalid,
                "invalid_name",
                "a shard name is 1 to 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        if !valid_weight(shard.weight) {
            return Err(ChangeError::new(
                ChangeErrorKind::Invalid,
                "invalid_weight",
                format!(
                    "weight must be in (0, {}], got {}",
                    palisade::shard::MAX_WEIGHT,
                    shard.weight
                ),
            ));
        }
        let handle = self.handle();
        let in_map = handle.map().index_of(name).is_some();
        if in_map {
            return Err(ChangeError::new(
                ChangeErrorKind::Conflict,
                "duplicate_shard",
                format!("`{name}` is already a shard of `{}`", self.name()),
            ));
        }
        let own = self.inner.configured.iter().any(|c| c == name);
        if name == self.name() || (!own && taken(name)) {
            return Err(ChangeError::new(
                ChangeErrorKind::Conflict,
                "name_taken",
                format!(
                    "`{name}` names another upstream: a shard is an upstream of its own and needs a name of its own"
                ),
            ));
        }
        if handle.map().len() >= MAX_SHARDS_PER_UPSTREAM {
            return Err(ChangeError::new(
                ChangeErrorKind::Conflict,
                "too_many_shards",
                format!(
                    "`{}` has {MAX_SHARDS_PER_UPSTREAM} shards, the most it may have",
                    self.name()
                ),
            ));
        }
        let target = parse_target(&shard.url, |b| backend_addr(b).is_some())
            .map_err(|reason| ChangeError::new(ChangeErrorKind::Invalid, "invalid_url", reason))?;
        let upstream = member_upstream(name, &target, &self.inner.config, backend_addr, registries)
            .map_err(|reason| ChangeError::new(ChangeErrorKind::Invalid, "invalid_url", reason))?;
        let change = handle
            .add_shard(shard_of(upstream, shard.weight))
            .map_err(|e| ChangeError::of(&e))?;
        self.inner
            .urls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), shard.url.clone());
        Ok(change)
    }

    /// Removes the shard `name`: its keys move to their next choices.
    ///
    /// # Errors
    ///
    /// A [`ChangeError`]: no such shard (`UnknownShard`), the last shard or
    /// (jump) not the last numbered (`Conflict`).
    pub fn remove(&self, name: &str) -> Result<MapChange, ChangeError> {
        self.handle()
            .remove_shard(name)
            .map_err(|e| ChangeError::of(&e))
    }

    /// Gives the shard `name` the weight `weight`.
    ///
    /// # Errors
    ///
    /// A [`ChangeError`]: no such shard, a bad weight, or jump hash.
    pub fn set_weight(&self, name: &str, weight: f64) -> Result<MapChange, ChangeError> {
        self.handle()
            .set_weight(name, weight)
            .map_err(|e| ChangeError::of(&e))
    }
}

impl fmt::Debug for ShardedUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedUpstream")
            .field("name", &self.inner.name)
            .field("router", &self.inner.router)
            .finish_non_exhaustive()
    }
}
