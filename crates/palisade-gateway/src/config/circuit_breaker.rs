//! `[upstreams.<name>.circuit_breaker]`: the breaker crate's own
//! [`CircuitBreakerSettings`], in the gateway's keys.
//!
//! The table deserializes straight into `CircuitBreakerSettings` (its
//! fields are the keys, unknown keys refused), is checked by its
//! side-effect-free `validate()` (an error placed at the key written for its
//! field), and the upstream's breaker is built from it with `.settings(..)`.
//! Before deserializing, `in_crate_form` rewrites the gateway's
//! conveniences into the crate's form:
//!
//! - durations as integers of milliseconds under the field's name plus
//!   `_ms`, as in every crate table (`wait_in_open_ms = 5000` is
//!   `wait_in_open = "5s"`);
//! - the window as `count_window = 20`, `time_window_ms = 60000` or
//!   `time_window = "60s"`: the crate's `sliding_window = { count = 20 }` or
//!   `{ time = "60s" }`, which may be written as is.

use std::borrow::Cow;
use std::ops::Range;

use palisade::circuit_breaker::{CircuitBreakerSettings, State};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::document::{self, DialectError, Seg};
use super::{Checker, ConfigFileError};

/// The gateway's keys for the crate's `sliding_window`, with the variant
/// each is (`time_window_ms` becomes `time` through the `_ms` rewrite).
const WINDOW_KEYS: [(&str, &str); 3] = [
    ("count_window", "count"),
    ("time_window", "time"),
    ("time_window_ms", "time_ms"),
];

/// Rewrites a `[upstreams.<name>.circuit_breaker]` table into the crate's
/// form, in place: the window keys become `sliding_window`, then the `_ms`
/// keys duration strings ([`document::crate_dialect`]). Refuses two windows,
/// and a state name the breaker does not have.
pub(super) fn in_crate_form(table: &mut DeTable<'_>) -> Result<(), DialectError> {
    // Every way the window is written, in the order written.
    let mut windows: Vec<(String, Range<usize>)> = table
        .keys()
        .filter(|k| {
            *k.get_ref() == "sliding_window" || WINDOW_KEYS.iter().any(|(w, _)| *k.get_ref() == *w)
        })
        .map(|k| (k.get_ref().to_string(), k.span()))
        .collect();
    windows.sort_by_key(|(_, span)| span.start);
    if let [(first, _), (second, span), ..] = windows.as_slice() {
        return Err(DialectError {
            span: span.clone(),
            message: format!("give either `{first}` or `{second}`, not both"),
        });
    }
    let entries: Vec<_> = std::mem::take(table).into_iter().collect();
    for (key, value) in entries {
        let name = key.get_ref().to_string();
        if name == "initial_state"
            && let DeValue::String(s) = value.get_ref()
            && !State::ALL.iter().any(|state| state.as_str() == s.as_ref())
        {
            return Err(DialectError {
                span: value.span(),
                message: format!("unknown state `{s}` (expected {})", startable_states()),
            });
        }
        let Some((_, variant)) = WINDOW_KEYS.iter().find(|(k, _)| *k == name) else {
            table.insert(key, value);
            continue;
        };
        if name == "time_window_ms" && !matches!(value.get_ref(), DeValue::Integer(_)) {
            return Err(DialectError {
                span: value.span(),
                message: "invalid type: expected an integer of milliseconds (or `time_window` as a duration string like \"60s\")".to_owned(),
            });
        }
        let span = key.span();
        let mut window = DeTable::new();
        window.insert(Spanned::new(span.clone(), Cow::Borrowed(*variant)), value);
        table.insert(
            Spanned::new(span.clone(), Cow::Borrowed("sliding_window")),
            Spanned::new(span, DeValue::Table(window)),
        );
    }
    document::crate_dialect(table)
}

/// The states a breaker may start in, as the crate's `validate()` accepts
/// them: `closed, disabled, metrics_only or forced_open`.
fn startable_states() -> String {
    let names: Vec<&str> = State::ALL
        .into_iter()
        .filter(|&state| {
            CircuitBreakerSettings {
                initial_state: state,
                ..CircuitBreakerSettings::default()
            }
            .validate()
            .is_ok()
        })
        .map(State::as_str)
        .collect();
    match names.split_last() {
        Some((last, init)) if !init.is_empty() => format!("{} or {last}", init.join(", ")),
        _ => names.join(""),
    }
}

impl Checker<'_> {
    /// Checks an upstream's breaker settings with the crate's `validate()`;
    /// an error is placed at the key written for its field (a window error
    /// at `sliding_window` when the window is written in the crate's form).
    pub(super) fn breaker(
        &self,
        upstream: &str,
        settings: &CircuitBreakerSettings,
    ) -> Result<(), ConfigFileError> {
        let path = [
            Seg::Key("upstreams"),
            Seg::Key(upstream),
            Seg::Key("circuit_breaker"),
        ];
        let dotted = format!("upstreams.{upstream}.circuit_breaker");
        settings.validate().map_err(|e| {
            let crate_form = [path[0], path[1], path[2], Seg::Key("sliding_window")];
            if matches!(e.field(), "count_window" | "time_window")
                && let Some((span, _)) = document::get(self.root, &crate_form)
            {
                return ConfigFileError::at(
                    self.source,
                    span,
                    format!("{dotted}.sliding_window"),
                    e.reason(),
                );
            }
            self.settings_err(&path, &dotted, &e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_startable_states_are_the_crates() {
        assert_eq!(
            startable_states(),
            "closed, disabled, metrics_only or forced_open"
        );
    }

    #[test]
    fn window_keys_become_the_crates_sliding_window() {
        for (written, kind) in [
            ("count_window = 20", "count"),
            ("time_window_ms = 60000", "time"),
            ("time_window = \"60s\"", "time"),
            ("sliding_window = { time = \"60s\" }", "time"),
        ] {
            let text = format!("[t]\n{written}\nwait_in_open_ms = 5\n");
            let mut root = DeTable::parse(&text).unwrap();
            let DeValue::Table(t) = root.get_mut().iter_mut().next().unwrap().1.get_mut() else {
                panic!()
            };
            in_crate_form(t).ok().unwrap();
            let keys: Vec<String> = t.keys().map(|k| k.get_ref().to_string()).collect();
            assert_eq!(keys, ["sliding_window", "wait_in_open"], "{written}");
            let window = t.iter().find(|(k, _)| k.get_ref() == "sliding_window");
            let Some(DeValue::Table(w)) = window.map(|(_, v)| v.get_ref()) else {
                panic!("{written}")
            };
            let inner: Vec<String> = w.keys().map(|k| k.get_ref().to_string()).collect();
            assert_eq!(inner, [kind], "{written}");
        }
        let both = "[t]\nsliding_window = { count = 5 }\ncount_window = 5\n";
        let mut root = DeTable::parse(both).unwrap();
        let DeValue::Table(t) = root.get_mut().iter_mut().next().unwrap().1.get_mut() else {
            panic!()
        };
        let err = in_crate_form(t).err().unwrap();
        assert_eq!(&both[err.span], "count_window");
        assert!(err.message.contains("not both"), "{}", err.message);
    }
}
