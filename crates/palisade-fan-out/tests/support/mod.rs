//! Fake branch services for the behaviour tests: answer after a delay, fail,
//! get rejected, take long to become ready, and report concurrency and drops.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{BoxError, CircuitOpen};
use palisade_test_util::DropProbe;
use serde_json::Value;
use tokio::time::{Instant, Sleep};
use tower::Service;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Counts calls in flight and the most seen at once.
#[derive(Clone, Debug, Default)]
pub struct Gauge {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Gauge {
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn enter(&self) -> GaugeGuard {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        GaugeGuard(self.clone())
    }
}

pub struct GaugeGuard(Gauge);
impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug)]
pub enum Answer {
    Json(Value),
    Fail(&'static str),
    Rejected,
}

/// A branch service: answers `answer` after `delay`. Every clone shares the
/// gauge and drop probe; readiness (`ready_after`) is per clone.
#[derive(Debug)]
pub struct Backend {
    pub name: &'static str,
    pub delay: Duration,
    pub answer: Answer,
    pub probe: Option<DropProbe>,
    pub gauge: Gauge,
    pub ready_after: Option<Duration>,
    pub ready_polls: Arc<AtomicUsize>,
    pub requests: Arc<RequestLog>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Clone for Backend {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            delay: self.delay,
            answer: self.answer.clone(),
            probe: self.probe.clone(),
            gauge: self.gauge.clone(),
            ready_after: self.ready_after,
            ready_polls: Arc::clone(&self.ready_polls),
            requests: Arc::clone(&self.requests),
            // A clone starts unready: readiness is never copied.
            sleep: None,
        }
    }
}

impl Backend {
    pub fn json(name: &'static str, delay_ms: u64, value: Value) -> Self {
        Self {
            name,
            delay: ms(delay_ms),
            answer: Answer::Json(value),
            probe: None,
            gauge: Gauge::default(),
            ready_after: None,
            ready_polls: Arc::default(),
            requests: Arc::default(),
            sleep: None,
        }
    }

    pub fn failing(name: &'static str, delay_ms: u64, message: &'static str) -> Self {
        Self {
            answer: Answer::Fail(message),
            ..Self::json(name, delay_ms, Value::Null)
        }
    }

    pub fn rejected(name: &'static str) -> Self {
        Self {
            answer: Answer::Rejected,
            ..Self::json(name, 0, Value::Null)
        }
    }

    pub fn probe(mut self, probe: &DropProbe) -> Self {
        self.probe = Some(probe.clone());
        self
    }

    pub fn gauge(mut self, gauge: &Gauge) -> Self {
        self.gauge = gauge.clone();
        self
    }

    pub fn ready_after(mut self, delay_ms: u64) -> Self {
        self.ready_after = Some(ms(delay_ms));
        self
    }
}

impl Service<u64> for Backend {
    type Response = Value;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Value, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.ready_polls.fetch_add(1, Ordering::SeqCst);
        let Some(after) = self.ready_after else {
            return Poll::Ready(Ok(()));
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        sleep.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, request: u64) -> Self::Future {
        self.sleep = None;
        self.requests.push(request);
        let delay = self.delay;
        let answer = self.answer.clone();
        let token = self.probe.as_ref().map(DropProbe::token);
        let guard = self.gauge.enter();
        let name = self.name;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            drop(guard);
            if let Some(token) = token {
                token.defuse();
            }
            match answer {
                Answer::Json(value) => Ok(value),
                Answer::Fail(message) => Err(message.into()),
                Answer::Rejected => Err(CircuitOpen::new(name, Some(ms(1500))).into()),
            }
        })
    }
}

/// The requests a backend saw.
#[derive(Debug, Default)]
pub struct RequestLog(std::sync::Mutex<Vec<u64>>);

impl RequestLog {
    pub fn push(&self, v: u64) {
        self.0.lock().unwrap().push(v);
    }
    pub fn all(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}

/// Milliseconds since `start` on tokio's (paused) clock.
pub fn elapsed_ms(start: Instant) -> u128 {
    Instant::now().duration_since(start).as_millis()
}
