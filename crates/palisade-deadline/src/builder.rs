//! [`DeadlineBuilder`]: one setter per setting, validated by `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, Listeners, Registry};

use crate::event::DeadlineEvent;
use crate::handle::DeadlineHandle;
use crate::layer::DeadlineLayer;
use crate::settings::DeadlineSettings;
use crate::shared::Shared;

/// Builds a [`DeadlineLayer`]; see [`DeadlineSettings`] for every setting
/// and its default.
#[must_use]
pub struct DeadlineBuilder {
    name: Arc<str>,
    settings: DeadlineSettings,
    listeners: Listeners<DeadlineEvent>,
    registry: Option<Registry<DeadlineHandle>>,
}

impl DeadlineLayer {
    /// A builder for a layer called `name` (its metrics' `name` label).
    pub fn builder(name: impl Into<Arc<str>>) -> DeadlineBuilder {
        DeadlineBuilder::new(name.into())
    }
}

impl fmt::Debug for DeadlineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl DeadlineBuilder {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            settings: DeadlineSettings::default(),
            listeners: Listeners::new(),
            registry: None,
        }
    }

    /// Replaces every setting with `settings` (from a config file).
    pub fn settings(mut self, settings: DeadlineSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The most time this layer gives a request from its arrival; a caller's
    /// earlier deadline wins (default: none).
    pub fn budget(mut self, budget: Duration) -> Self {
        self.settings.budget = Some(budget);
        self
    }

    /// Take a deadline from `grpc-timeout` and the HTTP header (default
    /// `true`).
    pub fn read_headers(mut self, read: bool) -> Self {
        self.settings.read_headers = read;
        self
    }

    /// Write the time left onto the request: `grpc-timeout` for gRPC, the
    /// HTTP header otherwise (default `true`).
    pub fn write_headers(mut self, write: bool) -> Self {
        self.settings.write_headers = write;
        self
    }

    /// The HTTP header carrying the time left in milliseconds (default
    /// `x-palisade-timeout-ms`).
    pub fn header(mut self, header: impl Into<String>) -> Self {
        self.settings.header = header.into();
        self
    }

    /// Time taken off a deadline read from the headers (default 0); under a
    /// tonic server keep a few milliseconds, so this layer answers
    /// `DEADLINE_EXCEEDED` before tonic's own timer answers `CANCELLED`.
    pub fn header_offset(mut self, offset: Duration) -> Self {
        self.settings.header_offset = offset;
        self
    }

    /// Fail calls whose deadline passed (default `true`); `false` only
    /// carries the deadline.
    pub fn enforce(mut self, enforce: bool) -> Self {
        self.settings.enforce = enforce;
        self
    }

    /// Calls `listener` with every [`DeadlineEvent`]. A listener that panics
    /// is caught and logged.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&DeadlineEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the layer in `registry` under its name. If one of that name
    /// is registered already, [`build`](Self::build) returns a layer sharing
    /// its state (its settings and listeners win).
    pub fn registry(mut self, registry: &Registry<DeadlineHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` (empty), `budget` (zero or above a
    /// year) or `header` (not a header name).
    pub fn build(self) -> Result<DeadlineLayer, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        let header = self.settings.header_name()?;
        let Self {
            name,
            settings,
            listeners,
            registry,
        } = self;
        let make = || DeadlineHandle {
            shared: Arc::new(Shared::new(Arc::clone(&name), settings, header, listeners)),
        };
        let handle = match registry {
            Some(registry) => registry.get_or_insert_with(&name, make),
            None => make(),
        };
        Ok(DeadlineLayer {
            shared: Arc::new(palisade_core::stripe::Striped::from_arc(handle.shared)),
        })
    }
}
