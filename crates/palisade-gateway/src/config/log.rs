//! `[log]`: what the gateway logs per request.

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigFileError};

/// `[log]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    access_log: Option<Spanned<String>>,
    access_log_sample: Option<Spanned<f64>>,
}

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

impl Checker<'_> {
    pub(super) fn log(&self, raw: &RawLog) -> Result<LogConfig, ConfigFileError> {
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
}
