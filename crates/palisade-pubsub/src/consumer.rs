//! The consumer driver: pulls deliveries from a subscription and runs each
//! message through a tower `Service<Message>`, acknowledging, redelivering
//! or dead-lettering by the outcome.
//!
//! The decision for one delivery:
//!
//! | handler outcome | what the consumer does |
//! |---|---|
//! | `Ok(_)` | ack |
//! | an error caused by [`Terminal`] | dead-letter now (kind `terminal`), then term |
//! | a rejection ([`palisade_core::is_rejection`]: open breaker, full bulkhead, rate limit) | not a failure: hold the message, stop pulling for the rejection's `retry_after` (or `rejection_backoff`), then offer it again; no delivery is spent |
//! | any other error, delivery < `max_deliver` | redeliver after `redelivery_delay × 2^(delivery-1)` (capped): nak with that delay where the backend redelivers, else wait in place and retry |
//! | any other error, delivery ≥ `max_deliver` | dead-letter (kind `max_deliver`), then term |
//! | a delivery that arrives already past `max_deliver` (earlier handlers never finished: crashes) | dead-letter (kind `max_deliver`) without handling |

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use palisade_core::{BoxError, ConfigError, Listeners, cause_ref, rejection};
use tokio::time::Instant;
use tower_service::Service;
use tracing::Instrument;

use crate::backend::{Delivery, Publisher};
use crate::error::{SubscribeError, Terminal};
use crate::event::{DeadLetterKind, PubSubEvent};
use crate::message::{HANDLING, Handling, Message};
use crate::metrics::ConsumerMetrics;
use crate::settings::{ConsumerSettings, validate_name};
use crate::trace::TraceContext;

/// Dead-letter header: why the message was dead-lettered (the handler's
/// error, or the terminal reason).
pub const DEAD_LETTER_REASON: &str = "Palisade-Dead-Letter-Reason";
/// Dead-letter header: `terminal` or `max_deliver`.
pub const DEAD_LETTER_KIND: &str = "Palisade-Dead-Letter-Kind";
/// Dead-letter header: the subject the message was published to.
pub const ORIGINAL_SUBJECT: &str = "Palisade-Original-Subject";
/// Dead-letter header: the message's own id (a dead letter's id is
/// `<consumer>:<id>`, so two consumers' dead letters of one message differ).
pub const ORIGINAL_ID: &str = "Palisade-Original-Id";
/// Dead-letter header: how many deliveries were made.
pub const DELIVERIES: &str = "Palisade-Deliveries";
/// Dead-letter header: the consumer that gave up.
pub const CONSUMER: &str = "Palisade-Consumer";

/// Configures a [`Consumer`]; [`build`](Self::build) validates.
#[must_use]
pub struct ConsumerBuilder {
    name: String,
    settings: ConsumerSettings,
    listeners: Listeners<PubSubEvent>,
}

impl ConsumerBuilder {
    /// Messages handled at once. Default 16.
    pub const fn max_in_flight(mut self, n: usize) -> Self {
        self.settings.max_in_flight = n;
        self
    }

    /// Deliveries per message before a retryable failure is dead-lettered.
    /// Default 5.
    pub const fn max_deliver(mut self, n: u32) -> Self {
        self.settings.max_deliver = n;
        self
    }

    /// The first redelivery delay (doubling per delivery). Default 1 s.
    pub const fn redelivery_delay(mut self, delay: Duration) -> Self {
        self.settings.redelivery_delay = delay;
        self
    }

    /// The cap on the redelivery delay. Default 60 s.
    pub const fn redelivery_delay_max(mut self, delay: Duration) -> Self {
        self.settings.redelivery_delay_max = delay;
        self
    }

    /// How long to stop pulling after a rejection without `retry_after`.
    /// Default 1 s.
    pub const fn rejection_backoff(mut self, pause: Duration) -> Self {
        self.settings.rejection_backoff = pause;
        self
    }

    /// Where dead letters go. Default `dead_letter.<name>`.
    pub fn dead_letter_subject(mut self, subject: impl Into<String>) -> Self {
        self.settings.dead_letter_subject = Some(subject.into());
        self
    }

    /// Replaces every setting.
    pub fn settings(mut self, settings: ConsumerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Adds a listener for the consumer's events
    /// ([`PubSubEvent::Redelivering`], [`PubSubEvent::DeadLettered`],
    /// [`PubSubEvent::Paused`]).
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&PubSubEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Validates and builds the consumer over `source` (a subscription),
    /// handling with `service`, dead-lettering through `dead_letters`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting, or `name`.
    pub fn build<Src, S, P>(
        self,
        source: Src,
        service: S,
        dead_letters: P,
    ) -> Result<Consumer<Src, S, P>, ConfigError> {
        validate_name(&self.name)?;
        self.settings.validate()?;
        let dead_letter_subject = self
            .settings
            .dead_letter_subject
            .clone()
            .unwrap_or_else(|| format!("dead_letter.{}", self.name));
        let stats = Arc::new(Stats::default());
        Ok(Consumer {
            source,
            service,
            ctx: Arc::new(Ctx {
                metrics: ConsumerMetrics::new(&self.name),
                name: self.name.into(),
                settings: self.settings,
                dead_letter_subject: dead_letter_subject.into(),
                publisher: dead_letters,
                listeners: self.listeners,
                stats,
            }),
        })
    }
}

impl fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Drives a tower `Service<Message>` from a subscription. See the crate docs
/// for the model; [`run`](Self::run) or [`run_until`](Self::run_until) to
/// start it.
pub struct Consumer<Src, S, P> {
    source: Src,
    service: S,
    ctx: Arc<Ctx<P>>,
}

struct Ctx<P> {
    name: Arc<str>,
    settings: ConsumerSettings,
    dead_letter_subject: Box<str>,
    publisher: P,
    metrics: ConsumerMetrics,
    listeners: Listeners<PubSubEvent>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
    acked: AtomicU64,
    redelivered: AtomicU64,
    dead_lettered: AtomicU64,
    rejected: AtomicU64,
    in_flight: AtomicU64,
    lag: AtomicU64,
}

/// Reads a running consumer's counters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConsumerHandle {
    name: Arc<str>,
    stats: Arc<Stats>,
}

/// A consumer's counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ConsumerSnapshot {
    /// Deliveries received (redeliveries included).
    pub delivered: u64,
    /// Messages handled and acknowledged.
    pub acked: u64,
    /// Deliveries after the first (broker redeliveries and in-place retries).
    pub redelivered: u64,
    /// Messages sent to the dead letters.
    pub dead_lettered: u64,
    /// Times the handler's stack refused a message.
    pub rejected: u64,
    /// Messages held now.
    pub in_flight: u64,
    /// The backlog reported with the latest delivery.
    pub lag: u64,
}

impl ConsumerHandle {
    /// The consumer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counters now.
    #[must_use]
    pub fn snapshot(&self) -> ConsumerSnapshot {
        let s = &self.stats;
        ConsumerSnapshot {
            delivered: s.delivered.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            redelivered: s.redelivered.load(Ordering::Relaxed),
            dead_lettered: s.dead_lettered.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            lag: s.lag.load(Ordering::Relaxed),
        }
    }
}

/// What became of one held message.
enum Processed<D> {
    /// Acknowledged, redelivered by the backend, or dead-lettered.
    Done,
    /// Refused by the handler's stack: hold it and pause.
    Rejected {
        delivery: D,
        retries: u32,
        pause: Duration,
    },
}

impl Consumer<(), (), ()> {
    /// A builder for a consumer called `name` (labels metrics, logs and the
    /// default dead-letter subject; for JetStream, use the durable
    /// consumer's name).
    pub fn builder(name: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            name: name.into(),
            settings: ConsumerSettings::default(),
            listeners: Listeners::new(),
        }
    }
}

impl<Src, S, P, D> Consumer<Src, S, P>
where
    Src: Stream<Item = Result<D, SubscribeError>> + Unpin + Send,
    D: Delivery,
    S: Service<Message> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    P: Publisher,
{
    /// A handle to read the consumer's counters while it runs.
    #[must_use]
    pub fn handle(&self) -> ConsumerHandle {
        ConsumerHandle {
            name: Arc::clone(&self.ctx.name),
            stats: Arc::clone(&self.ctx.stats),
        }
    }

    /// Runs until the subscription ends, then finishes the messages in
    /// flight.
    pub async fn run(self) {
        self.run_until(std::future::pending::<()>()).await;
    }

    /// Runs until the subscription ends or `shutdown` completes. On shutdown
    /// it stops pulling, finishes the messages being handled (and acks
    /// them), and hands back the ones it holds for a retry or a pause (a nak
    /// with no delay: a redelivering backend gets them again at once; the
    /// in-process bus loses them). Dropping the future instead stops at once:
    /// unacknowledged messages are redelivered by a redelivering backend
    /// after its ack wait.
    pub async fn run_until<F: Future>(mut self, shutdown: F) {
        let mut shutdown = pin!(shutdown);
        let mut in_flight = FuturesUnordered::new();
        let mut paused_until: Option<Instant> = None;
        let mut stopping = false;
        let mut source_done = false;
        let max = self.ctx.settings.max_in_flight;
        loop {
            self.ctx
                .stats
                .in_flight
                .store(in_flight.len() as u64, Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)]
            self.ctx.metrics.in_flight.set(in_flight.len() as f64);
            if (stopping || source_done) && in_flight.is_empty() {
                return;
            }
            let now = Instant::now();
            let paused = paused_until.is_some_and(|until| until > now);
            let can_pull = !stopping && !source_done && !paused && in_flight.len() < max;
            let wake_at = paused_until.unwrap_or(now);
            tokio::select! {
                biased;
                _ = &mut shutdown, if !stopping => {
                    stopping = true;
                    tracing::info!(name = %self.ctx.name, "consumer stopping; finishing the messages in flight");
                }
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Processed::Rejected { delivery, retries, pause } = done {
                        let until = Instant::now() + pause;
                        paused_until = Some(paused_until.map_or(until, |p| p.max(until)));
                        in_flight.push(process(
                            Arc::clone(&self.ctx),
                            self.service.clone(),
                            delivery,
                            false,
                            retries,
                            paused_until,
                            stopping,
                        ));
                    }
                }
                () = tokio::time::sleep_until(wake_at), if paused => {}
                next = pull(&mut self.service, &mut self.source), if can_pull => match next {
                    Pulled::Delivery(delivery) => {
                        let ready = self.service.clone();
                        let ready = std::mem::replace(&mut self.service, ready);
                        in_flight.push(process(
                            Arc::clone(&self.ctx),
                            ready,
                            delivery,
                            true,
                            0,
                            None,
                            false,
                        ));
                    }
                    Pulled::Error(err) => {
                        if let Some(missed) = err.lagged() {
                            tracing::warn!(name = %self.ctx.name, missed, "consumer lagged: messages were dropped before it could take them");
                        } else {
                            tracing::warn!(name = %self.ctx.name, error = %err, "subscription error");
                        }
                    }
                    Pulled::End => {
                        source_done = true;
                        tracing::info!(name = %self.ctx.name, "subscription ended");
                    }
                    Pulled::NotReady(err) => {
                        // A service whose `poll_ready` fails is broken for
                        // good (tower's contract): stop pulling.
                        source_done = true;
                        tracing::error!(name = %self.ctx.name, error = %err, "the handler service failed; the consumer stops pulling");
                    }
                },
            }
            if stopping {
                // Nothing waits for a pause any more.
                paused_until = None;
            }
        }
    }
}

enum Pulled<D> {
    Delivery(D),
    Error(SubscribeError),
    End,
    NotReady(BoxError),
}

/// Waits until the service is ready (backpressure: a Pending service stops
/// the pulling), then for the next delivery. Cancel-safe: readiness stays
/// with the service and the stream keeps undelivered items.
async fn pull<S, Src, D>(service: &mut S, source: &mut Src) -> Pulled<D>
where
    S: Service<Message>,
    S::Error: Into<BoxError>,
    Src: Stream<Item = Result<D, SubscribeError>> + Unpin,
{
    if let Err(err) = std::future::poll_fn(|cx| service.poll_ready(cx)).await {
        return Pulled::NotReady(err.into());
    }
    match source.next().await {
        Some(Ok(delivery)) => Pulled::Delivery(delivery),
        Some(Err(err)) => Pulled::Error(err),
        None => Pulled::End,
    }
}

/// How a handler's error is treated.
enum Verdict {
    Rejected(Duration, String),
    Terminal(String),
    Retryable(String),
}

fn judge(err: &BoxError, rejection_backoff: Duration) -> Verdict {
    if let Some(rejection) = rejection(&**err) {
        let pause = rejection.retry_after().unwrap_or(rejection_backoff);
        return Verdict::Rejected(pause.max(Duration::from_millis(1)), err.to_string());
    }
    if let Some(terminal) = cause_ref::<Terminal>(&**err) {
        return Verdict::Terminal(terminal.reason().to_owned());
    }
    Verdict::Retryable(err.to_string())
}

/// Handles one held message to its end (or to a rejection).
///
/// `ready`: `service` was polled ready by the driver. `retries`: in-place
/// retries already made. `hold_until`: a paused message waits (telling the
/// backend it is in progress) before it is offered again. `stopping`: the
/// consumer is shutting down; a held message is handed back at once.
async fn process<S, D, P>(
    ctx: Arc<Ctx<P>>,
    mut service: S,
    delivery: D,
    mut ready: bool,
    mut retries: u32,
    hold_until: Option<Instant>,
    stopping: bool,
) -> Processed<D>
where
    S: Service<Message> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    D: Delivery,
    P: Publisher,
{
    let stats = &ctx.stats;
    if let Some(until) = hold_until {
        if stopping {
            if let Err(err) = delivery.nak(Duration::ZERO).await {
                tracing::warn!(name = %ctx.name, error = %err, "nak on shutdown failed");
            }
            return Processed::Done;
        }
        // Boxed: rare (a rejection), and its timer would otherwise widen
        // every message's future.
        Box::pin(hold(&delivery, until)).await;
    } else {
        // A fresh delivery.
        stats.delivered.fetch_add(1, Ordering::Relaxed);
        ctx.metrics.delivered.increment(1);
        if delivery.delivery() > 1 {
            stats.redelivered.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.redelivered.increment(1);
        }
        if let Some(backlog) = delivery.backlog() {
            stats.lag.store(backlog, Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)]
            ctx.metrics.lag.set(backlog as f64);
        }
    }
    let message = delivery.message().clone();
    let max_deliver = ctx.settings.max_deliver;
    loop {
        let attempt = delivery.delivery().saturating_add(retries);
        if attempt > max_deliver {
            let reason = format!(
                "delivered {attempt} times, above max_deliver {max_deliver}: earlier deliveries were never settled (the consumer stopped or crashed while handling)"
            );
            // Dead letters are boxed: rare, and their publish future would
            // otherwise widen every message's future.
            Box::pin(dead_letter(
                &ctx,
                delivery,
                DeadLetterKind::MaxDeliver,
                reason,
                attempt,
            ))
            .await;
            return Processed::Done;
        }
        let trace = message
            .trace_context()
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let span = tracing::info_span!(
            "pubsub.consume",
            consumer = %ctx.name,
            subject = message.subject(),
            message_id = message.id(),
            delivery = attempt,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
            correlation_id = message.correlation_id(),
        );
        if !span.is_disabled() {
            span.record("trace_id", trace.trace_id_hex());
            span.record("span_id", trace.span_id_hex());
            if let Some(parent) = message.trace_context() {
                span.record("parent_span_id", parent.span_id_hex());
            }
        }
        let handling = Handling {
            message: message.clone(),
            trace,
        };
        let started = Instant::now();
        let outcome: Result<(), BoxError> = async {
            if !ready {
                std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
            }
            ready = false;
            let call = HANDLING.sync_scope(handling.clone(), || service.call(message.clone()));
            HANDLING
                .scope(handling, call)
                .await
                .map(drop)
                .map_err(Into::into)
        }
        .instrument(span.clone())
        .await;
        ctx.metrics.handle.record(started.elapsed().as_secs_f64());
        let err = match outcome {
            Ok(()) => {
                if let Err(err) = delivery.ack().await {
                    tracing::warn!(name = %ctx.name, message_id = message.id(), error = %err, "ack failed; the message will be redelivered");
                } else {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    ctx.metrics.acked.increment(1);
                }
                return Processed::Done;
            }
            Err(err) => err,
        };
        match judge(&err, ctx.settings.rejection_backoff) {
            Verdict::Rejected(pause, reason) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                ctx.metrics.rejected.increment(1);
                tracing::debug!(name = %ctx.name, message_id = message.id(), ?pause, %reason, "handler refused the message; pausing");
                ctx.listeners.emit_with(|| PubSubEvent::Paused {
                    consumer: Arc::clone(&ctx.name),
                    pause,
                    reason,
                });
                return Processed::Rejected {
                    delivery,
                    retries,
                    pause,
                };
            }
            Verdict::Terminal(reason) => {
                Box::pin(dead_letter(
                    &ctx,
                    delivery,
                    DeadLetterKind::Terminal,
                    reason,
                    attempt,
                ))
                .await;
                return Processed::Done;
            }
            Verdict::Retryable(error) => {
                if attempt >= max_deliver {
                    Box::pin(dead_letter(
                        &ctx,
                        delivery,
                        DeadLetterKind::MaxDeliver,
                        error,
                        attempt,
                    ))
                    .await;
                    return Processed::Done;
                }
                let delay = ctx.settings.redelivery_delay_for(attempt);
                tracing::debug!(name = %ctx.name, message_id = message.id(), ?delay, %error, "handler failed; redelivering");
                ctx.listeners.emit_with(|| PubSubEvent::Redelivering {
                    consumer: Arc::clone(&ctx.name),
                    message_id: message.id().into(),
                    delivery: attempt,
                    delay,
                    error,
                });
                if delivery.redelivers() {
                    if let Err(err) = delivery.nak(delay).await {
                        tracing::warn!(name = %ctx.name, error = %err, "nak failed; the broker redelivers after its ack wait");
                    }
                    return Processed::Done;
                }
                tokio::time::sleep(delay).await;
                retries += 1;
                stats.redelivered.fetch_add(1, Ordering::Relaxed);
                ctx.metrics.redelivered.increment(1);
            }
        }
    }
}

/// Waits until `until`, telling the backend the message is in progress as
/// often as it asks.
async fn hold<D: Delivery>(delivery: &D, until: Instant) {
    let Some(every) = delivery.progress_interval() else {
        tokio::time::sleep_until(until).await;
        return;
    };
    let every = every.max(Duration::from_millis(10));
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        if let Err(err) = delivery.in_progress().await {
            tracing::debug!(error = %err, "in-progress ack failed");
        }
        tokio::time::sleep_until(until.min(now + every)).await;
    }
}

async fn dead_letter<D: Delivery, P: Publisher>(
    ctx: &Ctx<P>,
    delivery: D,
    kind: DeadLetterKind,
    reason: String,
    deliveries: u32,
) {
    let original = delivery.message();
    let deliveries_text = deliveries.to_string();
    let letter = original.redirected(
        &format!("{}:{}", ctx.name, original.id()),
        &ctx.dead_letter_subject,
        &[
            (DEAD_LETTER_REASON, &reason),
            (DEAD_LETTER_KIND, kind.as_str()),
            (ORIGINAL_SUBJECT, original.subject()),
            (ORIGINAL_ID, original.id()),
            (DELIVERIES, &deliveries_text),
            (CONSUMER, &ctx.name),
        ],
    );
    match ctx.publisher.publish(letter).await {
        Ok(()) => {
            tracing::warn!(
                name = %ctx.name,
                message_id = original.id(),
                subject = original.subject(),
                kind = kind.as_str(),
                %reason,
                dead_letter_subject = &*ctx.dead_letter_subject,
                "message dead-lettered"
            );
            ctx.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.dead_lettered(kind).increment(1);
            ctx.listeners.emit_with(|| PubSubEvent::DeadLettered {
                consumer: Arc::clone(&ctx.name),
                message_id: original.id().into(),
                subject: original.subject().into(),
                kind,
                reason: reason.clone(),
            });
            if let Err(err) = delivery.term().await {
                tracing::warn!(name = %ctx.name, error = %err, "term after dead-lettering failed; a redelivery will be dead-lettered again (same id)");
            }
        }
        Err(err) => {
            // Keep the message rather than lose it: a redelivering backend
            // gets it back later and the consumer tries again.
            tracing::error!(
                name = %ctx.name,
                message_id = original.id(),
                error = %err,
                "dead-letter publish failed; the message is handed back"
            );
            let delay = ctx.settings.redelivery_delay_max;
            if let Err(err) = delivery.nak(delay).await {
                tracing::warn!(name = %ctx.name, error = %err, "nak failed");
            }
        }
    }
}

impl<Src, S, P> fmt::Debug for Consumer<Src, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.ctx.name)
            .field("settings", &self.ctx.settings)
            .field("dead_letter_subject", &self.ctx.dead_letter_subject)
            .finish_non_exhaustive()
    }
}
