//! [`CommandHandler`]: command handling as a tower `Service<Command<_>>`:
//! load (snapshot + tail), decide, append with the expected version, reload
//! and decide again on a conflict (bounded), snapshot every N events.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::Listeners;
use palisade_event_store::backend::{AnyBackend, Backend};
use palisade_event_store::{EventStore, EventStoreError, ExpectedVersion, NewEvent, Snapshot};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::aggregate::{Aggregate, DomainEvent, derived_from, event_id, random_id, stream_name};
use crate::command::{Command, CommandOutcome};
use crate::error::{CommandError, ConflictsExhausted, EncodeError};
use crate::event::CqrsEvent;
use crate::metrics::{CommandMetrics, CommandOutcomeKind};
use crate::settings::CommandSettings;

/// The future a [`CommandHandler`] returns (boxed: it awaits the store
/// several times).
pub type CommandFuture<A> = Pin<
    Box<
        dyn Future<
                Output = Result<
                    CommandOutcome<<A as Aggregate>::Event>,
                    CommandError<<A as Aggregate>::Error>,
                >,
            > + Send,
    >,
>;

pub(crate) struct Shared<A, B> {
    pub(crate) name: Arc<str>,
    pub(crate) store: EventStore<B>,
    pub(crate) settings: CommandSettings,
    pub(crate) metrics: CommandMetrics,
    pub(crate) listeners: Listeners<CqrsEvent>,
    pub(crate) aggregate: PhantomData<fn() -> A>,
}

/// Handles the commands of aggregate `A` on an event store: a tower
/// `Service<Command<A::Command>>`, so timeouts, bulkheads, breakers and
/// retries wrap it like any service.
///
/// Each call loads the entity (its snapshot when one is valid, then the
/// events after it), decides the command, and appends the events with the
/// version it loaded expected. If another writer appended in between (a
/// [`Conflict`](palisade_event_store::error::Conflict)), it reloads and
/// decides again, up to
/// [`max_conflict_retries`](CommandSettings::max_conflict_retries) times.
///
/// Cloning is cheap and shares the store, settings, metrics and listeners:
/// cloning does not create new state.
pub struct CommandHandler<A, B = AnyBackend> {
    pub(crate) shared: Arc<Shared<A, B>>,
}

impl<A, B> Clone for CommandHandler<A, B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A: Aggregate, B: fmt::Debug> fmt::Debug for CommandHandler<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandHandler")
            .field("name", &self.shared.name)
            .field("aggregate", &A::TYPE)
            .field("store", &self.shared.store)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// An entity loaded from its stream.
struct Loaded<A: Aggregate> {
    state: A,
    version: u64,
    /// The events a command with the same id already wrote: `(version,
    /// position, event)`.
    previous: Vec<(u64, u64, A::Event)>,
}

impl<A: Aggregate, B: Backend> CommandHandler<A, B> {
    /// The handler's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The store it writes to.
    #[must_use]
    pub fn store(&self) -> &EventStore<B> {
        &self.shared.store
    }

    /// The effective settings.
    #[must_use]
    pub fn settings(&self) -> &CommandSettings {
        &self.shared.settings
    }

    /// The current state of entity `aggregate_id` and its stream's version
    /// (`0`: no stream), loaded as a command would be.
    ///
    /// # Errors
    ///
    /// [`CommandError::Decode`] for an undecodable stored event,
    /// [`CommandError::Store`] if the store fails.
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, u64), CommandError<A::Error>> {
        let stream = stream_name::<A>(aggregate_id);
        let loaded = load::<A, B>(&self.shared, &stream, None).await?;
        Ok((loaded.state, loaded.version))
    }

    /// Handles one command (what `call` does, without `poll_ready`).
    ///
    /// # Errors
    ///
    /// See [`CommandError`].
    pub async fn handle(
        &self,
        command: Command<A::Command>,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        handle(Arc::clone(&self.shared), command).await
    }
}

impl<A: Aggregate, B: Backend> tower_service::Service<Command<A::Command>>
    for CommandHandler<A, B>
{
    type Response = CommandOutcome<A::Event>;
    type Error = CommandError<A::Error>;
    type Future = CommandFuture<A>;

    /// Always ready: the handler reserves nothing. Commands wait for the
    /// store's pool when they run (put a bulkhead in front to bound them).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, command: Command<A::Command>) -> Self::Future {
        Box::pin(handle(Arc::clone(&self.shared), command))
    }
}

async fn handle<A: Aggregate, B: Backend>(
    shared: Arc<Shared<A, B>>,
    command: Command<A::Command>,
) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
    let started = Instant::now();
    let span = tracing::debug_span!("command", name = %shared.name, aggregate = A::TYPE, id = %command.aggregate_id);
    let result = decide_and_append(&shared, command).instrument(span).await;
    shared
        .metrics
        .duration
        .record(started.elapsed().as_secs_f64());
    let kind = match &result {
        Ok(o) if o.already_stored => CommandOutcomeKind::AlreadyStored,
        Ok(o) if o.position.is_none() => CommandOutcomeKind::Unchanged,
        Ok(_) => CommandOutcomeKind::Written,
        Err(CommandError::Rejected(_)) => CommandOutcomeKind::Rejected,
        Err(e) => {
            tracing::warn!(name = %shared.name, error = %e, "command failed");
            CommandOutcomeKind::Error
        }
    };
    shared.metrics.outcome(kind);
    result
}

async fn load<A: Aggregate, B: Backend>(
    shared: &Shared<A, B>,
    stream: &str,
    command_id: Option<&str>,
) -> Result<Loaded<A>, CommandError<A::Error>> {
    let store = &shared.store;
    let mut state = A::default();
    let mut version = 0;
    let snapshot = store
        .load_snapshot(stream, A::SNAPSHOT_VERSION)
        .await
        .map_err(EventStoreError::from)?;
    if let Some(snapshot) = snapshot {
        match snapshot.decode::<A>() {
            Some(s) => {
                state = s;
                version = snapshot.version();
            }
            None => {
                tracing::debug!(name = %shared.name, stream, "snapshot does not decode: ignored");
            }
        }
    }
    let page_size = shared.settings.page_size;
    let mut previous = Vec::new();
    loop {
        let page = store
            .read_stream(stream, version + 1, page_size)
            .await
            .map_err(EventStoreError::from)?;
        let n = page.len();
        for recorded in page {
            let event: A::Event = recorded.decode().map_err(CommandError::Decode)?;
            if let Some(id) = command_id
                && derived_from(recorded.id(), id)
            {
                previous.push((recorded.version(), recorded.position(), event.clone()));
            }
            state = state.evolve(&event);
            version = recorded.version();
        }
        if n < page_size {
            break;
        }
    }
    Ok(Loaded {
        state,
        version,
        previous,
    })
}

async fn decide_and_append<A: Aggregate, B: Backend>(
    shared: &Shared<A, B>,
    command: Command<A::Command>,
) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
    let stream: Arc<str> = stream_name::<A>(&command.aggregate_id).into();
    let command_id = command.id.as_deref();
    let mut metadata = command.metadata.clone();
    if metadata.causation_id.is_none() {
        metadata.causation_id = command.id.clone();
    }
    let mut conflicts = 0;
    loop {
        let loaded = load::<A, B>(shared, &stream, command_id).await?;
        if let Some(&(version, position, _)) = loaded.previous.last() {
            tracing::debug!(name = %shared.name, %stream, version, "command already handled");
            return Ok(CommandOutcome {
                stream,
                version,
                position: Some(position),
                events: loaded.previous.into_iter().map(|(_, _, e)| e).collect(),
                already_stored: true,
            });
        }
        let events = loaded
            .state
            .decide(&command.command)
            .map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok(CommandOutcome {
                stream,
                version: loaded.version,
                position: None,
                events,
                already_stored: false,
            });
        }
        let fresh = random_id();
        let mut new = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let id = match command_id {
                Some(id) => event_id(id, i),
                None => event_id(&fresh, i),
            };
            let new_event = NewEvent::json(id, event.event_type(), event)
                .map_err(|e| CommandError::Encode(EncodeError::new(event.event_type(), e)))?
                .schema_version(event.schema_version())
                .metadata(metadata.clone());
            new.push(new_event);
        }
        let expected = if loaded.version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(loaded.version)
        };
        match shared.store.append(&stream, expected, &new).await {
            Ok(done) => {
                if !done.already_stored() {
                    let state = events.iter().fold(loaded.state, |s, e| s.evolve(e));
                    maybe_snapshot(shared, &stream, loaded.version, done.version(), &state).await;
                }
                return Ok(CommandOutcome {
                    stream,
                    version: done.version(),
                    position: done.last_position(),
                    events,
                    already_stored: done.already_stored(),
                });
            }
            Err(EventStoreError::Conflict(conflict)) => {
                conflicts += 1;
                shared.metrics.conflicts.increment(1);
                let retrying = conflicts <= shared.settings.max_conflict_retries;
                tracing::debug!(name = %shared.name, %stream, attempt = conflicts, retrying, "append conflict");
                shared.listeners.emit_with(|| CqrsEvent::CommandConflict {
                    name: Arc::clone(&shared.name),
                    stream: Arc::clone(&stream),
                    attempt: conflicts,
                    retrying,
                });
                if !retrying {
                    return Err(CommandError::Conflict(ConflictsExhausted::new(
                        conflicts, conflict,
                    )));
                }
            }
            Err(e) => return Err(CommandError::Store(e)),
        }
    }
}

/// Saves a snapshot when the append took the stream across a multiple of
/// `snapshot_every`. A failure is logged: a snapshot is only a shortcut.
async fn maybe_snapshot<A: Aggregate, B: Backend>(
    shared: &Shared<A, B>,
    stream: &Arc<str>,
    before: u64,
    after: u64,
    state: &A,
) {
    let every = shared.settings.snapshot_every;
    if every == 0 || after / every == before / every {
        return;
    }
    let snapshot = match Snapshot::new(stream, after, A::SNAPSHOT_VERSION, state) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(name = %shared.name, %stream, error = %e, "snapshot state does not serialize");
            return;
        }
    };
    match shared.store.save_snapshot(&snapshot).await {
        Ok(()) => {
            shared.metrics.snapshots.increment(1);
            tracing::debug!(name = %shared.name, %stream, version = after, "snapshot saved");
            shared.listeners.emit_with(|| CqrsEvent::Snapshotted {
                name: Arc::clone(&shared.name),
                stream: Arc::clone(stream),
                version: after,
            });
        }
        Err(e) => {
            tracing::warn!(name = %shared.name, %stream, error = %e, "snapshot not saved");
        }
    }
}
