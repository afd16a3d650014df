//! Random sequences of calls, time steps, cancellations, held permits and
//! manual switches, driven through the service under tokio's paused clock
//! and checked step by step against a small reference model of the breaker:
//! decisions, states, window figures, probes and transitions must agree.
//!
//! The generated settings include a jittered open wait (seeded) and a
//! maximum wait in the half-open state short enough to pass within the
//! generated time steps; held permits (a service polled ready and kept)
//! leave probes hanging so that it does. The jitter's random draws are the
//! breaker's own: the model takes the wait the breaker reports for each
//! opening and checks that it lies within the bounds the settings allow.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_circuit_breaker::{
    BoxError, CircuitBreakerEvent, CircuitBreakerLayer, CircuitOpen, Outcome, State,
    TransitionReason,
};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tower::{Layer, Service, ServiceExt};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

// ===== Configuration =====

#[derive(Clone, Debug)]
enum WindowKind {
    Count(u32),
    Time(u64),
}

#[derive(Clone, Debug)]
struct Cfg {
    window: WindowKind,
    minimum_calls: u32,
    failure_threshold: Option<u64>,
    slow: Option<(u64, u64)>,
    consecutive: Option<u32>,
    wait_ms: u64,
    multiplier: u64,
    permits: u32,
    /// The open wait's jitter, in percent (`None`: exact waits).
    jitter: Option<u64>,
    seed: u64,
    /// The maximum wait in the half-open state.
    max_half_open_ms: u64,
}

impl Cfg {
    fn effective_minimum(&self) -> u64 {
        match self.window {
            WindowKind::Count(n) => u64::from(self.minimum_calls.min(n)),
            WindowKind::Time(_) => u64::from(self.minimum_calls),
        }
    }

    fn max_wait_ns(&self) -> u64 {
        4 * self.wait_ms * MS
    }
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        prop_oneof![
            (1u32..8).prop_map(WindowKind::Count),
            (1u64..5).prop_map(WindowKind::Time)
        ],
        1u32..10,
        prop::option::weighted(
            0.85,
            prop_oneof![Just(25u64), Just(50), Just(75), Just(100)],
        ),
        prop::option::of((
            prop_oneof![Just(50u64), Just(100)],
            prop_oneof![Just(50u64), Just(100)],
        )),
        prop::option::of(1u32..4),
        1u64..4,
        1u64..3,
        1u32..4,
        prop::option::of(prop_oneof![Just(10u64), Just(50), Just(100)]),
        any::<u64>(),
        500u64..4_000,
    )
        .prop_map(
            |(
                window,
                minimum_calls,
                failure_threshold,
                slow,
                consecutive,
                wait_s,
                multiplier,
                permits,
                jitter,
                seed,
                max_half_open_ms,
            )| {
                // At least one way to open.
                let failure_threshold = if consecutive.is_none() && slow.is_none() {
                    failure_threshold.or(Some(50))
                } else {
                    failure_threshold
                };
                Cfg {
                    window,
                    minimum_calls,
                    failure_threshold,
                    slow,
                    consecutive,
                    wait_ms: wait_s * 1_000,
                    multiplier,
                    permits,
                    jitter,
                    seed,
                    max_half_open_ms,
                }
            },
        )
}

// ===== Operations =====

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ok,
    Fail,
    Ignore,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Call(Kind, u64),
    Advance(u64),
    Cancel,
    /// Poll a service ready and keep it (a probe permit stays taken).
    Hold,
    /// Drop the oldest held service.
    Release,
    Reset,
    ForceOpen,
    Disable,
    MetricsOnly,
    HalfOpen,
    OpenFor(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (prop_oneof![3 => Just(Kind::Ok), 3 => Just(Kind::Fail), 1 => Just(Kind::Ignore)],
               prop_oneof![Just(0u64), Just(10), Just(60), Just(150)])
            .prop_map(|(k, d)| Op::Call(k, d)),
        4 => (1u64..3_000).prop_map(Op::Advance),
        2 => Just(Op::Cancel),
        2 => Just(Op::Hold),
        1 => Just(Op::Release),
        1 => prop_oneof![
            Just(Op::Reset),
            Just(Op::ForceOpen),
            Just(Op::Disable),
            Just(Op::MetricsOnly),
            Just(Op::HalfOpen),
            (1u64..3_000).prop_map(Op::OpenFor),
        ],
    ]
}

// ===== The reference model =====

#[derive(Debug, Default, Clone, Copy)]
struct Probes {
    issued: u64,
    done: u64,
    failed: u64,
    slow: u64,
}

/// A transition as the listener reports it.
type Logged = (State, State, TransitionReason, Option<Duration>);

#[derive(Debug)]
struct Model {
    cfg: Cfg,
    /// What the breaker's listener reported: the jittered waits are read
    /// from it.
    reported: Arc<Mutex<Vec<Logged>>>,
    now: u64,
    state: State,
    /// Recorded outcomes: (completion time, failed, slow).
    window: VecDeque<(u64, bool, bool)>,
    consecutive: u32,
    open_until: u64,
    trips: u32,
    probes: Probes,
    /// HalfOpen: when it was entered.
    half_open_since: u64,
    /// How many times HalfOpen was entered: the period a probe permit
    /// belongs to.
    period: u64,
    /// Held services: the half-open period of the probe permit each holds.
    held: VecDeque<Option<u64>>,
    not_permitted: u64,
    log: Vec<Logged>,
    /// Jittered waits outside their bounds.
    violations: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Pass,
    Record,
    Probe,
    Reject(Option<Duration>),
}

impl Model {
    fn new(cfg: Cfg, reported: Arc<Mutex<Vec<Logged>>>) -> Self {
        Self {
            cfg,
            reported,
            now: 0,
            state: State::Closed,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            trips: 0,
            probes: Probes::default(),
            half_open_since: 0,
            period: 0,
            held: VecDeque::new(),
            not_permitted: 0,
            log: Vec::new(),
            violations: Vec::new(),
        }
    }

    fn live(&self) -> Vec<(bool, bool)> {
        match self.cfg.window {
            WindowKind::Count(_) => self.window.iter().map(|(_, f, s)| (*f, *s)).collect(),
            WindowKind::Time(n) => {
                let sec = self.now / SEC;
                self.window
                    .iter()
                    .filter(|(t, _, _)| t / SEC + n > sec)
                    .map(|(_, f, s)| (*f, *s))
                    .collect()
            }
        }
    }

    fn totals(&self) -> (u64, u64, u64) {
        let live = self.live();
        (
            live.len() as u64,
            live.iter().filter(|(f, _)| *f).count() as u64,
            live.iter().filter(|(_, s)| *s).count() as u64,
        )
    }

    /// Enters `to`. An Open lasts until `until` if given (set by hand), else
    /// for the configured wait counted from `from` (now, or the half-open
    /// deadline it re-opened at).
    fn enter(&mut self, to: State, reason: TransitionReason, until: Option<u64>) {
        self.enter_from(to, reason, until, self.now);
    }

    fn enter_from(&mut self, to: State, reason: TransitionReason, until: Option<u64>, from: u64) {
        let index = self.log.len();
        let from_state = self.state;
        match to {
            State::Closed | State::MetricsOnly => {
                self.window.clear();
                self.consecutive = 0;
                if to == State::Closed {
                    self.trips = 0;
                }
            }
            State::Open => {
                self.open_until = match until {
                    Some(u) => u,
                    None => {
                        self.trips += 1;
                        let cap = self.cfg.max_wait_ns();
                        let mut wait = self.cfg.wait_ms * MS;
                        for _ in 1..self.trips {
                            wait = (wait * self.cfg.multiplier).min(cap);
                        }
                        let wait = wait.min(cap);
                        from + self.jittered(wait, index, from, reason)
                    }
                };
            }
            State::HalfOpen => {
                self.probes = Probes::default();
                self.half_open_since = self.now;
                self.period += 1;
            }
            State::Disabled | State::ForcedOpen => {}
        }
        let open_for = (to == State::Open)
            .then(|| Duration::from_nanos(self.open_until.saturating_sub(self.now)));
        self.log.push((from_state, to, reason, open_for));
        self.state = to;
    }

    /// The wait of an automatic opening: `wait` exactly without jitter;
    /// with jitter, the wait the breaker reported for this transition (the
    /// `index`-th), checked against `wait × (1 ± jitter)`, never above the
    /// cap (1 ns of slack for the float rounding).
    fn jittered(&mut self, wait: u64, index: usize, from: u64, reason: TransitionReason) -> u64 {
        let Some(percent) = self.cfg.jitter else {
            return wait;
        };
        let reported = self.reported.lock().unwrap().get(index).copied();
        let Some((_, State::Open, r, Some(open_for))) = reported else {
            // The logs disagree; the comparison after the step says how.
            return wait;
        };
        if r != reason {
            return wait;
        }
        // Reported relative to the instant of the transition (now); the wait
        // counts from `from`. A re-opening whose wait had already elapsed at
        // the deadline reports zero: the wait was at most `now - from`.
        let got = self.now + u64::try_from(open_for.as_nanos()).unwrap() - from;
        let low = (wait * (100 - percent) / 100).saturating_sub(1);
        let high = (wait * (100 + percent) / 100 + 1).min(self.cfg.max_wait_ns());
        let possible = if open_for.is_zero() {
            low <= got
        } else {
            (low..=high).contains(&got)
        };
        if !possible {
            self.violations.push(format!(
                "transition {index}: a wait of {got} ns, outside [{low}, {high}] for {wait} ns ± {percent} %"
            ));
        }
        got
    }

    /// `true` if every probe permit is taken and the half-open state has
    /// outlived its maximum wait.
    fn half_open_expired(&self) -> bool {
        self.state == State::HalfOpen
            && self.probes.issued >= u64::from(self.cfg.permits)
            && self.now >= self.half_open_deadline()
    }

    fn half_open_deadline(&self) -> u64 {
        self.half_open_since + self.cfg.max_half_open_ms * MS
    }

    /// The transitions due at this instant (the handle performs them).
    fn observe(&mut self) {
        loop {
            if self.state == State::Open && self.now >= self.open_until {
                self.enter(State::HalfOpen, TransitionReason::WaitElapsed, None);
            } else if self.half_open_expired() {
                // Re-opened as of the deadline: the wait counts from there.
                let deadline = self.half_open_deadline();
                self.enter_from(
                    State::Open,
                    TransitionReason::HalfOpenTimeout,
                    None,
                    deadline,
                );
            } else {
                return;
            }
        }
    }

    /// Gives back a held probe permit of the half-open period `period`.
    fn release(&mut self, period: u64) {
        if period == self.period && self.probes.issued > self.probes.done {
            self.probes.issued -= 1;
        }
    }

    fn admit(&mut self) -> Admission {
        self.observe();
        match self.state {
            State::Closed | State::MetricsOnly => Admission::Record,
            State::Disabled => Admission::Pass,
            State::ForcedOpen => Admission::Reject(None),
            State::Open => {
                Admission::Reject(Some(Duration::from_nanos(self.open_until - self.now)))
            }
            State::HalfOpen => {
                if self.probes.issued < u64::from(self.cfg.permits) {
                    self.probes.issued += 1;
                    Admission::Probe
                } else {
                    Admission::Reject(None)
                }
            }
        }
    }

    fn fails(&self, failed: u64, n: u64) -> bool {
        match self.cfg.failure_threshold {
            Some(t) => failed * 100 >= t * n,
            None => failed >= 1,
        }
    }

    fn slows(&self, slow: u64, n: u64) -> bool {
        self.cfg.slow.is_some_and(|(_, t)| slow * 100 >= t * n)
    }

    fn complete(&mut self, admission: &Admission, kind: Kind, delay_ms: u64) {
        self.now += delay_ms * MS;
        let slow = kind != Kind::Ignore && self.cfg.slow.is_some_and(|(d, _)| delay_ms >= d);
        let failed = kind == Kind::Fail;
        match admission {
            Admission::Probe => {
                if kind == Kind::Ignore {
                    self.probes.issued -= 1;
                    return;
                }
                let p = &mut self.probes;
                p.done += 1;
                p.failed += u64::from(failed);
                p.slow += u64::from(slow);
                let p = *p;
                let n = u64::from(self.cfg.permits);
                let remaining = n - p.done;
                if self.fails(p.failed, n) {
                    self.enter(State::Open, TransitionReason::ProbesFailed, None);
                } else if self.slows(p.slow, n) {
                    self.enter(State::Open, TransitionReason::ProbesSlow, None);
                } else if !self.fails(p.failed + remaining, n) && !self.slows(p.slow + remaining, n)
                {
                    self.enter(State::Closed, TransitionReason::ProbesSucceeded, None);
                }
            }
            Admission::Record => {
                if kind == Kind::Ignore {
                    return;
                }
                self.window.push_back((self.now, failed, slow));
                if let WindowKind::Count(n) = self.cfg.window
                    && self.window.len() > n as usize
                {
                    self.window.pop_front();
                }
                let mut reason = None;
                if let Some(k) = self.cfg.consecutive {
                    if failed {
                        self.consecutive += 1;
                        if self.consecutive >= k {
                            reason = Some(TransitionReason::ConsecutiveFailures);
                        }
                    } else {
                        self.consecutive = 0;
                    }
                }
                let (calls, f, s) = self.totals();
                if reason.is_none() && calls >= self.cfg.effective_minimum() {
                    if self
                        .cfg
                        .failure_threshold
                        .is_some_and(|t| f > 0 && f * 100 >= t * calls)
                    {
                        reason = Some(TransitionReason::FailureRate);
                    } else if self.slows(s, calls) && s > 0 {
                        reason = Some(TransitionReason::SlowCallRate);
                    }
                }
                if let (Some(reason), State::Closed) = (reason, self.state) {
                    self.enter(State::Open, reason, None);
                }
            }
            Admission::Pass | Admission::Reject(_) => {}
        }
    }

    fn force(&mut self, to: State, until: Option<u64>) {
        let reason = if to == State::Closed {
            TransitionReason::Reset
        } else {
            TransitionReason::Manual
        };
        if self.state == to && to != State::Closed && !(to == State::Open && until.is_some()) {
            return;
        }
        self.enter(to, reason, until);
    }
}

// ===== Driving the real breaker =====

type Reply = &'static str;

fn classify(result: &Result<Reply, BoxError>) -> Outcome {
    match result {
        Ok("ignore") => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// What one run exercised.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    /// Openings whose wait was jittered.
    jittered_waits: usize,
    /// Half-open states that outlived their maximum wait.
    half_open_timeouts: usize,
}

fn run(cfg: Cfg, ops: Vec<Op>) -> Result<Coverage, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let log: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let sink = Arc::clone(&log);
        let mut builder = CircuitBreakerLayer::builder("model")
            .minimum_calls(cfg.minimum_calls)
            .wait_in_open(Duration::from_millis(cfg.wait_ms))
            .wait_in_open_multiplier(cfg.multiplier as f64)
            .max_wait_in_open(Duration::from_nanos(cfg.max_wait_ns()))
            .permitted_calls_in_half_open(cfg.permits)
            .max_wait_in_half_open(Duration::from_millis(cfg.max_half_open_ms))
            .wait_in_open_jitter(cfg.jitter.map_or(0.0, |p| p as f64 / 100.0))
            .jitter_seed(cfg.seed)
            .on_event(move |e| {
                if let CircuitBreakerEvent::StateTransition(t) = e {
                    sink.lock()
                        .unwrap()
                        .push((t.from, t.to, t.reason, t.open_for));
                }
            });
        builder = match cfg.window {
            WindowKind::Count(n) => builder.count_window(n),
            WindowKind::Time(s) => builder.time_window(Duration::from_secs(s)),
        };
        builder = match cfg.failure_threshold {
            Some(t) => builder.failure_rate_threshold(t as f64),
            None => builder.trip_on_failure_rate(false),
        };
        if let Some((d, t)) = cfg.slow {
            builder = builder
                .slow_call_duration(Duration::from_millis(d))
                .slow_call_rate_threshold(t as f64);
        }
        if let Some(k) = cfg.consecutive {
            builder = builder.consecutive_failures(k);
        }
        let layer = builder.classifier(classify).build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(tower::service_fn(|(kind, delay): (Kind, u64)| async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            match kind {
                Kind::Ok => Ok("ok"),
                Kind::Ignore => Ok("ignore"),
                Kind::Fail => Err(BoxError::from("failed")),
            }
        }));
        let mut model = Model::new(cfg, Arc::clone(&log));
        let mut held = VecDeque::new();

        // Each step acts on the breaker first, then replays the step on the
        // model (which reads the jittered waits the breaker reported).
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Call(kind, delay) => {
                    let mut s = svc.clone();
                    let result = s.ready().await.unwrap().call((kind, delay)).await;
                    let expected = model.admit();
                    match (&expected, &result) {
                        (Admission::Reject(after), Err(e)) if e.is::<CircuitOpen>() => {
                            prop_assert_eq!(
                                e.downcast_ref::<CircuitOpen>().unwrap().retry_after(),
                                *after,
                                "op {}",
                                i
                            );
                            model.not_permitted += 1;
                        }
                        (Admission::Reject(_), other) => {
                            return Err(TestCaseError::fail(format!(
                                "op {i}: expected a rejection, got {other:?}"
                            )));
                        }
                        (_, Err(e)) if e.is::<CircuitOpen>() => {
                            return Err(TestCaseError::fail(format!(
                                "op {i}: unexpected rejection {e}"
                            )));
                        }
                        (_, result) => {
                            prop_assert_eq!(result.is_err(), kind == Kind::Fail, "op {}", i);
                            model.complete(&expected, kind, delay);
                        }
                    }
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now += ms * MS;
                }
                Op::Cancel => {
                    let mut s = svc.clone();
                    let _ = s.ready().await.unwrap();
                    drop(s);
                    let expected = model.admit();
                    if expected == Admission::Probe {
                        model.probes.issued -= 1;
                    }
                }
                Op::Hold => {
                    let mut s = svc.clone();
                    let _ = s.ready().await.unwrap();
                    held.push_back(s);
                    let expected = model.admit();
                    let period = (expected == Admission::Probe).then_some(model.period);
                    model.held.push_back(period);
                }
                Op::Release => {
                    drop(held.pop_front());
                    if let Some(Some(period)) = model.held.pop_front() {
                        model.release(period);
                    }
                }
                Op::Reset => {
                    handle.reset();
                    model.force(State::Closed, None);
                }
                Op::ForceOpen => {
                    handle.force_open();
                    model.force(State::ForcedOpen, None);
                }
                Op::Disable => {
                    handle.disable();
                    model.force(State::Disabled, None);
                }
                Op::MetricsOnly => {
                    handle.metrics_only();
                    model.force(State::MetricsOnly, None);
                }
                Op::HalfOpen => {
                    handle.half_open();
                    model.force(State::HalfOpen, None);
                }
                Op::OpenFor(ms) => {
                    handle.open_for(Duration::from_millis(ms));
                    let until = model.now + ms * MS;
                    model.force(State::Open, Some(until));
                }
            }

            // Compare everything the handle shows.
            let snap = handle.snapshot();
            model.observe();
            prop_assert!(
                model.violations.is_empty(),
                "op {}: {:?}",
                i,
                model.violations
            );
            let (calls, failed, slow) = model.totals();
            prop_assert_eq!(snap.state, model.state, "op {}: {:?}", i, op);
            prop_assert_eq!(
                (snap.calls, snap.failed_calls, snap.slow_calls),
                (calls, failed, slow),
                "op {}: {:?}",
                i,
                op
            );
            prop_assert_eq!(snap.consecutive_failures, model.consecutive, "op {}", i);
            prop_assert_eq!(snap.not_permitted_calls, model.not_permitted, "op {}", i);
            let next = (model.state == State::Open)
                .then(|| Duration::from_nanos(model.open_until - model.now));
            prop_assert_eq!(snap.next_probe_in, next, "op {}", i);
            match snap.half_open {
                Some(p) => {
                    prop_assert_eq!(model.state, State::HalfOpen);
                    let m = model.probes;
                    prop_assert_eq!(
                        (
                            u64::from(p.in_flight),
                            u64::from(p.completed),
                            u64::from(p.failed),
                            u64::from(p.slow)
                        ),
                        (m.issued - m.done, m.done, m.failed, m.slow),
                        "op {}",
                        i
                    );
                }
                None => prop_assert_ne!(model.state, State::HalfOpen),
            }
            prop_assert_eq!(&*log.lock().unwrap(), &model.log, "op {}: {:?}", i, op);
        }
        let log = log.lock().unwrap();
        let automatic_openings = log
            .iter()
            .filter(|t| t.1 == State::Open && t.2 != TransitionReason::Manual)
            .count();
        Ok(Coverage {
            jittered_waits: if model.cfg.jitter.is_some() {
                automatic_openings
            } else {
                0
            },
            half_open_timeouts: log
                .iter()
                .filter(|t| t.2 == TransitionReason::HalfOpenTimeout)
                .count(),
        })
    })
}

#[test]
fn the_breaker_agrees_with_the_model() {
    let config = ProptestConfig {
        cases: 512,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let total = Mutex::new(Coverage::default());
    let strategy = (cfg(), prop::collection::vec(op(), 1..80));
    let result = runner.run(&strategy, |(cfg, ops)| {
        let covered = run(cfg, ops)?;
        let mut total = total.lock().unwrap();
        total.jittered_waits += covered.jittered_waits;
        total.half_open_timeouts += covered.half_open_timeouts;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
    // The generated settings and steps reach what the model is there for
    // (about 400 jittered waits and 60 half-open timeouts in 512 cases).
    let total = total.into_inner().unwrap();
    assert!(total.jittered_waits >= 50, "{total:?}");
    assert!(total.half_open_timeouts >= 10, "{total:?}");
}
