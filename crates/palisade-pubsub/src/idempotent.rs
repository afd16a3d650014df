//! The idempotent consumer: a tower layer that runs a handler at most once
//! per message id, remembering handled ids in a bounded in-memory store.
//!
//! Redelivery is how every at-least-once backend recovers from a crash, a
//! lost ack or an expired ack wait, and the outbox relay re-publishes after a
//! crash between publish and checkpoint. This layer absorbs those duplicates
//! within one process: an id whose handler succeeded is skipped (the service
//! answers `Ok(None)` and the consumer acks). An id whose handler is running
//! right now fails with [`AlreadyInProgress`] (retryable: it is redelivered
//! later, then skipped). A handler that fails, or whose future is dropped (a
//! consumer killed mid-message), leaves no mark, so the redelivery runs it.
//!
//! Effects that must happen exactly once across processes and restarts
//! belong in a database transaction that also records the id: the
//! `SqliteInbox` and `PgInbox` of the `sqlite` and `postgres` features.
//!
//! ```
//! use palisade_pubsub::{IdempotentLayer, Message};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let handled = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&handled);
//! let svc = ServiceBuilder::new()
//!     .layer(IdempotentLayer::builder("billing").capacity(10_000).build()?)
//!     .service(service_fn(move |_msg: Message| {
//!         counter.fetch_add(1, Ordering::SeqCst);
//!         async { Ok::<_, palisade_core::BoxError>(()) }
//!     }));
//!
//! let msg = Message::builder("orders.paid").id("order-17-paid").build()?;
//! assert_eq!(svc.clone().oneshot(msg.clone()).await?, Some(()));
//! assert_eq!(svc.clone().oneshot(msg).await?, None, "a duplicate is skipped");
//! assert_eq!(handled.load(Ordering::SeqCst), 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{BoxError, ConfigError};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::AlreadyInProgress;
use crate::message::Message;
use crate::metrics::DedupMetrics;
use crate::settings::{DedupSettings, validate_name};
use crate::state::dedup::{Begin, DedupSet};

/// Runs the handler below at most once per message id (within the store's
/// capacity). Cloning the layer or its services shares one store.
#[derive(Clone)]
pub struct IdempotentLayer {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    settings: DedupSettings,
    set: Mutex<DedupSet>,
    metrics: DedupMetrics,
}

/// Configures an [`IdempotentLayer`]; [`build`](Self::build) validates.
#[derive(Debug)]
#[must_use]
pub struct IdempotentBuilder {
    name: String,
    settings: DedupSettings,
}

impl IdempotentLayer {
    /// A builder for a store called `name` (labels the duplicates metric).
    pub fn builder(name: impl Into<String>) -> IdempotentBuilder {
        IdempotentBuilder {
            name: name.into(),
            settings: DedupSettings::default(),
        }
    }

    /// Ids kept now (in progress and handled).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.set.lock().len()
    }

    /// `true` when no id is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's settings.
    #[must_use]
    pub fn settings(&self) -> &DedupSettings {
        &self.shared.settings
    }
}

impl IdempotentBuilder {
    /// Handled ids kept. Default 100 000.
    pub const fn capacity(mut self, capacity: usize) -> Self {
        self.settings.capacity = capacity;
        self
    }

    /// Forget a handled id after this long. Default: never (capacity only).
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = Some(ttl);
        self
    }

    /// Replaces every setting.
    pub fn settings(mut self, settings: DedupSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Validates and builds the layer and its store.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting, or `name`.
    pub fn build(self) -> Result<IdempotentLayer, ConfigError> {
        validate_name(&self.name)?;
        self.settings.validate()?;
        Ok(IdempotentLayer {
            shared: Arc::new(Shared {
                metrics: DedupMetrics::new(&self.name),
                name: self.name.into(),
                set: Mutex::new(DedupSet::new(self.settings.capacity, self.settings.ttl)),
                settings: self.settings,
            }),
        })
    }
}

impl<S> Layer<S> for IdempotentLayer {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotent {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl fmt::Debug for IdempotentLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotentLayer")
            .field("name", &self.shared.name)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// The service an [`IdempotentLayer`] builds: answers `Ok(Some(response))`
/// when the handler ran, `Ok(None)` for a message already handled.
#[derive(Clone)]
pub struct Idempotent<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Message> for Idempotent<S>
where
    S: Service<Message>,
    S::Error: Into<BoxError>,
{
    type Response = Option<S::Response>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let begin = self.shared.set.lock().begin(message.id(), Instant::now());
        match begin {
            Begin::Fresh => ResponseFuture {
                state: State::Called {
                    future: self.inner.call(message.clone()),
                },
                guard: Some(Guard {
                    shared: Arc::clone(&self.shared),
                    message,
                    completed: false,
                }),
            },
            Begin::Done => {
                self.shared.metrics.duplicates.increment(1);
                tracing::debug!(name = %self.shared.name, message_id = message.id(), "duplicate skipped");
                ResponseFuture {
                    state: State::Skipped,
                    guard: None,
                }
            }
            Begin::InProgress => ResponseFuture {
                state: State::Busy {
                    error: Some(AlreadyInProgress::new(message.id())),
                },
                guard: None,
            },
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Idempotent<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotent")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish()
    }
}

/// Forgets the in-progress mark unless the handler succeeded: on failure, on
/// drop (cancellation, a killed consumer).
struct Guard {
    shared: Arc<Shared>,
    message: Message,
    completed: bool,
}

impl Guard {
    fn complete(mut self) {
        self.shared
            .set
            .lock()
            .complete(self.message.id(), Instant::now());
        self.completed = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.completed {
            self.shared.set.lock().abandon(self.message.id());
        }
    }
}

pin_project! {
    /// The response future of [`Idempotent`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        guard: Option<Guard>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        Skipped,
        Busy { error: Option<AlreadyInProgress> },
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Option<T>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Called { future } => {
                let out = std::task::ready!(future.poll(cx));
                match out {
                    Ok(response) => {
                        if let Some(guard) = this.guard.take() {
                            guard.complete();
                        }
                        Poll::Ready(Ok(Some(response)))
                    }
                    Err(err) => {
                        drop(this.guard.take());
                        Poll::Ready(Err(err.into()))
                    }
                }
            }
            StateProj::Skipped => Poll::Ready(Ok(None)),
            StateProj::Busy { error } => Poll::Ready(Err(error
                .take()
                .map_or_else(|| "polled after completion".into(), Into::into))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
