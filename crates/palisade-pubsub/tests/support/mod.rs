//! A small at-least-once broker for consumer tests: it redelivers what is
//! nak'd (after the delay) and what is dropped unsettled (after its ack
//! wait), counts deliveries per message, and can make an ack hang to inject
//! a crash between handling and acknowledging.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use palisade_pubsub::error::{AckError, SubscribeError};
use palisade_pubsub::{Delivery, Message};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

#[derive(Default)]
struct State {
    ready: VecDeque<(Message, u32)>,
    scheduled: Vec<(Instant, Message, u32)>,
    acked: Vec<String>,
    termed: Vec<String>,
    deliveries: HashMap<String, u32>,
    hang_acks: u32,
    waker: Option<Waker>,
}

#[derive(Clone)]
pub struct TestBroker {
    state: Arc<Mutex<State>>,
    pub ack_wait: Duration,
}

impl TestBroker {
    pub fn new(ack_wait: Duration) -> Self {
        Self {
            state: Arc::default(),
            ack_wait,
        }
    }

    pub fn publish(&self, message: Message) {
        let mut s = self.state.lock();
        s.ready.push_back((message, 0));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// The next `n` acks never complete (a consumer that dies while acking).
    pub fn hang_next_acks(&self, n: u32) {
        self.state.lock().hang_acks = n;
    }

    pub fn acked(&self) -> Vec<String> {
        self.state.lock().acked.clone()
    }

    pub fn termed(&self) -> Vec<String> {
        self.state.lock().termed.clone()
    }

    pub fn deliveries(&self, id: &str) -> u32 {
        self.state.lock().deliveries.get(id).copied().unwrap_or(0)
    }

    /// Messages not yet settled (waiting, scheduled or out).
    pub fn pending(&self) -> usize {
        let s = self.state.lock();
        s.ready.len() + s.scheduled.len()
    }

    pub fn subscribe(&self) -> TestSubscription {
        TestSubscription {
            broker: self.clone(),
            sleep: None,
        }
    }

    fn schedule(&self, message: Message, delivered: u32, at: Instant) {
        let mut s = self.state.lock();
        s.scheduled.push((at, message, delivered));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

pub struct TestSubscription {
    broker: TestBroker,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Stream for TestSubscription {
    type Item = Result<TestDelivery, SubscribeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let now = Instant::now();
            let next_due = {
                let mut s = self.broker.state.lock();
                let mut i = 0;
                while i < s.scheduled.len() {
                    if s.scheduled[i].0 <= now {
                        let (_, m, d) = s.scheduled.remove(i);
                        s.ready.push_back((m, d));
                    } else {
                        i += 1;
                    }
                }
                if let Some((message, delivered)) = s.ready.pop_front() {
                    let delivered = delivered + 1;
                    *s.deliveries.entry(message.id().to_owned()).or_default() += 1;
                    let backlog = s.ready.len() as u64;
                    drop(s);
                    return Poll::Ready(Some(Ok(TestDelivery {
                        message,
                        delivered,
                        backlog,
                        broker: self.broker.clone(),
                        settled: false,
                    })));
                }
                s.waker = Some(cx.waker().clone());
                s.scheduled.iter().map(|e| e.0).min()
            };
            match next_due {
                Some(at) => {
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    sleep.as_mut().reset(at);
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                None => return Poll::Pending,
            }
        }
    }
}

pub struct TestDelivery {
    message: Message,
    delivered: u32,
    backlog: u64,
    broker: TestBroker,
    settled: bool,
}

impl Drop for TestDelivery {
    fn drop(&mut self) {
        if !self.settled {
            // Never acknowledged: the broker redelivers after its ack wait.
            let at = Instant::now() + self.broker.ack_wait;
            self.broker
                .schedule(self.message.clone(), self.delivered, at);
        }
    }
}

impl Delivery for TestDelivery {
    fn message(&self) -> &Message {
        &self.message
    }
    fn delivery(&self) -> u32 {
        self.delivered
    }
    fn backlog(&self) -> Option<u64> {
        Some(self.backlog)
    }
    fn redelivers(&self) -> bool {
        true
    }
    fn progress_interval(&self) -> Option<Duration> {
        Some(self.broker.ack_wait / 2)
    }
    fn ack(mut self) -> impl Future<Output = Result<(), AckError>> + Send {
        let hang = {
            let mut s = self.broker.state.lock();
            if s.hang_acks > 0 {
                s.hang_acks -= 1;
                true
            } else {
                s.acked.push(self.message.id().to_owned());
                false
            }
        };
        self.settled = !hang;
        async move {
            if hang {
                // Holds the delivery until the consumer is killed.
                std::future::pending::<()>().await;
            }
            drop(self);
            Ok(())
        }
    }
    fn nak(mut self, delay: Duration) -> impl Future<Output = Result<(), AckError>> + Send {
        self.settled = true;
        self.broker
            .schedule(self.message.clone(), self.delivered, Instant::now() + delay);
        std::future::ready(Ok(()))
    }
    fn term(mut self) -> impl Future<Output = Result<(), AckError>> + Send {
        self.settled = true;
        self.broker
            .state
            .lock()
            .termed
            .push(self.message.id().to_owned());
        std::future::ready(Ok(()))
    }
    fn in_progress(&self) -> impl Future<Output = Result<(), AckError>> + Send {
        std::future::ready(Ok(()))
    }
}
