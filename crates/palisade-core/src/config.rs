//! The error every Palisade builder returns for bad configuration.
//!
//! Builders validate when they build (`build()` returns
//! `Result<_, ConfigError>`) instead of panicking. The error names the
//! offending setting by the builder method's name, which is also the key the
//! gateway's TOML config uses, so a config loader can point at the line.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// A setting was out of range or inconsistent with another.
///
/// ```
/// use palisade_core::ConfigError;
///
/// let err = ConfigError::new("failure_rate_threshold", "must be in (0, 100], got 150");
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(err.to_string(), "invalid `failure_rate_threshold`: must be in (0, 100], got 150");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

impl ConfigError {
    /// The setting `field` is invalid because of `reason` (lowercase, no
    /// trailing period, saying what was expected and what was given).
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The name of the invalid setting, as the builder method is called.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why it is invalid.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl Error for ConfigError {}
