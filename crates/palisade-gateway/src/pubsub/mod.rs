//! `[pubsub]`: the demo's events, on the `palisade-pubsub` crate.
//!
//! - **Publishing**: [`EventPublisher`] is how a feature publishes a domain
//!   event: a JSON payload under a subject relative to the configured prefix,
//!   with an id of its own and the HTTP request's id as correlation id.
//!   `POST /api/orders` ([`crate::routes`]) publishes `orders.placed` with it.
//! - **Account events** go out through the transactional outbox instead
//!   ([`relay`], started by [`PubSub::relay_events`] when the accounts run
//!   too): a relay follows the event store's gap-safe global order and
//!   publishes each committed event on `<prefix>.accounts.<EventType>`, its
//!   id as the message id, its checkpoint in a table beside the events, so
//!   nothing uncommitted is published and nothing committed is lost.
//! - **Consuming**: a notification consumer (durable: on JetStream a named
//!   consumer whose position survives restarts) handles every
//!   `orders.*` event through a tower stack (retry, circuit breaker, timeout,
//!   and a chaos layer the admin API switches), and an analytics queue group
//!   of `analytics_members` competing consumers counts each order once. Both
//!   are the crate's [`Consumer`]s: ack after success, redelivery with a
//!   growing delay, dead letters after `max_deliver` with the reason, and no
//!   pulling while the breaker is open.
//! - **Backends**: the in-process bus by default, NATS JetStream with
//!   `backend = "nats"` (the stream, capturing `<prefix>.>`, is created if
//!   missing; dead letters go to `<prefix>.dead_letter.<consumer>` unless
//!   configured otherwise, so the stream keeps them too).
//! - **Lifecycle**: [`PubSub::start`] (from `Gateway::bind`) builds the bus
//!   and starts the consumers on the caller's runtime;
//!   [`PubSub::shutdown`] (from `Gateway::serve`, once the workers have
//!   drained, so nothing publishes any more) stops them pulling, lets them
//!   finish the messages they handle, waits for their tasks (up to the drain
//!   deadline) and closes the in-process bus.
//!
//! [`Consumer`]: palisade::pubsub::Consumer

mod consumers;
mod publisher;
pub mod relay;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::Stream;
use palisade::chaos::{ChaosHandle, ChaosSnapshot};
use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerSnapshot};
use palisade::pubsub::backend::memory::MemoryBus;
use palisade::pubsub::backend::nats::NatsBus;
use palisade::pubsub::error::SubscribeError;
use palisade::pubsub::{
    Consumer, ConsumerHandle, ConsumerSettings, ConsumerSnapshot, Delivery, IdempotentLayer,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{PubSubBackend, PubSubConfig};
use crate::shared::StartError;

pub use consumers::{DeadLetterView, KEEP_LAST, Notification, OrderLine, OrderPlaced};
pub use publisher::{Bus, EventError, EventPublisher, REQUEST_ID_HEADER};

pub(crate) use consumers::now_ms;
use consumers::{Analytics, DeadLetters, Handler, Latest, Notifications};

/// The subject of an order placed, relative to the prefix.
pub const ORDERS_PLACED: &str = "orders.placed";

/// The notification consumer's name (on JetStream, its durable consumer's).
pub const NOTIFICATION: &str = "notification";

/// The analytics queue group's name; its members are `analytics-1`,
/// `analytics-2`, ...
pub const ANALYTICS: &str = "analytics";

/// The running events feature: the bus, the publisher, the consumers and
/// what they recorded.
#[derive(Debug)]
pub struct PubSub {
    events: EventPublisher,
    backend: &'static str,
    consumers: Vec<(ConsumerHandle, &'static str)>,
    notifications: Arc<Notifications>,
    analytics: Arc<Analytics>,
    dead_letters: Arc<DeadLetters>,
    chaos: ChaosHandle,
    breaker: CircuitBreakerHandle,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    running: Arc<AtomicUsize>,
    /// The bus, for the accounts' outbox relay.
    bus: Bus,
    /// The accounts' outbox relay, once [`relay_events`](PubSub::relay_events) started it.
    relay: Mutex<Option<palisade::pubsub::outbox::RelayHandle>>,
}

/// Counts a consumer task as running until dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Builds the consumers over one backend's subscriptions.
struct Starter {
    bus: Bus,
    prefix: String,
    dead_letters: Arc<DeadLetters>,
    stop: watch::Sender<bool>,
    running: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
    consumers: Vec<(ConsumerHandle, &'static str)>,
}

impl Starter {
    fn spawn<Src, D>(
        &mut self,
        name: &str,
        role: &'static str,
        mut settings: ConsumerSettings,
        source: Src,
        handler: Handler,
    ) -> Result<(), StartError>
    where
        Src: Stream<Item = Result<D, SubscribeError>> + Unpin + Send + 'static,
        D: Delivery + Sync,
    {
        if settings.dead_letter_subject.is_none() {
            settings.dead_letter_subject = Some(format!("{}.dead_letter.{name}", self.prefix));
        }
        let consumer = Consumer::builder(name)
            .settings(settings)
            .on_event(self.dead_letters.listener())
            .build(source, handler, self.bus.clone())
            .map_err(|e| StartError::Other(format!("pubsub consumer `{name}`: {e}")))?;
        self.consumers.push((consumer.handle(), role));
        let mut stop = self.stop.subscribe();
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(&self.running));
        let name = name.to_owned();
        self.tasks.push(tokio::spawn(async move {
            let _running = running;
            consumer
                .run_until(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
            tracing::info!(consumer = %name, "consumer stopped");
        }));
        Ok(())
    }
}

fn subscribe_error(what: &str, e: &impl std::fmt::Display) -> StartError {
    StartError::Other(format!("pubsub: cannot subscribe {what}: {e}"))
}

impl PubSub {
    /// Builds the bus of `config` (connecting to NATS and creating its
    /// stream when configured), subscribes the notification consumer and the
    /// analytics group, and starts them on the current runtime.
    ///
    /// # Errors
    ///
    /// NATS unreachable, the stream or a consumer refused, a setting the
    /// crate refuses (not for a config that loaded).
    pub async fn start(config: &PubSubConfig) -> Result<Self, StartError> {
        let prefix = config.subject_prefix.clone();
        let all = format!("{prefix}.>");
        let orders = format!("{prefix}.orders.*");
        let placed = format!("{prefix}.{ORDERS_PLACED}");
        let other = |e: palisade::ConfigError| StartError::Other(format!("pubsub: {e}"));
        let bus = match &config.backend {
            PubSubBackend::Memory(settings) => Bus::Memory(
                MemoryBus::builder("gateway")
                    .settings(settings.clone())
                    .build()
                    .map_err(other)?,
            ),
            PubSubBackend::Nats {
                url,
                stream,
                settings,
            } => {
                let bus = NatsBus::connect(url, "gateway", settings.clone())
                    .await
                    .map_err(|e| StartError::Other(format!("pubsub: {e}")))?;
                bus.ensure_stream(stream, &[&all], Duration::from_secs(120))
                    .await
                    .map_err(|e| subscribe_error(&format!("stream `{stream}`"), &e))?;
                Bus::Nats(bus)
            }
        };
        let notifications = Arc::new(Notifications {
            sent: AtomicU64::new(0),
            latest: Latest::new(),
        });
        let analytics = Arc::new(Analytics {
            orders: AtomicU64::new(0),
            items: AtomicU64::new(0),
            per_member: (0..config.analytics_members)
                .map(|_| AtomicU64::new(0))
                .collect(),
        });
        let dead_letters = Arc::new(DeadLetters {
            latest: Latest::new(),
        });
        let (notify, chaos, breaker) =
            consumers::notification_handler(&notifications, config.handler_timeout)
                .map_err(other)?;
        let dedup = IdempotentLayer::builder("pubsub-analytics")
            .build()
            .map_err(other)?;
        let mut starter = Starter {
            bus: bus.clone(),
            prefix: prefix.clone(),
            dead_letters: Arc::clone(&dead_letters),
            stop: watch::channel(false).0,
            running: Arc::default(),
            tasks: Vec::new(),
            consumers: Vec::new(),
        };
        let members = (1..=config.analytics_members).map(|i| format!("{ANALYTICS}-{i}"));
        match &bus {
            Bus::Memory(memory) => {
                let source = memory
                    .subscribe(&orders)
                    .map_err(|e| subscribe_error(&orders, &e))?;
                starter.spawn(
                    NOTIFICATION,
                    NOTIFICATION,
                    config.notification.clone(),
                    source,
                    notify,
                )?;
                for (i, member) in members.enumerate() {
                    let source = memory
                        .queue_subscribe(&placed, ANALYTICS)
                        .map_err(|e| subscribe_error(&placed, &e))?;
                    let handler = consumers::analytics_handler(&analytics, &dedup, i);
                    starter.spawn(
                        &member,
                        ANALYTICS,
                        config.analytics.clone(),
                        source,
                        handler,
                    )?;
                }
            }
            Bus::Nats(nats) => {
                let PubSubBackend::Nats { stream, .. } = &config.backend else {
                    return Err(StartError::Other("pubsub: backend mismatch".to_owned()));
                };
                let source = nats
                    .queue_subscribe(stream, &orders, NOTIFICATION)
                    .await
                    .map_err(|e| subscribe_error(&orders, &e))?;
                starter.spawn(
                    NOTIFICATION,
                    NOTIFICATION,
                    config.notification.clone(),
                    source,
                    notify,
                )?;
                for (i, member) in members.enumerate() {
                    let source = nats
                        .queue_subscribe(stream, &placed, ANALYTICS)
                        .await
                        .map_err(|e| subscribe_error(&placed, &e))?;
                    let handler = consumers::analytics_handler(&analytics, &dedup, i);
                    starter.spawn(
                        &member,
                        ANALYTICS,
                        config.analytics.clone(),
                        source,
                        handler,
                    )?;
                }
            }
        }
        let backend = match bus {
            Bus::Memory(_) => "memory",
            Bus::Nats(_) => "nats",
        };
        tracing::info!(
            backend,
            subject_prefix = %prefix,
            analytics_members = config.analytics_members,
            "pubsub consumers started"
        );
        Ok(Self {
            events: EventPublisher::new(bus.clone(), &prefix),
            bus,
            relay: Mutex::new(None),
            backend,
            consumers: starter.consumers,
            notifications,
            analytics,
            dead_letters,
            chaos,
            breaker,
            stop: starter.stop,
            tasks: Mutex::new(starter.tasks),
            running: starter.running,
        })
    }

    /// Starts the outbox relay that publishes every event `store` commits on
    /// `<prefix>.accounts.<EventType>` (see [`relay`]), its checkpoint in a
    /// table beside the store's (`<table_prefix>_relay_checkpoints`). It
    /// stops with the consumers at [`shutdown`](Self::shutdown).
    ///
    /// # Errors
    ///
    /// The checkpoint table cannot be created.
    pub async fn relay_events(
        &self,
        store: palisade::event_store::EventStore<palisade::event_store::backend::AnyBackend>,
        table_prefix: &str,
    ) -> Result<(), StartError> {
        use palisade::pubsub::outbox::{EventStoreOutbox, Relay};
        let checkpoints = relay::Checkpoints::beside(&store, table_prefix).await?;
        let prefix = self.events.prefix().to_owned();
        let outbox = EventStoreOutbox::new(store, move |event| {
            format!(
                "{prefix}.{}.{}",
                relay::ACCOUNTS_SUBJECT,
                event.event_type()
            )
        });
        let relay = Relay::builder(relay::RELAY_NAME)
            .build(outbox, checkpoints, self.bus.clone())
            .map_err(|e| StartError::Other(format!("pubsub relay: {e}")))?;
        *self.relay.lock().unwrap_or_else(PoisonError::into_inner) = Some(relay.handle());
        let mut stop = self.stop.subscribe();
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(&self.running));
        let task = tokio::spawn(async move {
            let _running = running;
            relay
                .run_until(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
            tracing::info!(relay = relay::RELAY_NAME, "outbox relay stopped");
        });
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(())
    }

    /// The bus (to subscribe to what the gateway publishes).
    #[must_use]
    pub const fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The publisher every feature publishes its events with.
    #[must_use]
    pub const fn events(&self) -> &EventPublisher {
        &self.events
    }

    /// The notification handler's chaos knob.
    #[must_use]
    pub const fn notification_chaos(&self) -> &ChaosHandle {
        &self.chaos
    }

    /// The notification handler's circuit breaker.
    #[must_use]
    pub const fn notification_breaker(&self) -> &CircuitBreakerHandle {
        &self.breaker
    }

    /// Consumer tasks, and the accounts' outbox relay, still running (0
    /// after [`shutdown`](Self::shutdown)).
    #[must_use]
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Stops the consumers: they stop pulling, finish (and ack) the messages
    /// they are handling and hand back the ones they hold for a later retry;
    /// waits for their tasks up to `deadline` (then aborts what is left) and
    /// closes the in-process bus. Idempotent.
    pub async fn shutdown(&self, deadline: Duration) {
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        if tasks.is_empty() {
            return;
        }
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(deadline, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                deadline_ms = deadline.as_millis(),
                "pubsub consumers did not finish within the drain deadline; stopping them"
            );
            for abort in aborts {
                abort.abort();
            }
        }
        if let Bus::Memory(bus) = self.events.bus() {
            bus.close();
        }
        tracing::info!("pubsub consumers stopped");
    }

    /// Everything the admin API and the dashboard show, now.
    #[must_use]
    pub fn snapshot(&self) -> PubSubSnapshot {
        let consumers: Vec<ConsumerView> = self
            .consumers
            .iter()
            .map(|(handle, group)| ConsumerView {
                name: handle.name().to_owned(),
                group,
                figures: handle.snapshot(),
            })
            .collect();
        let mut totals = ConsumerSnapshot::default();
        for c in &consumers {
            let f = &c.figures;
            totals.delivered += f.delivered;
            totals.acked += f.acked;
            totals.redelivered += f.redelivered;
            totals.dead_lettered += f.dead_lettered;
            totals.rejected += f.rejected;
            totals.in_flight += f.in_flight;
            totals.lag += f.lag;
        }
        let a = &self.analytics;
        PubSubSnapshot {
            backend: self.backend,
            subject_prefix: self.events.prefix().to_owned(),
            published: self.events.published(),
            publish_errors: self.events.failed(),
            totals,
            consumers,
            running: self.running(),
            notifications: NotificationsView {
                sent: self.notifications.sent.load(Ordering::Relaxed),
                latest: self.notifications.latest.all(),
                chaos: self.chaos.snapshot(),
                circuit_breaker: self.breaker.snapshot(),
            },
            analytics: AnalyticsView {
                orders: a.orders.load(Ordering::Relaxed),
                items: a.items.load(Ordering::Relaxed),
                per_member: a
                    .per_member
                    .iter()
                    .map(|n| n.load(Ordering::Relaxed))
                    .collect(),
            },
            dead_letters: self.dead_letters.latest.all(),
            relayed: self
                .relay
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|r| RelayView {
                    relayed: r.relayed(),
                    position: r.position(),
                }),
        }
    }
}

/// The accounts' outbox relay at one instant.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RelayView {
    /// Events published since the gateway started.
    pub relayed: u64,
    /// The global position of the last one (its checkpoint).
    pub position: u64,
}

/// The events feature at one instant: what the admin API
/// (`GET /admin/pubsub`) and the dashboard serialize.
#[derive(Clone, Debug, Serialize)]
pub struct PubSubSnapshot {
    /// `memory` or `nats`.
    pub backend: &'static str,
    /// The subject prefix.
    pub subject_prefix: String,
    /// Events published by the gateway.
    pub published: u64,
    /// Events that failed to publish.
    pub publish_errors: u64,
    /// Every consumer's figures added up (`lag`: the sum of their backlogs).
    pub totals: ConsumerSnapshot,
    /// Each consumer, notification first.
    pub consumers: Vec<ConsumerView>,
    /// Consumer tasks (and the outbox relay) running.
    pub running: usize,
    /// The accounts' events relayed to the bus (`<prefix>.accounts.<Type>`),
    /// when the accounts feature runs beside this one.
    pub relayed: Option<RelayView>,
    /// The notification service.
    pub notifications: NotificationsView,
    /// The analytics counter.
    pub analytics: AnalyticsView,
    /// The latest dead letters (at most [`KEEP_LAST`]), oldest first.
    pub dead_letters: Vec<DeadLetterView>,
}

/// One consumer: the crate's [`ConsumerSnapshot`] as it is.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerView {
    /// Its name.
    pub name: String,
    /// `notification`, or `analytics` for a member of the queue group.
    pub group: &'static str,
    /// Its counters.
    #[serde(flatten)]
    pub figures: ConsumerSnapshot,
}

/// The notification service.
#[derive(Clone, Debug, Serialize)]
pub struct NotificationsView {
    /// Notifications sent.
    pub sent: u64,
    /// The latest (at most [`KEEP_LAST`]), oldest first.
    pub latest: Vec<Notification>,
    /// The handler's chaos knob (the chaos crate's snapshot).
    pub chaos: ChaosSnapshot,
    /// The handler's circuit breaker (the breaker crate's snapshot).
    pub circuit_breaker: CircuitBreakerSnapshot,
}

/// The analytics counter.
#[derive(Clone, Debug, Serialize)]
pub struct AnalyticsView {
    /// Orders counted (each once, whichever member took it).
    pub orders: u64,
    /// Items in them.
    pub items: u64,
    /// Orders each member counted, `analytics-1` first.
    pub per_member: Vec<u64>,
}
