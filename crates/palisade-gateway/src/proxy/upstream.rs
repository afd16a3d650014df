//! One upstream: its resolved address, its layers, its statistics, and the
//! stack they make over an HTTP client.
//!
//! # The stack
//!
//! [`build_stack`] is the one place an upstream's stack is assembled,
//! outermost first (the order and reasons of `docs/ARCHITECTURE.md`,
//! "Layer ordering"):
//!
//! ```text
//! statistics (dashboard)         sees what a caller sees, rejections and timeouts included
//!   cache                        `[cache]`: a hit skips everything below; a miss goes through it
//!                                all; a stale entry answers a failure, a timeout or a rejection
//!   overall timeout              `timeout_ms`, as a deadline (palisade-deadline, budget `timeout_ms`):
//!                                the smaller of its own value and what is left of the request's
//!                                deadline, carried on, so every layer below sees it
//!     hedge                      `[hedge]`: HedgeLayer::http_builder + HedgeSettings; GET and the
//!                                other idempotent methods only (the retry layer's rule)
//!       (body as Body)           map_request(|r| r.map(Body::new))
//!         retry (with budget)    `[retry]`: RetryLayer::http_builder + RetrySettings; hands on
//!                                Request<RetryBody<Body>>; never retries the client's own faults
//!                                (RetryClassifier); starts no attempt the deadline cannot fit
//!           (body as Body)       map_request(|r| r.map(Body::new))
//!             circuit breaker    `[circuit_breaker]`: counts every attempt; 5xx and errors fail,
//!                                a full bulkhead below and the client's own faults are ignored
//!               attempt timeout  `attempt_timeout_ms`: a hung attempt is a failure the breaker counts
//!                 bulkhead       `[bulkhead]`: bounds the calls really in flight, retries included
//!                   deadline header  what is left (`x-palisade-timeout-ms`), written on each attempt
//!                     client     hyper-util's pooled HTTP/1 client
//! ```
//!
//! The hedge sits between the overall timeout and retry: the deadline
//! bounds the hedges too (a hedge is never sent past it, and the losers are
//! dropped with it), and each hedge is a whole retried call of its own, so a
//! slow first attempt is raced rather than waited for, while retry still
//! answers the failures. Inside retry, every retry would be hedged and the
//! hedge's latency window would see attempts, not calls. The deadline header
//! is written just above the client, so each attempt (a retry's, a hedge's)
//! tells the upstream what is left at the moment it is sent.
//!
//! A layer whose table is absent is left out (the service passes through
//! `tower::util::Either`), so every upstream's stack has one type,
//! [`UpstreamStack`], whatever layers it has: nothing is boxed per call.
//! Cloning a stack allocates nothing (every layer's state is behind an
//! `Arc`), so a caller clones it and calls `oneshot`.
//!
//! The layers are built once per upstream ([`UpstreamLayers`]) and own their
//! state (the breaker's window, the bulkhead's permits, the retry budget);
//! every stack built from them, on every worker thread, shares that state.
//! Only the client differs: each worker thread has its own.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, Uri};
use palisade::bulkhead::{Bulkhead, BulkheadHandle, BulkheadLayer};
use palisade::cache::CacheLayer;
use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer};
use palisade::deadline::{DeadlineHandle, DeadlineLayer, DeadlineService, DeadlineSettings};
use palisade::hedge::{Hedge, HedgeHandle, HedgeLayer};
use palisade::http::StatusClassifier;
use palisade::retry::http::{Http, HttpRetryLayer, RetryBody};
use palisade::retry::{Retry, RetryHandle, RetryLayer};
use palisade::{BoxError, BulkheadFull, Classify, ConfigError, Outcome, Registry, cause_ref};
use tower::timeout::{Timeout, TimeoutLayer};
use tower::util::{BoxCloneSyncService, Either, MapRequest};
use tower::{Layer, ServiceBuilder};

use crate::cache::{Cached, UpstreamCacheLayer};
use crate::config::UpstreamConfig;
use crate::logs::FailureLog;
use crate::proxy::stats::{Stats, UpstreamStats};
use crate::proxy::{ClientService, HttpClient, is_client_fault};

/// The body conversion between retry and the breaker: retry hands on
/// `Request<RetryBody<Body>>`, the rest of the stack takes `Request<Body>`.
type ToBody = fn(Request<RetryBody<Body>>) -> Request<Body>;

fn to_body(req: Request<RetryBody<Body>>) -> Request<Body> {
    req.map(Body::new)
}

/// The client, under the layer writing what is left of the deadline onto
/// each attempt.
type Outgoing = DeadlineService<ClientService>;
type Bulkheaded = Either<Bulkhead<Outgoing>, Outgoing>;
type AttemptBounded = Timeout<Bulkheaded>;
type Guarded = Either<CircuitBreaker<AttemptBounded, UpstreamClassifier>, AttemptBounded>;
type Retried = Either<Retry<MapRequest<Guarded, ToBody>, RetryClassifier, Http>, Guarded>;
type Hedged = Either<Hedge<MapRequest<Retried, ToBody>, StatusClassifier, Http>, Retried>;

/// An upstream's stack (see [`build_stack`]): `Request<Body>` in (an
/// origin-form URI, under the upstream's base; or an absolute one),
/// `Response<Body>` or a [`BoxError`] out. One type for every upstream;
/// cloning it allocates nothing, and clones share every layer's state.
pub type UpstreamStack = Stats<Cached<DeadlineService<Hedged>>>;

/// [`UpstreamStack`] type-erased, for callers that want one
/// (`BoxCloneSyncService`: a boxed future per call).
pub type UpstreamService = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// How the circuit breaker counts an attempt: a 5xx answer or an error is a
/// failure (a refused connection, a reset, the per-attempt timeout); any
/// other answer a success. Two kinds of error are ignored (neither success
/// nor failure), because they say nothing about the upstream's health:
///
/// - a [`BulkheadFull`] from the bulkhead below: a full bulkhead is the
///   gateway's own limit, not the upstream's failure, and must not open its
///   breaker;
/// - the client's own faults ([`is_client_fault`]): a request body over the
///   gateway's limit, or one the client cut short or sent malformed. The
///   client call fails with them because the body is sent while the answer
///   is awaited; counted, any client could open an upstream's breaker for
///   everyone by sending oversized bodies.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpstreamClassifier {
    statuses: StatusClassifier,
}

impl UpstreamClassifier {
    /// 5xx and errors fail; a full bulkhead and the client's faults are
    /// ignored.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            statuses: StatusClassifier::server_errors(),
        }
    }
}

impl<B> Classify<Response<B>, BoxError> for UpstreamClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match result {
            Ok(res) => self.statuses.classify_status(res.status()),
            Err(err) if cause_ref::<BulkheadFull>(&**err).is_some() || is_client_fault(&**err) => {
                Outcome::Ignored
            }
            Err(_) => Outcome::Failure,
        }
    }
}

/// Which attempts the retry layer retries: those
/// [`StatusClassifier::transient`] calls failures (429, 502, 503, 504, and
/// errors), except the client's own faults ([`is_client_fault`]), which are
/// [`Outcome::Ignored`]: sending the same over-long or broken body again
/// cannot succeed, and a body that is not buffered cannot be sent again
/// anyway. (Rejections are never retried, whatever a classifier says.)
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryClassifier {
    statuses: StatusClassifier,
}

impl RetryClassifier {
    /// Transient failures retried; the client's faults not.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            statuses: StatusClassifier::transient(),
        }
    }
}

impl<B> Classify<Response<B>, BoxError> for RetryClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match result {
            Err(err) if is_client_fault(&**err) => Outcome::Ignored,
            _ => self.statuses.classify(result),
        }
    }
}

/// The breaker layer of an upstream, with its classifier.
pub type UpstreamBreakerLayer = CircuitBreakerLayer<UpstreamClassifier>;

/// The hedge layer of an upstream: HTTP requests, 5xx and errors failed
/// attempts.
pub type UpstreamHedgeLayer = HedgeLayer<StatusClassifier, Http>;

/// The layer writing what is left of a request's deadline onto each attempt
/// to upstream `name`, in the header of `settings` (when it writes headers):
/// it reads no header, sets no budget and enforces nothing (the overall
/// timeout above does).
///
/// # Errors
///
/// The deadline builder's [`ConfigError`] (not for checked settings).
pub fn outgoing_deadline(
    name: &str,
    settings: &DeadlineSettings,
) -> Result<DeadlineLayer, ConfigError> {
    DeadlineLayer::builder(format!("{name}.attempt"))
        .header(settings.header.clone())
        .write_headers(settings.write_headers)
        .read_headers(false)
        .enforce(false)
        .build()
}

/// The layers of one upstream, built once from its config; each owns its
/// state, shared by every stack built from it.
#[derive(Clone)]
pub struct UpstreamLayers {
    timeout: Duration,
    attempt_timeout: Duration,
    retry: Option<HttpRetryLayer<RetryClassifier>>,
    circuit_breaker: Option<UpstreamBreakerLayer>,
    bulkhead: Option<BulkheadLayer>,
    deadline: DeadlineLayer,
    outgoing: DeadlineLayer,
    hedge: Option<UpstreamHedgeLayer>,
    cache: Option<UpstreamCacheLayer>,
}

impl UpstreamLayers {
    /// Builds the layers of upstream `name` from `config`, once, each named
    /// `name`: retry, the circuit breaker and the bulkhead from their
    /// crates' settings as configured (`.settings(..)`), registering the
    /// breaker and the bulkhead in the registries (a name already registered
    /// gives the registered instance); the cache with [`crate::cache::build`].
    ///
    /// # Errors
    ///
    /// A builder's [`ConfigError`] (a loaded config has been checked with the
    /// crates' `validate()`, so it builds).
    pub fn build(
        name: &str,
        config: &UpstreamConfig,
        breakers: &Registry<CircuitBreakerHandle>,
        bulkheads: &Registry<BulkheadHandle>,
    ) -> Result<Self, ConfigError> {
        let retry = config
            .retry
            .as_ref()
            .map(|r| {
                RetryLayer::http_builder(name)
                    .settings(r.clone())
                    .classifier(RetryClassifier::new())
                    .build()
            })
            .transpose()?;
        let circuit_breaker = config
            .circuit_breaker
            .as_ref()
            .map(|c| {
                CircuitBreakerLayer::builder(name)
                    .settings(c.clone())
                    .classifier(UpstreamClassifier::new())
                    .registry(breakers)
                    .build()
            })
            .transpose()?;
        let bulkhead = config
            .bulkhead
            .as_ref()
            .map(|b| {
                BulkheadLayer::builder(name)
                    .settings(b.clone())
                    .registry(bulkheads)
                    .build()
            })
            .transpose()?;
        // The overall timeout: a budget of `timeout`, cut to what is left of
        // a deadline the request carries (read from its headers by the
        // route), carried on for the layers below.
        let deadline = DeadlineLayer::builder(name)
            .budget(config.timeout)
            .read_headers(false)
            .write_headers(false)
            .build()?;
        let outgoing = outgoing_deadline(name, &DeadlineSettings::default())?;
        let hedge = config
            .hedge
            .as_ref()
            .map(|h| HedgeLayer::http_builder(name).settings(h.clone()).build())
            .transpose()?;
        let cache = config
            .cache
            .as_ref()
            .map(|c| crate::cache::build(name, c))
            .transpose()?;
        Ok(Self {
            timeout: config.timeout,
            attempt_timeout: config.attempt_timeout,
            retry,
            circuit_breaker,
            bulkhead,
            deadline,
            outgoing,
            hedge,
            cache,
        })
    }

    /// The overall timeout's deadline handle (its expiries).
    #[must_use]
    pub fn deadline(&self) -> DeadlineHandle {
        self.deadline.handle()
    }

    /// The hedge layer's handle, if the stack hedges.
    #[must_use]
    pub fn hedge(&self) -> Option<HedgeHandle> {
        self.hedge.as_ref().map(HedgeLayer::handle)
    }

    /// The cache's handle, if the stack has a cache.
    #[must_use]
    pub fn cache(&self) -> Option<palisade::cache::CacheHandle> {
        self.cache.as_ref().map(CacheLayer::handle)
    }

    /// The breaker's handle, if the stack has a breaker.
    #[must_use]
    pub fn circuit_breaker(&self) -> Option<CircuitBreakerHandle> {
        self.circuit_breaker
            .as_ref()
            .map(CircuitBreakerLayer::handle)
    }

    /// The bulkhead's handle, if the stack has a bulkhead.
    #[must_use]
    pub fn bulkhead(&self) -> Option<BulkheadHandle> {
        self.bulkhead.as_ref().map(BulkheadLayer::handle)
    }

    /// `true` if the stack retries.
    #[must_use]
    pub const fn retries(&self) -> bool {
        self.retry.is_some()
    }

    /// The retry layer's handle, if the stack retries.
    #[must_use]
    pub fn retry(&self) -> Option<RetryHandle> {
        self.retry.as_ref().map(RetryLayer::handle)
    }
}

impl std::fmt::Debug for UpstreamLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLayers")
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("retry", &self.retry.is_some())
            .field("circuit_breaker", &self.circuit_breaker.is_some())
            .field("bulkhead", &self.bulkhead.is_some())
            .field("hedge", &self.hedge.is_some())
            .field("cache", &self.cache.is_some())
            .finish()
    }
}

/// The stack of one upstream at `base` over `client`, outermost first:
/// statistics, cache, overall timeout, hedge, retry, circuit breaker, per-attempt
/// timeout, bulkhead, deadline header, client (see the [module docs](self)).
#[must_use]
pub fn build_stack(
    layers: &UpstreamLayers,
    base: &Uri,
    stats: &UpstreamStats,
    client: HttpClient,
) -> UpstreamStack {
    let client = layers.outgoing.layer(ClientService::new(base, client));
    let bulkheaded = match &layers.bulkhead {
        Some(bulkhead) => Either::Left(bulkhead.layer(client)),
        None => Either::Right(client),
    };
    let attempt = TimeoutLayer::new(layers.attempt_timeout).layer(bulkheaded);
    let guarded = match &layers.circuit_breaker {
        Some(breaker) => Either::Left(breaker.layer(attempt)),
        None => Either::Right(attempt),
    };
    let retried: Retried = match &layers.retry {
        Some(retry) => Either::Left(retry.layer(MapRequest::new(guarded, to_body as ToBody))),
        None => Either::Right(guarded),
    };
    let hedged: Hedged = match &layers.hedge {
        Some(hedge) => Either::Left(hedge.layer(MapRequest::new(retried, to_body as ToBody))),
        None => Either::Right(retried),
    };
    ServiceBuilder::new()
        .layer(stats.layer())
        .layer(crate::cache::layer(layers.cache.as_ref()))
        .layer(layers.deadline.clone())
        .service(hedged)
}

/// A configured upstream: where it is, its layers and statistics. Its
/// stacks are built per HTTP client with [`stack`](Self::stack).
#[derive(Clone)]
pub struct Upstream {
    name: String,
    base: Uri,
    demo_backend: Option<String>,
    config: UpstreamConfig,
    stats: UpstreamStats,
    layers: UpstreamLayers,
    failures: Arc<FailureLog>,
}

impl Upstream {
    /// The upstream `name` at `base`, its layers built from `config` and
    /// registered in the registries.
    ///
    /// # Errors
    ///
    /// As [`UpstreamLayers::build`].
    pub fn new(
        name: &str,
        base: Uri,
        demo_backend: Option<String>,
        config: UpstreamConfig,
        breakers: &Registry<CircuitBreakerHandle>,
        bulkheads: &Registry<BulkheadHandle>,
    ) -> Result<Self, ConfigError> {
        let layers = UpstreamLayers::build(name, &config, breakers, bulkheads)?;
        Ok(Self {
            name: name.to_owned(),
            base,
            demo_backend,
            config,
            stats: UpstreamStats::new(name),
            layers,
            failures: Arc::new(FailureLog::new()),
        })
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

    /// Its overall timeout.
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Its statistics.
    #[must_use]
    pub const fn stats(&self) -> &UpstreamStats {
        &self.stats
    }

    /// Its layers.
    #[must_use]
    pub const fn layers(&self) -> &UpstreamLayers {
        &self.layers
    }

    /// Its per-call failure log (at most one line per reason per second),
    /// shared by every worker thread's proxy route to it.
    #[must_use]
    pub const fn failure_log(&self) -> &Arc<FailureLog> {
        &self.failures
    }

    /// The same upstream, writing the time left onto its requests in the
    /// header `settings` names (`[deadline]`), or not at all when it writes
    /// none.
    ///
    /// # Errors
    ///
    /// As [`outgoing_deadline`].
    pub fn with_deadline(mut self, settings: &DeadlineSettings) -> Result<Self, ConfigError> {
        self.layers.outgoing = outgoing_deadline(&self.name, settings)?;
        Ok(self)
    }

    /// Its stack over `client` (see [`build_stack`]).
    #[must_use]
    pub fn stack(&self, client: HttpClient) -> UpstreamStack {
        build_stack(&self.layers, &self.base, &self.stats, client)
    }

    /// Its stack over `client`, type-erased.
    #[must_use]
    pub fn service(&self, client: HttpClient) -> UpstreamService {
        BoxCloneSyncService::new(self.stack(client))
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("demo_backend", &self.demo_backend)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade::CircuitOpen;

    #[test]
    fn the_classifier_fails_5xx_and_errors_and_ignores_a_full_bulkhead() {
        let c = UpstreamClassifier::new();
        let res = |s: u16| Ok::<_, BoxError>(Response::builder().status(s).body(()).unwrap());
        assert_eq!(c.classify(&res(200)), Outcome::Success);
        assert_eq!(c.classify(&res(404)), Outcome::Success);
        assert_eq!(c.classify(&res(500)), Outcome::Failure);
        assert_eq!(c.classify(&res(503)), Outcome::Failure);
        let err = |e: BoxError| Err::<Response<()>, _>(e);
        assert_eq!(
            c.classify(&err(tower::timeout::error::Elapsed::new().into())),
            Outcome::Failure
        );
        assert_eq!(c.classify(&err("reset".into())), Outcome::Failure);
        assert_eq!(
            c.classify(&err(BulkheadFull::new("user").into())),
            Outcome::Ignored
        );
        // An open breaker further down would be a failure of that path.
        assert_eq!(
            c.classify(&err(CircuitOpen::new("x", None).into())),
            Outcome::Failure
        );
    }

    /// The error a [`ClientBody`](crate::proxy::ClientBody) over `chunks`
    /// with `limit` raises, wrapped as the upstream call reports it (hyper's
    /// error around axum's around the body's).
    fn client_body_error(
        chunks: Vec<Result<bytes::Bytes, std::io::Error>>,
        limit: usize,
    ) -> BoxError {
        use futures_util::FutureExt;
        use http_body_util::BodyExt;
        let body = crate::proxy::ClientBody::new(
            http_body_util::StreamBody::new(futures_util::stream::iter(
                chunks.into_iter().map(|c| c.map(http_body::Frame::data)),
            )),
            limit,
        );
        let mut body = std::pin::pin!(Body::new(body));
        let err = loop {
            match body.frame().now_or_never().expect("ready") {
                Some(Ok(_)) => {}
                Some(Err(err)) => break err,
                None => panic!("the body ended without an error"),
            }
        };
        Box::new(Wrapped(Box::new(err)))
    }

    #[derive(Debug)]
    struct Wrapped(BoxError);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error from user's Body stream")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn the_clients_faults_are_ignored_by_the_breaker_and_not_retried() {
        let too_large = client_body_error(vec![Ok(bytes::Bytes::from(vec![0u8; 10]))], 5);
        let aborted = client_body_error(
            vec![
                Ok(bytes::Bytes::from_static(b"abc")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "end of file before message length reached",
                )),
            ],
            100,
        );
        assert_eq!(
            crate::proxy::client_fault(&*too_large),
            Some(crate::proxy::ClientFault::BodyTooLarge)
        );
        assert_eq!(
            crate::proxy::client_fault(&*aborted),
            Some(crate::proxy::ClientFault::BadBody)
        );
        let breaker = UpstreamClassifier::new();
        let retry = RetryClassifier::new();
        for e in [too_large, aborted] {
            let result = Err::<Response<()>, _>(e);
            assert_eq!(breaker.classify(&result), Outcome::Ignored);
            assert_eq!(retry.classify(&result), Outcome::Ignored);
        }
        // Everything else, as `StatusClassifier::transient` says.
        let res = |s: u16| Ok::<_, BoxError>(Response::builder().status(s).body(()).unwrap());
        assert_eq!(retry.classify(&res(200)), Outcome::Success);
        assert_eq!(retry.classify(&res(500)), Outcome::Success);
        assert_eq!(retry.classify(&res(503)), Outcome::Failure);
        assert_eq!(retry.classify(&res(429)), Outcome::Failure);
        let reset: Result<Response<()>, BoxError> = Err("connection reset".into());
        assert_eq!(retry.classify(&reset), Outcome::Failure);
        assert_eq!(breaker.classify(&reset), Outcome::Failure);
    }
}
