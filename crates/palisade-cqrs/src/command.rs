//! [`Command`]: what a [`CommandHandler`](crate::CommandHandler) takes
//! (the entity's id, the command, an optional command id, metadata);
//! [`CommandOutcome`]: what it answers.

use std::sync::Arc;

use palisade_event_store::Metadata;

/// A command for entity `aggregate_id` of an aggregate.
///
/// The optional [`id`](Self::id) makes the command idempotent: it becomes
/// the id of the first event the command decides (`"<id>#2"`, `"<id>#3"`,
/// ... for the next ones, see [`event_id`](crate::event_id)), so the same
/// command sent twice (a retried HTTP request with its `Idempotency-Key`)
/// writes once and answers the first outcome again.
#[derive(Clone, Debug)]
pub struct Command<C> {
    pub(crate) aggregate_id: String,
    pub(crate) command: C,
    pub(crate) id: Option<String>,
    pub(crate) metadata: Metadata,
}

impl<C> Command<C> {
    /// `command` for the entity `aggregate_id` (its stream is
    /// `"<TYPE>-<aggregate_id>"`).
    pub fn new(aggregate_id: impl Into<String>, command: C) -> Self {
        Self {
            aggregate_id: aggregate_id.into(),
            command,
            id: None,
            metadata: Metadata::default(),
        }
    }

    /// Sets the command id (an `Idempotency-Key`, a message id): the
    /// command writes its events once however often it is sent. It is
    /// also the events' causation id unless the metadata sets one.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the metadata stored with each event.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The entity's id.
    #[must_use]
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// The command.
    #[must_use]
    pub fn command(&self) -> &C {
        &self.command
    }

    /// The command id, if any.
    #[must_use]
    pub fn command_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

/// What a command did: the stream's version after it and the global
/// position of its last event (the read-your-writes token: a query waits
/// until a projection has reached it).
#[derive(Clone, Debug, PartialEq)]
pub struct CommandOutcome<E> {
    pub(crate) stream: Arc<str>,
    pub(crate) version: u64,
    pub(crate) position: Option<u64>,
    pub(crate) events: Vec<E>,
    pub(crate) already_stored: bool,
}

impl<E> CommandOutcome<E> {
    /// The stream.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The stream's version after the command (for a repeated command, the
    /// version of its last event).
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The global position of the command's last event; `None` when it
    /// decided no event.
    #[must_use]
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// The events the command decided (for a repeated command, the events
    /// stored the first time when they were found in the loaded stream).
    #[must_use]
    pub fn events(&self) -> &[E] {
        &self.events
    }

    /// The events, owned.
    #[must_use]
    pub fn into_events(self) -> Vec<E> {
        self.events
    }

    /// `true` when the command id was already stored: nothing was written,
    /// and this is the first outcome again.
    #[must_use]
    pub fn already_stored(&self) -> bool {
        self.already_stored
    }
}
