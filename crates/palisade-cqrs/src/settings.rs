//! [`CommandSettings`] (command handling) and [`ProjectionSettings`]
//! (projection runners): plain data with documented defaults.

use std::time::Duration;

use palisade_core::ConfigError;

/// The most times a command is decided again after a conflict.
pub const MAX_CONFLICT_RETRIES: u32 = 100;
/// The most events read per page when loading an aggregate or feeding a
/// projection.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// The most attempts a projection makes at one event before parking it.
pub const MAX_ATTEMPTS: u32 = 100;
/// The longest projection name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// How commands are handled. Defaults: decide again up to 3 times after a
/// conflict, a snapshot every 100 events, pages of 256 events.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct CommandSettings {
    /// After a [`Conflict`](palisade_event_store::error::Conflict) (another
    /// writer appended to the stream between load and append), reload and
    /// decide again up to this many times; then the command fails with
    /// [`CommandError::Conflict`](crate::CommandError::Conflict). `0`: never.
    pub max_conflict_retries: u32,
    /// Save a snapshot whenever a command takes the stream across a
    /// multiple of this many events (`0`: never). A snapshot only shortens
    /// loading: it is ignored when it does not decode or is of another
    /// [`Aggregate::SNAPSHOT_VERSION`](crate::Aggregate::SNAPSHOT_VERSION).
    pub snapshot_every: u64,
    /// Events read per page when loading a stream.
    pub page_size: usize,
}

impl Default for CommandSettings {
    fn default() -> Self {
        Self {
            max_conflict_retries: 3,
            snapshot_every: 100,
            page_size: 256,
        }
    }
}

impl CommandSettings {
    /// Checks every bound; no side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_conflict_retries > MAX_CONFLICT_RETRIES {
            return Err(ConfigError::new(
                "max_conflict_retries",
                format!("must be at most {MAX_CONFLICT_RETRIES}"),
            ));
        }
        check_page("page_size", self.page_size)
    }
}

fn check_page(field: &'static str, n: usize) -> Result<(), ConfigError> {
    if n == 0 || n > MAX_PAGE_SIZE {
        return Err(ConfigError::new(
            field,
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(())
}

/// How a projection runner works. Defaults: batches of 100 events (one
/// transaction each), 3 attempts per event 100 ms apart before parking it,
/// a standby runner trying the projection's lock every second. (The
/// tables' prefix is the backend's: `SqliteReadModel::new(pool, prefix)`.)
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ProjectionSettings {
    /// Events applied per read-model transaction (the checkpoint is
    /// written once per batch, in the same transaction).
    pub batch_size: usize,
    /// Attempts at one event whose handler fails before it is parked.
    pub max_attempts: u32,
    /// The pause between two attempts at a failing event.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_backoff: Duration,
    /// How often a runner that does not hold the projection's lock (another
    /// process runs it) tries again, and reads the checkpoint for
    /// read-your-writes waits.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub lock_retry_interval: Duration,
}

impl Default for ProjectionSettings {
    fn default() -> Self {
        Self {
            batch_size: 100,
            max_attempts: 3,
            retry_backoff: Duration::from_millis(100),
            lock_retry_interval: Duration::from_secs(1),
        }
    }
}

impl ProjectionSettings {
    /// Checks every bound; no side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_page("batch_size", self.batch_size)?;
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(ConfigError::new(
                "max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS}"),
            ));
        }
        if self.lock_retry_interval.is_zero() {
            return Err(ConfigError::new("lock_retry_interval", "must be positive"));
        }
        Ok(())
    }
}

/// A table prefix: an identifier, optionally `schema.identifier`, of ASCII
/// letters, digits and `_`, not starting with a digit.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.len() <= 48
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let ok = match prefix.split_once('.') {
        Some((schema, table)) => ident(schema) && ident(table),
        None => ident(prefix),
    };
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "table_prefix",
            "must be an identifier (letters, digits, `_`), optionally schema-qualified",
        ))
    }
}

/// The default table prefix of the projection backends.
pub const DEFAULT_TABLE_PREFIX: &str = "palisade_projection";

/// A projection name: 1 to [`MAX_NAME_LEN`] bytes.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ConfigError::new(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(CommandSettings::default().validate().is_ok());
        assert!(ProjectionSettings::default().validate().is_ok());
    }

    #[test]
    fn bounds_name_the_setting() {
        let s = CommandSettings {
            page_size: 0,
            ..CommandSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field(), "page_size");
        let s = ProjectionSettings {
            max_attempts: 0,
            ..ProjectionSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field(), "max_attempts");
        assert_eq!(
            validate_prefix("x; DROP").unwrap_err().field(),
            "table_prefix"
        );
        assert!(validate_prefix("tenant.read_model").is_ok());
        assert!(validate_name("").is_err());
    }
}
