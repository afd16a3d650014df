//! The breaker's state machine: pure, synchronous, lock-free.
//!
//! No I/O here: time comes in as nanoseconds since the breaker's base instant
//! (a [`Now`]), randomness from a seeded generator, and everything the outside
//! world should hear about (transitions, new rates) goes to an [`Observer`].
//! The service and its future only call into [`Core`].
//!
//! # The state word
//!
//! One `AtomicU64` holds the state (3 bits), a `BUSY` bit, the index of the
//! current window (1 bit), the target of a claimed transition (3 bits) and a
//! generation (56 bits) that every transition increments. `poll_ready` on a
//! closed breaker is one load of this word.
//!
//! A call remembers the word it was admitted under (its *ticket*). Its outcome
//! counts only if the word is unchanged when it completes, so a call admitted
//! before a transition can never be counted against the state after it.
//!
//! # Transitions
//!
//! A transition is claimed by one CAS from the expected word to the same word
//! with `BUSY` set: exactly one caller wins, and only the winner prepares the
//! new state (clears the next window, sets the open deadline, resets the
//! probes) and publishes it with a release store. Its event, trace and metrics
//! therefore fire once. While `BUSY` is set, outcomes are dropped (they belong
//! to the state being left), and admissions follow the old state unless the
//! transition goes to a state that rejects (`Open`, `ForcedOpen`): the claim
//! names its target, so a caller that arrives while a trip is being
//! published is rejected at once, however long the tripping thread takes.
//! The calls that pass after a trip are only those admitted before its claim.
//!
//! # Judging the window
//!
//! Every failure or slow call recorded in `Closed` judges the window's
//! figures, whether or not its own outcome changed them (see `window.rs`: the
//! totals never count fewer failures than the ring holds). So the trip does
//! not depend on which caller's update lands last: a caller stalled after its
//! update (preempted, or held up in a metrics recorder) cannot keep the
//! breaker closed, because the next failure sees the same figures and trips.
//!
//! The claim is a guard ([`Claim`]): preparing the new state cannot fail (the
//! open wait is computed in saturating integer nanoseconds), and should it
//! ever unwind, dropping the guard puts the expected word back, so no path
//! leaves `BUSY` set and nothing (`force`, `reset`) can spin on it forever.
//!
//! The breaker keeps two windows and flips between them each time it enters
//! `Closed` or `MetricsOnly`, clearing the new one *before* publishing it. The
//! old window may still receive the outcome of a call that read the old word
//! just before the flip; it is cleared again before it is next used. A window
//! is therefore never cleared while a current caller writes to it.

use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use tokio::time::Instant;

pub use crate::kind::State;
use crate::settings::Config;
pub(crate) mod window;

use window::{CountWindow, FAILED, Padded, SLOW, TimeWindow, Totals, Window};

// ===== State =====

/// Why the breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Closed → Open: the failure rate reached its threshold.
    FailureRate,
    /// Closed → Open: the slow-call rate reached its threshold.
    SlowCallRate,
    /// Closed → Open: too many failures in a row.
    ConsecutiveFailures,
    /// Open → HalfOpen: the wait in the open state elapsed.
    WaitElapsed,
    /// HalfOpen → Closed: the probes' outcome is good.
    ProbesSucceeded,
    /// HalfOpen → Open: the probes' failure rate reached its threshold.
    ProbesFailed,
    /// HalfOpen → Open: the probes' slow-call rate reached its threshold.
    ProbesSlow,
    /// HalfOpen → Open: the probes did not decide within the maximum wait in
    /// the half-open state.
    HalfOpenTimeout,
    /// Set by hand through the handle.
    Manual,
    /// Reset by hand: back to Closed with an empty window.
    Reset,
}

impl TransitionReason {
    /// A snake_case label for logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::WaitElapsed => "wait_elapsed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::ProbesFailed => "probes_failed",
            Self::ProbesSlow => "probes_slow",
            Self::HalfOpenTimeout => "half_open_timeout",
            Self::Manual => "manual",
            Self::Reset => "reset",
        }
    }
}

impl std::fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ===== The state word =====

const STATE_MASK: u64 = 0b111;

/// The state a word's low bits encode.
const fn state_from_bits(bits: u64) -> State {
    match bits & STATE_MASK {
        0 => State::Closed,
        1 => State::Open,
        2 => State::HalfOpen,
        3 => State::Disabled,
        4 => State::MetricsOnly,
        _ => State::ForcedOpen,
    }
}
const BUSY: u64 = 0b1000;
const WINDOW_BIT: u64 = 0b1_0000;
/// The target state of a claimed transition, set with `BUSY`.
const TARGET_SHIFT: u32 = 5;
const GEN_SHIFT: u32 = 8;

#[inline]
const fn state_of(word: u64) -> State {
    state_from_bits(word)
}

/// `true` if calls admitted under `word` pass and are recorded (Closed or
/// MetricsOnly) and no transition is under way.
#[inline]
pub(crate) const fn records(word: u64) -> bool {
    matches!(state_of(word), State::Closed | State::MetricsOnly) && word & BUSY == 0
}

/// While `BUSY` is set: the state the claimed transition goes to.
#[inline]
const fn target_of(word: u64) -> State {
    state_from_bits(word >> TARGET_SHIFT)
}

#[inline]
const fn window_of(word: u64) -> usize {
    (word & WINDOW_BIT != 0) as usize
}

#[inline]
pub(crate) const fn gen_of(word: u64) -> u64 {
    word >> GEN_SHIFT
}

#[inline]
const fn pack(state: State, generation: u64, window: usize) -> u64 {
    (generation << GEN_SHIFT) | ((window as u64) << 4) | state as u64
}

// ===== The probe word =====
//
// tag (16 bits: the half-open generation) | issued | done | failed | slow
// (12 bits each). `issued` counts permits taken and not given back (probes
// in flight plus probes recorded); `done` counts recorded probes.

const P_BITS: u32 = 12;
const P_MASK: u64 = (1 << P_BITS) - 1;
const P_SLOW: u32 = 0;
const P_FAILED: u32 = P_BITS;
const P_DONE: u32 = 2 * P_BITS;
const P_ISSUED: u32 = 3 * P_BITS;
const P_TAG: u32 = 4 * P_BITS;

#[inline]
const fn probe_tag(generation: u64) -> u64 {
    generation & 0xFFFF
}

/// The figures of the current half-open probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Probes {
    tag: u64,
    /// Permits taken and not given back.
    pub(crate) issued: u64,
    /// Probes recorded.
    pub(crate) done: u64,
    /// Probes that failed.
    pub(crate) failed: u64,
    /// Probes that were slow.
    pub(crate) slow: u64,
}

impl Probes {
    const fn unpack(p: u64) -> Self {
        Self {
            tag: p >> P_TAG,
            issued: (p >> P_ISSUED) & P_MASK,
            done: (p >> P_DONE) & P_MASK,
            failed: (p >> P_FAILED) & P_MASK,
            slow: (p >> P_SLOW) & P_MASK,
        }
    }

    const fn fresh(generation: u64) -> u64 {
        probe_tag(generation) << P_TAG
    }
}

// ===== Time =====

/// The current time, read from the clock at most once and only if asked.
#[derive(Debug)]
pub(crate) struct Now {
    base: Instant,
    nanos: Option<u64>,
}

impl Now {
    /// Reads `tokio::time::Instant::now()` when first asked.
    #[inline]
    pub(crate) const fn lazy(base: Instant) -> Self {
        Self { base, nanos: None }
    }

    /// A fixed time, `nanos` after the base instant.
    #[inline]
    pub(crate) const fn at(base: Instant, nanos: u64) -> Self {
        Self {
            base,
            nanos: Some(nanos),
        }
    }

    /// Nanoseconds since the base instant.
    #[inline]
    pub(crate) fn get(&mut self) -> u64 {
        match self.nanos {
            Some(n) => n,
            None => {
                let n = nanos_since(self.base, Instant::now());
                self.nanos = Some(n);
                n
            }
        }
    }
}

/// Nanoseconds from `base` to `at` (0 if `at` is earlier).
#[inline]
pub(crate) fn nanos_since(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds in `d`, saturating.
#[inline]
pub(crate) fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ===== Observer =====

/// A transition, as the state machine reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Transition {
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: TransitionReason,
    /// The figures that decided it: the window for trips from Closed, the
    /// probes for decisions in HalfOpen, zero otherwise.
    pub(crate) totals: Totals,
    /// For a transition to Open: how long until the next probe.
    pub(crate) open_for: Option<Duration>,
}

/// Hears what the state machine did. Called by the one thread that performed
/// the transition, after the new state is published.
pub(crate) trait Observer {
    /// The breaker changed state.
    fn transition(&self, transition: &Transition);
    /// The current window's rates changed.
    fn rates(&self, totals: &Totals);
}

// ===== Decisions =====

/// What the breaker says to a caller asking to be admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Pass, record nothing (Disabled).
    Pass,
    /// Pass and record the outcome under this ticket (Closed, MetricsOnly).
    Record(u64),
    /// Pass as a half-open probe: a permit is held under this ticket.
    Probe(u64),
    /// Reject.
    Reject {
        /// The state that rejected the call.
        state: State,
        /// Time until the next probe, when known.
        retry_after: Option<Duration>,
    },
}

enum ProbeTry {
    Acquired,
    Full,
    Stale,
}

// ===== Core =====

/// The shared state of one breaker.
#[derive(Debug)]
pub(crate) struct Core<O> {
    /// The state word, alone on its cache line: read by every call.
    word: Padded<AtomicU64>,
    /// Written on transitions and failures only.
    cold: Padded<Cold>,
    /// Calls rejected, ever: written by every rejection, so kept away from
    /// the fields a rejection reads.
    not_permitted: Padded<AtomicU64>,
    windows: [Window; 2],
    config: Config,
    base: Instant,
    observer: O,
}

#[derive(Debug)]
struct Cold {
    /// Open: when the next probe is admitted (nanos since base).
    open_until: AtomicU64,
    /// HalfOpen: when the state was entered (nanos since base).
    half_open_since: AtomicU64,
    /// HalfOpen: the probe word.
    probes: AtomicU64,
    /// Times opened since the breaker was last closed (drives the backoff).
    trips: AtomicU32,
    /// Failures in a row in the current window.
    consecutive: AtomicU32,
    /// Seed-driven generator for jitter (splitmix64).
    rng: AtomicU64,
}

impl<O: Observer> Core<O> {
    /// A breaker in `config.initial_state`, with `base` as time zero.
    pub(crate) fn new(config: Config, observer: O, base: Instant, seed: u64) -> Self {
        let make = || match config.summary.sliding_window {
            crate::SlidingWindow::Count(n) => Window::Count(CountWindow::new(n)),
            crate::SlidingWindow::Time(d) => Window::Time(TimeWindow::new(d.as_secs())),
        };
        let windows = [make(), make()];
        let initial = config.initial_state;
        Self {
            word: Padded(AtomicU64::new(pack(initial, 0, 0))),
            cold: Padded(Cold {
                open_until: AtomicU64::new(0),
                half_open_since: AtomicU64::new(0),
                probes: AtomicU64::new(Probes::fresh(0)),
                trips: AtomicU32::new(0),
                consecutive: AtomicU32::new(0),
                rng: AtomicU64::new(seed),
            }),
            not_permitted: Padded(AtomicU64::new(0)),
            windows,
            config,
            base,
            observer,
        }
    }

    /// The configuration.
    pub(crate) const fn config(&self) -> &Config {
        &self.config
    }

    /// The observer.
    pub(crate) const fn observer(&self) -> &O {
        &self.observer
    }

    /// Time zero.
    pub(crate) const fn base(&self) -> Instant {
        self.base
    }

    /// The state word.
    #[inline]
    pub(crate) fn word(&self) -> u64 {
        self.word.0.load(Acquire)
    }

    /// The state (without performing any due transition).
    #[inline]
    pub(crate) fn state_now(&self) -> State {
        state_of(self.word())
    }

    /// `true` if a call admitted under `ticket` would still be admitted the
    /// same way. A ticket taken while a transition was under way is never
    /// current: its outcome belongs to the state being left.
    #[inline]
    pub(crate) fn is_current(&self, ticket: u64) -> bool {
        ticket & BUSY == 0 && self.word() == ticket
    }

    /// Decides whether a call may pass. Performs the transitions that are due
    /// (Open → HalfOpen when the wait elapsed; HalfOpen → Open when probes
    /// are stuck past the maximum wait). A `Probe` holds a permit that must be
    /// given back with [`release_probe`](Self::release_probe) or consumed
    /// with [`record`](Self::record).
    #[inline]
    pub(crate) fn admit(&self, now: &mut Now) -> Admit {
        loop {
            let word = self.word();
            match state_of(word) {
                State::Closed | State::MetricsOnly | State::Disabled
                    if word & BUSY != 0 && target_of(word).is_open() =>
                {
                    // A trip (or a manual open) is being published: the
                    // caller would be admitted under a state already left.
                    return Admit::Reject {
                        state: target_of(word),
                        retry_after: None,
                    };
                }
                State::Closed | State::MetricsOnly => return Admit::Record(word),
                State::Disabled => return Admit::Pass,
                State::ForcedOpen => {
                    return Admit::Reject {
                        state: State::ForcedOpen,
                        retry_after: None,
                    };
                }
                State::Open => {
                    let until = self.cold.0.open_until.load(Relaxed);
                    let t = now.get();
                    if t < until {
                        return Admit::Reject {
                            state: State::Open,
                            retry_after: Some(Duration::from_nanos(until - t)),
                        };
                    }
                    if word & BUSY != 0 {
                        // Another caller is moving the breaker to HalfOpen.
                        return Admit::Reject {
                            state: State::Open,
                            retry_after: Some(Duration::ZERO),
                        };
                    }
                    self.transition(word, State::HalfOpen, TransitionReason::WaitElapsed, now);
                }
                State::HalfOpen => {
                    if word & BUSY != 0 {
                        return Admit::Reject {
                            state: State::HalfOpen,
                            retry_after: None,
                        };
                    }
                    match self.try_probe(word) {
                        ProbeTry::Acquired => return Admit::Probe(word),
                        ProbeTry::Stale => {}
                        ProbeTry::Full => {
                            if !self.half_open_expired(word, now) {
                                return Admit::Reject {
                                    state: State::HalfOpen,
                                    retry_after: None,
                                };
                            }
                        }
                    }
                }
            }
        }
    }

    /// Re-opens a half-open breaker whose probes are all taken and have not
    /// decided within the maximum wait. Returns `true` if the breaker moved.
    fn half_open_expired(&self, word: u64, now: &mut Now) -> bool {
        let since = self.cold.0.half_open_since.load(Relaxed);
        let deadline = since.saturating_add(nanos_of(self.config.summary.max_wait_in_half_open));
        if now.get() < deadline {
            return false;
        }
        // The breaker re-opened at the deadline, so its wait counts from
        // there: after a long quiet spell the next caller probes at once.
        self.transition_at(
            word,
            State::Open,
            TransitionReason::HalfOpenTimeout,
            now,
            Some(deadline),
        );
        true
    }

    fn try_probe(&self, word: u64) -> ProbeTry {
        let tag = probe_tag(gen_of(word));
        let permits = u64::from(self.config.summary.permitted_calls_in_half_open);
        let probes = &self.cold.0.probes;
        let mut p = probes.load(Acquire);
        loop {
            let figures = Probes::unpack(p);
            if figures.tag != tag {
                return ProbeTry::Stale;
            }
            if figures.issued >= permits {
                return ProbeTry::Full;
            }
            match probes.compare_exchange_weak(p, p + (1 << P_ISSUED), AcqRel, Acquire) {
                Ok(_) => return ProbeTry::Acquired,
                Err(actual) => p = actual,
            }
        }
    }

    /// Gives back the probe permit taken under `ticket` (its call was
    /// cancelled, ignored, or never made). A permit of an older half-open
    /// period is dropped.
    pub(crate) fn release_probe(&self, ticket: u64) {
        let tag = probe_tag(gen_of(ticket));
        let probes = &self.cold.0.probes;
        let mut p = probes.load(Acquire);
        loop {
            let figures = Probes::unpack(p);
            if figures.tag != tag || figures.issued <= figures.done {
                return;
            }
            match probes.compare_exchange_weak(p, p - (1 << P_ISSUED), AcqRel, Acquire) {
                Ok(_) => return,
                Err(actual) => p = actual,
            }
        }
    }

    /// Records the outcome of a call admitted under `ticket` (`probe`: it held
    /// a half-open permit). `failed`/`slow` describe a recorded outcome;
    /// ignored outcomes go to [`release_probe`](Self::release_probe) or
    /// nowhere.
    #[inline]
    pub(crate) fn record(&self, ticket: u64, probe: bool, failed: bool, slow: bool, now: &mut Now) {
        if probe {
            self.record_probe(ticket, failed, slow, now);
        } else {
            self.record_window(ticket, failed, slow, now);
        }
    }

    #[inline]
    fn record_window(&self, ticket: u64, failed: bool, slow: bool, now: &mut Now) {
        if !self.is_current(ticket) {
            // Admitted under an older state, or a transition is under way.
            return;
        }
        let flags = if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let recorded = self.windows[window_of(ticket)].record(flags, || now.get());
        let mut trip = None;
        if let Some(k) = self.config.summary.consecutive_failures {
            let consecutive = &self.cold.0.consecutive;
            if failed {
                if consecutive.fetch_add(1, Relaxed) + 1 >= k {
                    trip = Some((TransitionReason::ConsecutiveFailures, None));
                }
            } else if consecutive.load(Relaxed) != 0 {
                consecutive.store(0, Relaxed);
            }
        }
        if let Some(recorded) = recorded {
            if recorded.publish {
                self.observer.rates(&recorded.totals);
            }
            if trip.is_none() {
                trip = self
                    .config
                    .closed_trip(&recorded.totals)
                    .map(|reason| (reason, Some(recorded.totals)));
            } else {
                trip = trip.map(|(reason, _)| (reason, Some(recorded.totals)));
            }
        }
        if let (Some((reason, totals)), State::Closed) = (trip, state_of(ticket)) {
            let totals =
                totals.unwrap_or_else(|| self.windows[window_of(ticket)].totals(|| now.get()));
            self.transition_with(ticket, State::Open, reason, now, None, totals);
        }
    }

    fn record_probe(&self, ticket: u64, failed: bool, slow: bool, now: &mut Now) {
        let tag = probe_tag(gen_of(ticket));
        let add = (1 << P_DONE) + (u64::from(failed) << P_FAILED) + (u64::from(slow) << P_SLOW);
        let probes = &self.cold.0.probes;
        let mut p = probes.load(Acquire);
        let after = loop {
            if Probes::unpack(p).tag != tag {
                return;
            }
            match probes.compare_exchange_weak(p, p + add, AcqRel, Acquire) {
                Ok(_) => break Probes::unpack(p + add),
                Err(actual) => p = actual,
            }
        };
        if let Some((to, reason)) = self.config.probe_decision(&after) {
            let totals = Totals {
                calls: after.done,
                failed: after.failed,
                slow: after.slow,
            };
            self.transition_with(ticket, to, reason, now, None, totals);
        }
    }

    /// Performs the transitions that are due and returns the state.
    pub(crate) fn state(&self, now: &mut Now) -> State {
        loop {
            let word = self.word();
            let state = state_of(word);
            if word & BUSY != 0 {
                return state;
            }
            match state {
                State::Open if now.get() >= self.cold.0.open_until.load(Relaxed) => {
                    self.transition(word, State::HalfOpen, TransitionReason::WaitElapsed, now);
                }
                State::HalfOpen => {
                    let p = Probes::unpack(self.cold.0.probes.load(Acquire));
                    let full =
                        p.issued >= u64::from(self.config.summary.permitted_calls_in_half_open);
                    if !(full && self.half_open_expired(word, now)) {
                        return state;
                    }
                }
                _ => return state,
            }
        }
    }

    /// Counts a rejected call.
    #[inline]
    pub(crate) fn count_rejection(&self) {
        self.not_permitted.0.fetch_add(1, Relaxed);
    }

    /// Calls rejected, ever.
    pub(crate) fn not_permitted(&self) -> u64 {
        self.not_permitted.0.load(Relaxed)
    }

    /// The figures for a snapshot: the state (after due transitions), the
    /// current window's totals, the probes when half-open, and the time until
    /// the next probe when open.
    pub(crate) fn figures(&self, now: &mut Now) -> Figures {
        // Perform the due transitions first, then read the word once.
        self.state(now);
        let word = self.word();
        let totals = self.windows[window_of(word)].totals(|| now.get());
        let probes = (state_of(word) == State::HalfOpen)
            .then(|| Probes::unpack(self.cold.0.probes.load(Acquire)));
        let next_probe_in = (state_of(word) == State::Open).then(|| {
            Duration::from_nanos(
                self.cold
                    .0
                    .open_until
                    .load(Relaxed)
                    .saturating_sub(now.get()),
            )
        });
        Figures {
            state: state_of(word),
            totals,
            probes,
            next_probe_in,
            consecutive_failures: self.cold.0.consecutive.load(Relaxed),
            not_permitted: self.not_permitted(),
        }
    }

    // ----- transitions -----

    /// Claims the transition from `expected` and performs it. `false` if the
    /// state moved first (someone else did it, or it no longer applies).
    fn transition(
        &self,
        expected: u64,
        to: State,
        reason: TransitionReason,
        now: &mut Now,
    ) -> bool {
        self.transition_at(expected, to, reason, now, None)
    }

    fn transition_at(
        &self,
        expected: u64,
        to: State,
        reason: TransitionReason,
        now: &mut Now,
        opened_at: Option<u64>,
    ) -> bool {
        let totals = match state_of(expected) {
            State::HalfOpen => {
                let p = Probes::unpack(self.cold.0.probes.load(Acquire));
                Totals {
                    calls: p.done,
                    failed: p.failed,
                    slow: p.slow,
                }
            }
            State::Closed | State::MetricsOnly => {
                self.windows[window_of(expected)].totals(|| now.get())
            }
            _ => Totals::default(),
        };
        self.transition_with(
            expected,
            to,
            reason,
            now,
            opened_at.map(Opening::From),
            totals,
        )
    }

    fn transition_with(
        &self,
        expected: u64,
        to: State,
        reason: TransitionReason,
        now: &mut Now,
        opening: Option<Opening>,
        totals: Totals,
    ) -> bool {
        let Some(claim) = self.claim(expected, to) else {
            return false;
        };
        self.enter(claim, to, reason, now, opening, totals);
        true
    }

    /// Claims the transition from `expected` to `to`: `None` if the word
    /// moved, or is already claimed by another transition.
    fn claim(&self, expected: u64, to: State) -> Option<Claim<'_>> {
        let claimed = expected | BUSY | ((to as u64) << TARGET_SHIFT);
        // A word with BUSY set is already claimed by another transition.
        if expected & BUSY != 0
            || self
                .word
                .0
                .compare_exchange(expected, claimed, AcqRel, Relaxed)
                .is_err()
        {
            return None;
        }
        Some(Claim {
            word: &self.word.0,
            expected,
            published: false,
        })
    }

    /// Performs a claimed transition: prepares the new state, publishes it,
    /// tells the observer.
    fn enter(
        &self,
        mut claim: Claim<'_>,
        to: State,
        reason: TransitionReason,
        now: &mut Now,
        opening: Option<Opening>,
        totals: Totals,
    ) {
        let from_word = claim.expected;
        let cold = &self.cold.0;
        let generation = gen_of(from_word).wrapping_add(1);
        let mut window = window_of(from_word);
        let mut open_for = None;
        match to {
            State::Closed | State::MetricsOnly => {
                window ^= 1;
                self.windows[window].clear();
                cold.consecutive.store(0, Relaxed);
                if to == State::Closed {
                    cold.trips.store(0, Relaxed);
                }
            }
            State::Open => {
                let t = now.get();
                let until = match opening {
                    Some(Opening::Until(until)) => until,
                    other => {
                        let trips = cold.trips.fetch_add(1, Relaxed).saturating_add(1);
                        let wait = self.config.open_wait(trips, self.random());
                        let from = match other {
                            Some(Opening::From(at)) => at,
                            _ => t,
                        };
                        from.saturating_add(nanos_of(wait))
                    }
                };
                cold.open_until.store(until, Relaxed);
                open_for = Some(Duration::from_nanos(until.saturating_sub(t)));
            }
            State::HalfOpen => {
                cold.probes.store(Probes::fresh(generation), Relaxed);
                cold.half_open_since.store(now.get(), Relaxed);
            }
            State::Disabled | State::ForcedOpen => {}
        }
        claim.publish(pack(to, generation, window));
        self.observer.transition(&Transition {
            from: state_of(from_word),
            to,
            reason,
            totals,
            open_for,
        });
        if matches!(to, State::Closed | State::MetricsOnly) {
            self.observer.rates(&Totals::default());
        }
    }

    /// Moves the breaker to `to` by hand, whatever its state. With
    /// `open_until` (nanos since base), an `Open` lasts until then instead of
    /// the configured wait. Setting the state it is already in does nothing,
    /// except for `Closed` (a reset: the window is emptied) and `Open` with a
    /// deadline.
    pub(crate) fn force(&self, to: State, open_until: Option<u64>, now: &mut Now) {
        let reason = if to == State::Closed {
            TransitionReason::Reset
        } else {
            TransitionReason::Manual
        };
        loop {
            let word = self.word();
            if word & BUSY != 0 {
                // Another transition is being published: a few stores.
                crate::sync::yield_now();
                continue;
            }
            let current = state_of(word);
            if current == to && to != State::Closed && !(to == State::Open && open_until.is_some())
            {
                return;
            }
            let totals = match current {
                State::Closed | State::MetricsOnly => {
                    self.windows[window_of(word)].totals(|| now.get())
                }
                _ => Totals::default(),
            };
            let opening = open_until.map(Opening::Until);
            if self.transition_with(word, to, reason, now, opening, totals) {
                return;
            }
        }
    }

    fn random(&self) -> f64 {
        // splitmix64: lock-free, and reproducible from the seed.
        let mut z = self
            .cold
            .0
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        #[allow(clippy::cast_precision_loss)] // 53 bits, exactly representable
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
}

/// A claimed transition: the state word holds the expected word with `BUSY`
/// set until [`publish`](Self::publish) stores the new state. Dropped without
/// publishing (a panic while the new state was prepared), it puts the
/// expected word back: the breaker stays in the state it was in, and the
/// claim can be taken again.
#[must_use]
struct Claim<'a> {
    word: &'a AtomicU64,
    expected: u64,
    published: bool,
}

impl Claim<'_> {
    /// Publishes the new state word (release), ending the claim.
    fn publish(&mut self, word: u64) {
        self.word.store(word, Release);
        self.published = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.word.store(self.expected, Release);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Opening {
    /// The wait counts from this instant (nanos since base).
    From(u64),
    /// Open until exactly this instant.
    Until(u64),
}

/// A breaker's figures at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Figures {
    pub(crate) state: State,
    pub(crate) totals: Totals,
    pub(crate) probes: Option<Probes>,
    pub(crate) next_probe_in: Option<Duration>,
    pub(crate) consecutive_failures: u32,
    pub(crate) not_permitted: u64,
}

// ===== Policy =====

const PPM: u64 = 1_000_000;

impl Config {
    /// Whether the window's figures trip a closed breaker, and why.
    #[inline]
    pub(crate) fn closed_trip(&self, t: &Totals) -> Option<TransitionReason> {
        if t.calls < u64::from(self.summary.minimum_calls) || (t.failed == 0 && t.slow == 0) {
            return None;
        }
        if self
            .failure_ppm
            .is_some_and(|ppm| t.failed * PPM >= ppm * t.calls)
        {
            return Some(TransitionReason::FailureRate);
        }
        if self
            .slow_ppm
            .is_some_and(|ppm| t.slow * PPM >= ppm * t.calls)
        {
            return Some(TransitionReason::SlowCallRate);
        }
        None
    }

    /// Whether the probes so far decide the half-open state: Open as soon as
    /// a threshold is certain to be reached over all the permitted probes,
    /// Closed as soon as none can be.
    pub(crate) fn probe_decision(&self, p: &Probes) -> Option<(State, TransitionReason)> {
        let n = u64::from(self.summary.permitted_calls_in_half_open);
        let remaining = n.saturating_sub(p.done);
        let fails = |failed: u64| match self.failure_ppm {
            Some(ppm) => failed * PPM >= ppm * n,
            // No failure rate (consecutive or slow-call mode): a failed probe
            // re-opens.
            None => failed >= 1,
        };
        let slows = |slow: u64| self.slow_ppm.is_some_and(|ppm| slow * PPM >= ppm * n);
        if fails(p.failed) {
            return Some((State::Open, TransitionReason::ProbesFailed));
        }
        if slows(p.slow) {
            return Some((State::Open, TransitionReason::ProbesSlow));
        }
        if !fails(p.failed + remaining) && !slows(p.slow + remaining) {
            return Some((State::Closed, TransitionReason::ProbesSucceeded));
        }
        None
    }

    /// The wait in the open state after the `trips`-th consecutive opening
    /// (1 for the first): grown by the multiplier, capped, then jittered by
    /// `random` (uniform in `[0, 1)`), never above the cap.
    ///
    /// Total for any settings, validated or not: computed in nanoseconds, with
    /// every float converted back by a saturating, NaN-safe cast, so it never
    /// panics (it runs while a transition is claimed).
    pub(crate) fn open_wait(&self, trips: u32, random: f64) -> Duration {
        let s = &self.summary;
        let cap = nanos_of(s.max_wait_in_open);
        let mut wait = nanos_of(s.wait_in_open).min(cap);
        if trips > 1 && s.wait_in_open_multiplier > 1.0 {
            let exp = i32::try_from(trips - 1).unwrap_or(i32::MAX);
            // Infinite or NaN for absurd growth: both fail the comparison.
            let grown = nanos_f64(wait) * s.wait_in_open_multiplier.powi(exp);
            wait = if grown < nanos_f64(cap) {
                nanos_from_f64(grown)
            } else {
                cap
            };
        }
        if s.wait_in_open_jitter > 0.0 {
            let factor = 1.0 + s.wait_in_open_jitter * (2.0 * random - 1.0);
            wait = nanos_from_f64(nanos_f64(wait) * factor);
        }
        Duration::from_nanos(wait.min(cap))
    }
}

/// `nanos` as a float (exact up to 2^53 ns, 104 days; a rounding error of
/// less than a microsecond above).
#[allow(clippy::cast_precision_loss)]
fn nanos_f64(nanos: u64) -> f64 {
    nanos as f64
}

/// A float number of nanoseconds, rounded, as an integer: 0 for NaN and
/// anything not above zero, `u64::MAX` for anything at or above it.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn nanos_from_f64(nanos: f64) -> u64 {
    if nanos.is_nan() || nanos <= 0.0 {
        0
    } else if nanos >= nanos_f64(u64::MAX) {
        u64::MAX
    } else {
        // In (0, 2^64): the cast is exact after rounding.
        nanos.round() as u64
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::SlidingWindow;
    use crate::builder::CircuitBreakerBuilder;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Log {
        transitions: Mutex<Vec<Transition>>,
        rates: Mutex<Vec<Totals>>,
    }

    impl Observer for Log {
        fn transition(&self, t: &Transition) {
            self.transitions.lock().unwrap().push(*t);
        }
        fn rates(&self, totals: &Totals) {
            self.rates.lock().unwrap().push(*totals);
        }
    }

    impl Log {
        fn moves(&self) -> Vec<(State, State, TransitionReason)> {
            self.transitions
                .lock()
                .unwrap()
                .iter()
                .map(|t| (t.from, t.to, t.reason))
                .collect()
        }
    }

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn core(b: CircuitBreakerBuilder) -> Core<Log> {
        let (config, _, _) = b.into_parts().expect("valid config");
        Core::new(config, Log::default(), Instant::now(), 7)
    }

    fn at(c: &Core<Log>, nanos: u64) -> Now {
        Now::at(c.base(), nanos)
    }

    fn call(c: &Core<Log>, t: u64, failed: bool) -> Admit {
        let admit = c.admit(&mut at(c, t));
        match admit {
            Admit::Record(ticket) => c.record(ticket, false, failed, false, &mut at(c, t)),
            Admit::Probe(ticket) => c.record(ticket, true, failed, false, &mut at(c, t)),
            _ => {}
        }
        admit
    }

    fn small() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new("t")
            .count_window(4)
            .minimum_calls(4)
            .failure_rate_threshold(50.0)
            .wait_in_open(Duration::from_secs(10))
            .permitted_calls_in_half_open(2)
    }

    #[test]
    fn closed_open_half_open_closed() {
        let c = core(small());
        assert!(matches!(call(&c, 0, true), Admit::Record(_)));
        call(&c, 0, false);
        call(&c, 0, false);
        assert_eq!(c.state_now(), State::Closed, "below the minimum");
        call(&c, 0, true); // 2 of 4 failed: 50 %, trips at >=
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(
            c.admit(&mut at(&c, 4 * SEC)),
            Admit::Reject {
                state: State::Open,
                retry_after: Some(Duration::from_secs(6))
            }
        );
        // The wait elapses: the next caller is the first probe.
        assert!(matches!(call(&c, 10 * SEC, false), Admit::Probe(_)));
        assert_eq!(c.state_now(), State::HalfOpen);
        call(&c, 10 * SEC, false);
        assert_eq!(c.state_now(), State::Closed);
        assert_eq!(
            c.log().moves(),
            vec![
                (State::Closed, State::Open, TransitionReason::FailureRate),
                (State::Open, State::HalfOpen, TransitionReason::WaitElapsed),
                (
                    State::HalfOpen,
                    State::Closed,
                    TransitionReason::ProbesSucceeded
                ),
            ]
        );
        // Closed again with an empty window.
        assert_eq!(c.figures(&mut at(&c, 10 * SEC)).totals, Totals::default());
    }

    impl Core<Log> {
        fn log(&self) -> &Log {
            &self.observer
        }
    }

    #[test]
    fn half_open_failure_reopens_and_the_wait_grows() {
        let c = core(
            small()
                .wait_in_open_multiplier(2.0)
                .max_wait_in_open(Duration::from_secs(25)),
        );
        for _ in 0..4 {
            call(&c, 0, true);
        }
        assert_eq!(c.state_now(), State::Open);
        // Probe fails: 1 of 2 = 50 % is certain, re-open for 20 s.
        assert!(matches!(call(&c, 10 * SEC, true), Admit::Probe(_)));
        assert_eq!(c.state_now(), State::Open);
        let t = c.log().transitions.lock().unwrap().last().copied().unwrap();
        assert_eq!(t.reason, TransitionReason::ProbesFailed);
        assert_eq!(t.open_for, Some(Duration::from_secs(20)));
        assert!(matches!(
            c.admit(&mut at(&c, 29 * SEC)),
            Admit::Reject { .. }
        ));
        // Third opening: 40 s, capped at 25 s.
        assert!(matches!(call(&c, 30 * SEC, true), Admit::Probe(_)));
        let t = c.log().transitions.lock().unwrap().last().copied().unwrap();
        assert_eq!(t.open_for, Some(Duration::from_secs(25)));
        // Closing resets the growth.
        call(&c, 55 * SEC, false);
        call(&c, 55 * SEC, false);
        assert_eq!(c.state_now(), State::Closed);
        for _ in 0..4 {
            call(&c, 56 * SEC, true);
        }
        let t = c.log().transitions.lock().unwrap().last().copied().unwrap();
        assert_eq!(
            (t.to, t.open_for),
            (State::Open, Some(Duration::from_secs(10)))
        );
    }

    #[test]
    fn probes_are_exactly_n_and_come_back() {
        let c = core(small().permitted_calls_in_half_open(3));
        c.force(State::HalfOpen, None, &mut at(&c, 0));
        let tickets: Vec<Admit> = (0..5).map(|_| c.admit(&mut at(&c, 0))).collect();
        let probes: Vec<u64> = tickets
            .iter()
            .filter_map(|a| match a {
                Admit::Probe(t) => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!(probes.len(), 3);
        assert_eq!(
            tickets[3],
            Admit::Reject {
                state: State::HalfOpen,
                retry_after: None
            }
        );
        // A cancelled probe gives its permit back.
        c.release_probe(probes[0]);
        assert!(matches!(c.admit(&mut at(&c, 0)), Admit::Probe(_)));
        assert!(matches!(c.admit(&mut at(&c, 0)), Admit::Reject { .. }));
        // A stale ticket (older half-open period) releases nothing.
        let stale = probes[1];
        c.force(State::Open, Some(0), &mut at(&c, 0));
        assert!(matches!(c.admit(&mut at(&c, 0)), Admit::Probe(_)));
        c.release_probe(stale);
        c.release_probe(stale);
        let p = c.figures(&mut at(&c, 0)).probes.unwrap();
        assert_eq!(p.issued, 1);
    }

    #[test]
    fn half_open_never_stuck() {
        let c = core(small().max_wait_in_half_open(Duration::from_secs(5)));
        c.force(State::HalfOpen, None, &mut at(&c, 0));
        let a = c.admit(&mut at(&c, 0));
        let b = c.admit(&mut at(&c, 0));
        assert!(matches!((a, b), (Admit::Probe(_), Admit::Probe(_))));
        // Both probes hang. Before the max wait: rejected.
        assert!(matches!(
            c.admit(&mut at(&c, 4 * SEC)),
            Admit::Reject { .. }
        ));
        // After it: re-opened at the deadline (5 s) for 10 s.
        assert_eq!(c.state(&mut at(&c, 5 * SEC)), State::Open);
        assert_eq!(
            c.admit(&mut at(&c, 6 * SEC)),
            Admit::Reject {
                state: State::Open,
                retry_after: Some(Duration::from_secs(9))
            }
        );
        // The hung probes finally complete: they belong to the old period.
        if let Admit::Probe(t) = a {
            c.record(t, true, false, false, &mut at(&c, 7 * SEC));
        }
        assert_eq!(c.state_now(), State::Open);
        assert!(matches!(c.admit(&mut at(&c, 15 * SEC)), Admit::Probe(_)));
    }

    #[test]
    fn idle_half_open_expiry_admits_the_next_caller() {
        let c = core(small().max_wait_in_half_open(Duration::from_secs(5)));
        c.force(State::HalfOpen, None, &mut at(&c, 0));
        let _hung = (c.admit(&mut at(&c, 0)), c.admit(&mut at(&c, 0)));
        // Long after deadline + wait, a caller re-opens and half-opens at once.
        assert!(matches!(c.admit(&mut at(&c, 100 * SEC)), Admit::Probe(_)));
        assert_eq!(
            &c.log().moves()[1..],
            &[
                (
                    State::HalfOpen,
                    State::Open,
                    TransitionReason::HalfOpenTimeout
                ),
                (State::Open, State::HalfOpen, TransitionReason::WaitElapsed),
            ]
        );
    }

    #[test]
    fn consecutive_failures_trip_without_minimum() {
        let c = core(
            small()
                .count_window(100)
                .minimum_calls(100)
                .consecutive_failures(3),
        );
        call(&c, 0, true);
        call(&c, 0, true);
        call(&c, 0, false);
        call(&c, 0, true);
        call(&c, 0, true);
        assert_eq!(c.state_now(), State::Closed);
        call(&c, 0, true);
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(c.log().moves()[0].2, TransitionReason::ConsecutiveFailures);
    }

    #[test]
    fn consecutive_only_mode_reopens_on_a_failed_probe() {
        let c = core(
            small()
                .trip_on_failure_rate(false)
                .consecutive_failures(2)
                .permitted_calls_in_half_open(3),
        );
        for _ in 0..10 {
            call(&c, 0, false);
            call(&c, 0, true);
        }
        assert_eq!(c.state_now(), State::Closed, "50 % but never 2 in a row");
        call(&c, 0, true);
        assert_eq!(c.state_now(), State::Open);
        call(&c, 10 * SEC, false);
        call(&c, 10 * SEC, true);
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(
            c.log().moves().last().unwrap().2,
            TransitionReason::ProbesFailed
        );
    }

    #[test]
    fn slow_calls_trip() {
        let c = core(
            small()
                .slow_call_duration(Duration::from_millis(100))
                .slow_call_rate_threshold(75.0),
        );
        for slow in [true, true, false, true] {
            let Admit::Record(t) = c.admit(&mut at(&c, 0)) else {
                panic!()
            };
            c.record(t, false, false, slow, &mut at(&c, 0));
        }
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(c.log().moves()[0].2, TransitionReason::SlowCallRate);
    }

    #[test]
    fn stale_outcomes_are_dropped() {
        let c = core(small());
        let Admit::Record(old) = c.admit(&mut at(&c, 0)) else {
            panic!()
        };
        c.force(State::Closed, None, &mut at(&c, 0)); // reset: new generation
        for _ in 0..4 {
            c.record(old, false, true, false, &mut at(&c, 0));
        }
        assert_eq!(c.state_now(), State::Closed);
        assert_eq!(c.figures(&mut at(&c, 0)).totals, Totals::default());
    }

    #[test]
    fn outcomes_admitted_during_a_transition_are_dropped() {
        let c = core(small().count_window(2));
        // A transition is under way (claimed, not yet published).
        c.word.0.fetch_or(BUSY, AcqRel);
        let Admit::Record(ticket) = c.admit(&mut at(&c, 0)) else {
            panic!("closed admits")
        };
        assert!(!c.is_current(ticket));
        for _ in 0..4 {
            c.record(ticket, false, true, false, &mut at(&c, 0));
        }
        // Nothing recorded, and no second transition claimed on top of the
        // first.
        assert_eq!(c.windows[0].totals(|| 0), Totals::default());
        assert!(c.log().moves().is_empty());
        assert_eq!(c.word() & BUSY, BUSY);
    }

    #[test]
    fn callers_arriving_while_a_trip_is_claimed_are_rejected() {
        let c = core(small().count_window(2));
        let word = c.word();
        // A trip is claimed and not yet published (its thread is preempted).
        let claim = c.claim(word, State::Open).expect("an unclaimed word");
        assert_eq!(c.state_now(), State::Closed);
        for _ in 0..1_000 {
            assert_eq!(
                c.admit(&mut at(&c, 0)),
                Admit::Reject {
                    state: State::Open,
                    retry_after: None
                },
                "admitted under a state already left"
            );
        }
        drop(claim);
        assert_eq!(c.admit(&mut at(&c, 0)), Admit::Record(word));

        // A transition that does not reject (a reset) admits as before, and
        // drops the outcomes.
        let claim = c.claim(word, State::Closed).expect("an unclaimed word");
        let Admit::Record(ticket) = c.admit(&mut at(&c, 0)) else {
            panic!("closed admits during a reset")
        };
        assert!(!c.is_current(ticket));
        drop(claim);

        // A manual open from Disabled rejects at once too.
        c.force(State::Disabled, None, &mut at(&c, 0));
        let word = c.word();
        let claim = c.claim(word, State::ForcedOpen).expect("an unclaimed word");
        assert_eq!(
            c.admit(&mut at(&c, 0)),
            Admit::Reject {
                state: State::ForcedOpen,
                retry_after: None
            }
        );
        drop(claim);
        assert_eq!(c.admit(&mut at(&c, 0)), Admit::Pass);
    }

    #[test]
    fn every_failure_judges_the_window() {
        // 100 %: only a window of failures trips. A failure replacing a
        // failure changes nothing, but is judged all the same, so a window
        // whose figures reached the threshold without tripping (its deciding
        // caller stalled) trips on the next failure.
        let c = core(
            small()
                .count_window(3)
                .minimum_calls(3)
                .failure_rate_threshold(100.0),
        );
        for _ in 0..3 {
            call(&c, 0, false);
        }
        let ticket = c.word();
        // The deciding caller's update, without its decision.
        for _ in 0..3 {
            c.windows[window_of(ticket)].record(FAILED, || 0);
        }
        assert_eq!(c.state_now(), State::Closed);
        c.record(ticket, false, true, false, &mut at(&c, 0));
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(
            c.log().moves(),
            vec![(State::Closed, State::Open, TransitionReason::FailureRate)]
        );
    }

    #[test]
    fn manual_states() {
        let c = core(small());
        c.force(State::Disabled, None, &mut at(&c, 0));
        for _ in 0..10 {
            assert_eq!(call(&c, 0, true), Admit::Pass);
        }
        c.force(State::MetricsOnly, None, &mut at(&c, 0));
        for _ in 0..10 {
            assert!(matches!(call(&c, 0, true), Admit::Record(_)));
        }
        let f = c.figures(&mut at(&c, 0));
        assert_eq!(
            (f.state, f.totals.calls, f.totals.failed),
            (State::MetricsOnly, 4, 4)
        );
        c.force(State::ForcedOpen, None, &mut at(&c, 0));
        assert_eq!(
            c.admit(&mut at(&c, 1_000 * SEC)),
            Admit::Reject {
                state: State::ForcedOpen,
                retry_after: None
            }
        );
        c.force(State::ForcedOpen, None, &mut at(&c, 0)); // no-op
        c.force(State::Closed, None, &mut at(&c, 0));
        assert_eq!(c.figures(&mut at(&c, 0)).totals, Totals::default());
        assert_eq!(
            c.log().moves(),
            vec![
                (State::Closed, State::Disabled, TransitionReason::Manual),
                (
                    State::Disabled,
                    State::MetricsOnly,
                    TransitionReason::Manual
                ),
                (
                    State::MetricsOnly,
                    State::ForcedOpen,
                    TransitionReason::Manual
                ),
                (State::ForcedOpen, State::Closed, TransitionReason::Reset),
            ]
        );
    }

    #[test]
    fn open_until_a_deadline() {
        let c = core(small());
        c.force(State::Open, Some(3 * SEC), &mut at(&c, SEC));
        assert_eq!(
            c.admit(&mut at(&c, SEC)),
            Admit::Reject {
                state: State::Open,
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(c.state(&mut at(&c, 3 * SEC)), State::HalfOpen);
    }

    #[test]
    fn time_window_trips_on_rate() {
        let c = core(
            small()
                .time_window(Duration::from_secs(10))
                .minimum_calls(4),
        );
        call(&c, 0, true);
        call(&c, 0, true);
        call(&c, 0, false);
        // The two failures leave the window at 10 s.
        call(&c, 10 * SEC, false);
        call(&c, 10 * SEC, false);
        assert_eq!(c.state_now(), State::Closed);
        call(&c, 11 * SEC, true);
        assert_eq!(c.state_now(), State::Closed, "3 calls: below the minimum");
        call(&c, 11 * SEC, true);
        assert_eq!(c.state_now(), State::Open, "2 of 4 failed");
    }

    #[test]
    fn probe_decisions_are_early_and_exact() {
        let (config, _, _) = small()
            .permitted_calls_in_half_open(10)
            .into_parts()
            .unwrap();
        let p = |done, failed| Probes {
            tag: 0,
            issued: done,
            done,
            failed,
            slow: 0,
        };
        assert_eq!(config.probe_decision(&p(4, 4)), None);
        assert_eq!(
            config.probe_decision(&p(5, 5)),
            Some((State::Open, TransitionReason::ProbesFailed))
        );
        assert_eq!(config.probe_decision(&p(5, 0)), None);
        assert_eq!(
            config.probe_decision(&p(6, 0)),
            Some((State::Closed, TransitionReason::ProbesSucceeded))
        );
        assert_eq!(config.probe_decision(&p(9, 4)), None);
        assert_eq!(
            config.probe_decision(&p(10, 4)),
            Some((State::Closed, TransitionReason::ProbesSucceeded))
        );
    }

    #[test]
    fn open_wait_growth_and_jitter() {
        let (config, _, _) = small()
            .wait_in_open(Duration::from_secs(1))
            .wait_in_open_multiplier(3.0)
            .max_wait_in_open(Duration::from_secs(20))
            .into_parts()
            .unwrap();
        let w = |k| config.open_wait(k, 0.5);
        assert_eq!(
            [w(1), w(2), w(3), w(4), w(u32::MAX)],
            [1, 3, 9, 20, 20].map(Duration::from_secs)
        );
        let (config, _, _) = small()
            .wait_in_open(Duration::from_secs(10))
            .wait_in_open_jitter(0.2)
            .into_parts()
            .unwrap();
        assert_eq!(config.open_wait(1, 0.0), Duration::from_secs(8));
        assert_eq!(config.open_wait(1, 0.5), Duration::from_secs(10));
        assert!(config.open_wait(1, 0.999_999) <= Duration::from_secs(12));
        // Never above the cap (10 × wait by default).
        let (config, _, _) = small()
            .wait_in_open(Duration::from_secs(10))
            .wait_in_open_multiplier(2.0)
            .wait_in_open_jitter(1.0)
            .into_parts()
            .unwrap();
        assert_eq!(config.summary.max_wait_in_open, Duration::from_secs(100));
        for k in 1..20 {
            assert!(config.open_wait(k, 0.999) <= Duration::from_secs(100));
        }
    }

    #[test]
    fn random_is_uniform_enough_and_seeded() {
        let c = core(small());
        let xs: Vec<f64> = (0..10_000).map(|_| c.random()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        let d = core(small());
        assert_ne!(c.random().to_bits(), d.random().to_bits());
        let e = core(small());
        let f = core(small());
        assert_eq!(e.random().to_bits(), f.random().to_bits(), "same seed");
    }

    #[test]
    fn exactly_one_thread_performs_each_transition() {
        for _ in 0..50 {
            let c = core(small().count_window(10).minimum_calls(10));
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..100 {
                            call(&c, 0, true);
                        }
                    });
                }
            });
            assert_eq!(
                c.log().moves(),
                vec![(State::Closed, State::Open, TransitionReason::FailureRate)]
            );
        }
    }

    // ----- extreme settings -----

    use crate::settings::MAX_DURATION;
    use proptest::prelude::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// Trips a closed breaker with a count window of 4 (four failures).
    fn trip(c: &Core<Log>, t: u64) {
        for _ in 0..4 {
            call(c, t, true);
        }
        assert_eq!(c.state_now(), State::Open);
    }

    /// When the open breaker admits its next probe (nanos since base).
    fn next_probe_at(c: &Core<Log>, t: u64) -> u64 {
        let f = c.figures(&mut at(c, t));
        assert_eq!(f.state, State::Open);
        t.saturating_add(nanos_of(f.next_probe_in.expect("open: a next probe")))
    }

    /// The largest settings the builder accepts, with full jitter.
    fn largest() -> CircuitBreakerBuilder {
        small()
            .slow_call_duration(MAX_DURATION)
            .wait_in_open(MAX_DURATION)
            .wait_in_open_multiplier(f64::MAX)
            .max_wait_in_open(MAX_DURATION)
            .wait_in_open_jitter(1.0)
            .max_wait_in_half_open(MAX_DURATION)
    }

    #[test]
    fn largest_accepted_settings_trip_wait_and_recover() {
        let year = nanos_of(MAX_DURATION);
        let c = core(largest());
        trip(&c, 0);
        // Probes fail and re-open, again and again: the wait grows by
        // f64::MAX (infinite growth), is capped at a year and jittered.
        let mut t = 0;
        for _ in 0..20 {
            let probe_at = next_probe_at(&c, t);
            assert!(probe_at - t <= year, "a wait above the cap");
            t = probe_at;
            assert!(matches!(call(&c, t, true), Admit::Probe(_)));
            assert_eq!(c.state_now(), State::Open);
        }
        // Hung probes: after a year half-open the breaker re-opens.
        let t = next_probe_at(&c, t);
        let hung = (c.admit(&mut at(&c, t)), c.admit(&mut at(&c, t)));
        assert!(matches!(hung, (Admit::Probe(_), Admit::Probe(_))));
        assert_eq!(c.state(&mut at(&c, t + year - 1)), State::HalfOpen);
        assert_eq!(c.state(&mut at(&c, t + year)), State::Open);
        assert_eq!(
            c.log().moves().last().unwrap().2,
            TransitionReason::HalfOpenTimeout
        );
        // Then successful probes close it, and the breaker works as before.
        let t = next_probe_at(&c, t + year);
        call(&c, t, false);
        call(&c, t, false);
        assert_eq!(c.state_now(), State::Closed);
        trip(&c, t);
        c.force(State::Closed, None, &mut at(&c, t));
        assert_eq!(c.state_now(), State::Closed);
        assert_eq!(c.word() & BUSY, 0);
    }

    #[test]
    fn unvalidated_extreme_settings_neither_panic_nor_wedge() {
        // Settings the builder refuses, forced into the state machine: the
        // transition path must still never panic, nor leave its claim.
        let (mut config, _, _) = small().into_parts().unwrap();
        config.summary.wait_in_open = Duration::MAX;
        config.summary.max_wait_in_open = Duration::MAX;
        config.summary.wait_in_open_multiplier = 2.0;
        config.summary.wait_in_open_jitter = 0.1;
        config.summary.max_wait_in_half_open = Duration::MAX;
        let c = Core::new(config, Log::default(), Instant::now(), 7);
        for round in 0..32 {
            let tripped = catch_unwind(AssertUnwindSafe(|| trip(&c, 0)));
            assert!(tripped.is_ok(), "round {round}: tripping panicked");
            assert_eq!(c.word() & BUSY, 0, "round {round}: claim left behind");
            let f = c.figures(&mut at(&c, 0));
            assert_eq!(f.state, State::Open);
            c.force(State::Closed, None, &mut at(&c, 0));
            assert_eq!(c.state_now(), State::Closed);
        }
    }

    #[test]
    fn an_unwinding_transition_gives_its_claim_back() {
        let c = core(small());
        let word = c.word();
        let claim = c.claim(word, State::ForcedOpen).expect("an unclaimed word");
        assert_eq!(c.word() & !(STATE_MASK << TARGET_SHIFT), word | BUSY);
        assert!(c.claim(word, State::Open).is_none(), "claimed twice");
        // Something panics while the new state is prepared.
        let result = catch_unwind(AssertUnwindSafe(move || {
            let _claim = claim;
            panic!("preparing the new state failed");
        }));
        assert!(result.is_err());
        // The breaker is where it was, and the next transition goes through.
        assert_eq!(c.word(), word);
        c.force(State::ForcedOpen, None, &mut at(&c, 0));
        assert_eq!(c.state_now(), State::ForcedOpen);
        c.force(State::Closed, None, &mut at(&c, 0));
        assert_eq!(c.state_now(), State::Closed);
    }

    proptest! {
        /// `open_wait` is total: for any settings, validated or not, any trip
        /// count and any sample, it returns a wait no longer than the cap.
        #[test]
        fn open_wait_never_panics(
            wait in 0u64..=u64::MAX,
            cap in 0u64..=u64::MAX,
            multiplier in prop_oneof![
                1.0..=f64::MAX,
                Just(f64::INFINITY),
                Just(f64::NAN),
                Just(1.0 + f64::EPSILON),
            ],
            jitter in prop_oneof![0.0..=1.0f64, Just(1.0), Just(f64::NAN), -1.0..=2.0f64],
            trips in 0u32..=u32::MAX,
            random in prop_oneof![0.0..1.0f64, Just(0.0), Just(1.0 - f64::EPSILON)],
        ) {
            let (mut config, _, _) = small().into_parts().unwrap();
            config.summary.wait_in_open = Duration::from_nanos(wait);
            config.summary.max_wait_in_open = Duration::from_nanos(cap);
            config.summary.wait_in_open_multiplier = multiplier;
            config.summary.wait_in_open_jitter = jitter;
            let got = config.open_wait(trips, random);
            prop_assert!(got <= Duration::from_nanos(cap));
            // Without growth or jitter, the configured wait under the cap.
            if trips <= 1 && jitter == 0.0 {
                prop_assert_eq!(got, Duration::from_nanos(wait.min(cap)));
            }
        }

        /// Any settings the builder accepts: the breaker trips, waits, fails
        /// and passes probes without panicking, never waits past the cap,
        /// and never leaves a transition claimed.
        #[test]
        fn accepted_open_waits_never_panic(
            wait in 1u64..=nanos_of(MAX_DURATION),
            cap_extra in 0u64..=nanos_of(MAX_DURATION),
            multiplier in prop_oneof![1.0..=10.0f64, 1.0..=f64::MAX, Just(f64::MAX)],
            jitter in prop_oneof![0.0..=1.0f64, Just(0.0), Just(1.0)],
            seed in 0u64..=u64::MAX,
            probes in proptest::collection::vec(any::<bool>(), 1..24),
        ) {
            let cap = wait.saturating_add(cap_extra).min(nanos_of(MAX_DURATION));
            let (config, _, _) = small()
                .wait_in_open(Duration::from_nanos(wait))
                .wait_in_open_multiplier(multiplier)
                .max_wait_in_open(Duration::from_nanos(cap))
                .wait_in_open_jitter(jitter)
                .into_parts()
                .unwrap();
            let c = Core::new(config, Log::default(), Instant::now(), seed);
            trip(&c, 0);
            let mut t = 0;
            for failed in probes {
                if c.state_now() == State::Closed {
                    trip(&c, t);
                }
                let probe_at = next_probe_at(&c, t);
                prop_assert!(probe_at - t <= cap);
                t = probe_at;
                prop_assert!(matches!(call(&c, t, failed), Admit::Probe(_)));
                if !failed {
                    // The second probe decides: closed.
                    call(&c, t, false);
                    prop_assert_eq!(c.state_now(), State::Closed);
                }
                prop_assert_eq!(c.word() & BUSY, 0);
            }
        }
    }

    #[test]
    fn word_packing_round_trips() {
        for state in State::ALL {
            for generation in [0, 1, (1 << (64 - GEN_SHIFT)) - 1] {
                for window in [0, 1] {
                    let w = pack(state, generation, window);
                    assert_eq!(
                        (state_of(w), gen_of(w), window_of(w)),
                        (state, generation, window)
                    );
                    assert_eq!(w & BUSY, 0);
                    for to in State::ALL {
                        let claimed = w | BUSY | ((to as u64) << TARGET_SHIFT);
                        assert_eq!(
                            (state_of(claimed), gen_of(claimed), window_of(claimed)),
                            (state, generation, window)
                        );
                        assert_eq!(target_of(claimed), to);
                    }
                }
            }
            assert_eq!(State::ALL[state.code()], state);
        }
        let _ = SlidingWindow::Count(1);
    }
}
