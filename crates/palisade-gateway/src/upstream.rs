//! One upstream: its resolved address, its service stack and its statistics.
//!
//! [`build_stack`] is the one place an upstream's stack is assembled. Every
//! caller (the proxy routes today, the aggregator tomorrow) sends requests
//! with an origin-form URI (`/users/7`) through [`Upstream::service`].

use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, Uri};
use palisade_core::BoxError;
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower::util::BoxCloneSyncService;

use crate::config::UpstreamConfig;
use crate::proxy::ClientService;
use crate::stats::UpstreamStats;

/// An upstream's stack, type-erased at the edge so layers can be added
/// without changing any caller: `Request<Body>` (origin-form URI) in,
/// `Response<Body>` or a [`BoxError`] out. Cloning it is cheap; clones share
/// every layer's state.
pub type UpstreamService = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// Builds the stack of the upstream `name` at `base`, outermost first:
///
/// 1. statistics for the dashboard ([`UpstreamStats`]): outermost, so they
///    see what a caller sees, timeouts and rejections included;
/// 2. the timeout (`timeout_ms`, tower's `TimeoutLayer`): covers the whole
///    call up to response headers, and fails with tower's `Elapsed`;
/// 3. the upstream's connection pool ([`ClientService`]).
///
/// The retry, circuit-breaker and bulkhead layers configured under
/// `[upstreams.<name>.retry]`, `.circuit_breaker` and `.bulkhead` belong
/// between 2 and 3, in that order (outermost first), built from
/// `config.retry`, `config.circuit_breaker` and `config.bulkhead`. This
/// build validates those settings but does not apply them yet; start-up
/// logs say so.
#[must_use]
pub fn build_stack(
    name: &str,
    base: &Uri,
    config: &UpstreamConfig,
    stats: &UpstreamStats,
) -> UpstreamService {
    debug_assert_eq!(name, stats.name());
    let stack = ServiceBuilder::new()
        .layer(stats.layer())
        .layer(TimeoutLayer::new(config.timeout))
        .service(ClientService::new(base));
    BoxCloneSyncService::new(stack)
}

/// A configured upstream, ready to call.
#[derive(Clone)]
pub struct Upstream {
    name: String,
    base: Uri,
    demo_backend: Option<String>,
    config: UpstreamConfig,
    stats: UpstreamStats,
    service: UpstreamService,
}

impl Upstream {
    /// Resolves and builds the upstream `name` at `base`.
    #[must_use]
    pub fn new(
        name: &str,
        base: Uri,
        demo_backend: Option<String>,
        config: UpstreamConfig,
    ) -> Self {
        let stats = UpstreamStats::new(name);
        let service = build_stack(name, &base, &config, &stats);
        Self {
            name: name.to_owned(),
            base,
            demo_backend,
            config,
            stats,
            service,
        }
    }

    /// The upstream's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where requests go.
    #[must_use]
    pub const fn base(&self) -> &Uri {
        &self.base
    }

    /// The demo backend behind it, for `demo://` upstreams.
    #[must_use]
    pub fn demo_backend(&self) -> Option<&str> {
        self.demo_backend.as_deref()
    }

    /// Its configuration.
    #[must_use]
    pub const fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Its timeout.
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Its statistics.
    #[must_use]
    pub const fn stats(&self) -> &UpstreamStats {
        &self.stats
    }

    /// A clone of its stack, to call with `ServiceExt::oneshot`.
    #[must_use]
    pub fn service(&self) -> UpstreamService {
        self.service.clone()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("demo_backend", &self.demo_backend)
            .finish_non_exhaustive()
    }
}
