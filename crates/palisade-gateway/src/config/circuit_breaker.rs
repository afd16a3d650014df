//! `[upstreams.<name>.circuit_breaker]`: the breaker's table.
//!
//! Unlike the retry and bulkhead tables, this one is still read through the
//! gateway's own raw struct, key list and `Option` per setter, and checked by
//! building a breaker: the circuit breaker crate has no settings struct with
//! a side-effect-free `validate()` yet. Once it has one, this file becomes
//! what `upstream.rs` does for retry: the table deserialized as the crate's
//! settings (`RawUpstream::circuit_breaker`), `validate()` mapped with
//! `Checker::settings_err`, and the upstream built with `.settings(..)`.

use std::ops::Range;
use std::time::Duration;

use palisade::ConfigError;
use palisade::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, State};
use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigFileError};

/// `[upstreams.<name>.circuit_breaker]`: `CircuitBreakerLayer::builder`'s
/// setters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
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
impl Checker<'_> {
    /// A builder's error, placed at the key its field names.
    fn builder_err(&self, written: &Written, err: &ConfigError) -> ConfigFileError {
        let (span, key) = written.place(err.field());
        ConfigFileError::at(self.source, span, key, err.reason())
    }

    pub(super) fn breaker(
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
