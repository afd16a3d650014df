//! The gateway's TOML configuration: the top-level [`Config`], its entry
//! points ([`Config::load`], [`Config::parse`]) and [`ConfigFileError`],
//! which names the file, line, column and key of what is wrong. Each section
//! is a file of this folder: [`server`], [`admin`], [`log`], [`demo`],
//! [`upstream`] (with the breaker's keys in [`circuit_breaker`]),
//! [`route`], [`aggregator`], [`deadline`] and [`event_store`].
//! [`upstream`] (with the breaker's keys in [`circuit_breaker`] and its
//! cache in [`cache`]), [`route`], [`aggregator`] and [`rate_limit`]; a sharded upstream's
//! `shards` table in [`shards`] (the shard crate's
//! [`ShardSettings`](palisade::shard::ShardSettings)); `[pubsub]` in
//! [`pubsub`].
//!
//! # One source per setting
//!
//! The tables a pattern crate owns deserialize straight into that crate's
//! settings struct: `[upstreams.<name>.retry]` is a
//! [`RetrySettings`](palisade::retry::RetrySettings), `.circuit_breaker` a
//! [`CircuitBreakerSettings`](palisade::circuit_breaker::CircuitBreakerSettings),
//! `.bulkhead` a
//! [`BulkheadSettings`](palisade::bulkhead::BulkheadSettings), `.cache` a
//! [`CacheSettings`](palisade::cache::CacheSettings) (`.cache.redis` a
//! [`RedisSettings`](palisade::cache::RedisSettings) next to its `url`),
//! `[aggregator]` a [`FanOutSettings`](palisade::fan_out::FanOutSettings)
//! and each branch a [`BranchSettings`](palisade::fan_out::BranchSettings),
//! `[rate_limit]` a
//! [`RateLimitSettings`](palisade::rate_limit::RateLimitSettings).
//! Their keys are the structs' fields, checked by the crate's own
//! `validate()` (no layer is built to check them); a `validate()` error,
//! whose `field` is the setting's name, is reported at the key written for
//! it. Durations in those tables are strings (`deadline = "500ms"`) or, as
//! everywhere in this file, integers of milliseconds in keys ending in `_ms`
//! (`deadline_ms = 500`). `document.rs` places the keys.
//!
//! The gateway's own sections (server, admin, log, demo, upstream, route)
//! use keys ending in `_ms` for durations; percentages are numbers in
//! `(0, 100]`. See `docs/gateway.md` for every key.

pub mod admin;
pub mod aggregator;
pub mod cache;
pub mod circuit_breaker;
pub mod deadline;
pub mod demo;
pub(crate) mod document;
pub mod event_store;
pub mod log;
pub mod pubsub;
pub mod rate_limit;
pub mod route;
pub mod server;
pub mod shards;
pub mod target;
pub mod upstream;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use palisade::ConfigError;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use admin::AdminConfig;
pub use aggregator::{AGGREGATOR_ROUTE, AggregatorConfig, BranchConfig, BranchFallback};
pub use cache::{CacheConfig, CacheRedisConfig};
pub use demo::{BackendConfig, DEMO_SERVICES, DemoConfig};
pub use log::{AccessLog, DEFAULT_ACCESS_LOG_SAMPLE, LogConfig};
pub use pubsub::{PubSubBackend, PubSubConfig};
pub use rate_limit::{RateLimitBackend, RateLimitConfig};
pub use route::{RESERVED_PREFIXES, RouteConfig};
pub use server::ServerConfig;
pub use shards::{MemberConfig, ShardsConfig};
pub use upstream::{UpstreamConfig, UpstreamTarget};

use document::Seg;

/// The configuration compiled into the binary (`--print-default-config`
/// prints it): the gateway on 127.0.0.1:8080 over the six demo backends.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// The name the embedded default configuration is reported under in errors.
pub const DEFAULT_CONFIG_NAME: &str = "<default config>";

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

// ===== the whole file =====

/// The file as written, each section in its own raw form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: server::RawServer,
    #[serde(default)]
    admin: admin::RawAdmin,
    #[serde(default)]
    log: log::RawLog,
    #[serde(default)]
    demo: Option<demo::RawDemo>,
    #[serde(default)]
    upstreams: BTreeMap<String, upstream::RawUpstream>,
    #[serde(default)]
    routes: Vec<route::RawRoute>,
    #[serde(default)]
    aggregator: Option<Spanned<aggregator::RawAggregator>>,
    #[serde(default)]
    deadline: Option<palisade::deadline::DeadlineSettings>,
    #[serde(default)]
    event_store: Option<palisade::event_store::EventStoreSettings>,
    rate_limit: Option<rate_limit::RawRateLimit>,
    #[serde(default)]
    pubsub: Option<pubsub::RawPubSub>,
}

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
    /// `[deadline]`: the deadline every route gives a request (the deadline
    /// crate's settings; its defaults without the table).
    pub deadline: palisade::deadline::DeadlineSettings,
    /// `[event_store]`: where the accounts' events and balances live (the
    /// event store crate's settings; without the table, a SQLite file
    /// `palisade-events.db` in the working directory).
    pub event_store: palisade::event_store::EventStoreSettings,
    /// The per-client limit on the `/api` routes, if configured (and not
    /// `enabled = false`).
    pub rate_limit: Option<RateLimitConfig>,
    /// Order events and their consumers (`[pubsub]`), if configured and
    /// enabled.
    pub pubsub: Option<PubSubConfig>,
}

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
    /// Every table a pattern crate owns is checked by that crate's
    /// `validate()`: what it refuses is refused here, at the key its
    /// [`ConfigError`] names. A text that sets nothing (empty, or only
    /// comments and blank lines) is refused too.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn parse(name: &str, text: &str) -> Result<Self, ConfigFileError> {
        if sets_nothing(text) {
            return Err(ConfigFileError::empty(name));
        }
        let source = Source { name, text };
        let (root, errors) = DeTable::parse_recoverable(text);
        if let Some(err) = errors.first() {
            return Err(toml_error(&source, &root, err));
        }
        let mut tree = root.clone();
        in_crate_form(tree.get_mut()).map_err(|e| {
            let key = document::key_at(root.get_ref(), e.span.start);
            ConfigFileError::at(&source, e.span, key, e.message)
        })?;
        let raw = RawConfig::deserialize(toml::de::Deserializer::from(tree))
            .map_err(|e| toml_error(&source, &root, &e))?;
        Checker {
            source: &source,
            root: &root,
        }
        .config(raw)
    }
}

/// Rewrites the tables the pattern crates own into the crates' own form
/// (see [`document::crate_dialect`]), and splits the aggregator's tables into
/// the fan-out's settings and the gateway's own keys.
fn in_crate_form(root: &mut DeTable<'_>) -> Result<(), document::DialectError> {
    for (key, value) in root.iter_mut() {
        match (key.get_ref().as_ref(), value.get_mut()) {
            ("upstreams", DeValue::Table(upstreams)) => {
                for (_, upstream) in upstreams.iter_mut() {
                    if let DeValue::Table(tables) = upstream.get_mut() {
                        upstream::in_crate_form(tables)?;
                        shards::in_crate_form(tables)?;
                    }
                }
            }
            ("aggregator", DeValue::Table(_)) => aggregator::in_crate_form(value)?,
            ("deadline", DeValue::Table(table)) => document::crate_dialect(table)?,
            ("event_store", DeValue::Table(table)) => document::crate_dialect(table)?,
            ("rate_limit", DeValue::Table(_)) => rate_limit::in_crate_form(value)?,
            ("pubsub", DeValue::Table(_)) => pubsub::in_crate_form(value)?,
            _ => {}
        }
    }
    Ok(())
}

/// `true` if `text` has nothing but blank lines and comments: TOML that
/// sets no key and opens no table.
fn sets_nothing(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        line.is_empty() || line.starts_with('#')
    })
}

/// A toml error (syntax, type, unknown key), placed: the key is the one
/// written at the error's span in the parsed document.
fn toml_error(
    source: &Source<'_>,
    root: &Spanned<DeTable<'_>>,
    err: &toml::de::Error,
) -> ConfigFileError {
    let span = err.span().unwrap_or(0..0);
    let mut key = document::key_at(root.get_ref(), span.start);
    let value = document::value_at(root.get_ref(), &span);
    let message = document::explain(&mut key, value, err.message().trim());
    ConfigFileError::at(source, span, key, message)
}

/// Checks a parsed file, section by section (each in its file).
struct Checker<'a> {
    source: &'a Source<'a>,
    root: &'a Spanned<DeTable<'a>>,
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

    /// A crate's `validate()` error about the table at `path` (dotted:
    /// `dotted`), placed at the key written for its field.
    fn settings_err(&self, path: &[Seg<'_>], dotted: &str, err: &ConfigError) -> ConfigFileError {
        let (span, key) = document::place(self.root, path, dotted, err.field());
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

    /// A whole number that fits `T` and is at least `min`.
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

    /// Refuses a reference to an upstream not declared.
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

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigFileError> {
        let server = self.server(&raw.server)?;
        let admin = self.admin(raw.admin)?;
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
        self.shard_names(
            upstreams
                .iter()
                .filter_map(|(name, up)| Some((name.as_str(), up.shards.as_ref()?))),
            |name| upstreams.contains_key(name),
        )?;
        let routes = self.routes(raw.routes, &upstreams)?;
        let aggregator = match raw.aggregator {
            Some(a) => Some(self.aggregator(a, &upstreams)?),
            None => None,
        };
        let deadline = self.deadline(raw.deadline)?;
        let event_store = self.event_store(raw.event_store)?;
        let rate_limit = match raw.rate_limit {
            Some(r) => self.rate_limit(r)?,
            None => None,
        };
        let pubsub = match raw.pubsub {
            Some(p) => self.pubsub(p)?,
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
            deadline,
            event_store,
            rate_limit,
            pubsub,
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
        // The user service is three shards (user-0 to user-2), each a demo
        // backend of its own.
        assert_eq!(demo.backends.len(), DEMO_SERVICES.len() + 2);
        assert_eq!(cfg.upstreams.len(), DEMO_SERVICES.len());
        assert_eq!(cfg.routes.len(), DEMO_SERVICES.len());
        for s in DEMO_SERVICES {
            let up = &cfg.upstreams[s];
            if s == "user" {
                assert_eq!(up.target, UpstreamTarget::Shards);
                let shards = up.shards.as_ref().expect("the user service is sharded");
                let names: Vec<&str> = shards.members.iter().map(|m| m.name.as_str()).collect();
                assert_eq!(names, ["user-0", "user-1", "user-2"]);
                for m in &shards.members {
                    assert_eq!(m.target, UpstreamTarget::Demo(m.name.clone()));
                    assert_eq!(demo.backends[&m.name].service, "user");
                }
            } else {
                assert_eq!(up.target, UpstreamTarget::Demo(s.to_owned()));
            }
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
            .filter(|b| b.settings.required)
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
    fn crate_tables_take_durations_either_way() {
        let base = "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n[upstreams.u.retry]\n";
        let ms = Config::parse("a", &format!("{base}deadline_ms = 1500\n")).unwrap();
        let text = Config::parse("b", &format!("{base}deadline = \"1500ms\"\n")).unwrap();
        let retry = ms.upstreams["u"].retry.clone().unwrap();
        assert_eq!(retry.deadline, Some(Duration::from_millis(1500)));
        assert_eq!(Some(retry), text.upstreams["u"].retry);
        let both = format!("{base}deadline = \"1s\"\ndeadline_ms = 1500\n");
        let err = Config::parse("c", &both).unwrap_err();
        assert_eq!(err.key(), "upstreams.u.retry.deadline_ms");
        assert!(err.message().contains("not both"), "{err}");
        let outside = format!("{base}attempt_timeout_ms = 100\n");
        let err = Config::parse("d", &outside).unwrap_err();
        assert_eq!(err.key(), "upstreams.u.retry.attempt_timeout_ms");
        assert!(
            err.message().contains("inside the circuit breaker"),
            "{err}"
        );
    }
}
