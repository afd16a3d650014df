//! [`DeadlineSettings`]: every setting of a deadline layer, as plain data.

use std::time::Duration;

use http::HeaderName;
use palisade_core::ConfigError;

/// The default header carrying the time a caller still waits over HTTP, in
/// whole milliseconds.
pub(crate) const TIMEOUT_HEADER: &str = "x-palisade-timeout-ms";

/// The longest budget a layer may grant: a year.
pub const MAX_BUDGET: Duration = palisade_core::deadline::MAX_BUDGET;

/// The settings of a [`DeadlineLayer`](crate::DeadlineLayer). The builder's
/// setters and the gateway's TOML keys have these names; durations are
/// strings in TOML (`"250ms"`, `"2s"`).
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `budget` | none | the most time this layer gives a request, from when it arrives; a caller's shorter deadline wins |
/// | `read_headers` | `true` | take a deadline from the request's `grpc-timeout` and `header` |
/// | `write_headers` | `true` | write what is left onto the request: `grpc-timeout` on a gRPC request, `header` otherwise |
/// | `header` | `x-palisade-timeout-ms` | the HTTP header carrying the time left, in milliseconds |
/// | `header_offset` | 0 | time taken off a deadline read from the headers (Envoy's `grpc_timeout_header_offset`) |
/// | `enforce` | `true` | fail the call with `DeadlineExpired` when the deadline passes (`false`: only carry it) |
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct DeadlineSettings {
    /// The most time this layer gives a request, from when it arrives
    /// (default: none, so only a deadline the request carries applies). A
    /// deadline the request carries already, or one read from its headers,
    /// wins when it is earlier.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub budget: Option<Duration>,
    /// Take a deadline from the request's `grpc-timeout` header and from
    /// [`header`](Self::header) (default `true`). A caller can only shorten
    /// its own request's deadline this way, never lengthen it past `budget`.
    pub read_headers: bool,
    /// Write the time left onto the request for the next service (default
    /// `true`): `grpc-timeout` on a gRPC request (`content-type:
    /// application/grpc...`), [`header`](Self::header) on any other.
    pub write_headers: bool,
    /// The HTTP header carrying the time left, in whole milliseconds
    /// (default `x-palisade-timeout-ms`).
    pub header: String,
    /// Time taken off a deadline read from the request's headers (default
    /// 0), as Envoy's `grpc_timeout_header_offset`: room for the answer's
    /// trip back. Under a tonic server, keep a few milliseconds: tonic
    /// enforces `grpc-timeout` itself and answers `CANCELLED` when its timer
    /// fires first; with an offset this layer fires first and answers
    /// `DEADLINE_EXCEEDED`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub header_offset: Duration,
    /// Fail the call with `DeadlineExpired` once the deadline passes,
    /// dropping the call below (default `true`). With `false` the layer only
    /// carries and writes the deadline, for the layers below to enforce.
    pub enforce: bool,
}

impl Default for DeadlineSettings {
    fn default() -> Self {
        Self {
            budget: None,
            read_headers: true,
            write_headers: true,
            header: TIMEOUT_HEADER.to_owned(),
            header_offset: Duration::ZERO,
            enforce: true,
        }
    }
}

impl DeadlineSettings {
    /// Checks every setting, without side effects.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `budget` (zero, or above [`MAX_BUDGET`]),
    /// `header_offset` (above [`MAX_BUDGET`]) or `header` (not a valid
    /// header name).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.budget {
            Some(budget) if budget.is_zero() => {
                return Err(ConfigError::new(
                    "budget",
                    "must be greater than zero, got 0s",
                ));
            }
            Some(budget) if budget > MAX_BUDGET => {
                return Err(ConfigError::new(
                    "budget",
                    format!("must be at most a year, got {budget:?}"),
                ));
            }
            _ => {}
        }
        if self.header_offset > MAX_BUDGET {
            return Err(ConfigError::new(
                "header_offset",
                format!("must be at most a year, got {:?}", self.header_offset),
            ));
        }
        self.header_name()?;
        Ok(())
    }

    /// The header, parsed.
    pub(crate) fn header_name(&self) -> Result<HeaderName, ConfigError> {
        if self.header == TIMEOUT_HEADER {
            // A static name: cloning it onto each request copies no bytes.
            return Ok(HeaderName::from_static(TIMEOUT_HEADER));
        }
        HeaderName::from_bytes(self.header.as_bytes()).map_err(|_| {
            ConfigError::new(
                "header",
                format!("must be a valid HTTP header name, got {:?}", self.header),
            )
        })
    }
}
