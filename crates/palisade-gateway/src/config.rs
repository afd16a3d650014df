//! The gateway's TOML configuration: structs, parsing and validation, with
//! errors that name the file, line, column and key.
//!
//! Durations are integers of milliseconds in keys ending in `_ms`;
//! percentages are numbers in `(0, 100]`. The resilience tables
//! (`[upstreams.<name>.retry]`, `.circuit_breaker`, `.bulkhead`) and the
//! `[aggregator]` use the layer builders' setter names: each key is one
//! setter call, and the builder's own validation
//! ([`ConfigError`], whose `field` is the setter's
//! name) decides what is valid. A builder's error is reported at the key it
//! names. See `docs/gateway.md` for every key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use palisade::ConfigError;
use palisade::bulkhead::{BulkheadBuilder, BulkheadLayer};
use palisade::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, State};
use palisade::fan_out::http::Route;
use palisade::http::StatusClassifier;
use palisade::retry::http::Http;
use palisade::retry::{Backoff, Jitter, RetryBuilder, RetryLayer};
use serde::Deserialize;
use toml::Spanned;

/// The configuration compiled into the binary (`--print-default-config`
/// prints it): the gateway on 127.0.0.1:8080 over the six demo backends.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The name the embedded default configuration is reported under in errors.
pub const DEFAULT_CONFIG_NAME: &str = "<default config>";

/// The demo services the gateway can start in-process.
pub const DEMO_SERVICES: [&str; 6] = [
    "user",
    "order",
    "product",
    "review",
    "reward",
    "notification",
];

/// The aggregator's route: one user's dashboard, gathered from the branches
/// of `[aggregator]`.
pub const AGGREGATOR_ROUTE: &str = "/api/dashboard/user/{id}";

/// Paths the gateway serves itself; a route prefix may not shadow them.
pub const RESERVED_PREFIXES: [&str; 6] = [
    "/admin",
    "/dashboard",
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/dashboard",
];

// ===== error =====

/// A configuration file that cannot be used: where, which key, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFileError {
    file: String,
    line: usize,
    column: usize,
    key: String,
    message: String,
}

impl ConfigFileError {
    fn at(
        source: &Source<'_>,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(source.text, span.start);
        Self {
            file: source.name.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A file that sets nothing at all (empty, or only comments): a gateway
    /// with no routes, which is never what was meant.
    fn empty(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: "the file is empty (or only comments): a gateway with no upstream and no \
                      route would serve nothing; start from `palisade-gateway --print-default-config`"
                .to_owned(),
        }
    }

    /// A file that could not be read at all.
    #[must_use]
    pub fn unreadable(file: &str, err: &std::io::Error) -> Self {
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the file: {err}"),
        }
    }

    /// The file the error is in.
    #[must_use]
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based line (0 when the file could not be read).
    #[must_use]
    pub const fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column, in characters.
    #[must_use]
    pub const fn column(&self) -> usize {
        self.column
    }

    /// The dotted key at fault (`upstreams.user.timeout_ms`), empty when the
    /// error is not about one key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigFileError {}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

// ===== raw (as written) =====

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    demo: Option<RawDemo>,
    #[serde(default)]
    upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    aggregator: Option<Spanned<RawAggregator>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    body_limit_bytes: Option<Spanned<i64>>,
    drain_timeout_ms: Option<Spanned<i64>>,
    shutdown_grace_ms: Option<Spanned<i64>>,
    worker_threads: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token: Option<Spanned<String>>,
    #[serde(default)]
    generate_token: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    access_log: Option<Spanned<String>>,
    access_log_sample: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemo {
    #[serde(default = "yes")]
    enabled: bool,
    seed: Option<u64>,
    #[serde(default)]
    backends: BTreeMap<Spanned<String>, RawBackend>,
}

const fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    listen: Option<Spanned<String>>,
    latency_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Spanned<String>,
    timeout_ms: Option<Spanned<i64>>,
    attempt_timeout_ms: Option<Spanned<i64>>,
    retry: Option<Spanned<RawRetry>>,
    circuit_breaker: Option<Spanned<RawBreaker>>,
    bulkhead: Option<Spanned<RawBulkhead>>,
}

/// `[upstreams.<name>.retry]`: `RetryLayer::http_builder`'s setters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<RawBackoff>>,
    jitter: Option<Spanned<String>>,
    deadline_ms: Option<Spanned<i64>>,
    retry_ratio: Option<Spanned<f64>>,
    min_retries_per_sec: Option<Spanned<i64>>,
    budget_ttl_ms: Option<Spanned<i64>>,
    max_body_bytes: Option<Spanned<i64>>,
    retry_non_idempotent: Option<Spanned<bool>>,
    honor_retry_after: Option<Spanned<bool>>,
    max_retry_after_ms: Option<Spanned<i64>>,
}

/// The keys of `[upstreams.<name>.retry]`, in the order of the docs.
const RETRY_KEYS: [&str; 11] = [
    "max_attempts",
    "backoff",
    "jitter",
    "deadline_ms",
    "retry_ratio",
    "min_retries_per_sec",
    "budget_ttl_ms",
    "max_body_bytes",
    "retry_non_idempotent",
    "honor_retry_after",
    "max_retry_after_ms",
];

/// `backoff = { kind = "exponential", base_ms = 25, multiplier = 2.0, cap_ms = 1000 }`:
/// the arguments of `Backoff`'s constructors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    kind: Spanned<String>,
    delay_ms: Option<Spanned<i64>>,
    base_ms: Option<Spanned<i64>>,
    multiplier: Option<Spanned<f64>>,
    cap_ms: Option<Spanned<i64>>,
}

/// `[upstreams.<name>.circuit_breaker]`: `CircuitBreakerLayer::builder`'s
/// setters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    count_window: Option<Spanned<i64>>,
    time_window_ms: Option<Spanned<i64>>,
    failure_rate_threshold: Option<Spanned<f64>>,
    trip_on_failure_rate: Option<Spanned<bool>>,
    slow_call_duration_ms: Option<Spanned<i64>>,
    slow_call_rate_threshold: Option<Spanned<f64>>,
    consecutive_failures: Option<Spanned<i64>>,
    minimum_calls: Option<Spanned<i64>>,
    wait_in_open_ms: Option<Spanned<i64>>,
    wait_in_open_multiplier: Option<Spanned<f64>>,
    max_wait_in_open_ms: Option<Spanned<i64>>,
    wait_in_open_jitter: Option<Spanned<f64>>,
    permitted_calls_in_half_open: Option<Spanned<i64>>,
    max_wait_in_half_open_ms: Option<Spanned<i64>>,
    initial_state: Option<Spanned<String>>,
}

/// The keys of `[upstreams.<name>.circuit_breaker]`.
const BREAKER_KEYS: [&str; 15] = [
    "count_window",
    "time_window_ms",
    "failure_rate_threshold",
    "trip_on_failure_rate",
    "slow_call_duration_ms",
    "slow_call_rate_threshold",
    "consecutive_failures",
    "minimum_calls",
    "wait_in_open_ms",
    "wait_in_open_multiplier",
    "max_wait_in_open_ms",
    "wait_in_open_jitter",
    "permitted_calls_in_half_open",
    "max_wait_in_half_open_ms",
    "initial_state",
];

/// `[upstreams.<name>.bulkhead]`: `BulkheadLayer::builder`'s setters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulkhead {
    max_concurrent_calls: Option<Spanned<i64>>,
    max_wait_ms: Option<Spanned<i64>>,
    max_queue: Option<Spanned<i64>>,
}

/// The keys of `[upstreams.<name>.bulkhead]`.
const BULKHEAD_KEYS: [&str; 3] = ["max_concurrent_calls", "max_wait_ms", "max_queue"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    upstream: Spanned<String>,
}

/// `[aggregator]`: `FanOut::builder`'s setters, and one `[[aggregator.branches]]`
/// per branch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregator {
    deadline_ms: Option<Spanned<i64>>,
    max_in_flight: Option<Spanned<i64>>,
    #[serde(default)]
    branches: Vec<Spanned<RawBranch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    name: Spanned<String>,
    upstream: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    required: bool,
    timeout_ms: Option<Spanned<i64>>,
}

// ===== validated =====

/// A validated gateway configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the gateway listens and how it treats requests.
    pub server: ServerConfig,
    /// The admin API's guard.
    pub admin: AdminConfig,
    /// What the gateway logs per request.
    pub log: LogConfig,
    /// The in-process demo backends, if any.
    pub demo: Option<DemoConfig>,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Proxy routes, in the order written.
    pub routes: Vec<RouteConfig>,
    /// The aggregator of `GET /api/dashboard/user/{id}`, if configured.
    pub aggregator: Option<AggregatorConfig>,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// `listen`: the gateway's address (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `body_limit_bytes`: the largest request body accepted (default 1 MiB);
    /// larger ones get `413`.
    pub body_limit_bytes: usize,
    /// `drain_timeout_ms`: how long shutdown waits for in-flight requests
    /// (default 10 s).
    pub drain_timeout: Duration,
    /// `shutdown_grace_ms`: how long, once shutdown begins, `/readyz`
    /// answers `503` while connections are still accepted and served, so a
    /// load balancer polling it stops sending new requests before the
    /// gateway stops accepting them (default 5 s; 0: drain at once). A
    /// second Ctrl-C or SIGTERM ends it early.
    pub shutdown_grace: Duration,
    /// `worker_threads`: threads serving requests, each with its own runtime,
    /// listener and HTTP client (default, or 0: one per CPU).
    pub worker_threads: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            drain_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            worker_threads: None,
        }
    }
}

/// `[admin]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// `token`: the bearer token of the admin API (`PALISADE_ADMIN_TOKEN`
    /// overrides it).
    pub token: Option<String>,
    /// `generate_token`: with no token from config or environment, generate
    /// a random one for this run and log it.
    pub generate_token: bool,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("generate_token", &self.generate_token)
            .finish()
    }
}

/// `[log]`: what the gateway logs per request.
///
/// Whatever is set here, per-call upstream failures are logged at most once
/// per second per upstream and reason (with the count of those not logged),
/// and breaker transitions always are; see `crate::logs`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LogConfig {
    /// `access_log` (with `access_log_sample`): the access log, one
    /// structured `INFO` line per request (target `palisade_gateway::access`).
    /// Default: off.
    pub access_log: AccessLog,
}

/// Which requests the access log writes a line for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum AccessLog {
    /// `"off"`: none (the default: metrics and the dashboard count every
    /// request; a line per request fills a disk under load).
    #[default]
    Off,
    /// `"sampled"`: each request with probability `access_log_sample`, a
    /// fraction in `(0, 1]` (default `0.01`).
    Sampled(f64),
    /// `"all"`: every request.
    All,
}

/// The default `access_log_sample`.
pub const DEFAULT_ACCESS_LOG_SAMPLE: f64 = 0.01;

/// `[demo]`: the in-process demo backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// `seed`: seeds every backend's chaos layer (default 42).
    pub seed: u64,
    /// `[demo.backends.<name>]`, by service name.
    pub backends: BTreeMap<String, BackendConfig>,
}

/// `[demo.backends.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// `listen`: the backend's address (default `127.0.0.1:0`, any free port).
    pub listen: SocketAddr,
    /// `latency_ms`: simulated work per request (default 0).
    pub latency: Duration,
}

/// Where an upstream is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// `http://host:port[/base]`: a base URI (no TLS in this build).
    Url(http::Uri),
    /// `demo://<service>`: the in-process demo backend, resolved to its
    /// address once it is listening.
    Demo(String),
}

/// `[upstreams.<name>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// `url`.
    pub target: UpstreamTarget,
    /// `timeout_ms`: the whole call, every attempt and backoff included, up
    /// to response headers (default 2 s; the outermost layer).
    pub timeout: Duration,
    /// `attempt_timeout_ms`: one attempt, inside the circuit breaker, so a
    /// hung attempt is a failure the breaker counts and retry may retry
    /// (default: `timeout_ms`; at most `timeout_ms`).
    pub attempt_timeout: Duration,
    /// `[upstreams.<name>.retry]`.
    pub retry: Option<RetryConfig>,
    /// `[upstreams.<name>.circuit_breaker]`.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// `[upstreams.<name>.bulkhead]`.
    pub bulkhead: Option<BulkheadConfig>,
}

/// `[upstreams.<name>.retry]`: the settings given, each one setter of
/// `RetryLayer::http_builder` (`None`: the builder's default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryConfig {
    /// `max_attempts`: attempts in all, the first included.
    pub max_attempts: Option<u32>,
    /// `backoff`.
    pub backoff: Option<Backoff>,
    /// `jitter`: `"full"`, `"equal"` or `"none"`.
    pub jitter: Option<Jitter>,
    /// `deadline_ms`: the retry layer's own bound on the whole call.
    pub deadline: Option<Duration>,
    /// `retry_ratio`: the budget's share of requests that may be retried.
    pub retry_ratio: Option<f64>,
    /// `min_retries_per_sec`: the budget's floor.
    pub min_retries_per_sec: Option<u32>,
    /// `budget_ttl_ms`: how long a request counts towards the budget.
    pub budget_ttl: Option<Duration>,
    /// `max_body_bytes`: the largest request body buffered for replay.
    pub max_body_bytes: Option<usize>,
    /// `retry_non_idempotent`: retry POST and PATCH with an idempotency key.
    pub retry_non_idempotent: Option<bool>,
    /// `honor_retry_after`: a 429's or 503's `Retry-After` replaces the
    /// backoff.
    pub honor_retry_after: Option<bool>,
    /// `max_retry_after_ms`: the longest `Retry-After` waited for.
    pub max_retry_after: Option<Duration>,
}

impl RetryConfig {
    /// `RetryLayer::http_builder(name)` with every setting given applied.
    pub fn builder(&self, name: &str) -> RetryBuilder<StatusClassifier, Http> {
        let mut b = RetryLayer::http_builder(name);
        if let Some(v) = self.max_attempts {
            b = b.max_attempts(v);
        }
        if let Some(v) = self.backoff {
            b = b.backoff(v);
        }
        if let Some(v) = self.jitter {
            b = b.jitter(v);
        }
        if let Some(v) = self.deadline {
            b = b.deadline(v);
        }
        if let Some(v) = self.retry_ratio {
            b = b.retry_ratio(v);
        }
        if let Some(v) = self.min_retries_per_sec {
            b = b.min_retries_per_sec(v);
        }
        if let Some(v) = self.budget_ttl {
            b = b.budget_ttl(v);
        }
        if let Some(v) = self.max_body_bytes {
            b = b.max_body_bytes(v);
        }
        if let Some(v) = self.retry_non_idempotent {
            b = b.retry_non_idempotent(v);
        }
        if let Some(v) = self.honor_retry_after {
            b = b.honor_retry_after(v);
        }
        if let Some(v) = self.max_retry_after {
            b = b.max_retry_after(v);
        }
        b
    }
}

/// `[upstreams.<name>.circuit_breaker]`: the settings given, each one setter
/// of `CircuitBreakerLayer::builder` (`None`: the builder's default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CircuitBreakerConfig {
    /// `count_window`: judge the last N calls.
    pub count_window: Option<u32>,
    /// `time_window_ms`: judge the calls of the last whole seconds.
    pub time_window: Option<Duration>,
    /// `failure_rate_threshold`: percent.
    pub failure_rate_threshold: Option<f64>,
    /// `trip_on_failure_rate`.
    pub trip_on_failure_rate: Option<bool>,
    /// `slow_call_duration_ms`: calls this long or longer are slow.
    pub slow_call_duration: Option<Duration>,
    /// `slow_call_rate_threshold`: percent.
    pub slow_call_rate_threshold: Option<f64>,
    /// `consecutive_failures`: failures in a row that open the breaker.
    pub consecutive_failures: Option<u32>,
    /// `minimum_calls`: calls the window must hold before judging rates.
    pub minimum_calls: Option<u32>,
    /// `wait_in_open_ms`.
    pub wait_in_open: Option<Duration>,
    /// `wait_in_open_multiplier`.
    pub wait_in_open_multiplier: Option<f64>,
    /// `max_wait_in_open_ms`.
    pub max_wait_in_open: Option<Duration>,
    /// `wait_in_open_jitter`: a fraction in `[0, 1]`.
    pub wait_in_open_jitter: Option<f64>,
    /// `permitted_calls_in_half_open`: probes.
    pub permitted_calls_in_half_open: Option<u32>,
    /// `max_wait_in_half_open_ms`.
    pub max_wait_in_half_open: Option<Duration>,
    /// `initial_state`: `"closed"`, `"disabled"`, `"metrics_only"`,
    /// `"forced_open"`.
    pub initial_state: Option<State>,
}

impl CircuitBreakerConfig {
    /// `CircuitBreakerLayer::builder(name)` with every setting given applied.
    pub fn builder(&self, name: &str) -> CircuitBreakerBuilder {
        let mut b = CircuitBreakerLayer::builder(name);
        if let Some(v) = self.count_window {
            b = b.count_window(v);
        }
        if let Some(v) = self.time_window {
            b = b.time_window(v);
        }
        if let Some(v) = self.failure_rate_threshold {
            b = b.failure_rate_threshold(v);
        }
        if let Some(v) = self.trip_on_failure_rate {
            b = b.trip_on_failure_rate(v);
        }
        if let Some(v) = self.slow_call_duration {
            b = b.slow_call_duration(v);
        }
        if let Some(v) = self.slow_call_rate_threshold {
            b = b.slow_call_rate_threshold(v);
        }
        if let Some(v) = self.consecutive_failures {
            b = b.consecutive_failures(v);
        }
        if let Some(v) = self.minimum_calls {
            b = b.minimum_calls(v);
        }
        if let Some(v) = self.wait_in_open {
            b = b.wait_in_open(v);
        }
        if let Some(v) = self.wait_in_open_multiplier {
            b = b.wait_in_open_multiplier(v);
        }
        if let Some(v) = self.max_wait_in_open {
            b = b.max_wait_in_open(v);
        }
        if let Some(v) = self.wait_in_open_jitter {
            b = b.wait_in_open_jitter(v);
        }
        if let Some(v) = self.permitted_calls_in_half_open {
            b = b.permitted_calls_in_half_open(v);
        }
        if let Some(v) = self.max_wait_in_half_open {
            b = b.max_wait_in_half_open(v);
        }
        if let Some(v) = self.initial_state {
            b = b.initial_state(v);
        }
        b
    }
}

/// `[upstreams.<name>.bulkhead]`: the settings given, each one setter of
/// `BulkheadLayer::builder` (`None`: the builder's default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// `max_concurrent_calls`.
    pub max_concurrent_calls: Option<usize>,
    /// `max_wait_ms`: how long a call may wait for a permit (0: refused at
    /// once when full).
    pub max_wait: Option<Duration>,
    /// `max_queue`: calls that may wait at once.
    pub max_queue: Option<usize>,
}

impl BulkheadConfig {
    /// `BulkheadLayer::builder(name)` with every setting given applied.
    pub fn builder(&self, name: &str) -> BulkheadBuilder {
        let mut b = BulkheadLayer::builder(name);
        if let Some(v) = self.max_concurrent_calls {
            b = b.max_concurrent_calls(v);
        }
        if let Some(v) = self.max_wait {
            b = b.max_wait(v);
        }
        if let Some(v) = self.max_queue {
            b = b.max_queue(v);
        }
        b
    }
}

/// `[[routes]]`: requests under `prefix` go to `upstream`, prefix stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// `prefix`: `/api/user` serves `/api/user/{*path}`, sent upstream as
    /// `/{path}`.
    pub prefix: String,
    /// `upstream`: the name of an upstream.
    pub upstream: String,
}

/// `[aggregator]`: `GET /api/dashboard/user/{id}` gathered from its branches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatorConfig {
    /// `deadline_ms`: bounds the whole gather (`FanOutBuilder::deadline`).
    pub deadline: Option<Duration>,
    /// `max_in_flight`: branches called at once
    /// (`FanOutBuilder::max_in_flight`).
    pub max_in_flight: Option<usize>,
    /// `[[aggregator.branches]]`, in the order written.
    pub branches: Vec<BranchConfig>,
}

/// `[[aggregator.branches]]`: one branch of the aggregator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchConfig {
    /// `name`: the branch's key in the answer.
    pub name: String,
    /// `upstream`: the upstream whose stack the branch calls.
    pub upstream: String,
    /// `path`: the request path under the upstream's base, a template filled
    /// from the route (`/users/{id}/orders`; `{query.x}` for a query
    /// parameter).
    pub path: String,
    /// `required`: the answer fails without this branch (default `false`).
    pub required: bool,
    /// `timeout_ms`: the branch's own timeout (`Branch::timeout`).
    pub timeout: Option<Duration>,
}

// ===== parsing and checks =====

impl Config {
    /// The embedded default configuration.
    ///
    /// # Panics
    ///
    /// Never in a released build: a test checks that the embedded file is
    /// valid.
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn embedded_default() -> Self {
        #[allow(clippy::expect_used)]
        Self::parse(DEFAULT_CONFIG_NAME, DEFAULT_CONFIG)
            .expect("the embedded default config is valid")
    }

    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid TOML, has an unknown key, or a
    /// value fails a check.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigFileError> {
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigFileError::unreadable(&name, &e))?;
        Self::parse(&name, &text)
    }

    /// Parses and validates `text`; `name` is the file name errors report.
    ///
    /// Every resilience table is checked by building its layer with the
    /// settings given: what the builder refuses is refused here, at the key
    /// the builder's [`ConfigError`] names. A text that sets nothing (empty,
    /// or only comments and blank lines) is refused too.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn parse(name: &str, text: &str) -> Result<Self, ConfigFileError> {
        if sets_nothing(text) {
            return Err(ConfigFileError::empty(name));
        }
        let source = Source { name, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(&source, &e))?;
        Checker { source: &source }.config(raw)
    }
}

/// `true` if `text` has nothing but blank lines and comments: TOML that
/// sets no key and opens no table.
fn sets_nothing(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        line.is_empty() || line.starts_with('#')
    })
}

/// `true` for a route prefix the router can take as it is: `/` followed by
/// non-empty segments of unreserved URI characters (RFC 3986: letters,
/// digits, `-`, `.`, `_`, `~`), none of them `.` or `..`. Anything else
/// (captures like `{x}` or `:x`, wildcards, percent-escapes, spaces) is
/// refused here rather than met by the router at start-up.
fn valid_prefix(prefix: &str) -> bool {
    let Some(rest) = prefix.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        })
}

/// A toml error, placed: the key is found from the span (the unknown key
/// itself, or the key whose value has the wrong type) and the enclosing table.
fn syntax_error(source: &Source<'_>, err: &toml::de::Error) -> ConfigFileError {
    let span = err.span().unwrap_or(0..0);
    let key = key_at(source.text, span.start);
    let message = err.message().trim().to_owned();
    ConfigFileError::at(source, span, key, message)
}

/// The dotted key at byte `offset`: the enclosing `[table]` header plus the
/// key written on that line before `=` (or at the offset itself).
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let mut table = String::new();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if l.starts_with('[') {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
    }
    let leaf = if line.starts_with('[') {
        return line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned();
    } else if let Some((k, _)) = line.split_once('=') {
        k.trim().trim_matches('"').to_owned()
    } else {
        line.to_owned()
    };
    if table.is_empty() {
        leaf
    } else if leaf.is_empty() {
        table
    } else {
        format!("{table}.{leaf}")
    }
}

/// The keys written in one table, with their spans, to place a builder's
/// [`ConfigError`] at the key its `field` names.
struct Written {
    /// The table's dotted path (`upstreams.user.circuit_breaker`).
    table: String,
    /// Where the table is, for errors about a key it does not contain.
    span: Range<usize>,
    /// Every key the table may hold.
    known: &'static [&'static str],
    /// The keys written, with the span of their values.
    keys: Vec<(&'static str, Range<usize>)>,
}

impl Written {
    fn new(table: String, span: Range<usize>, known: &'static [&'static str]) -> Self {
        Self {
            table,
            span,
            known,
            keys: Vec::new(),
        }
    }

    fn note<T>(&mut self, key: &'static str, value: Option<&Spanned<T>>) {
        if let Some(v) = value {
            self.keys.push((key, v.span()));
        }
    }

    /// The TOML key for the setter `field`: `field` itself or `field_ms`.
    fn key_of(&self, field: &str) -> Option<&'static str> {
        let ms = format!("{field}_ms");
        self.known.iter().copied().find(|k| *k == field || *k == ms)
    }

    /// Where a builder error about `field` belongs: the key if it was
    /// written, else the table (the key to set, with its name).
    fn place(&self, field: &str) -> (Range<usize>, String) {
        let Some(key) = self.key_of(field) else {
            return (self.span.clone(), self.table.clone());
        };
        let span = self
            .keys
            .iter()
            .find(|(k, _)| *k == key)
            .map_or_else(|| self.span.clone(), |(_, s)| s.clone());
        (span, format!("{}.{key}", self.table))
    }
}

struct Checker<'a> {
    source: &'a Source<'a>,
}

impl Checker<'_> {
    fn err<T>(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ConfigFileError> {
        Err(ConfigFileError::at(self.source, span, key, message))
    }

    /// A builder's error, placed at the key its field names.
    fn builder_err(&self, written: &Written, err: &ConfigError) -> ConfigFileError {
        let (span, key) = written.place(err.field());
        ConfigFileError::at(self.source, span, key, err.reason())
    }

    fn addr(&self, v: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigFileError> {
        v.get_ref().parse().or_else(|_| {
            self.err(
                v.span(),
                key,
                format!("`{}` is not an address like 127.0.0.1:8080", v.get_ref()),
            )
        })
    }

    /// A whole number that fits `T` and is at least `min`: the checks a
    /// TOML integer needs before it can be handed to a builder (which
    /// checks the rest).
    fn whole<T: TryFrom<i64>>(
        &self,
        v: Option<&Spanned<i64>>,
        key: &str,
        min: i64,
    ) -> Result<Option<T>, ConfigFileError> {
        let Some(v) = v else { return Ok(None) };
        let n = *v.get_ref();
        match T::try_from(n) {
            Ok(value) if n >= min => Ok(Some(value)),
            _ => self.err(
                v.span(),
                key,
                format!("must be a whole number ≥ {min}, got {n}"),
            ),
        }
    }

    /// Milliseconds, > 0 (or ≥ 0 when `zero_ok`).
    fn millis(
        &self,
        v: Option<&Spanned<i64>>,
        key: &str,
        default_ms: u64,
        zero_ok: bool,
    ) -> Result<Duration, ConfigFileError> {
        let Some(v) = v else {
            return Ok(Duration::from_millis(default_ms));
        };
        let ms = *v.get_ref();
        if ms < 0 || (ms == 0 && !zero_ok) {
            let bound = if zero_ok { "≥ 0" } else { "> 0" };
            return self.err(
                v.span(),
                key,
                format!("must be {bound} milliseconds, got {ms}"),
            );
        }
        Ok(Duration::from_millis(ms.unsigned_abs()))
    }

    /// Milliseconds handed to a builder: only a negative value is refused
    /// here (a `Duration` cannot hold it); zero and the rest are the
    /// builder's call.
    fn duration(
        &self,
        v: Option<&Spanned<i64>>,
        key: &str,
    ) -> Result<Option<Duration>, ConfigFileError> {
        let Some(v) = v else { return Ok(None) };
        let ms = *v.get_ref();
        if ms < 0 {
            return self.err(v.span(), key, format!("must be ≥ 0 milliseconds, got {ms}"));
        }
        Ok(Some(Duration::from_millis(ms.unsigned_abs())))
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigFileError> {
        let defaults = ServerConfig::default();
        let server = ServerConfig {
            listen: match &raw.server.listen {
                Some(v) => self.addr(v, "server.listen")?,
                None => defaults.listen,
            },
            body_limit_bytes: self
                .whole(
                    raw.server.body_limit_bytes.as_ref(),
                    "server.body_limit_bytes",
                    1,
                )?
                .unwrap_or(defaults.body_limit_bytes),
            drain_timeout: self.millis(
                raw.server.drain_timeout_ms.as_ref(),
                "server.drain_timeout_ms",
                10_000,
                true,
            )?,
            shutdown_grace: self.millis(
                raw.server.shutdown_grace_ms.as_ref(),
                "server.shutdown_grace_ms",
                5_000,
                true,
            )?,
            worker_threads: self
                .whole::<usize>(
                    raw.server.worker_threads.as_ref(),
                    "server.worker_threads",
                    0,
                )?
                .filter(|n| *n > 0),
        };
        if let (Some(v), Some(n)) = (raw.server.worker_threads.as_ref(), server.worker_threads)
            && n > 1024
        {
            return self.err(
                v.span(),
                "server.worker_threads",
                format!("must be at most 1024, got {n}"),
            );
        }

        let admin = AdminConfig {
            token: match raw.admin.token {
                Some(t) if t.get_ref().trim().is_empty() => {
                    return self.err(
                        t.span(),
                        "admin.token",
                        "must not be empty (leave it out to disable the admin API)",
                    );
                }
                Some(t) => Some(t.into_inner()),
                None => None,
            },
            generate_token: raw.admin.generate_token,
        };

        let log = self.log(&raw.log)?;

        let demo = match raw.demo {
            Some(d) if d.enabled => Some(self.demo(d)?),
            _ => None,
        };

        let mut upstreams = BTreeMap::new();
        for (name, up) in raw.upstreams {
            let cfg = self.upstream(&name, up, demo.as_ref())?;
            upstreams.insert(name, cfg);
        }

        let mut routes: Vec<RouteConfig> = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            let prefix = r.prefix.get_ref();
            if !valid_prefix(prefix) {
                return self.err(
                    r.prefix.span(),
                    format!("{key}.prefix"),
                    format!(
                        "`{prefix}` must look like `/api/name`: `/` then segments of letters, digits, `-`, `.`, `_` or `~`, \
                         separated by single `/`, no trailing `/`, no `.` or `..` segment"
                    ),
                );
            }
            if let Some(reserved) = RESERVED_PREFIXES
                .iter()
                .find(|p| prefix == *p || prefix.starts_with(&format!("{p}/")))
            {
                return self.err(
                    r.prefix.span(),
                    format!("{key}.prefix"),
                    format!("`{prefix}` is under `{reserved}`, which the gateway serves itself"),
                );
            }
            if routes.iter().any(|x| x.prefix == *prefix) {
                return self.err(
                    r.prefix.span(),
                    format!("{key}.prefix"),
                    format!("`{prefix}` is routed twice"),
                );
            }
            self.known_upstream(&upstreams, &r.upstream, &format!("{key}.upstream"))?;
            routes.push(RouteConfig {
                prefix: prefix.clone(),
                upstream: r.upstream.into_inner(),
            });
        }

        let aggregator = match raw.aggregator {
            Some(a) => Some(self.aggregator(a, &upstreams)?),
            None => None,
        };

        Ok(Config {
            server,
            admin,
            log,
            demo,
            upstreams,
            routes,
            aggregator,
        })
    }

    fn known_upstream(
        &self,
        upstreams: &BTreeMap<String, UpstreamConfig>,
        name: &Spanned<String>,
        key: &str,
    ) -> Result<(), ConfigFileError> {
        if upstreams.contains_key(name.get_ref()) {
            return Ok(());
        }
        let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
        self.err(
            name.span(),
            key,
            format!(
                "no upstream named `{}` (declared: {})",
                name.get_ref(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
    }

    fn log(&self, raw: &RawLog) -> Result<LogConfig, ConfigFileError> {
        let sample = match &raw.access_log_sample {
            Some(v) => {
                let f = *v.get_ref();
                if !(f > 0.0 && f <= 1.0) {
                    return self.err(
                        v.span(),
                        "log.access_log_sample",
                        format!("must be a fraction in (0, 1], got {f}"),
                    );
                }
                f
            }
            None => DEFAULT_ACCESS_LOG_SAMPLE,
        };
        let access_log = match raw.access_log.as_ref() {
            None => AccessLog::Off,
            Some(v) => match v.get_ref().as_str() {
                "off" => AccessLog::Off,
                "sampled" => AccessLog::Sampled(sample),
                "all" => AccessLog::All,
                other => {
                    return self.err(
                        v.span(),
                        "log.access_log",
                        format!("must be \"off\", \"sampled\" or \"all\", got {other:?}"),
                    );
                }
            },
        };
        Ok(LogConfig { access_log })
    }

    fn demo(&self, d: RawDemo) -> Result<DemoConfig, ConfigFileError> {
        let mut backends = BTreeMap::new();
        for (name, b) in d.backends {
            let key = format!("demo.backends.{}", name.get_ref());
            if !DEMO_SERVICES.contains(&name.get_ref().as_str()) {
                return self.err(
                    name.span(),
                    key,
                    format!(
                        "unknown demo service `{}` (known: {})",
                        name.get_ref(),
                        DEMO_SERVICES.join(", ")
                    ),
                );
            }
            let listen = match &b.listen {
                Some(v) => self.addr(v, &format!("{key}.listen"))?,
                None => SocketAddr::from(([127, 0, 0, 1], 0)),
            };
            let latency =
                self.millis(b.latency_ms.as_ref(), &format!("{key}.latency_ms"), 0, true)?;
            backends.insert(name.into_inner(), BackendConfig { listen, latency });
        }
        Ok(DemoConfig {
            seed: d.seed.unwrap_or(42),
            backends,
        })
    }

    fn upstream(
        &self,
        name: &str,
        up: RawUpstream,
        demo: Option<&DemoConfig>,
    ) -> Result<UpstreamConfig, ConfigFileError> {
        let key = format!("upstreams.{name}");
        let url = up.url.get_ref();
        let target = if let Some(service) = url.strip_prefix("demo://") {
            match demo {
                Some(d) if d.backends.contains_key(service) => {
                    UpstreamTarget::Demo(service.to_owned())
                }
                _ => {
                    return self.err(
                        up.url.span(),
                        format!("{key}.url"),
                        format!("`{url}` names no demo backend: declare `[demo.backends.{service}]` with `[demo] enabled = true`"),
                    );
                }
            }
        } else {
            match url.parse::<http::Uri>() {
                Ok(uri)
                    if uri.scheme_str() == Some("http")
                        && uri.authority().is_some()
                        && uri.query().is_none() =>
                {
                    UpstreamTarget::Url(uri)
                }
                Ok(uri) if uri.scheme_str() == Some("https") => {
                    return self.err(up.url.span(), format!("{key}.url"), format!("`{uri}`: https upstreams are not supported by this build (no TLS); use http://"));
                }
                _ => {
                    return self.err(up.url.span(), format!("{key}.url"), format!("`{url}` is not an upstream URL like http://127.0.0.1:9000 or demo://user"));
                }
            }
        };
        let timeout = self.millis(
            up.timeout_ms.as_ref(),
            &format!("{key}.timeout_ms"),
            2_000,
            false,
        )?;
        let attempt_timeout = match up.attempt_timeout_ms.as_ref() {
            None => timeout,
            Some(v) => {
                let attempt =
                    self.millis(Some(v), &format!("{key}.attempt_timeout_ms"), 0, false)?;
                if attempt > timeout {
                    return self.err(
                        v.span(),
                        format!("{key}.attempt_timeout_ms"),
                        format!(
                            "must be at most timeout_ms ({} ms), got {} ms",
                            timeout.as_millis(),
                            attempt.as_millis()
                        ),
                    );
                }
                attempt
            }
        };
        let retry = match up.retry {
            None => None,
            Some(r) => Some(self.retry(name, &format!("{key}.retry"), r)?),
        };
        let circuit_breaker = match up.circuit_breaker {
            None => None,
            Some(b) => Some(self.breaker(name, &format!("{key}.circuit_breaker"), b)?),
        };
        let bulkhead = match up.bulkhead {
            None => None,
            Some(b) => Some(self.bulkhead(name, &format!("{key}.bulkhead"), b)?),
        };
        Ok(UpstreamConfig {
            target,
            timeout,
            attempt_timeout,
            retry,
            circuit_breaker,
            bulkhead,
        })
    }

    fn retry(
        &self,
        name: &str,
        table: &str,
        raw: Spanned<RawRetry>,
    ) -> Result<RetryConfig, ConfigFileError> {
        let span = raw.span();
        let r = raw.into_inner();
        let k = |s: &str| format!("{table}.{s}");
        let mut written = Written::new(table.to_owned(), span, &RETRY_KEYS);
        written.note("max_attempts", r.max_attempts.as_ref());
        written.note("backoff", r.backoff.as_ref());
        written.note("jitter", r.jitter.as_ref());
        written.note("deadline_ms", r.deadline_ms.as_ref());
        written.note("retry_ratio", r.retry_ratio.as_ref());
        written.note("min_retries_per_sec", r.min_retries_per_sec.as_ref());
        written.note("budget_ttl_ms", r.budget_ttl_ms.as_ref());
        written.note("max_body_bytes", r.max_body_bytes.as_ref());
        written.note("retry_non_idempotent", r.retry_non_idempotent.as_ref());
        written.note("honor_retry_after", r.honor_retry_after.as_ref());
        written.note("max_retry_after_ms", r.max_retry_after_ms.as_ref());

        let backoff = match &r.backoff {
            None => None,
            Some(b) => Some(self.backoff(&k("backoff"), b)?),
        };
        let jitter = match &r.jitter {
            None => None,
            Some(j) => Some(match j.get_ref().as_str() {
                "full" => Jitter::Full,
                "equal" => Jitter::Equal,
                "none" => Jitter::None,
                other => {
                    return self.err(
                        j.span(),
                        k("jitter"),
                        format!("unknown jitter `{other}` (expected full, equal or none)"),
                    );
                }
            }),
        };
        let config = RetryConfig {
            max_attempts: self.whole(r.max_attempts.as_ref(), &k("max_attempts"), 0)?,
            backoff,
            jitter,
            deadline: self.duration(r.deadline_ms.as_ref(), &k("deadline_ms"))?,
            retry_ratio: r.retry_ratio.as_ref().map(|v| *v.get_ref()),
            min_retries_per_sec: self.whole(
                r.min_retries_per_sec.as_ref(),
                &k("min_retries_per_sec"),
                0,
            )?,
            budget_ttl: self.duration(r.budget_ttl_ms.as_ref(), &k("budget_ttl_ms"))?,
            max_body_bytes: self.whole(r.max_body_bytes.as_ref(), &k("max_body_bytes"), 0)?,
            retry_non_idempotent: r.retry_non_idempotent.as_ref().map(|v| *v.get_ref()),
            honor_retry_after: r.honor_retry_after.as_ref().map(|v| *v.get_ref()),
            max_retry_after: self
                .duration(r.max_retry_after_ms.as_ref(), &k("max_retry_after_ms"))?,
        };
        config
            .builder(name)
            .build()
            .map_err(|e| self.builder_err(&written, &e))?;
        Ok(config)
    }

    fn backoff(&self, key: &str, b: &Spanned<RawBackoff>) -> Result<Backoff, ConfigFileError> {
        let raw = b.get_ref();
        let kind = raw.kind.get_ref().as_str();
        let ms = |v: Option<&Spanned<i64>>, field: &str, default: u64| {
            Ok::<_, ConfigFileError>(
                self.duration(v, &format!("{key}.{field}"))?
                    .unwrap_or(Duration::from_millis(default)),
            )
        };
        // Fields a kind does not take are refused, not ignored.
        let unused: &[(&str, bool)] = match kind {
            "none" => &[
                ("delay_ms", raw.delay_ms.is_some()),
                ("base_ms", raw.base_ms.is_some()),
                ("multiplier", raw.multiplier.is_some()),
                ("cap_ms", raw.cap_ms.is_some()),
            ],
            "fixed" => &[
                ("base_ms", raw.base_ms.is_some()),
                ("multiplier", raw.multiplier.is_some()),
                ("cap_ms", raw.cap_ms.is_some()),
            ],
            "exponential" => &[("delay_ms", raw.delay_ms.is_some())],
            "decorrelated" => &[
                ("delay_ms", raw.delay_ms.is_some()),
                ("multiplier", raw.multiplier.is_some()),
            ],
            other => {
                return self.err(
                    raw.kind.span(),
                    format!("{key}.kind"),
                    format!(
                        "unknown backoff `{other}` (expected none, fixed, exponential or decorrelated)"
                    ),
                );
            }
        };
        if let Some((field, _)) = unused.iter().find(|(_, given)| *given) {
            return self.err(
                b.span(),
                format!("{key}.{field}"),
                format!("a `{kind}` backoff does not take `{field}`"),
            );
        }
        // The defaults are the retry builder's own (exponential 50 ms, ×2,
        // capped at 2 s).
        Ok(match kind {
            "none" => Backoff::none(),
            "fixed" => Backoff::fixed(ms(raw.delay_ms.as_ref(), "delay_ms", 50)?),
            "exponential" => Backoff::exponential(
                ms(raw.base_ms.as_ref(), "base_ms", 50)?,
                raw.multiplier.as_ref().map_or(2.0, |m| *m.get_ref()),
                ms(raw.cap_ms.as_ref(), "cap_ms", 2_000)?,
            ),
            _ => Backoff::decorrelated(
                ms(raw.base_ms.as_ref(), "base_ms", 50)?,
                ms(raw.cap_ms.as_ref(), "cap_ms", 2_000)?,
            ),
        })
    }

    fn breaker(
        &self,
        name: &str,
        table: &str,
        raw: Spanned<RawBreaker>,
    ) -> Result<CircuitBreakerConfig, ConfigFileError> {
        let span = raw.span();
        let b = raw.into_inner();
        let k = |s: &str| format!("{table}.{s}");
        let mut written = Written::new(table.to_owned(), span, &BREAKER_KEYS);
        written.note("count_window", b.count_window.as_ref());
        written.note("time_window_ms", b.time_window_ms.as_ref());
        written.note("failure_rate_threshold", b.failure_rate_threshold.as_ref());
        written.note("trip_on_failure_rate", b.trip_on_failure_rate.as_ref());
        written.note("slow_call_duration_ms", b.slow_call_duration_ms.as_ref());
        written.note(
            "slow_call_rate_threshold",
            b.slow_call_rate_threshold.as_ref(),
        );
        written.note("consecutive_failures", b.consecutive_failures.as_ref());
        written.note("minimum_calls", b.minimum_calls.as_ref());
        written.note("wait_in_open_ms", b.wait_in_open_ms.as_ref());
        written.note(
            "wait_in_open_multiplier",
            b.wait_in_open_multiplier.as_ref(),
        );
        written.note("max_wait_in_open_ms", b.max_wait_in_open_ms.as_ref());
        written.note("wait_in_open_jitter", b.wait_in_open_jitter.as_ref());
        written.note(
            "permitted_calls_in_half_open",
            b.permitted_calls_in_half_open.as_ref(),
        );
        written.note(
            "max_wait_in_half_open_ms",
            b.max_wait_in_half_open_ms.as_ref(),
        );
        written.note("initial_state", b.initial_state.as_ref());

        if let (Some(_), Some(time)) = (&b.count_window, &b.time_window_ms) {
            return self.err(
                time.span(),
                k("time_window_ms"),
                "give either `count_window` or `time_window_ms`, not both",
            );
        }
        let initial_state = match &b.initial_state {
            None => None,
            Some(s) => Some(
                match State::ALL
                    .into_iter()
                    .find(|state| state.as_str() == s.get_ref())
                {
                    Some(state) => state,
                    None => {
                        return self.err(
                            s.span(),
                            k("initial_state"),
                            format!(
                                "unknown state `{}` (expected closed, disabled, metrics_only or forced_open)",
                                s.get_ref()
                            ),
                        );
                    }
                },
            ),
        };
        let config = CircuitBreakerConfig {
            count_window: self.whole(b.count_window.as_ref(), &k("count_window"), 0)?,
            time_window: self.duration(b.time_window_ms.as_ref(), &k("time_window_ms"))?,
            failure_rate_threshold: b.failure_rate_threshold.as_ref().map(|v| *v.get_ref()),
            trip_on_failure_rate: b.trip_on_failure_rate.as_ref().map(|v| *v.get_ref()),
            slow_call_duration: self.duration(
                b.slow_call_duration_ms.as_ref(),
                &k("slow_call_duration_ms"),
            )?,
            slow_call_rate_threshold: b.slow_call_rate_threshold.as_ref().map(|v| *v.get_ref()),
            consecutive_failures: self.whole(
                b.consecutive_failures.as_ref(),
                &k("consecutive_failures"),
                0,
            )?,
            minimum_calls: self.whole(b.minimum_calls.as_ref(), &k("minimum_calls"), 0)?,
            wait_in_open: self.duration(b.wait_in_open_ms.as_ref(), &k("wait_in_open_ms"))?,
            wait_in_open_multiplier: b.wait_in_open_multiplier.as_ref().map(|v| *v.get_ref()),
            max_wait_in_open: self
                .duration(b.max_wait_in_open_ms.as_ref(), &k("max_wait_in_open_ms"))?,
            wait_in_open_jitter: b.wait_in_open_jitter.as_ref().map(|v| *v.get_ref()),
            permitted_calls_in_half_open: self.whole(
                b.permitted_calls_in_half_open.as_ref(),
                &k("permitted_calls_in_half_open"),
                0,
            )?,
            max_wait_in_half_open: self.duration(
                b.max_wait_in_half_open_ms.as_ref(),
                &k("max_wait_in_half_open_ms"),
            )?,
            initial_state,
        };
        config
            .builder(name)
            .build()
            .map_err(|e| self.builder_err(&written, &e))?;
        Ok(config)
    }

    fn bulkhead(
        &self,
        name: &str,
        table: &str,
        raw: Spanned<RawBulkhead>,
    ) -> Result<BulkheadConfig, ConfigFileError> {
        let span = raw.span();
        let b = raw.into_inner();
        let k = |s: &str| format!("{table}.{s}");
        let mut written = Written::new(table.to_owned(), span, &BULKHEAD_KEYS);
        written.note("max_concurrent_calls", b.max_concurrent_calls.as_ref());
        written.note("max_wait_ms", b.max_wait_ms.as_ref());
        written.note("max_queue", b.max_queue.as_ref());
        let config = BulkheadConfig {
            max_concurrent_calls: self.whole(
                b.max_concurrent_calls.as_ref(),
                &k("max_concurrent_calls"),
                0,
            )?,
            max_wait: self.duration(b.max_wait_ms.as_ref(), &k("max_wait_ms"))?,
            max_queue: self.whole(b.max_queue.as_ref(), &k("max_queue"), 0)?,
        };
        config
            .builder(name)
            .build()
            .map_err(|e| self.builder_err(&written, &e))?;
        Ok(config)
    }

    fn aggregator(
        &self,
        raw: Spanned<RawAggregator>,
        upstreams: &BTreeMap<String, UpstreamConfig>,
    ) -> Result<AggregatorConfig, ConfigFileError> {
        let span = raw.span();
        let a = raw.into_inner();
        let route = Route::new(AGGREGATOR_ROUTE).map_err(|e| {
            ConfigFileError::at(self.source, span.clone(), "aggregator", e.to_string())
        })?;
        let mut branches = Vec::with_capacity(a.branches.len());
        for (i, b) in a.branches.iter().enumerate() {
            let key = format!("aggregator.branches[{i}]");
            let raw = b.get_ref();
            self.known_upstream(upstreams, &raw.upstream, &format!("{key}.upstream"))?;
            if let Err(e) = route.target("http://upstream.invalid", raw.path.get_ref()) {
                return self.err(
                    raw.path.span(),
                    format!("{key}.path"),
                    e.reason().to_owned(),
                );
            }
            branches.push(BranchConfig {
                name: raw.name.get_ref().clone(),
                upstream: raw.upstream.get_ref().clone(),
                path: raw.path.get_ref().clone(),
                required: raw.required,
                timeout: self.duration(raw.timeout_ms.as_ref(), &format!("{key}.timeout_ms"))?,
            });
        }
        let config = AggregatorConfig {
            deadline: self.duration(a.deadline_ms.as_ref(), "aggregator.deadline_ms")?,
            max_in_flight: self.whole(a.max_in_flight.as_ref(), "aggregator.max_in_flight", 0)?,
            branches,
        };
        // The fan-out's builder decides the rest, over stand-in services.
        let check = crate::aggregator::build(&config, |_| {
            let stand_in = tower::service_fn(|_: http::Request<axum::body::Body>| async {
                Ok::<_, palisade::BoxError>(serde_json::Value::Null)
            });
            (stand_in, "http://upstream.invalid".to_owned())
        });
        if let Err(e) = check {
            let (span, key) = match e.field() {
                "deadline" => (
                    a.deadline_ms.as_ref().map_or(span, Spanned::span),
                    "aggregator.deadline_ms".to_owned(),
                ),
                "max_in_flight" => (
                    a.max_in_flight.as_ref().map_or(span, Spanned::span),
                    "aggregator.max_in_flight".to_owned(),
                ),
                "timeout" => a
                    .branches
                    .iter()
                    .enumerate()
                    .find_map(|(i, b)| {
                        let t = b.get_ref().timeout_ms.as_ref()?;
                        (*t.get_ref() == 0)
                            .then(|| (t.span(), format!("aggregator.branches[{i}].timeout_ms")))
                    })
                    .unwrap_or((span, "aggregator.branches".to_owned())),
                _ => {
                    // `branch`: none, or a name empty or used twice.
                    let mut seen = std::collections::HashSet::new();
                    a.branches
                        .iter()
                        .enumerate()
                        .find_map(|(i, b)| {
                            let n = &b.get_ref().name;
                            (n.get_ref().is_empty() || !seen.insert(n.get_ref().as_str()))
                                .then(|| (n.span(), format!("aggregator.branches[{i}].name")))
                        })
                        .unwrap_or((span, "aggregator.branches".to_owned()))
                }
            };
            return self.err(span, key, e.reason().to_owned());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_valid_and_complete() {
        let cfg = Config::embedded_default();
        assert_eq!(cfg.server.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        let demo = cfg.demo.as_ref().expect("demo backends on by default");
        assert_eq!(demo.backends.len(), DEMO_SERVICES.len());
        assert_eq!(cfg.upstreams.len(), DEMO_SERVICES.len());
        assert_eq!(cfg.routes.len(), DEMO_SERVICES.len());
        for s in DEMO_SERVICES {
            let up = &cfg.upstreams[s];
            assert_eq!(up.target, UpstreamTarget::Demo(s.to_owned()));
            assert!(up.retry.is_some() && up.circuit_breaker.is_some() && up.bulkhead.is_some());
            assert!(up.attempt_timeout < up.timeout);
        }
        let aggregator = cfg.aggregator.expect("the dashboard aggregator");
        let names: Vec<&str> = aggregator
            .branches
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, DEMO_SERVICES);
        let required: Vec<&str> = aggregator
            .branches
            .iter()
            .filter(|b| b.required)
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(required, ["user", "order"]);
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // "bé = " is 6 bytes, 5 characters.
        assert_eq!(line_column(text, 12), (2, 6));
    }

    #[test]
    fn route_prefixes() {
        for ok in ["/api/user", "/a", "/v1.2/x-y_z~", "/API/Users"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in [
            "", "/", "api", "/api/", "//api", "/api//x", "/api/:x", "/api/{x}", "/api/*x", "/a b",
            "/a%20", "/a?b", "/a#b", "/./a", "/a/..", "/ü",
        ] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn key_at_finds_table_and_key() {
        let text = "[server]\nlisten = 1\n[upstreams.user]\n  timeout_ms = \"x\"\n";
        assert_eq!(key_at(text, text.find('1').unwrap()), "server.listen");
        assert_eq!(
            key_at(text, text.find("\"x\"").unwrap()),
            "upstreams.user.timeout_ms"
        );
    }

    #[test]
    fn builder_fields_map_to_their_keys() {
        let mut w = Written::new("t".to_owned(), 0..1, &BREAKER_KEYS);
        assert_eq!(w.key_of("wait_in_open"), Some("wait_in_open_ms"));
        assert_eq!(w.key_of("count_window"), Some("count_window"));
        assert_eq!(w.key_of("time_window"), Some("time_window_ms"));
        assert_eq!(w.key_of("name"), None);
        let v = Spanned::new(5..9, 3_i64);
        w.note("wait_in_open_ms", Some(&v));
        assert_eq!(
            w.place("wait_in_open"),
            (5..9, "t.wait_in_open_ms".to_owned())
        );
        assert_eq!(
            w.place("max_wait_in_open"),
            (0..1, "t.max_wait_in_open_ms".to_owned())
        );
        assert_eq!(w.place("name"), (0..1, "t".to_owned()));
    }
}
