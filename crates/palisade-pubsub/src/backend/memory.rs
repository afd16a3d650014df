//! The in-process bus: bounded per-subscription buffers, wildcards, queue
//! groups, and an explicit policy for slow subscribers.
//!
//! Delivery is at most once: a message lives in subscribers' buffers, in this
//! process only. Each subscription (or queue group) has its own buffer of
//! `capacity` messages; a message matching several subscriptions is shared
//! between their buffers (one reference count each), so whatever subscribers
//! do, the bus holds at most `subscriptions × capacity` messages of at most
//! `max_payload` bytes.
//!
//! When a buffer is full, the [`SlowSubscriber`] policy decides:
//! [`DropOldest`](SlowSubscriber::DropOldest) (the default) drops that
//! subscriber's oldest message, counts it in `palisade_pubsub_dropped_total`,
//! and makes the subscriber's next receive a lag report
//! ([`SubscribeErrorKind::Lagged`]); [`Wait`](SlowSubscriber::Wait) makes the
//! publisher wait for room in every matching buffer (bounded by
//! `publish_timeout`), all or nothing.
//!
//! ```
//! use palisade_pubsub::backend::memory::MemoryBus;
//! use palisade_pubsub::Message;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = MemoryBus::builder("events").capacity(64).build()?;
//! let mut all_orders = bus.subscribe("orders.>")?;
//! let mut analytics_a = bus.queue_subscribe("orders.*", "analytics")?;
//! let mut analytics_b = bus.queue_subscribe("orders.*", "analytics")?;
//!
//! bus.publish(Message::new("orders.created", "17")?).await?;
//!
//! let msg = all_orders.recv().await.unwrap()?;
//! assert_eq!(msg.subject(), "orders.created");
//! // The queue group got it once: one member takes it, then the group's
//! // shared buffer is empty for the other.
//! assert_eq!(analytics_a.recv().await.unwrap()?.id(), msg.id());
//! assert_eq!(analytics_b.buffered(), 0);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_core::Stream;
use palisade_core::{ConfigError, Listeners};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::backend::{Delivery, Publisher};
use crate::error::{
    AckError, InvalidSubject, PublishError, PublishErrorKind, SubscribeError, SubscribeErrorKind,
};
use crate::event::PubSubEvent;
use crate::message::Message;
use crate::metrics::PublisherMetrics;
use crate::settings::{BusSettings, SlowSubscriber, validate_name};
use crate::state::subject::Pattern;

/// An in-process publish-subscribe bus. Cheap to clone: clones are the same
/// bus.
///
/// Subscriptions end (yield `None` once drained) when the bus is
/// [closed](Self::close) or its last handle is dropped.
#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<BusShared>,
}

struct BusShared {
    name: Arc<str>,
    settings: BusSettings,
    /// Read on every publish without a lock; replaced whole on (rare)
    /// subscribe and unsubscribe, under `write`.
    routes: ArcSwap<Routes>,
    write: Mutex<()>,
    closed: AtomicBool,
    next_member: AtomicU64,
    metrics: PublisherMetrics,
    listeners: Listeners<PubSubEvent>,
}

/// The route table: every queue, and the queues grouped by pattern so a
/// publish matches each distinct pattern once however many subscriptions
/// share it.
#[derive(Default)]
struct Routes {
    queues: Vec<Arc<Queue>>,
    by_pattern: Vec<(Pattern, Box<[Arc<Queue>]>)>,
}

impl Routes {
    fn new(queues: Vec<Arc<Queue>>) -> Self {
        let mut by_pattern: Vec<(Pattern, Vec<Arc<Queue>>)> = Vec::new();
        for queue in &queues {
            match by_pattern.iter_mut().find(|(p, _)| *p == queue.pattern) {
                Some((_, list)) => list.push(Arc::clone(queue)),
                None => by_pattern.push((queue.pattern.clone(), vec![Arc::clone(queue)])),
            }
        }
        Self {
            queues,
            by_pattern: by_pattern
                .into_iter()
                .map(|(p, list)| (p, list.into_boxed_slice()))
                .collect(),
        }
    }

    /// The groups of queues whose pattern matches `subject`. Callers walk
    /// each group with a plain loop: a flattening iterator costs more than
    /// the match on the hot path.
    #[inline]
    fn matching<'a>(&'a self, subject: &'a str) -> impl Iterator<Item = &'a [Arc<Queue>]> + 'a {
        self.by_pattern
            .iter()
            .filter(move |(pattern, _)| pattern.matches(subject))
            .map(|(_, queues)| &**queues)
    }
}

/// One subscription's (or queue group's) bounded buffer.
struct Queue {
    pattern: Pattern,
    pattern_text: Arc<str>,
    group: Option<Box<str>>,
    capacity: usize,
    state: Mutex<QueueState>,
    /// Room in the buffer, under [`SlowSubscriber::Wait`]: a publisher takes
    /// one permit per message and the receiver gives it back.
    space: Option<Semaphore>,
    members: AtomicUsize,
}

struct QueueState {
    buf: VecDeque<Message>,
    /// Dropped since the last lag report.
    lagged: u64,
    closed: bool,
    /// Members waiting for a message, by member id.
    waiters: Vec<(u64, Waker)>,
}

/// Configures a [`MemoryBus`]; [`build`](Self::build) validates.
#[must_use]
pub struct MemoryBusBuilder {
    name: String,
    settings: BusSettings,
    listeners: Listeners<PubSubEvent>,
}

impl MemoryBus {
    /// A builder for a bus called `name` (it labels metrics and events).
    pub fn builder(name: impl Into<String>) -> MemoryBusBuilder {
        MemoryBusBuilder {
            name: name.into(),
            settings: BusSettings::default(),
            listeners: Listeners::new(),
        }
    }

    /// The bus's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its settings.
    #[must_use]
    pub fn settings(&self) -> &BusSettings {
        &self.shared.settings
    }

    /// Subscribes to `pattern` (`*` and `>` wildcards) with a buffer of its
    /// own: every matching message published from now on is delivered to it.
    ///
    /// # Errors
    ///
    /// [`InvalidSubject`] for an invalid pattern.
    pub fn subscribe(&self, pattern: &str) -> Result<MemorySubscription, InvalidSubject> {
        self.join(pattern, None)
    }

    /// Joins the queue group `group` on `pattern`: the members of a group
    /// share one buffer and each message goes to one of them (competing
    /// consumers). Other subscriptions and groups still get their copy.
    ///
    /// # Errors
    ///
    /// [`InvalidSubject`] for an invalid pattern or an empty group name.
    pub fn queue_subscribe(
        &self,
        pattern: &str,
        group: &str,
    ) -> Result<MemorySubscription, InvalidSubject> {
        if group.is_empty() {
            return Err(InvalidSubject::new(group, "queue group name is empty"));
        }
        self.join(pattern, Some(group))
    }

    fn join(
        &self,
        pattern: &str,
        group: Option<&str>,
    ) -> Result<MemorySubscription, InvalidSubject> {
        let parsed = Pattern::new(pattern)?;
        let shared = &self.shared;
        let member = shared.next_member.fetch_add(1, Ordering::Relaxed);
        let _write = shared.write.lock();
        let routes = shared.routes.load();
        if let Some(group) = group
            && let Some(queue) = routes
                .queues
                .iter()
                .find(|q| q.group.as_deref() == Some(group) && q.pattern == parsed)
        {
            queue.members.fetch_add(1, Ordering::Relaxed);
            return Ok(MemorySubscription {
                queue: Arc::clone(queue),
                bus: Arc::downgrade(shared),
                member,
            });
        }
        let closed = shared.closed.load(Ordering::Acquire);
        let capacity = shared.settings.capacity;
        let queue = Arc::new(Queue {
            pattern_text: parsed.as_str().into(),
            pattern: parsed,
            group: group.map(Into::into),
            capacity,
            state: Mutex::new(QueueState {
                buf: VecDeque::with_capacity(capacity.min(1024)),
                lagged: 0,
                closed,
                waiters: Vec::with_capacity(1),
            }),
            space: (shared.settings.slow_subscriber == SlowSubscriber::Wait)
                .then(|| Semaphore::new(capacity)),
            members: AtomicUsize::new(1),
        });
        if !closed {
            let mut next = Vec::with_capacity(routes.queues.len() + 1);
            next.extend(routes.queues.iter().cloned());
            next.push(Arc::clone(&queue));
            shared.routes.store(Arc::new(Routes::new(next)));
        }
        Ok(MemorySubscription {
            queue,
            bus: Arc::downgrade(shared),
            member,
        })
    }

    /// Publishes `message` to every matching subscription and one member of
    /// every matching queue group. A message nobody subscribed to is
    /// dropped (counted as published).
    ///
    /// Under [`SlowSubscriber::DropOldest`] this never waits. Under
    /// [`SlowSubscriber::Wait`] it waits for room in every matching buffer,
    /// up to `publish_timeout`.
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::TooLarge`] (payload above `max_payload`),
    /// [`PublishErrorKind::Closed`], [`PublishErrorKind::Full`] (`Wait` only,
    /// after the timeout; delivered to nobody).
    pub async fn publish(&self, message: Message) -> Result<(), PublishError> {
        self.check(&message)?;
        match self.shared.settings.slow_subscriber {
            SlowSubscriber::Wait => {
                let deadline = Instant::now() + self.shared.settings.publish_timeout;
                self.publish_waiting(message, Some(deadline)).await
            }
            _ => {
                self.publish_dropping(&message);
                Ok(())
            }
        }
    }

    /// Publishes without waiting: like [`publish`](Self::publish), except
    /// that under [`SlowSubscriber::Wait`] a full buffer fails at once with
    /// [`PublishErrorKind::Full`] (delivered to nobody).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn try_publish(&self, message: &Message) -> Result<(), PublishError> {
        self.check(message)?;
        match self.shared.settings.slow_subscriber {
            SlowSubscriber::Wait => {
                let routes = self.shared.routes.load();
                let mut permits = Vec::new();
                for queues in routes.matching(message.subject()) {
                    for queue in queues {
                        let space = queue.space.as_ref().expect("Wait queues have a semaphore");
                        match space.try_acquire() {
                            Ok(permit) => permits.push((queue, permit)),
                            Err(tokio::sync::TryAcquireError::Closed) => {}
                            Err(tokio::sync::TryAcquireError::NoPermits) => {
                                return Err(self.full(message, queue));
                            }
                        }
                    }
                }
                for (queue, permit) in permits {
                    permit.forget();
                    queue.push(message.clone(), &self.shared);
                }
                self.shared.metrics.published.increment(1);
                Ok(())
            }
            _ => {
                self.publish_dropping(message);
                Ok(())
            }
        }
    }

    fn check(&self, message: &Message) -> Result<(), PublishError> {
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared
                .metrics
                .publish_error(PublishErrorKind::Closed.as_str());
            return Err(PublishError::new(
                PublishErrorKind::Closed,
                message.subject(),
                "the bus is closed",
            ));
        }
        let max = self.shared.settings.max_payload;
        if message.payload().len() > max {
            self.shared
                .metrics
                .publish_error(PublishErrorKind::TooLarge.as_str());
            return Err(PublishError::new(
                PublishErrorKind::TooLarge,
                message.subject(),
                format!(
                    "payload of {} bytes, above max_payload {max}",
                    message.payload().len()
                ),
            ));
        }
        Ok(())
    }

    fn full(&self, message: &Message, queue: &Queue) -> PublishError {
        self.shared
            .metrics
            .publish_error(PublishErrorKind::Full.as_str());
        PublishError::new(
            PublishErrorKind::Full,
            message.subject(),
            format!(
                "the subscriber on `{}` has no room ({} buffered)",
                queue.pattern_text, queue.capacity
            ),
        )
    }

    /// The hot path: one lock-free load of the route table, one match per
    /// subscription, one short buffer lock per matching subscription.
    #[inline]
    fn publish_dropping(&self, message: &Message) {
        let routes = self.shared.routes.load();
        for queues in routes.matching(message.subject()) {
            for queue in queues {
                queue.push(message.clone(), &self.shared);
            }
        }
        self.shared.metrics.published.increment(1);
    }

    async fn publish_waiting(
        &self,
        message: Message,
        deadline: Option<Instant>,
    ) -> Result<(), PublishError> {
        let routes = self.shared.routes.load_full();
        let mut permits = Vec::new();
        for queue in routes.matching(message.subject()).flatten() {
            let space = queue.space.as_ref().expect("Wait queues have a semaphore");
            let acquired = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, space.acquire()).await {
                    Ok(acquired) => acquired,
                    Err(_) => return Err(self.full(&message, queue)),
                },
                None => space.acquire().await,
            };
            // A closed semaphore: the subscription is gone; skip it.
            if let Ok(permit) = acquired {
                permits.push((queue, permit));
            }
        }
        for (queue, permit) in permits {
            permit.forget();
            queue.push(message.clone(), &self.shared);
        }
        self.shared.metrics.published.increment(1);
        Ok(())
    }

    /// Closes the bus: publishing fails from now on, and every subscription
    /// ends once it has drained its buffer.
    pub fn close(&self) {
        self.shared.close();
    }

    /// `true` once the bus is closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Live subscriptions (a queue group counts once).
    #[must_use]
    pub fn subscriptions(&self) -> usize {
        self.shared.routes.load().queues.len()
    }
}

impl BusShared {
    fn close(&self) {
        let _write = self.write.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let routes = self.routes.swap(Arc::new(Routes::default()));
        for queue in &routes.queues {
            queue.close();
        }
    }

    /// Removes `queue` from the route table; the caller holds `write`.
    fn unsubscribe_locked(&self, queue: &Arc<Queue>) {
        let routes = self.routes.load();
        if routes.queues.iter().any(|q| Arc::ptr_eq(q, queue)) {
            let next: Vec<Arc<Queue>> = routes
                .queues
                .iter()
                .filter(|q| !Arc::ptr_eq(q, queue))
                .cloned()
                .collect();
            self.routes.store(Arc::new(Routes::new(next)));
        }
    }
}

impl Drop for BusShared {
    fn drop(&mut self) {
        for queue in &self.routes.load().queues {
            queue.close();
        }
    }
}

impl Queue {
    /// Appends `message`, dropping the oldest if full (under `Wait` the
    /// publisher holds a permit, so there is room), and wakes the members
    /// waiting for it.
    #[inline]
    fn push(&self, message: Message, bus: &BusShared) {
        let mut state = self.state.lock();
        if state.closed {
            return;
        }
        let dropped = if state.buf.len() >= self.capacity {
            state.buf.pop_front();
            state.lagged += 1;
            true
        } else {
            false
        };
        state.buf.push_back(message);
        match state.waiters.len() {
            0 => drop(state),
            1 => {
                let (_, waker) = state.waiters.pop().expect("one waiter");
                drop(state);
                waker.wake();
            }
            _ => {
                // Several members of a group wait: wake them all, the first
                // to poll takes the message. A member busy elsewhere must not
                // sit on the only wake-up.
                let wakers: Vec<(u64, Waker)> = state.waiters.drain(..).collect();
                drop(state);
                for (_, waker) in wakers {
                    waker.wake();
                }
            }
        }
        if dropped {
            bus.metrics.dropped.increment(1);
            bus.listeners.emit_with(|| PubSubEvent::Lagged {
                bus: Arc::clone(&bus.name),
                pattern: Arc::clone(&self.pattern_text),
                dropped: 1,
            });
        }
    }

    fn close(&self) {
        let wakers = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.waiters)
        };
        if let Some(space) = &self.space {
            space.close();
        }
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    fn poll_pop(
        &self,
        member: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(Message, usize), SubscribeError>>> {
        let mut state = self.state.lock();
        if state.lagged > 0 {
            let missed = std::mem::take(&mut state.lagged);
            return Poll::Ready(Some(Err(SubscribeError::new(
                SubscribeErrorKind::Lagged(missed),
                "slow subscriber",
            ))));
        }
        if let Some(message) = state.buf.pop_front() {
            let backlog = state.buf.len();
            drop(state);
            if let Some(space) = &self.space {
                space.add_permits(1);
            }
            return Poll::Ready(Some(Ok((message, backlog))));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        let waker = cx.waker();
        match state.waiters.iter_mut().find(|(id, _)| *id == member) {
            Some((_, slot)) => {
                if !slot.will_wake(waker) {
                    slot.clone_from(waker);
                }
            }
            None => state.waiters.push((member, waker.clone())),
        }
        Poll::Pending
    }
}

impl MemoryBusBuilder {
    /// Messages buffered per subscription. Default 1024.
    pub const fn capacity(mut self, capacity: usize) -> Self {
        self.settings.capacity = capacity;
        self
    }

    /// What happens when a buffer is full. Default
    /// [`SlowSubscriber::DropOldest`].
    pub const fn slow_subscriber(mut self, policy: SlowSubscriber) -> Self {
        self.settings.slow_subscriber = policy;
        self
    }

    /// How long a publisher waits for room under [`SlowSubscriber::Wait`].
    /// Default 5 s.
    pub const fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.settings.publish_timeout = timeout;
        self
    }

    /// The largest payload accepted. Default 1 MiB.
    pub const fn max_payload(mut self, bytes: usize) -> Self {
        self.settings.max_payload = bytes;
        self
    }

    /// Replaces every setting.
    pub fn settings(mut self, settings: BusSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Adds a listener for the bus's events ([`PubSubEvent::Lagged`]).
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&PubSubEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Validates and builds the bus (metric handles are resolved now).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting, or `name`.
    pub fn build(self) -> Result<MemoryBus, ConfigError> {
        validate_name(&self.name)?;
        self.settings.validate()?;
        let name: Arc<str> = self.name.into();
        Ok(MemoryBus {
            shared: Arc::new(BusShared {
                metrics: PublisherMetrics::new(&name),
                name,
                settings: self.settings,
                routes: ArcSwap::from_pointee(Routes::default()),
                write: Mutex::new(()),
                closed: AtomicBool::new(false),
                next_member: AtomicU64::new(0),
                listeners: self.listeners,
            }),
        })
    }
}

impl fmt::Debug for MemoryBusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBusBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("name", &self.shared.name)
            .field("subscriptions", &self.subscriptions())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Publisher for MemoryBus {
    fn publish(&self, message: Message) -> impl Future<Output = Result<(), PublishError>> + Send {
        Self::publish(self, message)
    }
}

/// A subscription to the in-process bus (or one member of a queue group).
///
/// Receive with [`recv`](Self::recv), or use it as a `Stream` of
/// [`MemoryDelivery`] (what a [`Consumer`](crate::Consumer) drives). Dropping
/// it unsubscribes (a group's buffer goes when its last member does).
pub struct MemorySubscription {
    queue: Arc<Queue>,
    bus: Weak<BusShared>,
    member: u64,
}

impl MemorySubscription {
    /// The next message, a lag report (the subscriber was too slow and lost
    /// messages; the subscription goes on), or `None` once the bus is closed
    /// and the buffer drained.
    pub async fn recv(&mut self) -> Option<Result<Message, SubscribeError>> {
        std::future::poll_fn(|cx| self.queue.poll_pop(self.member, cx))
            .await
            .map(|r| r.map(|(m, _)| m))
    }

    /// The pattern subscribed to.
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.queue.pattern_text
    }

    /// The queue group, if this is a member of one.
    #[must_use]
    pub fn group(&self) -> Option<&str> {
        self.queue.group.as_deref()
    }

    /// Messages waiting in this subscription's buffer (the group's, for a
    /// member).
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.queue.state.lock().buf.len()
    }
}

impl Stream for MemorySubscription {
    type Item = Result<MemoryDelivery, SubscribeError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.queue.poll_pop(this.member, cx).map(|next| {
            next.map(|r| {
                r.map(|(message, backlog)| MemoryDelivery {
                    message,
                    backlog: backlog as u64,
                })
            })
        })
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        let wakers = {
            let mut state = self.queue.state.lock();
            state.waiters.retain(|(id, _)| *id != self.member);
            // Another member may need the wake-up this one received.
            std::mem::take(&mut state.waiters)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
        let Some(bus) = self.bus.upgrade() else {
            return;
        };
        let _write = bus.write.lock();
        if self.queue.members.fetch_sub(1, Ordering::AcqRel) == 1 {
            bus.unsubscribe_locked(&self.queue);
            self.queue.close();
        }
    }
}

impl fmt::Debug for MemorySubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscription")
            .field("pattern", &self.queue.pattern_text)
            .field("group", &self.queue.group)
            .field("buffered", &self.buffered())
            .finish()
    }
}

/// A message delivered by the in-process bus. Acknowledgements are no-ops:
/// the bus does not redeliver, so a [`Consumer`](crate::Consumer) retries in
/// place.
#[derive(Clone, Debug)]
pub struct MemoryDelivery {
    message: Message,
    backlog: u64,
}

impl MemoryDelivery {
    /// Takes the message out.
    #[must_use]
    pub fn into_message(self) -> Message {
        self.message
    }
}

impl Delivery for MemoryDelivery {
    fn message(&self) -> &Message {
        &self.message
    }

    fn delivery(&self) -> u32 {
        1
    }

    fn backlog(&self) -> Option<u64> {
        Some(self.backlog)
    }

    fn redelivers(&self) -> bool {
        false
    }

    fn progress_interval(&self) -> Option<Duration> {
        None
    }

    fn ack(self) -> impl Future<Output = Result<(), AckError>> + Send {
        std::future::ready(Ok(()))
    }

    fn nak(self, _delay: Duration) -> impl Future<Output = Result<(), AckError>> + Send {
        std::future::ready(Ok(()))
    }

    fn term(self) -> impl Future<Output = Result<(), AckError>> + Send {
        std::future::ready(Ok(()))
    }

    fn in_progress(&self) -> impl Future<Output = Result<(), AckError>> + Send {
        std::future::ready(Ok(()))
    }
}
