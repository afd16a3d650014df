//! Test support shared by Palisade's crates.
//!
//! - [`trace_init`]: tracing output captured by the test harness, level from
//!   `RUST_LOG`.
//! - [`MetricsCapture`]: a recorder to assert on the `metrics` a layer emits.
//! - [`EventCapture`]: a subscriber to assert on the tracing events a layer emits.
//! - [`DropProbe`]: observe that a future or value was dropped (cancellation).
//! - [`assert_send_sync_clone`] and friends: compile-time trait checks.
//! - [`service_url`] and [`unique_name`]: tests against the real PostgreSQL,
//!   Redis and NATS servers (skip with a printed reason by hand, must run in CI),
//!   each isolated by its own schema, key prefix or stream name.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// Installs a tracing subscriber that writes through the test harness's
/// captured output. Level from `RUST_LOG` (default `warn`). Safe to call from
/// every test.
pub fn trace_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Asserts at compile time that `T` is `Send + Sync + Clone + 'static`, as an
/// axum route or a tonic service needs.
pub const fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

/// Asserts at compile time that `T` is `Send + Sync + 'static`.
pub const fn assert_send_sync<T: Send + Sync + 'static>() {}

/// Asserts at compile time that `T` is `Send + 'static` (response futures).
pub const fn assert_send<T: Send + 'static>() {}

// ===== DropProbe =====

/// A value that records when it is dropped; hold one inside a future (or a
/// mock's response) to observe cancellation.
///
/// ```
/// use palisade_test_util::DropProbe;
///
/// let probe = DropProbe::new();
/// let token = probe.token();
/// assert!(!probe.dropped());
/// drop(token);
/// assert!(probe.dropped());
/// ```
#[derive(Clone, Debug, Default)]
pub struct DropProbe {
    dropped: Arc<AtomicUsize>,
}

/// The token handed out by [`DropProbe::token`]; dropping it is recorded.
#[derive(Debug)]
pub struct DropToken {
    dropped: Arc<AtomicUsize>,
    armed: AtomicBool,
}

impl DropProbe {
    /// A probe with no tokens dropped.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A token whose drop this probe records.
    #[must_use]
    pub fn token(&self) -> DropToken {
        DropToken {
            dropped: Arc::clone(&self.dropped),
            armed: AtomicBool::new(true),
        }
    }

    /// `true` once at least one token was dropped.
    #[must_use]
    pub fn dropped(&self) -> bool {
        self.count() > 0
    }

    /// How many tokens were dropped.
    #[must_use]
    pub fn count(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl DropToken {
    /// Consumes the token without recording a drop (the work completed).
    pub fn defuse(self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

impl Drop for DropToken {
    fn drop(&mut self) {
        if self.armed.load(Ordering::SeqCst) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// ===== MetricsCapture =====

/// A `metrics` recorder for tests. Reading never resets a value (unlike
/// metrics-util's `DebuggingRecorder`).
///
/// Install it for the current thread with [`enter`](Self::enter), *before*
/// building the layer under test (layers resolve their metric handles when
/// built). Use a `current_thread` runtime so every poll runs on this thread.
///
/// ```
/// use palisade_test_util::MetricsCapture;
///
/// let capture = MetricsCapture::new();
/// let _guard = capture.enter();
/// metrics::counter!("calls_total", "name" => "orders", "outcome" => "success").increment(2);
/// assert_eq!(capture.counter("calls_total", &[("name", "orders")]), 2);
/// assert_eq!(capture.counter("calls_total", &[("name", "users")]), 0);
/// ```
#[derive(Clone, Debug)]
pub struct MetricsCapture {
    registry: Arc<Registry<Key, AtomicStorage>>,
}

impl Default for MetricsCapture {
    fn default() -> Self {
        Self::new()
    }
}

fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

impl MetricsCapture {
    /// An empty capture.
    #[must_use]
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Registry::atomic()),
        }
    }

    /// Makes this the current thread's recorder until the guard drops.
    #[must_use]
    pub fn enter(&self) -> metrics::LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(self)
    }

    /// The sum of every counter called `name` whose labels include `labels`
    /// (0 when none was registered).
    #[must_use]
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.registry
            .get_counter_handles()
            .iter()
            .filter(|(k, _)| matches(k, name, labels))
            .map(|(_, c)| c.load(Ordering::SeqCst))
            .sum()
    }

    /// The value of the gauge called `name` with `labels`, if one was
    /// registered (the first match when several do).
    #[must_use]
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.registry
            .get_gauge_handles()
            .iter()
            .find(|(k, _)| matches(k, name, labels))
            .map(|(_, g)| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    /// Every value recorded in histograms called `name` with `labels`.
    #[must_use]
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let mut out = Vec::new();
        for (_, h) in self
            .registry
            .get_histogram_handles()
            .iter()
            .filter(|(k, _)| matches(k, name, labels))
        {
            h.data_with(|values| out.extend_from_slice(values));
        }
        out
    }

    /// The names of every registered metric, sorted and de-duplicated.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        names.extend(
            self.registry
                .get_counter_handles()
                .keys()
                .map(|k| k.name().to_owned()),
        );
        names.extend(
            self.registry
                .get_gauge_handles()
                .keys()
                .map(|k| k.name().to_owned()),
        );
        names.extend(
            self.registry
                .get_histogram_handles()
                .keys()
                .map(|k| k.name().to_owned()),
        );
        names.sort();
        names.dedup();
        names
    }
}

impl Recorder for MetricsCapture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_all_three_kinds_without_resetting() {
        let capture = MetricsCapture::new();
        let _g = capture.enter();
        metrics::counter!("c", "a" => "1").increment(3);
        metrics::gauge!("g", "a" => "1").set(2.5);
        metrics::histogram!("h").record(1.0);
        metrics::histogram!("h").record(2.0);
        for _ in 0..2 {
            assert_eq!(capture.counter("c", &[("a", "1")]), 3);
            assert_eq!(capture.gauge("g", &[]), Some(2.5));
            assert_eq!(capture.histogram("h", &[]), vec![1.0, 2.0]);
        }
        assert_eq!(capture.gauge("missing", &[]), None);
        assert_eq!(capture.names(), vec!["c", "g", "h"]);
    }

    #[test]
    fn drop_probe_counts_and_defuses() {
        let probe = DropProbe::new();
        let a = probe.token();
        let b = probe.token();
        b.defuse();
        assert_eq!(probe.count(), 0);
        drop(a);
        assert_eq!(probe.count(), 1);
    }
}

// ===== EventCapture =====

/// A tracing subscriber for tests that keeps every event emitted while it is
/// the thread's default, to assert on what a layer logs.
///
/// Install it with [`set_default`](Self::set_default) on a `current_thread`
/// runtime, in a test binary of its own: tracing caches each callsite's
/// interest per process, and a callsite first hit on another thread while a
/// scoped subscriber is being installed may miss it.
///
/// ```
/// use palisade_test_util::EventCapture;
///
/// let capture = EventCapture::default();
/// let _guard = capture.set_default();
/// tracing::warn!(name = "orders", reason = "error", "retrying");
/// let events = capture.take();
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].level, tracing::Level::WARN);
/// assert_eq!(events[0].field("reason"), Some("error"));
/// assert_eq!(events[0].line(), r#"WARN message=retrying name="orders" reason="error""#);
/// assert!(capture.take().is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct EventCapture(Arc<Mutex<Vec<CapturedEvent>>>);

/// One event an [`EventCapture`] kept.
#[derive(Clone, Debug)]
pub struct CapturedEvent {
    /// Its level.
    pub level: tracing::Level,
    /// Its target (the emitting module's path).
    pub target: String,
    /// Its fields in order: name, value, and whether the value was recorded
    /// as a string (rendered quoted by [`line`](Self::line)).
    fields: Vec<(String, String, bool)>,
}

impl EventCapture {
    /// Makes this capture the current thread's default subscriber until the
    /// guard is dropped.
    #[must_use]
    pub fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.clone())
    }

    /// The events kept so far, leaving none.
    ///
    /// # Panics
    ///
    /// If a thread panicked while recording an event.
    pub fn take(&self) -> Vec<CapturedEvent> {
        std::mem::take(&mut *self.0.lock().expect("capture lock"))
    }
}

impl CapturedEvent {
    /// The value of field `name` (a string field without quotes), if present.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    /// The event as one line: `LEVEL name=value ...`, string fields quoted,
    /// others as their `Debug` (or `Display`, for `%` fields) form.
    #[must_use]
    pub fn line(&self) -> String {
        let mut line = self.level.to_string();
        for (name, value, quoted) in &self.fields {
            line.push(' ');
            line.push_str(name);
            line.push('=');
            if *quoted {
                line.push_str(&format!("{value:?}"));
            } else {
                line.push_str(value);
            }
        }
        line
    }
}

struct Fields<'a>(&'a mut Vec<(String, String, bool)>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0
            .push((field.name().to_owned(), value.to_owned(), true));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_owned(), format!("{value:?}"), false));
    }
}

impl tracing::Subscriber for EventCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        let captured = CapturedEvent {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
        };
        if let Ok(mut events) = self.0.lock() {
            events.push(captured);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

// ===== Real services =====

/// The environment variable that points tests at a PostgreSQL server.
pub const POSTGRES_URL_VAR: &str = "PALISADE_TEST_POSTGRES_URL";
/// The environment variable that points tests at a Redis server.
pub const REDIS_URL_VAR: &str = "PALISADE_TEST_REDIS_URL";
/// The environment variable that points tests at a NATS server with JetStream.
pub const NATS_URL_VAR: &str = "PALISADE_TEST_NATS_URL";

/// `true` when the tests run in CI (`CI=true`), where nothing may be skipped.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The URL of a real service for a test, read from `var`
/// ([`POSTGRES_URL_VAR`], [`REDIS_URL_VAR`], [`NATS_URL_VAR`]).
///
/// - Set and not empty: `Some(url)`.
/// - Unset (or empty) by hand: prints why the test skips and returns `None`;
///   the test should return at once.
/// - Unset with `CI=true`: panics, because in CI these tests must run (`.ci/run`
///   sets the variables after checking that each server answers).
///
/// ```no_run
/// # async fn connect(_url: &str) {}
/// # async fn example() {
/// let Some(url) = palisade_test_util::service_url(palisade_test_util::POSTGRES_URL_VAR, "appends_twice") else {
///     return; // skipped by hand, with the reason printed
/// };
/// connect(&url).await;
/// # }
/// ```
#[must_use]
pub fn service_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if in_ci() => panic!(
            "{test}: CI=true but {var} is not set; .ci/run sets it after checking the server answers"
        ),
        _ => {
            println!("{test}: skipped, {var} is not set (set it to run against a real server)");
            None
        }
    }
}

/// A name no other test (in this process or another) is using, for a schema,
/// a key prefix, a stream or a subject: `{prefix}_{pid}_{counter}_{random}`,
/// lowercase ASCII letters, digits and `_` only, so it is a valid SQL
/// identifier, Redis key part and NATS stream name.
///
/// ```
/// let a = palisade_test_util::unique_name("es");
/// let b = palisade_test_util::unique_name("es");
/// assert_ne!(a, b);
/// assert!(a.starts_with("es_"));
/// ```
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded per process: a cheap random suffix without a
    // dependency, so two test processes with recycled pids still differ.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(n);
    let random = h.finish() & 0xff_ffff;
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{}_{n}_{random:06x}", std::process::id())
}
