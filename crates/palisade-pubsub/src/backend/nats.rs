//! NATS JetStream through async-nats: durable streams, pull consumers with
//! explicit acks, redelivery by the broker, and publish de-duplication by
//! message id.
//!
//! - **Publish** sends the message with its id as `Nats-Msg-Id` and waits
//!   for the stream's acknowledgement, up to `publish_timeout`. A stream with
//!   a `duplicate_window` stores a second message with the same id once per
//!   window (the [`PublishReceipt`] says `duplicate`), so re-publishing after
//!   a timeout, a crash or an outbox relay restart is safe.
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
//!   group shares it, and each message goes to one of them.
//! - **Dead letters** are ordinary publishes to the dead-letter subject: a
//!   stream must capture it ([`NatsBus::ensure_stream`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
use crate::message::{Headers, Message};
use crate::metrics::PublisherMetrics;
use crate::settings::{NatsSettings, validate_name};
use crate::state::subject::validate_pattern;

/// The header JetStream de-duplicates on.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

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
    /// # Errors
    ///
    /// [`PublishErrorKind::Unavailable`] (no acknowledgement in time, not
    /// connected: publish again with the same id), [`PublishErrorKind::Rejected`]
    /// (no stream captures the subject, or the stream refused it),
    /// [`PublishErrorKind::TooLarge`].
    pub async fn publish(&self, message: Message) -> Result<PublishReceipt, PublishError> {
        let result = self.publish_inner(&message).await;
        match &result {
            Ok(_) => self.shared.metrics.published.increment(1),
            Err(err) => self.shared.metrics.publish_error(err.kind().as_str()),
        }
        result
    }

    async fn publish_inner(&self, message: &Message) -> Result<PublishReceipt, PublishError> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in message.headers().iter() {
            headers.insert(name, value);
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(message.payload().clone())
            .headers(headers)
            .message_id(message.id());
        let ack = self
            .shared
            .context
            .send_publish(message.subject().to_owned(), publish)
            .await
            .map_err(|e| publish_error(message, &e))?
            .await
            .map_err(|e| publish_error(message, &e))?;
        Ok(PublishReceipt {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
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
        let state = PullState {
            context: self.shared.context.clone(),
            stream: stream.to_owned(),
            config,
            consumer: Some(consumer),
            messages: None,
            failures: 0,
            settings: self.shared.settings.clone(),
        };
        let inner = futures_util::stream::unfold(state, PullState::next);
        Ok(NatsSubscription {
            inner: Box::pin(inner),
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

/// The pull loop behind a [`NatsSubscription`]: (re)creates the consumer
/// and its message stream after failures, with a growing delay.
struct PullState {
    context: jetstream::Context,
    stream: String,
    config: pull::Config,
    consumer: Option<jetstream::consumer::PullConsumer>,
    messages: Option<pull::Stream>,
    failures: u32,
    settings: NatsSettings,
}

type Item = Result<NatsDelivery, SubscribeError>;

impl PullState {
    async fn next(mut self) -> Option<(Item, Self)> {
        loop {
            if self.failures > 0 {
                let delay = Duration::from_millis(100)
                    .saturating_mul(1 << self.failures.min(6))
                    .min(Duration::from_secs(5));
                tokio::time::sleep(delay).await;
            }
            if self.consumer.is_none() {
                match create_consumer(&self.context, &self.stream, &self.config).await {
                    Ok(consumer) => self.consumer = Some(consumer),
                    Err(err) => {
                        self.failures = self.failures.saturating_add(1);
                        return Some((Err(err), self));
                    }
                }
            }
            if self.messages.is_none() {
                let consumer = self.consumer.as_ref().expect("created above");
                let batch = self.settings.pull_batch;
                match consumer
                    .stream()
                    .max_messages_per_batch(batch)
                    .heartbeat(Duration::from_secs(5))
                    .messages()
                    .await
                {
                    Ok(messages) => self.messages = Some(messages),
                    Err(e) => {
                        self.failures = self.failures.saturating_add(1);
                        self.consumer = None;
                        let err = SubscribeError::new(
                            SubscribeErrorKind::Unavailable,
                            "pull request failed",
                        )
                        .with_source(e);
                        return Some((Err(err), self));
                    }
                }
            }
            let messages = self.messages.as_mut().expect("created above");
            match messages.next().await {
                Some(Ok(message)) => {
                    self.failures = 0;
                    let delivery = NatsDelivery::new(message, &self.settings);
                    return Some((Ok(delivery), self));
                }
                Some(Err(e)) => {
                    use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
                    let fatal = matches!(
                        e.kind(),
                        K::ConsumerDeleted | K::NoResponders | K::RequestLimitExceeded
                    );
                    if fatal {
                        self.messages = None;
                        self.consumer = None;
                        self.failures = self.failures.saturating_add(1);
                    }
                    let err = SubscribeError::new(SubscribeErrorKind::Unavailable, "pull failed")
                        .with_source(e);
                    return Some((Err(err), self));
                }
                None => {
                    self.messages = None;
                    self.failures = self.failures.saturating_add(1);
                }
            }
        }
    }
}

/// A JetStream subscription: a stream of [`NatsDelivery`]. Errors are
/// reports (the server is unreachable, the consumer was recreated); the
/// subscription goes on and resumes when the server is back.
pub struct NatsSubscription {
    inner: Pin<Box<dyn Stream<Item = Item> + Send>>,
}

impl Stream for NatsSubscription {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for NatsSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSubscription").finish_non_exhaustive()
    }
}

/// One JetStream delivery.
pub struct NatsDelivery {
    inner: jetstream::Message,
    message: Message,
    delivered: u32,
    pending: u64,
    ack_wait: Duration,
    double_ack: bool,
}

impl NatsDelivery {
    fn new(inner: jetstream::Message, settings: &NatsSettings) -> Self {
        let (delivered, pending, fallback_id) = match inner.info() {
            Ok(info) => (
                u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
                info.pending,
                format!("{}.{}", info.stream, info.stream_sequence),
            ),
            Err(_) => (1, 0, String::new()),
        };
        let mut headers = Headers::new();
        let mut id = None;
        if let Some(map) = &inner.message.headers {
            for (name, values) in map.iter() {
                let Some(value) = values.first() else {
                    continue;
                };
                if AsRef::<str>::as_ref(name) == NATS_MSG_ID {
                    id = Some(value.as_str().to_owned());
                } else {
                    headers.insert(name.to_string(), value.as_str().to_owned());
                }
            }
        }
        let id = id.unwrap_or(fallback_id);
        let message = Message::from_parts(
            id.into(),
            inner.message.subject.as_str().into(),
            headers,
            inner.message.payload.clone(),
        );
        Self {
            inner,
            message,
            delivered,
            pending,
            ack_wait: settings.ack_wait,
            double_ack: settings.double_ack,
        }
    }

    /// The raw JetStream message.
    #[must_use]
    pub const fn raw(&self) -> &jetstream::Message {
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
            self.inner.double_ack().await.map_err(AckError::new)
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
