//! [`ParkedEvent`]: an event a projection could not apply, kept with its
//! reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An event a projection set aside: its payload did not decode as the
/// projection's event, or its handler failed every attempt. The projection
/// went on past it; fix the cause, then [rebuild] (or apply it by hand).
///
/// [rebuild]: crate::ProjectionHandle::rebuild
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ParkedEvent {
    /// The event's global position.
    pub position: u64,
    /// Its stream.
    pub stream: Arc<str>,
    /// Its version in the stream.
    pub version: u64,
    /// Its id.
    pub event_id: Arc<str>,
    /// Its type.
    pub event_type: Arc<str>,
    /// Why it was parked (the decode error, or the handler's last error
    /// with its causes).
    pub reason: String,
    /// When, in microseconds since the Unix epoch.
    pub parked_at_micros: i64,
}

impl ParkedEvent {
    /// When it was parked.
    #[must_use]
    pub fn parked_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.parked_at_micros.max(0).unsigned_abs())
    }
}

/// Microseconds since the Unix epoch.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// An error and its causes, one line: `"a: b: c"`.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
