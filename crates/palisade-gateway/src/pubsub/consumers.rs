//! The demo's consumers: the notification service (one durable consumer,
//! its handler behind retry, a circuit breaker, a timeout and a chaos knob)
//! and the analytics counter (a queue group of competing members, each
//! message counted once), and what they record for the dashboard.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade::BoxError;
use palisade::chaos::{ChaosHandle, ChaosLayer};
use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use palisade::pubsub::error::Terminal;
use palisade::pubsub::{IdempotentLayer, Message, PubSubEvent};
use palisade::retry::{Backoff, RetryLayer};
use serde::{Deserialize, Serialize};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, service_fn};

/// How many notifications and dead letters the dashboard keeps.
pub const KEEP_LAST: usize = 10;

/// The `orders.placed` event's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order's id (also the message id).
    pub order_id: String,
    /// Who placed it.
    pub user_id: u64,
    /// Its lines.
    pub items: Vec<OrderLine>,
    /// When, ms since the Unix epoch.
    pub placed_at_ms: u64,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: u64,
    /// How many.
    pub quantity: u32,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A bounded list of the latest items, newest last.
#[derive(Debug)]
pub(crate) struct Latest<T> {
    items: Mutex<VecDeque<T>>,
}

impl<T: Clone> Latest<T> {
    pub(crate) fn new() -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(KEEP_LAST)),
        }
    }

    pub(crate) fn push(&self, item: T) {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if items.len() == KEEP_LAST {
            items.pop_front();
        }
        items.push_back(item);
    }

    pub(crate) fn all(&self) -> Vec<T> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// A notification the demo notification service "sent".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The order it is about.
    pub order_id: String,
    /// To whom.
    pub user_id: u64,
    /// The event's correlation id: the id of the request that placed the
    /// order.
    pub correlation_id: Option<String>,
    /// When it was sent, ms since the Unix epoch.
    pub at_ms: u64,
}

/// What the notification handler did.
#[derive(Debug)]
pub(crate) struct Notifications {
    pub(crate) sent: AtomicU64,
    pub(crate) latest: Latest<Notification>,
}

/// A dead letter as the dashboard shows it (from the consumer's
/// `DeadLettered` event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetterView {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The consumer that gave up.
    pub consumer: String,
    /// The message's id.
    pub message_id: String,
    /// The subject it was published to.
    pub subject: String,
    /// `terminal` or `max_deliver`.
    pub kind: &'static str,
    /// Why: the handler's last error.
    pub reason: String,
}

/// The latest dead letters, recorded by the consumers' event listener.
#[derive(Debug)]
pub(crate) struct DeadLetters {
    pub(crate) latest: Latest<DeadLetterView>,
}

impl DeadLetters {
    /// The listener a consumer is built with.
    pub(crate) fn listener(self: &Arc<Self>) -> impl Fn(&PubSubEvent) + Send + Sync + 'static {
        let this = Arc::clone(self);
        move |event: &PubSubEvent| {
            if let PubSubEvent::DeadLettered {
                consumer,
                message_id,
                subject,
                kind,
                reason,
                ..
            } = event
            {
                this.latest.push(DeadLetterView {
                    at_ms: now_ms(),
                    consumer: consumer.to_string(),
                    message_id: message_id.to_string(),
                    subject: subject.to_string(),
                    kind: kind.as_str(),
                    reason: reason.clone(),
                });
            }
        }
    }
}

/// What the analytics group counted.
#[derive(Debug)]
pub(crate) struct Analytics {
    pub(crate) orders: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) per_member: Vec<AtomicU64>,
}

/// A handler as the consumers drive it.
pub(crate) type Handler = BoxCloneSyncService<Message, (), BoxError>;

fn order_of(message: &Message) -> Result<OrderPlaced, BoxError> {
    message
        .json::<OrderPlaced>()
        .map_err(|e| BoxError::from(Terminal::new(format!("not an order: {e}"))))
}

/// The notification handler's stack, outermost first: retry (one more
/// attempt, 20 ms later), circuit breaker (opens at 50 % failures of the
/// last 40 calls, at least 20, so the first poisoned messages reach the
/// dead letters before it opens; probes after 5 s), timeout, chaos (the
/// dashboard's knob), the handler. A payload that is not an order is a
/// [`Terminal`] failure: dead-lettered at once.
pub(crate) fn notification_handler(
    notifications: &Arc<Notifications>,
    timeout: Duration,
) -> Result<(Handler, ChaosHandle, CircuitBreakerHandle), palisade::ConfigError> {
    let retry = RetryLayer::builder("pubsub-notification")
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::from_millis(20)))
        .build()?;
    let breaker = CircuitBreakerLayer::builder("pubsub-notification")
        .count_window(40)
        .minimum_calls(20)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(5))
        .build()?;
    let chaos = ChaosLayer::builder("pubsub-notification").build()?;
    let (chaos_handle, breaker_handle) = (chaos.handle(), breaker.handle());
    let notifications = Arc::clone(notifications);
    let service = ServiceBuilder::new()
        .layer(retry)
        .layer(breaker)
        .timeout(timeout)
        .layer(chaos)
        .service(service_fn(move |message: Message| {
            let notifications = Arc::clone(&notifications);
            async move {
                let order = order_of(&message)?;
                notifications.sent.fetch_add(1, Ordering::Relaxed);
                notifications.latest.push(Notification {
                    order_id: order.order_id,
                    user_id: order.user_id,
                    correlation_id: message.correlation_id().map(str::to_owned),
                    at_ms: now_ms(),
                });
                Ok::<(), BoxError>(())
            }
        }));
    Ok((
        BoxCloneSyncService::new(service),
        chaos_handle,
        breaker_handle,
    ))
}

/// Member `member`'s handler of the analytics group: counts orders and
/// items, skipping an id it has already counted (`dedup`, shared by every
/// member, absorbs JetStream's redeliveries).
pub(crate) fn analytics_handler(
    analytics: &Arc<Analytics>,
    dedup: &IdempotentLayer,
    member: usize,
) -> Handler {
    let analytics = Arc::clone(analytics);
    let service = ServiceBuilder::new()
        .layer(dedup.clone())
        .service(service_fn(move |message: Message| {
            let analytics = Arc::clone(&analytics);
            async move {
                let order = order_of(&message)?;
                let items: u64 = order.items.iter().map(|l| u64::from(l.quantity)).sum();
                analytics.orders.fetch_add(1, Ordering::Relaxed);
                analytics.items.fetch_add(items, Ordering::Relaxed);
                if let Some(count) = analytics.per_member.get(member) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), BoxError>(())
            }
        }));
    BoxCloneSyncService::new(tower::ServiceExt::map_response(service, drop))
}
