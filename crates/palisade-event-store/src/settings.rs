//! [`EventStoreSettings`]: where the store lives and how it is read.

use std::time::Duration;

use palisade_core::ConfigError;

/// The most events one append may carry.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// The longest stream name, event id or event type, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The largest page a read or a subscription fetches.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// The most connections a SQL backend's pool opens.
pub const MAX_CONNECTIONS: u32 = 1_000;

/// Which backend a URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// `memory:`: in the process, gone when it ends (tests, examples).
    Memory,
    /// `sqlite:<path>` or `sqlite://<path>`: a file, WAL mode.
    Sqlite,
    /// `postgres://...` or `postgresql://...`.
    Postgres,
}

impl BackendKind {
    /// The backend a URL selects, by its scheme.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on field `url` for another scheme.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        if url == "memory:" {
            Ok(Self::Memory)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(ConfigError::new(
                "url",
                "expected `memory:`, `sqlite:<path>` or `postgres://...`",
            ))
        }
    }
}

/// The store's settings. Defaults: a SQLite file `palisade-events.db` in the
/// working directory, tables prefixed `palisade_es`, 8 connections, pages
/// of 256 events, subscriptions polling every 500 ms for other processes'
/// appends, SQLite writers waiting up to 5 s for the write lock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct EventStoreSettings {
    /// `memory:`, `sqlite:<path>` (created if missing) or `postgres://...`.
    pub url: String,
    /// The tables' name prefix: `prefix` or, on PostgreSQL, `schema.prefix`
    /// (ASCII letters, digits and `_`). Tables are `<prefix>_events`,
    /// `<prefix>_head` and `<prefix>_snapshots`.
    pub table_prefix: String,
    /// Connections in a SQL backend's pool (`1..=MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// Events a subscription fetches per read (`1..=MAX_PAGE_SIZE`).
    pub page_size: usize,
    /// How often an idle subscription looks for events appended by other
    /// processes (appends through this store wake it at once).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub poll_interval: Duration,
    /// How long a SQLite writer waits for the file's write lock.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub busy_timeout: Duration,
}

impl Default for EventStoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite:palisade-events.db".to_owned(),
            table_prefix: "palisade_es".to_owned(),
            max_connections: 8,
            page_size: 256,
            poll_interval: Duration::from_millis(500),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl EventStoreSettings {
    /// Settings for `url`, the rest default.
    #[must_use]
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The backend the URL selects.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on field `url` for an unknown scheme.
    pub fn backend_kind(&self) -> Result<BackendKind, ConfigError> {
        BackendKind::from_url(&self.url)
    }

    /// Checks every setting; no side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backend_kind()?;
        validate_prefix(&self.table_prefix)?;
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(ConfigError::new(
                "max_connections",
                format!(
                    "expected 1..={MAX_CONNECTIONS}, got {}",
                    self.max_connections
                ),
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ConfigError::new(
                "page_size",
                format!("expected 1..={MAX_PAGE_SIZE}, got {}", self.page_size),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(ConfigError::new("poll_interval", "must be more than zero"));
        }
        Ok(())
    }
}

/// Checks a table prefix is `name` or `schema.name` of ASCII letters,
/// digits and `_`, not starting with a digit: it is written into
/// statements, never bound.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 100
        && prefix.split('.').count() <= 2
        && prefix.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !part.as_bytes()[0].is_ascii_digit()
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "table_prefix",
            format!("{prefix:?} is not `name` or `schema.name` of letters, digits and `_`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert!(EventStoreSettings::default().validate().is_ok());
        assert_eq!(
            EventStoreSettings::default().backend_kind(),
            Ok(BackendKind::Sqlite)
        );
        let field = |s: EventStoreSettings| s.validate().unwrap_err().field().to_owned();
        assert_eq!(field(EventStoreSettings::with_url("redis://x")), "url");
        assert_eq!(
            field(EventStoreSettings {
                table_prefix: "a;drop".into(),
                ..EventStoreSettings::default()
            }),
            "table_prefix"
        );
        assert_eq!(
            field(EventStoreSettings {
                max_connections: 0,
                ..EventStoreSettings::default()
            }),
            "max_connections"
        );
        assert_eq!(
            field(EventStoreSettings {
                page_size: MAX_PAGE_SIZE + 1,
                ..EventStoreSettings::default()
            }),
            "page_size"
        );
        assert_eq!(
            field(EventStoreSettings {
                poll_interval: Duration::ZERO,
                ..EventStoreSettings::default()
            }),
            "poll_interval"
        );
        assert!(validate_prefix("tenant_a.es").is_ok());
        assert!(validate_prefix("a.b.c").is_err());
        assert!(validate_prefix("1a").is_err());
        assert_eq!(
            BackendKind::from_url("postgresql://h/db"),
            Ok(BackendKind::Postgres)
        );
        assert_eq!(BackendKind::from_url("memory:"), Ok(BackendKind::Memory));
    }
}
