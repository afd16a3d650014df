//! [`EventStoreBuilder`]: one setter per [`EventStoreSettings`] field,
//! upcasters, listeners and a registry, then `open` or `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, Listeners, Registry};

use crate::backend::{AnyBackend, Backend};
use crate::error::{EventStoreError, InvalidEvent};
use crate::event::EventStoreEvent;
use crate::handle::EventStoreHandle;
use crate::settings::EventStoreSettings;
use crate::store::EventStore;
use crate::upcast::Upcasters;

/// Builds an [`EventStore`]: one setter per [`EventStoreSettings`] field,
/// listeners, then [`open`](Self::open) (the backend the URL selects) or
/// [`build`](Self::build) (a backend of the caller's).
#[must_use]
pub struct EventStoreBuilder {
    name: Arc<str>,
    settings: EventStoreSettings,
    listeners: Listeners<EventStoreEvent>,
    upcasters: Upcasters,
    registry: Option<Registry<EventStoreHandle>>,
}

impl fmt::Debug for EventStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStoreBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("upcasters", &self.upcasters)
            .field("registry", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

impl EventStoreBuilder {
    /// Every setting at once.
    pub fn settings(mut self, settings: EventStoreSettings) -> Self {
        self.settings = settings;
        self
    }

    /// [`EventStoreSettings::url`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.settings.url = url.into();
        self
    }

    /// [`EventStoreSettings::table_prefix`].
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.table_prefix = prefix.into();
        self
    }

    /// [`EventStoreSettings::max_connections`].
    pub fn max_connections(mut self, n: u32) -> Self {
        self.settings.max_connections = n;
        self
    }

    /// [`EventStoreSettings::page_size`].
    pub fn page_size(mut self, n: usize) -> Self {
        self.settings.page_size = n;
        self
    }

    /// [`EventStoreSettings::poll_interval`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval;
        self
    }

    /// [`EventStoreSettings::busy_timeout`].
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.settings.busy_timeout = timeout;
        self
    }

    /// Adds a listener, called with every [`EventStoreEvent`].
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&EventStoreEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Adds an upcaster: every event read whose type and schema version are
    /// `from` is handed on as `to`, its payload passed through `f`. Steps
    /// chain: an event of `("Deposited", 1)` with steps `1 → 2` and
    /// `2 → ("MoneyDeposited", 1)` is read as `("MoneyDeposited", 1)`, `f`s
    /// applied in that order. Nothing stored changes.
    ///
    /// If `f` fails, the event is handed on as stored, marked
    /// ([`RecordedEvent::is_upcast`](crate::RecordedEvent::is_upcast) is `false`), and its
    /// [`decode`](crate::RecordedEvent::decode) fails with a
    /// [`DecodeError`](crate::error::DecodeError) naming the stream,
    /// version, type and the upcaster's error: a read never fails for one
    /// bad event, and a projection can park it.
    ///
    /// [`build`](Self::build) / [`open`](Self::open) refuse (field
    /// `upcaster`) two steps from the same `from`, a step to itself, an
    /// empty type, and a chain that loops or is longer than
    /// [`MAX_UPCAST_CHAIN`](crate::MAX_UPCAST_CHAIN).
    pub fn upcaster<F>(mut self, from: (&str, u32), to: (&str, u32), f: F) -> Self
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, palisade_core::BoxError>
            + Send
            + Sync
            + 'static,
    {
        self.upcasters.add(from, to, Arc::new(f));
        self
    }

    /// Registers the store's [`EventStoreHandle`] under its name when it is
    /// built, for an admin API or dashboard. A store is opened once and
    /// cloned (its clones share everything), so a second build under a
    /// registered name is refused (a [`ConfigError`] on field `registry`).
    pub fn registry(mut self, registry: &Registry<EventStoreHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if let Some(registry) = &self.registry
            && registry.get(&self.name).is_some()
        {
            return Err(ConfigError::new(
                "registry",
                format!(
                    "an event store named {:?} is registered already: open a store once and clone it",
                    self.name
                ),
            ));
        }
        self.settings.validate()?;
        self.upcasters.check()
    }

    /// Validates, then opens the backend the URL selects (creating its
    /// tables).
    ///
    /// # Errors
    ///
    /// An [`EventStoreError::Invalid`] for a bad setting, a
    /// [`StoreError`](crate::error::StoreError) if the database cannot be opened or migrated.
    pub async fn open(self) -> Result<EventStore<AnyBackend>, EventStoreError> {
        self.check()
            .map_err(|e| InvalidEvent::new("settings", e.to_string()))?;
        let backend = AnyBackend::open(&self.settings).await?;
        Ok(self.finish(backend))
    }

    /// Validates, then builds a store over `backend` (its own URL and table
    /// settings are the backend's; the page size and poll interval apply).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad setting.
    pub fn build<B: Backend>(self, backend: B) -> Result<EventStore<B>, ConfigError> {
        self.check()?;
        Ok(self.finish(backend))
    }

    fn finish<B: Backend>(self, backend: B) -> EventStore<B> {
        let store = EventStore::from_parts(
            self.name,
            backend,
            &self.settings,
            self.listeners,
            self.upcasters,
        );
        if let Some(registry) = &self.registry {
            registry.insert(store.name(), store.handle());
        }
        store
    }
}

impl EventStore<AnyBackend> {
    /// A builder for a store called `name` (labels metrics and logs).
    pub fn builder(name: impl Into<Arc<str>>) -> EventStoreBuilder {
        EventStoreBuilder {
            name: name.into(),
            settings: EventStoreSettings::default(),
            listeners: Listeners::new(),
            upcasters: Upcasters::default(),
            registry: None,
        }
    }

    /// An in-memory store with default settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on `name` if it is empty.
    pub fn in_memory(name: impl Into<Arc<str>>) -> Result<Self, ConfigError> {
        Self::builder(name).build(AnyBackend::Memory(
            crate::backend::memory::MemoryBackend::new(),
        ))
    }
}
