//! The state every handler shares.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::Uri;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use palisade::Registry;
use palisade::bulkhead::BulkheadHandle;
use palisade::cache::CacheHandle;
use palisade::chaos::ChaosHandle;
use palisade::circuit_breaker::CircuitBreakerHandle;
use palisade::deadline::{DeadlineHandle, DeadlineLayer};
use palisade::fallback::FallbackHandle;
use palisade::fan_out::FanOutHandle;
use palisade::rate_limit::RateLimitHandle;
use tokio::sync::watch;

use crate::config::{AggregatorConfig, Config, RouteConfig, UpstreamTarget};
use crate::proxy::upstream::Upstream;
use crate::rate_limit::ApiRateLimit;
use crate::shared::StartError;

/// The process-wide Prometheus recorder, installed on first use.
///
/// Call it before building any layer: layers resolve their metric handles
/// when built, and handles resolved before a recorder exists go nowhere.
/// If another global recorder was installed first, the gateway's `/metrics`
/// shows only what reaches this one, and a warning says so.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if let Err(err) = metrics::set_global_recorder(recorder) {
                tracing::warn!(%err, "a metrics recorder was already installed; /metrics will miss its series");
            }
            describe_metrics();
            handle
        })
        .clone()
}

/// The `# HELP` (and unit) of the gateway's own metric families; the
/// layers describe theirs.
fn describe_metrics() {
    metrics::describe_counter!(
        "palisade_gateway_requests_total",
        metrics::Unit::Count,
        "Requests answered on the gateway's proxy routes, by upstream and status class (1xx to 5xx), the gateway's own answers (timeouts, refusals, 4xx) included."
    );
    metrics::describe_histogram!(
        "palisade_gateway_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a proxied request's arrival to its response headers, by upstream."
    );
}

/// The name of the deadline layer every route has (`[deadline]`): its
/// metrics' `name` label, its entry in [`AppState::deadlines`].
pub const ROUTE_DEADLINE: &str = "gateway";

/// Where the gateway is in its life: serving, not ready (shutting down, but
/// still accepting and serving for the readiness grace), or draining (no
/// longer accepting; in-flight requests finishing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving; `/readyz` answers `200`.
    Serving,
    /// Shutdown began: `/readyz` answers `503` so load balancers stop
    /// sending new requests, but connections are still accepted and
    /// served, for `server.shutdown_grace_ms`.
    NotReady,
    /// No new connections; idle ones close, in-flight requests get up to
    /// `server.drain_timeout_ms`.
    Draining,
}

/// The gateway's [`Phase`], shared by `/readyz`, the worker threads'
/// accept loops and connections, and the dashboard's event streams. It
/// only moves forward: Serving, NotReady, Draining.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    phase: watch::Sender<Phase>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            phase: watch::channel(Phase::Serving).0,
        }
    }
}

impl Lifecycle {
    /// Marks the gateway as shutting down: not ready, still serving
    /// (idempotent; never moves back from draining).
    pub fn begin_shutdown(&self) {
        self.advance(Phase::NotReady);
    }

    /// Stops accepting and starts draining (idempotent). Implies not
    /// ready.
    pub fn begin_drain(&self) {
        self.advance(Phase::Draining);
    }

    fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|phase| {
            let moved = *phase < to;
            if moved {
                *phase = to;
            }
            moved
        });
    }

    /// The current phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// `true` once shutdown began (not ready, or draining).
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.phase() >= Phase::NotReady
    }

    /// Resolves when shutdown begins (the gateway is no longer ready).
    pub async fn wait(&self) {
        self.wait_for(Phase::NotReady).await;
    }

    /// Resolves when draining begins (no new connections).
    pub async fn wait_drain(&self) {
        self.wait_for(Phase::Draining).await;
    }

    async fn wait_for(&self, phase: Phase) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

/// A demo backend as the admin API and the dashboard see it.
#[derive(Clone, Debug)]
pub struct BackendInfo {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its chaos handle.
    pub chaos: ChaosHandle,
}

pub(crate) struct Inner {
    pub(crate) upstreams: BTreeMap<String, Upstream>,
    pub(crate) routes: Vec<RouteConfig>,
    pub(crate) aggregator: Option<AggregatorConfig>,
    pub(crate) backends: BTreeMap<String, BackendInfo>,
    pub(crate) chaos: Registry<ChaosHandle>,
    pub(crate) circuit_breakers: Registry<CircuitBreakerHandle>,
    pub(crate) bulkheads: Registry<BulkheadHandle>,
    pub(crate) fan_outs: Registry<FanOutHandle>,
    pub(crate) admin_token: Option<Arc<str>>,
    pub(crate) body_limit: usize,
    pub(crate) access_log: crate::logs::AccessLog,
    pub(crate) waterfall: Arc<crate::aggregator::Waterfall>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) prometheus: PrometheusHandle,
    pub(crate) deadline: DeadlineLayer,
    pub(crate) deadlines: Registry<DeadlineHandle>,
    pub(crate) fallbacks: Registry<FallbackHandle>,
    pub(crate) accounts: OnceLock<crate::accounts::Accounts>,
    pub(crate) sharded: BTreeMap<String, crate::sharding::ShardedUpstream>,
    pub(crate) shard_routers: crate::sharding::ShardRegistry,
    pub(crate) rate_limits: Registry<RateLimitHandle>,
    pub(crate) rate_limit: Option<ApiRateLimit>,
    pub(crate) caches: Registry<CacheHandle>,
    pub(crate) pubsub: OnceLock<crate::pubsub::PubSub>,
}

/// Everything the gateway's handlers share; cheap to clone.
///
/// It holds each upstream's layers (and so their state: breakers, bulkhead
/// permits, retry budgets), the registries of breakers and bulkheads, the
/// demo backends' chaos handles, the admin token and the lifecycle. Worker
/// threads build their routers from one `AppState`: they share all of it,
/// and only their HTTP clients are their own.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

impl AppState {
    /// The state for `config`: every upstream's layers built and registered
    /// in the state's registries (`demo://` upstreams resolved through
    /// `backends`), the routes and the aggregator, the admin token in force
    /// (`None`: admin API disabled).
    ///
    /// Install the metrics recorder first ([`prometheus`]): layers resolve
    /// their metric handles when built.
    ///
    /// # Errors
    ///
    /// A `demo://` upstream whose backend is not in `backends`, or a layer
    /// that does not build (not for a config that loaded), or a
    /// `[rate_limit]` with `backend = "redis"` outside a tokio runtime (its
    /// connection's task needs one).
    pub fn from_config(
        config: &Config,
        backends: BTreeMap<String, BackendInfo>,
        admin_token: Option<String>,
    ) -> Result<Self, StartError> {
        let circuit_breakers = Registry::new();
        let bulkheads = Registry::new();
        let caches = Registry::new();
        let mut upstreams = BTreeMap::new();
        let shard_routers = crate::sharding::ShardRegistry::new();
        let mut sharded = BTreeMap::new();
        for (name, up) in &config.upstreams {
            if let Some(shards) = &up.shards {
                let registries = crate::sharding::Registries {
                    breakers: &circuit_breakers,
                    bulkheads: &bulkheads,
                    routers: &shard_routers,
                };
                let backend_addr = |b: &str| backends.get(b).map(|info| info.addr);
                let (router, members) = crate::sharding::ShardedUpstream::build(
                    name,
                    up,
                    shards,
                    &backend_addr,
                    registries,
                )
                .map_err(|e| StartError::Other(format!("upstream `{name}`: {e}")))?;
                for member in members {
                    upstreams.insert(member.name().to_owned(), member);
                }
                sharded.insert(name.clone(), router);
                continue;
            }
            let (base, demo_backend) = match &up.target {
                UpstreamTarget::Url(uri) => (uri.clone(), None),
                UpstreamTarget::Shards => continue,
                UpstreamTarget::Demo(service) => {
                    let addr = backends.get(service).map(|b| b.addr).ok_or_else(|| {
                        StartError::Other(format!(
                            "upstream `{name}`: demo backend `{service}` is not running"
                        ))
                    })?;
                    let uri: Uri = format!("http://{addr}")
                        .parse()
                        .map_err(|e| StartError::Other(format!("upstream `{name}`: {e}")))?;
                    (uri, Some(service.clone()))
                }
            };
            let upstream = Upstream::new(
                name,
                base,
                demo_backend,
                up.clone(),
                &circuit_breakers,
                &bulkheads,
            )
            .and_then(|up| up.with_deadline(&config.deadline))
            .map_err(|e| StartError::Other(format!("upstream `{name}`: {e}")))?;
            upstreams.insert(name.clone(), upstream);
        }
        // Every upstream's cache, a sharded upstream's shards' included (by
        // shard name: each shard's stack has its own).
        for (name, up) in &upstreams {
            if let Some(cache) = up.layers().cache() {
                caches.insert(name, cache);
            }
        }
        // The deadline every route gives a request (`[deadline]`), then each
        // upstream's overall timeout, which is one too.
        let deadlines = Registry::new();
        let deadline = DeadlineLayer::builder(ROUTE_DEADLINE)
            .settings(config.deadline.clone())
            .registry(&deadlines)
            .build()
            .map_err(|e| StartError::Other(format!("deadline: {e}")))?;
        for (name, up) in &upstreams {
            // An upstream called like the route's layer is left out of the
            // registry (its expiries are still in its metrics).
            if name != ROUTE_DEADLINE {
                deadlines.insert(name, up.layers().deadline());
            }
        }
        let rate_limits = Registry::new();
        let rate_limit = match &config.rate_limit {
            Some(c) => Some(ApiRateLimit::build(c, &rate_limits)?),
            None => None,
        };
        let chaos = Registry::new();
        for (name, b) in &backends {
            chaos.insert(name, b.chaos.clone());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                upstreams,
                routes: config.routes.clone(),
                aggregator: config.aggregator.clone(),
                backends,
                chaos,
                circuit_breakers,
                bulkheads,
                fan_outs: Registry::new(),
                admin_token: admin_token.map(Arc::from),
                body_limit: config.server.body_limit_bytes,
                access_log: config.log.access_log,
                waterfall: Arc::default(),
                lifecycle: Lifecycle::default(),
                prometheus: prometheus(),
                deadline,
                deadlines,
                fallbacks: Registry::new(),
                accounts: OnceLock::new(),
                sharded,
                shard_routers,
                rate_limits,
                rate_limit,
                caches,
                pubsub: OnceLock::new(),
            }),
        })
    }

    /// The upstream called `name`.
    #[must_use]
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.inner.upstreams.get(name)
    }

    /// Every upstream, by name.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.inner.upstreams.values()
    }

    /// The chaos handles of the demo backends, by name.
    #[must_use]
    pub fn chaos(&self) -> &Registry<ChaosHandle> {
        &self.inner.chaos
    }

    /// Every upstream's circuit breaker, by upstream name.
    #[must_use]
    pub fn circuit_breakers(&self) -> &Registry<CircuitBreakerHandle> {
        &self.inner.circuit_breakers
    }

    /// Every upstream's bulkhead, by upstream name.
    #[must_use]
    pub fn bulkheads(&self) -> &Registry<BulkheadHandle> {
        &self.inner.bulkheads
    }

    /// The aggregator's fan-out, once an [`App`](crate::App) has built it
    /// (every worker's is built from the same config, so has the same
    /// snapshot).
    #[must_use]
    pub fn fan_outs(&self) -> &Registry<FanOutHandle> {
        &self.inner.fan_outs
    }

    /// The deadline layers: the one every route gives a request
    /// ([`ROUTE_DEADLINE`], `[deadline]`) and each upstream's overall
    /// timeout, by upstream name.
    #[must_use]
    pub fn deadlines(&self) -> &Registry<DeadlineHandle> {
        &self.inner.deadlines
    }

    /// The aggregator branches' fallbacks, by branch name, once an
    /// [`App`](crate::App) has built them (every worker's share their
    /// counters).
    #[must_use]
    pub fn fallbacks(&self) -> &Registry<FallbackHandle> {
        &self.inner.fallbacks
    }

    /// The accounts feature (`/api/accounts`), once
    /// [`Gateway::bind`](crate::Gateway::bind) has opened its event store.
    #[must_use]
    pub fn accounts(&self) -> Option<&crate::accounts::Accounts> {
        self.inner.accounts.get()
    }

    /// Sets the accounts feature (once; a second call is ignored).
    pub fn set_accounts(&self, accounts: crate::accounts::Accounts) {
        let _ = self.inner.accounts.set(accounts);
    }

    /// The rate limiters, by name: the `/api` limiter of `[rate_limit]`
    /// ([`crate::rate_limit::NAME`]), when configured.
    #[must_use]
    pub fn rate_limits(&self) -> &Registry<RateLimitHandle> {
        &self.inner.rate_limits
    }

    /// The `/api` limiter of `[rate_limit]`, when configured.
    #[must_use]
    pub fn rate_limit(&self) -> Option<&ApiRateLimit> {
        self.inner.rate_limit.as_ref()
    }

    /// Every upstream's cache, by upstream name.
    #[must_use]
    pub fn caches(&self) -> &Registry<CacheHandle> {
        &self.inner.caches
    }

    /// The shutdown state.
    #[must_use]
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// What the gateway does once a second (`Gateway::serve` calls it):
    /// reports, per upstream, the failures the log held back in the seconds
    /// that ended ([`FailureLog::report_suppressed`]), and folds those
    /// seconds into each upstream's history for the dashboard's sparklines
    /// ([`UpstreamStats::fold_history`](crate::proxy::stats::UpstreamStats::fold_history)).
    ///
    /// [`FailureLog::report_suppressed`]: crate::logs::FailureLog::report_suppressed
    pub fn upkeep(&self) {
        for up in self.upstreams() {
            up.failure_log().report_suppressed(up.name(), false);
        }
        for up in self.sharded_upstreams() {
            up.failure_log().report_suppressed(up.name(), false);
        }
        self.fold_history();
    }

    /// Folds the seconds that ended into each upstream's history, with its
    /// breaker's state now.
    pub(crate) fn fold_history(&self) {
        for up in self.upstreams() {
            let breaker = self
                .circuit_breakers()
                .get(up.name())
                .map(|h| h.state().as_str());
            up.stats().fold_history(breaker);
        }
    }

    /// The last aggregator gather kept for the dashboard (one every
    /// [`SAMPLE_EVERY`](crate::aggregator::SAMPLE_EVERY) at most).
    #[must_use]
    pub fn last_gather(&self) -> Option<crate::aggregator::GatherView> {
        self.inner.waterfall.last()
    }

    /// Reports every failure the log still holds back (at shutdown).
    pub fn flush_logs(&self) {
        for up in self.upstreams() {
            up.failure_log().report_suppressed(up.name(), true);
        }
        for up in self.sharded_upstreams() {
            up.failure_log().report_suppressed(up.name(), true);
        }
    }

    /// The sharded upstream called `name` (`[upstreams.<name>.shards]`).
    #[must_use]
    pub fn sharded_upstream(&self, name: &str) -> Option<&crate::sharding::ShardedUpstream> {
        self.inner.sharded.get(name)
    }

    /// Every sharded upstream, by name. Their shards are upstreams too
    /// ([`upstreams`](Self::upstreams)), those the config lists.
    pub fn sharded_upstreams(&self) -> impl Iterator<Item = &crate::sharding::ShardedUpstream> {
        self.inner.sharded.values()
    }

    /// The sharded upstreams' routers, by upstream name.
    #[must_use]
    pub fn shard_routers(&self) -> &crate::sharding::ShardRegistry {
        &self.inner.shard_routers
    }

    /// Where the demo backend `name` listens, if it runs.
    #[must_use]
    pub fn backend_addr(&self, name: &str) -> Option<SocketAddr> {
        self.inner.backends.get(name).map(|b| b.addr)
    }

    /// The registries a shard added at runtime registers its layers in.
    #[must_use]
    pub fn shard_registries(&self) -> crate::sharding::Registries<'_> {
        crate::sharding::Registries {
            breakers: &self.inner.circuit_breakers,
            bulkheads: &self.inner.bulkheads,
            routers: &self.inner.shard_routers,
        }
    }

    /// The events feature (`[pubsub]`), once the gateway has started it.
    #[must_use]
    pub fn pubsub(&self) -> Option<&crate::pubsub::PubSub> {
        self.inner.pubsub.get()
    }

    /// Attaches the started events feature (once; a second is handed back).
    pub(crate) fn attach_pubsub(
        &self,
        pubsub: crate::pubsub::PubSub,
    ) -> Result<(), Box<crate::pubsub::PubSub>> {
        self.inner.pubsub.set(pubsub).map_err(Box::new)
    }

    /// `true` when the admin API is enabled (a token is set).
    #[must_use]
    pub fn admin_enabled(&self) -> bool {
        self.inner.admin_token.is_some()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field(
                "upstreams",
                &self.inner.upstreams.keys().collect::<Vec<_>>(),
            )
            .field("backends", &self.inner.backends.keys().collect::<Vec<_>>())
            .field("admin_enabled", &self.admin_enabled())
            .finish_non_exhaustive()
    }
}
