//! The gateway's TOML configuration: structs, parsing and validation, with
//! errors that name the file, line, column and key.
//!
//! Durations are integers of milliseconds in keys ending in `_ms`;
//! percentages are numbers in `(0, 100]`; setting names are the layer
//! builders' setter names in snake_case. See `docs/gateway.md` for every key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

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

/// Paths the gateway serves itself; a route prefix may not shadow them.
pub const RESERVED_PREFIXES: [&str; 5] =
    ["/admin", "/dashboard", "/metrics", "/healthz", "/readyz"];

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
    demo: Option<RawDemo>,
    #[serde(default)]
    upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    body_limit_bytes: Option<Spanned<i64>>,
    drain_timeout_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token: Option<Spanned<String>>,
    #[serde(default)]
    generate_token: bool,
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
    retry: Option<RawRetry>,
    circuit_breaker: Option<RawBreaker>,
    bulkhead: Option<RawBulkhead>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    initial_backoff_ms: Option<Spanned<i64>>,
    max_backoff_ms: Option<Spanned<i64>>,
    budget_percent: Option<Spanned<f64>>,
    min_retries_per_second: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failure_rate_threshold: Option<Spanned<f64>>,
    slow_call_rate_threshold: Option<Spanned<f64>>,
    slow_call_duration_threshold_ms: Option<Spanned<i64>>,
    minimum_number_of_calls: Option<Spanned<i64>>,
    sliding_window_type: Option<Spanned<String>>,
    sliding_window_size: Option<Spanned<i64>>,
    wait_duration_in_open_ms: Option<Spanned<i64>>,
    permitted_number_of_calls_in_half_open_state: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulkhead {
    max_concurrent_calls: Option<Spanned<i64>>,
    max_wait_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    upstream: Spanned<String>,
}

// ===== validated =====

/// A validated gateway configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the gateway listens and how it treats requests.
    pub server: ServerConfig,
    /// The admin API's guard.
    pub admin: AdminConfig,
    /// The in-process demo backends, if any.
    pub demo: Option<DemoConfig>,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Proxy routes, in the order written.
    pub routes: Vec<RouteConfig>,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            drain_timeout: Duration::from_secs(10),
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
    /// `timeout_ms`: the whole call, until response headers (default 2 s).
    pub timeout: Duration,
    /// `[upstreams.<name>.retry]`.
    pub retry: Option<RetryConfig>,
    /// `[upstreams.<name>.circuit_breaker]`.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// `[upstreams.<name>.bulkhead]`.
    pub bulkhead: Option<BulkheadConfig>,
}

/// How retry delays grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// `"fixed"`: always `initial_backoff_ms`.
    Fixed,
    /// `"exponential"`: doubling from `initial_backoff_ms` up to
    /// `max_backoff_ms`, with full jitter.
    Exponential,
    /// `"decorrelated_jitter"`: AWS's decorrelated jitter between
    /// `initial_backoff_ms` and `max_backoff_ms`.
    DecorrelatedJitter,
}

/// `[upstreams.<name>.retry]`: settings for the retry layer's builder.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// `max_attempts`: attempts in all, the first included (default 3, ≥ 1).
    pub max_attempts: u32,
    /// `backoff` (default `"exponential"`).
    pub backoff: Backoff,
    /// `initial_backoff_ms` (default 25, > 0).
    pub initial_backoff: Duration,
    /// `max_backoff_ms` (default 1000, ≥ `initial_backoff_ms`).
    pub max_backoff: Duration,
    /// `budget_percent`: retries may add at most this share of the request
    /// rate (default 20, in `(0, 100]`).
    pub budget_percent: f64,
    /// `min_retries_per_second`: the budget's floor (default 10).
    pub min_retries_per_second: u32,
}

/// The kind of a breaker's sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlidingWindowType {
    /// `"count_based"`: the last `sliding_window_size` calls.
    CountBased,
    /// `"time_based"`: the last `sliding_window_size` seconds.
    TimeBased,
}

/// `[upstreams.<name>.circuit_breaker]`: settings for the breaker's builder.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreakerConfig {
    /// `failure_rate_threshold`: percent in `(0, 100]` (default 50).
    pub failure_rate_threshold: f64,
    /// `slow_call_rate_threshold`: percent in `(0, 100]` (default 100).
    pub slow_call_rate_threshold: f64,
    /// `slow_call_duration_threshold_ms` (default 60 000, > 0).
    pub slow_call_duration_threshold: Duration,
    /// `minimum_number_of_calls` before any decision (default 20, ≥ 1).
    pub minimum_number_of_calls: u32,
    /// `sliding_window_type` (default `"count_based"`).
    pub sliding_window_type: SlidingWindowType,
    /// `sliding_window_size`: calls or seconds (default 100, ≥ 1).
    pub sliding_window_size: u32,
    /// `wait_duration_in_open_ms` (default 5000, > 0).
    pub wait_duration_in_open: Duration,
    /// `permitted_number_of_calls_in_half_open_state` (default 1, ≥ 1).
    pub permitted_number_of_calls_in_half_open_state: u32,
}

/// `[upstreams.<name>.bulkhead]`: settings for the bulkhead's builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// `max_concurrent_calls` (default 25, ≥ 1).
    pub max_concurrent_calls: u32,
    /// `max_wait_ms`: how long a call may wait for a permit; 0 rejects at
    /// once (default 0, ≥ 0).
    pub max_wait: Duration,
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
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn parse(name: &str, text: &str) -> Result<Self, ConfigFileError> {
        let source = Source { name, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(&source, &e))?;
        Checker { source: &source }.config(raw)
    }
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

    fn addr(&self, v: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigFileError> {
        v.get_ref().parse().or_else(|_| {
            self.err(
                v.span(),
                key,
                format!("`{}` is not an address like 127.0.0.1:8080", v.get_ref()),
            )
        })
    }

    /// A positive count.
    fn count(
        &self,
        v: Option<&Spanned<i64>>,
        key: &str,
        default: u32,
    ) -> Result<u32, ConfigFileError> {
        let Some(v) = v else { return Ok(default) };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => Ok(n),
            _ => self.err(
                v.span(),
                key,
                format!("must be a whole number ≥ 1, got {}", v.get_ref()),
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

    /// A percentage in (0, 100].
    fn percent(
        &self,
        v: Option<&Spanned<f64>>,
        key: &str,
        default: f64,
    ) -> Result<f64, ConfigFileError> {
        let Some(v) = v else { return Ok(default) };
        let p = *v.get_ref();
        if p.is_finite() && p > 0.0 && p <= 100.0 {
            Ok(p)
        } else {
            self.err(
                v.span(),
                key,
                format!("must be a percentage in (0, 100], got {p}"),
            )
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigFileError> {
        let defaults = ServerConfig::default();
        let server = ServerConfig {
            listen: match &raw.server.listen {
                Some(v) => self.addr(v, "server.listen")?,
                None => defaults.listen,
            },
            body_limit_bytes: match &raw.server.body_limit_bytes {
                Some(v) => match usize::try_from(*v.get_ref()) {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return self.err(
                            v.span(),
                            "server.body_limit_bytes",
                            format!("must be ≥ 1, got {}", v.get_ref()),
                        );
                    }
                },
                None => defaults.body_limit_bytes,
            },
            drain_timeout: self.millis(
                raw.server.drain_timeout_ms.as_ref(),
                "server.drain_timeout_ms",
                10_000,
                true,
            )?,
        };

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
            if !upstreams.contains_key(r.upstream.get_ref()) {
                let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                return self.err(
                    r.upstream.span(),
                    format!("{key}.upstream"),
                    format!(
                        "no upstream named `{}` (declared: {})",
                        r.upstream.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            routes.push(RouteConfig {
                prefix: prefix.clone(),
                upstream: r.upstream.into_inner(),
            });
        }

        Ok(Config {
            server,
            admin,
            demo,
            upstreams,
            routes,
        })
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

        let retry = match up.retry {
            None => None,
            Some(r) => {
                let k = |s: &str| format!("{key}.retry.{s}");
                let backoff = match r.backoff.as_ref() {
                    None => Backoff::Exponential,
                    Some(b) => match b.get_ref().as_str() {
                        "fixed" => Backoff::Fixed,
                        "exponential" => Backoff::Exponential,
                        "decorrelated_jitter" => Backoff::DecorrelatedJitter,
                        other => {
                            return self.err(b.span(), k("backoff"), format!("unknown backoff `{other}` (expected fixed, exponential or decorrelated_jitter)"));
                        }
                    },
                };
                let initial_backoff = self.millis(
                    r.initial_backoff_ms.as_ref(),
                    &k("initial_backoff_ms"),
                    25,
                    false,
                )?;
                let max_backoff = self.millis(
                    r.max_backoff_ms.as_ref(),
                    &k("max_backoff_ms"),
                    1_000,
                    false,
                )?;
                if max_backoff < initial_backoff {
                    let span = r
                        .max_backoff_ms
                        .as_ref()
                        .or(r.initial_backoff_ms.as_ref())
                        .map_or(up.url.span(), Spanned::span);
                    return self.err(
                        span,
                        k("max_backoff_ms"),
                        format!(
                            "must be ≥ initial_backoff_ms ({} ms), got {} ms",
                            initial_backoff.as_millis(),
                            max_backoff.as_millis()
                        ),
                    );
                }
                Some(RetryConfig {
                    max_attempts: self.count(r.max_attempts.as_ref(), &k("max_attempts"), 3)?,
                    backoff,
                    initial_backoff,
                    max_backoff,
                    budget_percent: self.percent(
                        r.budget_percent.as_ref(),
                        &k("budget_percent"),
                        20.0,
                    )?,
                    min_retries_per_second: self.count(
                        r.min_retries_per_second.as_ref(),
                        &k("min_retries_per_second"),
                        10,
                    )?,
                })
            }
        };

        let circuit_breaker = match up.circuit_breaker {
            None => None,
            Some(b) => {
                let k = |s: &str| format!("{key}.circuit_breaker.{s}");
                let sliding_window_type = match b.sliding_window_type.as_ref() {
                    None => SlidingWindowType::CountBased,
                    Some(t) => match t.get_ref().as_str() {
                        "count_based" => SlidingWindowType::CountBased,
                        "time_based" => SlidingWindowType::TimeBased,
                        other => {
                            return self.err(t.span(), k("sliding_window_type"), format!("unknown window type `{other}` (expected count_based or time_based)"));
                        }
                    },
                };
                Some(CircuitBreakerConfig {
                    failure_rate_threshold: self.percent(
                        b.failure_rate_threshold.as_ref(),
                        &k("failure_rate_threshold"),
                        50.0,
                    )?,
                    slow_call_rate_threshold: self.percent(
                        b.slow_call_rate_threshold.as_ref(),
                        &k("slow_call_rate_threshold"),
                        100.0,
                    )?,
                    slow_call_duration_threshold: self.millis(
                        b.slow_call_duration_threshold_ms.as_ref(),
                        &k("slow_call_duration_threshold_ms"),
                        60_000,
                        false,
                    )?,
                    minimum_number_of_calls: self.count(
                        b.minimum_number_of_calls.as_ref(),
                        &k("minimum_number_of_calls"),
                        20,
                    )?,
                    sliding_window_type,
                    sliding_window_size: self.count(
                        b.sliding_window_size.as_ref(),
                        &k("sliding_window_size"),
                        100,
                    )?,
                    wait_duration_in_open: self.millis(
                        b.wait_duration_in_open_ms.as_ref(),
                        &k("wait_duration_in_open_ms"),
                        5_000,
                        false,
                    )?,
                    permitted_number_of_calls_in_half_open_state: self.count(
                        b.permitted_number_of_calls_in_half_open_state.as_ref(),
                        &k("permitted_number_of_calls_in_half_open_state"),
                        1,
                    )?,
                })
            }
        };

        let bulkhead = match up.bulkhead {
            None => None,
            Some(b) => {
                let k = |s: &str| format!("{key}.bulkhead.{s}");
                Some(BulkheadConfig {
                    max_concurrent_calls: self.count(
                        b.max_concurrent_calls.as_ref(),
                        &k("max_concurrent_calls"),
                        25,
                    )?,
                    max_wait: self.millis(b.max_wait_ms.as_ref(), &k("max_wait_ms"), 0, true)?,
                })
            }
        };

        Ok(UpstreamConfig {
            target,
            timeout,
            retry,
            circuit_breaker,
            bulkhead,
        })
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
        }
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
        assert_eq!(key_at(text, text.find("1").unwrap()), "server.listen");
        assert_eq!(
            key_at(text, text.find("\"x\"").unwrap()),
            "upstreams.user.timeout_ms"
        );
    }
}
