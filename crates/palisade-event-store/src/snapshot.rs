//! [`Snapshot`]: a stream's state folded up to a version, stored to shorten
//! loading; never the truth (the events are).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A stream's state folded up to [`version`](Self::version), in the shape of
/// [`schema_version`](Self::schema_version).
///
/// [`EventStore::load_snapshot`](crate::EventStore::load_snapshot) ignores a
/// snapshot ahead of its stream or of another schema version; a caller
/// whose state does not decode ignores it too and folds from the start.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub(crate) stream: Arc<str>,
    pub(crate) version: u64,
    pub(crate) schema_version: u32,
    pub(crate) state: serde_json::Value,
}

impl Snapshot {
    /// A snapshot of `stream` at `version`, its state serialized to JSON.
    ///
    /// # Errors
    ///
    /// The `serde_json` error if `state` does not serialize.
    pub fn new<T: Serialize + ?Sized>(
        stream: &str,
        version: u64,
        schema_version: u32,
        state: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            stream: stream.into(),
            version,
            schema_version,
            state: serde_json::to_value(state)?,
        })
    }

    /// The stream.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The version of the last event folded into the state.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The state's schema version.
    #[must_use]
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The state as JSON.
    #[must_use]
    pub fn state(&self) -> &serde_json::Value {
        &self.state
    }

    /// The state decoded as `T`; `None` if it does not decode (fold from
    /// the start instead).
    #[must_use]
    pub fn decode<T: DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(&self.state).ok()
    }
}
