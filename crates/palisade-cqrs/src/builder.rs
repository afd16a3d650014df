//! [`CommandHandlerBuilder`]: one setter per [`CommandSettings`] field,
//! listeners, then [`build`](CommandHandlerBuilder::build).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use palisade_core::{ConfigError, Listeners};
use palisade_event_store::EventStore;
use palisade_event_store::backend::Backend;

use crate::aggregate::Aggregate;
use crate::event::CqrsEvent;
use crate::metrics::CommandMetrics;
use crate::service::{CommandHandler, Shared};
use crate::settings::CommandSettings;

/// Builds a [`CommandHandler`].
#[must_use]
pub struct CommandHandlerBuilder<A, B> {
    name: Arc<str>,
    store: EventStore<B>,
    settings: CommandSettings,
    listeners: Listeners<CqrsEvent>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, B: fmt::Debug> fmt::Debug for CommandHandlerBuilder<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandHandlerBuilder")
            .field("name", &self.name)
            .field("aggregate", &A::TYPE)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, B: Backend> CommandHandler<A, B> {
    /// A builder for a handler called `name` (labels metrics and logs) over
    /// `store`.
    pub fn builder(name: impl Into<Arc<str>>, store: EventStore<B>) -> CommandHandlerBuilder<A, B> {
        CommandHandlerBuilder {
            name: name.into(),
            store,
            settings: CommandSettings::default(),
            listeners: Listeners::new(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, B: Backend> CommandHandlerBuilder<A, B> {
    /// Every setting at once.
    pub fn settings(mut self, settings: CommandSettings) -> Self {
        self.settings = settings;
        self
    }

    /// [`CommandSettings::max_conflict_retries`].
    pub fn max_conflict_retries(mut self, n: u32) -> Self {
        self.settings.max_conflict_retries = n;
        self
    }

    /// [`CommandSettings::snapshot_every`].
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.settings.snapshot_every = n;
        self
    }

    /// [`CommandSettings::page_size`].
    pub fn page_size(mut self, n: usize) -> Self {
        self.settings.page_size = n;
        self
    }

    /// Adds a listener, called with every [`CqrsEvent`].
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&CqrsEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Validates, then builds the handler.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad setting (`name` if empty).
    pub fn build(self) -> Result<CommandHandler<A, B>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        Ok(CommandHandler {
            shared: Arc::new(Shared {
                metrics: CommandMetrics::new(&self.name),
                name: self.name,
                store: self.store,
                settings: self.settings,
                listeners: self.listeners,
                aggregate: PhantomData,
            }),
        })
    }
}
