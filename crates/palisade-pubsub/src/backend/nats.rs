//! NATS JetStream through async-nats: durable streams, pull consumers with
//! explicit acks, redelivery by the broker, and publish de-duplication by
//! message id.
//!
//! - **Publish** sends the message with its id as `Nats-Msg-Id` and waits
//!   for the stream's acknowledgement, up to `publish_timeout`. A stream with
//!   a `duplicate_window` stores a second message with the same id once per
//!   window (the [`PublishReceipt`] says `duplicate`), so re-publishing after
//!   a timeout, a crash or an outbox relay restart is safe.
//!   [`send`](NatsBus::send) hands the message over and returns a
//!   [`PendingPublish`] to await later: a batch sent that way shares its
//!   round trips instead of paying one per message.
//! - **NATS down**: publishers get a clear error, they are not buffered
//!   beyond async-nats's bounded client queue. A publish that cannot be
//!   acknowledged within `publish_timeout` fails with
//!   [`PublishErrorKind::Unavailable`]; the message may or may not be stored,
//!   and publishing it again with the same id is safe. The client reconnects
//!   on its own (without limit); subscriptions recreate their pull requests
//!   (and the consumer, if it was lost) and resume. Nothing acknowledged is
//!   lost: acknowledged messages are in the stream, and unacknowledged
//!   deliveries come back after the ack wait.
//! - **Subscribe** creates (or reuses) a pull consumer with explicit acks,
//!   the settings' `ack_wait`, no broker-side delivery limit (the
//!   [`Consumer`](crate::Consumer) counts deliveries and dead-letters, so a
//!   message is never dropped silently by the broker), and a filter subject
//!   (`*` and `>` wildcards). [`queue_subscribe`](NatsBus::queue_subscribe)
//!   names it (a durable consumer): every process subscribing with the same
//!   group shares it, and each message goes to one of them. A
//!   subscription asks for `pull_batch` messages at a time and asks again
//!   when half are taken, so pulling overlaps handling.
//! - **Acknowledgements** after a handler's success are plain `+ACK`s: sent
//!   on the connection, not confirmed by the server (async-nats's `ack`).
//!   The delivery guarantee does not rest on the confirmation: a lost ack
//!   means one redelivery after `ack_wait`, which the handler's idempotence
//!   absorbs, as it must for every other at-least-once path. Waiting for it
//!   (`double_ack: true`) costs a round trip and a subscription per message
//!   and buys only fewer such redeliveries. Naks, terms and in-progress
//!   signals are plain too.
//! - **Dead letters** are ordinary publishes to the dead-letter subject: a
//!   stream must capture it ([`NatsBus::ensure_stream`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind as NatsPublishErrorKind;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use palisade_core::ConfigError;

use crate::backend::{Delivery, Publisher};
use crate::error::{AckError, PublishError, PublishErrorKind, SubscribeError, SubscribeErrorKind};
use crate::message::{CORRELATION_ID, Headers, Message};
use crate::metrics::PublisherMetrics;
use crate::settings::{NatsSettings, validate_name};
use crate::state::subject::validate_pattern;
use crate::trace::TRACEPARENT;

/// The header JetStream de-duplicates on.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// The names every published message carries, built once (no allocation per
/// publish).
const CORRELATION_ID_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(CORRELATION_ID);
const TRACEPARENT_NAME: async_nats::HeaderName = async_nats::HeaderName::from_static(TRACEPARENT);

/// Publishes to and subscribes from JetStream streams. Cheap to clone:
/// clones share the connection.
#[derive(Clone)]
pub struct NatsBus {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    client: async_nats::Client,
    context: jetstream::Context,
    settings: NatsSettings,
    metrics: PublisherMetrics,
}

impl Shared {
    /// Counts a failed publish and says why.
    fn failed(&self, message: &Message, err: &jetstream::context::PublishError) -> PublishError {
        let err = publish_error(message, err);
        self.metrics.publish_error(err.kind().as_str());
        err
    }
}

/// A message [sent](NatsBus::send) to a stream whose acknowledgement has
/// not been awaited yet. Await it for the [`PublishReceipt`]; the wait is
/// bounded by the bus's `publish_timeout`, counted from the first poll. The
/// outcome is counted (`palisade_pubsub_published_total` or
/// `palisade_pubsub_publish_errors_total`) when it is awaited; dropped
/// unawaited, it is counted in neither.
#[must_use = "the acknowledgement says whether the stream stored the message"]
pub struct PendingPublish {
    shared: Arc<Shared>,
    message: Message,
    ack: jetstream::context::PublishAckFuture,
}

impl PendingPublish {
    /// The message sent.
    #[must_use]
    pub const fn message(&self) -> &Message {
        &self.message
    }
}

impl fmt::Debug for PendingPublish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingPublish")
            .field("message_id", &self.message.id())
            .field("subject", &self.message.subject())
            .finish_non_exhaustive()
    }
}

impl IntoFuture for PendingPublish {
    type Output = Result<PublishReceipt, PublishError>;
    type IntoFuture = PublishAcknowledgement;

    fn into_future(self) -> PublishAcknowledgement {
        PublishAcknowledgement {
            ack: self.ack.into_future(),
            shared: self.shared,
            message: self.message,
        }
    }
}

/// The future of a [`PendingPublish`]: the stream's acknowledgement.
#[must_use = "futures do nothing unless polled"]
pub struct PublishAcknowledgement {
    shared: Arc<Shared>,
    message: Message,
    ack: <jetstream::context::PublishAckFuture as IntoFuture>::IntoFuture,
}

impl Future for PublishAcknowledgement {
    type Output = Result<PublishReceipt, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        Poll::Ready(match ready!(this.ack.as_mut().poll(cx)) {
            Ok(ack) => {
                this.shared.metrics.published.increment(1);
                Ok(PublishReceipt {
                    stream: ack.stream,
                    sequence: ack.sequence,
                    duplicate: ack.duplicate,
                })
            }
            Err(err) => Err(this.shared.failed(&this.message, &err)),
        })
    }
}

impl fmt::Debug for PublishAcknowledgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishAcknowledgement")
            .field("message_id", &self.message.id())
            .finish_non_exhaustive()
    }
}

/// What the stream said about a published message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishReceipt {
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence number in the stream.
    pub sequence: u64,
    /// `true`: a message with this id was already stored within the
    /// duplicate window; this one was not stored again.
    pub duplicate: bool,
}

impl NatsBus {
    /// Connects to `url` (reconnecting without limit after a disconnect) and
    /// builds a bus called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for bad settings, name, or an unreachable server
    /// (field `url`).
    pub async fn connect(
        url: &str,
        name: &str,
        settings: NatsSettings,
    ) -> Result<Self, ConfigError> {
        validate_name(name)?;
        settings.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| ConfigError::new("url", format!("cannot connect to {url}: {e}")))?;
        Self::new(client, name, settings)
    }

    /// A bus over an existing client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for bad settings or name.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime: async-nats spawns the task that collects
    /// publish acknowledgements.
    pub fn new(
        client: async_nats::Client,
        name: &str,
        settings: NatsSettings,
    ) -> Result<Self, ConfigError> {
        validate_name(name)?;
        settings.validate()?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(settings.publish_timeout);
        let name: Arc<str> = name.into();
        Ok(Self {
            shared: Arc::new(Shared {
                metrics: PublisherMetrics::new(&name),
                name,
                client,
                context,
                settings,
            }),
        })
    }

    /// The JetStream context, for what this API does not cover.
    #[must_use]
    pub fn context(&self) -> &jetstream::Context {
        &self.shared.context
    }

    /// The client.
    #[must_use]
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// The bus's settings.
    #[must_use]
    pub fn settings(&self) -> &NatsSettings {
        &self.shared.settings
    }

    /// Creates the file-backed stream `name` capturing `subjects`, with a
    /// publish de-duplication window, or returns the existing one.
    ///
    /// # Errors
    ///
    /// [`SubscribeErrorKind::Unavailable`] or [`SubscribeErrorKind::Rejected`].
    pub async fn ensure_stream(
        &self,
        name: &str,
        subjects: &[&str],
        duplicate_window: Duration,
    ) -> Result<(), SubscribeError> {
        for subject in subjects {
            validate_pattern(subject)
                .map_err(|e| SubscribeError::new(SubscribeErrorKind::Rejected, e.to_string()))?;
        }
        self.shared
            .context
            .get_or_create_stream(jetstream::stream::Config {
                name: name.to_owned(),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                duplicate_window,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                SubscribeError::new(SubscribeErrorKind::Rejected, format!("stream {name}"))
                    .with_source(e)
            })?;
        Ok(())
    }

    /// Deletes the stream `name` and everything in it.
    ///
    /// # Errors
    ///
    /// [`SubscribeErrorKind::Rejected`] when it cannot be deleted.
    pub async fn delete_stream(&self, name: &str) -> Result<(), SubscribeError> {
        self.shared
            .context
            .delete_stream(name)
            .await
            .map(drop)
            .map_err(|e| {
                SubscribeError::new(
                    SubscribeErrorKind::Rejected,
                    format!("delete stream {name}"),
                )
                .with_source(e)
            })
    }

    /// Publishes `message` and waits for the stream's acknowledgement.
    ///
    /// One round trip per call: to publish many messages, [`send`](Self::send)
    /// them all, then await their acknowledgements.
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::Unavailable`] (no acknowledgement in time, not
    /// connected: publish again with the same id), [`PublishErrorKind::Rejected`]
    /// (no stream captures the subject, or the stream refused it),
    /// [`PublishErrorKind::TooLarge`].
    pub async fn publish(&self, message: Message) -> Result<PublishReceipt, PublishError> {
        self.send(message).await?.await
    }

    /// Hands `message` to the connection and returns without waiting for the
    /// stream's acknowledgement: await the [`PendingPublish`] for it.
    /// Messages sent one after another share the round trips (pipelining):
    ///
    /// ```no_run
    /// # use palisade_pubsub::backend::nats::NatsBus;
    /// # use palisade_pubsub::Message;
    /// # async fn f(bus: NatsBus, batch: Vec<Message>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut pending = Vec::with_capacity(batch.len());
    /// for message in batch {
    ///     pending.push(bus.send(message).await?);
    /// }
    /// for ack in pending {
    ///     ack.await?; // stored (or a duplicate within the window)
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The stream stores messages from one connection in the order they were
    /// sent; when one fails, those sent after it may be stored: publish it
    /// again (same id) knowing it may land after them. Acknowledgements
    /// awaited by nobody are bounded: `send` waits while 5 000 are
    /// outstanding on the connection (async-nats's default). Dropping a
    /// [`PendingPublish`] stops nobody: the message may or may not be stored.
    ///
    /// # Errors
    ///
    /// Now: [`PublishErrorKind::TooLarge`], [`PublishErrorKind::Unavailable`]
    /// (the connection is gone). From the [`PendingPublish`]: as
    /// [`publish`](Self::publish).
    pub async fn send(&self, message: Message) -> Result<PendingPublish, PublishError> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in message.headers().iter() {
            match name {
                CORRELATION_ID => headers.insert(CORRELATION_ID_NAME, value),
                TRACEPARENT => headers.insert(TRACEPARENT_NAME, value),
                _ => headers.insert(name, value),
            }
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(message.payload().clone())
            .headers(headers)
            .message_id(message.id());
        match self
            .shared
            .context
            .send_publish(message.subject().to_owned(), publish)
            .await
        {
            Ok(ack) => Ok(PendingPublish {
                shared: Arc::clone(&self.shared),
                message,
                ack,
            }),
            Err(err) => Err(self.shared.failed(&message, &err)),
        }
    }

    /// Subscribes to `pattern` in `stream` through a consumer of its own
    /// (ephemeral: removed by the server after five minutes unused).
    ///
    /// # Errors
    ///
    /// [`SubscribeErrorKind::Unavailable`] or [`SubscribeErrorKind::Rejected`]
    /// (no such stream, a bad pattern).
    pub async fn subscribe(
        &self,
        stream: &str,
        pattern: &str,
    ) -> Result<NatsSubscription, SubscribeError> {
        self.consumer(stream, pattern, None).await
    }

    /// Joins the queue group `group` on `pattern` in `stream`: a durable
    /// consumer called `group` (created if missing) shared by every member,
    /// in this process or another; each message goes to one member, and the
    /// group's position survives restarts.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe); also a `group` that is not a valid
    /// consumer name.
    pub async fn queue_subscribe(
        &self,
        stream: &str,
        pattern: &str,
        group: &str,
    ) -> Result<NatsSubscription, SubscribeError> {
        validate_name(group)
            .map_err(|e| SubscribeError::new(SubscribeErrorKind::Rejected, e.to_string()))?;
        self.consumer(stream, pattern, Some(group)).await
    }

    async fn consumer(
        &self,
        stream: &str,
        pattern: &str,
        group: Option<&str>,
    ) -> Result<NatsSubscription, SubscribeError> {
        validate_pattern(pattern)
            .map_err(|e| SubscribeError::new(SubscribeErrorKind::Rejected, e.to_string()))?;
        let settings = &self.shared.settings;
        let config = pull::Config {
            durable_name: group.map(str::to_owned),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: -1,
            filter_subject: pattern.to_owned(),
            max_ack_pending: i64::try_from(settings.max_ack_pending).unwrap_or(i64::MAX),
            inactive_threshold: if group.is_some() {
                Duration::ZERO
            } else {
                Duration::from_secs(300)
            },
            ..Default::default()
        };
        let consumer = create_consumer(&self.shared.context, stream, &config).await?;
        Ok(NatsSubscription {
            context: self.shared.context.clone(),
            stream: stream.into(),
            config: Arc::new(config),
            consumer: Some(consumer),
            messages: None,
            failures: 0,
            settings: self.shared.settings.clone(),
            step: Step::Start,
        })
    }
}

async fn create_consumer(
    context: &jetstream::Context,
    stream: &str,
    config: &pull::Config,
) -> Result<jetstream::consumer::PullConsumer, SubscribeError> {
    let handle = context.get_stream(stream).await.map_err(|e| {
        SubscribeError::new(SubscribeErrorKind::Unavailable, format!("stream {stream}"))
            .with_source(e)
    })?;
    let created = match &config.durable_name {
        Some(name) => handle.get_or_create_consumer(name, config.clone()).await,
        None => handle.create_consumer(config.clone()).await,
    };
    created.map_err(|e| {
        SubscribeError::new(
            SubscribeErrorKind::Rejected,
            format!("consumer on {stream}"),
        )
        .with_source(e)
    })
}

fn publish_error(message: &Message, err: &jetstream::context::PublishError) -> PublishError {
    let kind = match err.kind() {
        NatsPublishErrorKind::TimedOut
        | NatsPublishErrorKind::BrokenPipe
        | NatsPublishErrorKind::MaxAckPending => PublishErrorKind::Unavailable,
        NatsPublishErrorKind::MaxPayloadExceeded => PublishErrorKind::TooLarge,
        NatsPublishErrorKind::StreamNotFound
        | NatsPublishErrorKind::WrongLastMessageId
        | NatsPublishErrorKind::WrongLastSequence => PublishErrorKind::Rejected,
        NatsPublishErrorKind::Other => PublishErrorKind::Unavailable,
    };
    PublishError::new(kind, message.subject(), err.to_string())
}

impl Publisher for NatsBus {
    fn publish(&self, message: Message) -> impl Future<Output = Result<(), PublishError>> + Send {
        let bus = self.clone();
        async move { bus.publish(message).await.map(drop) }
    }
}

impl fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBus")
            .field("name", &self.shared.name)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// A JetStream subscription: a stream of [`NatsDelivery`]. Errors are
/// reports (the server is unreachable, the consumer was recreated); the
/// subscription goes on and resumes when the server is back.
///
/// While the pull stream is healthy, each item is one poll of async-nats's
/// pull stream and the conversion to a [`NatsDelivery`]: nothing is
/// allocated or moved per message. After a failure it (re)creates the
/// consumer and its message stream, waiting longer after each failure in a
/// row (100 ms doubling, at most 5 s).
pub struct NatsSubscription {
    context: jetstream::Context,
    stream: Arc<str>,
    config: Arc<pull::Config>,
    consumer: Option<jetstream::consumer::PullConsumer>,
    messages: Option<pull::Stream>,
    /// Failures in a row: the wait before the next attempt grows with it.
    failures: u32,
    settings: NatsSettings,
    step: Step,
}

type Item = Result<NatsDelivery, SubscribeError>;

/// What (re)connecting yields: the consumer and its message stream.
type Connected = Result<(jetstream::consumer::PullConsumer, pull::Stream), SubscribeError>;

/// Where the subscription is in producing its next item.
enum Step {
    /// A new item is asked for: wait first if the last attempts failed.
    Start,
    /// Waiting before trying again.
    Backoff(Pin<Box<tokio::time::Sleep>>),
    /// Creating the consumer (if it was lost) and its message stream.
    Connecting(Pin<Box<dyn Future<Output = Connected> + Send>>),
    /// Taking messages from the pull stream.
    Pulling,
}

impl NatsSubscription {
    fn delay(&self) -> Duration {
        Duration::from_millis(100)
            .saturating_mul(1 << self.failures.min(6))
            .min(Duration::from_secs(5))
    }

    /// After a backoff (or none): pull, or create what is missing first.
    fn ready_step(&mut self) -> Step {
        if self.messages.is_some() {
            return Step::Pulling;
        }
        let context = self.context.clone();
        let stream = Arc::clone(&self.stream);
        let config = Arc::clone(&self.config);
        let consumer = self.consumer.take();
        let batch = self.settings.pull_batch;
        Step::Connecting(Box::pin(async move {
            let consumer = match consumer {
                Some(consumer) => consumer,
                None => create_consumer(&context, &stream, &config).await?,
            };
            let messages = consumer
                .stream()
                .max_messages_per_batch(batch)
                .heartbeat(Duration::from_secs(5))
                .messages()
                .await
                .map_err(|e| {
                    SubscribeError::new(SubscribeErrorKind::Unavailable, "pull request failed")
                        .with_source(e)
                })?;
            Ok((consumer, messages))
        }))
    }
}

impl Stream for NatsSubscription {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.step {
                Step::Start => {
                    this.step = if this.failures > 0 {
                        Step::Backoff(Box::pin(tokio::time::sleep(this.delay())))
                    } else {
                        this.ready_step()
                    };
                }
                Step::Backoff(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    this.step = this.ready_step();
                }
                Step::Connecting(connecting) => match ready!(connecting.as_mut().poll(cx)) {
                    Ok((consumer, messages)) => {
                        this.consumer = Some(consumer);
                        this.messages = Some(messages);
                        this.step = Step::Pulling;
                    }
                    Err(err) => {
                        // The consumer is recreated next time.
                        this.failures = this.failures.saturating_add(1);
                        this.step = Step::Start;
                        return Poll::Ready(Some(Err(err)));
                    }
                },
                Step::Pulling => {
                    let messages = this.messages.as_mut().expect("pulling has a stream");
                    match ready!(messages.poll_next_unpin(cx)) {
                        Some(Ok(message)) => {
                            this.failures = 0;
                            this.step = Step::Start;
                            let delivery = NatsDelivery::new(message, &this.settings);
                            return Poll::Ready(Some(Ok(delivery)));
                        }
                        Some(Err(e)) => {
                            use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
                            let fatal = matches!(
                                e.kind(),
                                K::ConsumerDeleted | K::NoResponders | K::RequestLimitExceeded
                            );
                            if fatal {
                                this.messages = None;
                                this.consumer = None;
                                this.failures = this.failures.saturating_add(1);
                            }
                            this.step = Step::Start;
                            let err =
                                SubscribeError::new(SubscribeErrorKind::Unavailable, "pull failed")
                                    .with_source(e);
                            return Poll::Ready(Some(Err(err)));
                        }
                        None => {
                            // The pull stream ended: make a new one.
                            this.messages = None;
                            this.failures = this.failures.saturating_add(1);
                            this.step = Step::Start;
                        }
                    }
                }
            }
        }
    }
}

impl fmt::Debug for NatsSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSubscription")
            .field("stream", &self.stream)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// One JetStream delivery.
pub struct NatsDelivery {
    /// Boxed: a delivery moves several times on its way through the
    /// consumer (the stream's item, the driver's select, the message's
    /// future, the ack); one allocation costs less than moving the raw
    /// message's few hundred bytes each time.
    inner: Box<jetstream::Message>,
    message: Message,
    delivered: u32,
    pending: u64,
    ack_wait: Duration,
    double_ack: bool,
}

impl NatsDelivery {
    fn new(inner: jetstream::Message, settings: &NatsSettings) -> Self {
        let info = inner.info().ok();
        let (delivered, pending) = info.as_ref().map_or((1, 0), |info| {
            (
                u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
                info.pending,
            )
        });
        let mut id = None;
        let mut headers = Headers::new();
        if let Some(map) = &inner.message.headers {
            headers = Headers::with_capacity(map.len());
            for (name, values) in map.iter() {
                let Some(value) = values.first() else {
                    continue;
                };
                let name: &str = name.as_ref();
                if name == NATS_MSG_ID {
                    id = Some(value.as_str().to_owned());
                } else {
                    // Names in a received map are unique.
                    headers.push_unique(name, value.as_str().to_owned());
                }
            }
        }
        // A message published without an id (not through this crate) is
        // known by its place in the stream.
        let id = id.unwrap_or_else(|| {
            info.as_ref().map_or_else(String::new, |info| {
                format!("{}.{}", info.stream, info.stream_sequence)
            })
        });
        let message = Message::from_parts(
            id,
            inner.message.subject.as_str().to_owned(),
            headers,
            inner.message.payload.clone(),
        );
        Self {
            inner: Box::new(inner),
            message,
            delivered,
            pending,
            ack_wait: settings.ack_wait,
            double_ack: settings.double_ack,
        }
    }

    /// The raw JetStream message.
    #[must_use]
    pub fn raw(&self) -> &jetstream::Message {
        &self.inner
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        self.message.payload()
    }
}

impl fmt::Debug for NatsDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDelivery")
            .field("message", &self.message)
            .field("delivered", &self.delivered)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Delivery for NatsDelivery {
    fn message(&self) -> &Message {
        &self.message
    }

    fn delivery(&self) -> u32 {
        self.delivered
    }

    fn backlog(&self) -> Option<u64> {
        Some(self.pending)
    }

    fn redelivers(&self) -> bool {
        true
    }

    fn progress_interval(&self) -> Option<Duration> {
        Some(self.ack_wait / 2)
    }

    async fn ack(self) -> Result<(), AckError> {
        if self.double_ack {
            // Boxed: it waits a round trip anyway, and its subscription and
            // timer would otherwise widen every message's future.
            Box::pin(self.inner.double_ack())
                .await
                .map_err(AckError::new)
        } else {
            self.inner.ack().await.map_err(AckError::new)
        }
    }

    async fn nak(self, delay: Duration) -> Result<(), AckError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.inner
            .ack_with(AckKind::Nak(delay))
            .await
            .map_err(AckError::new)
    }

    async fn term(self) -> Result<(), AckError> {
        self.inner
            .ack_with(AckKind::Term)
            .await
            .map_err(AckError::new)
    }

    async fn in_progress(&self) -> Result<(), AckError> {
        self.inner
            .ack_with(AckKind::Progress)
            .await
            .map_err(AckError::new)
    }
}
