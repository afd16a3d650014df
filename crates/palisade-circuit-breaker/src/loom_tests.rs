//! Model checks of the lock-free state machine and windows: every
//! interleaving of a few threads (bounded by `LOOM_MAX_PREEMPTIONS`).
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p palisade-circuit-breaker --lib --release loom
//! ```

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use tokio::time::Instant;

use crate::builder::CircuitBreakerBuilder;
use crate::state::window::{CountWindow, FAILED, TimeWindow, Totals, Window};
use crate::state::{Admit, Core, Now, Observer, State, Transition, gen_of};

#[derive(Debug, Default)]
struct Counts {
    transitions: AtomicUsize,
    to_open: AtomicUsize,
    to_closed: AtomicUsize,
}

impl Observer for Counts {
    fn transition(&self, t: &Transition) {
        self.transitions.fetch_add(1, Ordering::SeqCst);
        match t.to {
            State::Open => self.to_open.fetch_add(1, Ordering::SeqCst),
            State::Closed => self.to_closed.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
    fn rates(&self, _: &Totals) {}
}

fn core(builder: CircuitBreakerBuilder) -> Arc<Core<Counts>> {
    let (config, _, _) = builder.into_parts().expect("valid");
    Arc::new(Core::new(config, Counts::default(), Instant::now(), 1))
}

/// Every transition increments the generation once: a generation that
/// differs from the number of transitions means two callers claimed one.
fn assert_one_claim_per_transition(core: &Core<Counts>) {
    let transitions = core.observer().transitions.load(Ordering::SeqCst) as u64;
    assert_eq!(
        gen_of(core.word()),
        transitions,
        "a transition was claimed twice"
    );
}

fn now(core: &Core<Counts>) -> Now {
    Now::at(core.base(), 0)
}

/// One call: admit, then record its outcome.
fn call(core: &Core<Counts>, failed: bool) -> Admit {
    let admit = core.admit(&mut now(core));
    match admit {
        Admit::Record(t) => core.record(t, false, failed, false, &mut now(core)),
        Admit::Probe(t) => core.record(t, true, failed, false, &mut now(core)),
        Admit::Pass | Admit::Reject { .. } => {}
    }
    admit
}

#[test]
fn loom_concurrent_failures_trip_exactly_once() {
    loom::model(|| {
        let c = core(
            CircuitBreakerBuilder::new("l")
                .count_window(2)
                .minimum_calls(2),
        );
        let other = Arc::clone(&c);
        let t = thread::spawn(move || {
            call(&other, true);
        });
        call(&c, true);
        t.join().unwrap();
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(c.observer().transitions.load(Ordering::SeqCst), 1);
        assert_one_claim_per_transition(&c);
    });
}

#[test]
fn loom_outcomes_racing_a_reset_never_claim_twice() {
    loom::model(|| {
        let c = core(
            CircuitBreakerBuilder::new("l")
                .count_window(1)
                .minimum_calls(1),
        );
        let other = Arc::clone(&c);
        let t = thread::spawn(move || {
            call(&other, true);
        });
        c.force(State::Closed, None, &mut now(&c));
        t.join().unwrap();
        let counts = c.observer();
        // The reset, and at most one trip; the final state is the last one
        // entered.
        let n = counts.transitions.load(Ordering::SeqCst);
        let opened = counts.to_open.load(Ordering::SeqCst);
        assert_eq!(n, 1 + opened);
        assert!(opened <= 1);
        let expected = if c.state_now() == State::Open { 1 } else { 0 };
        // Open only if the trip came after the reset.
        assert!(opened >= expected);
        assert_one_claim_per_transition(&c);
    });
}

#[test]
fn loom_calls_during_a_trip_never_claim_it_again() {
    loom::model(|| {
        let c = core(
            CircuitBreakerBuilder::new("l")
                .count_window(1)
                .minimum_calls(1),
        );
        let other = Arc::clone(&c);
        let t = thread::spawn(move || {
            call(&other, true);
        });
        call(&c, true);
        t.join().unwrap();
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(c.observer().to_open.load(Ordering::SeqCst), 1);
        assert_one_claim_per_transition(&c);
    });
}

#[test]
fn loom_half_open_admits_one_probe_per_permit() {
    loom::model(|| {
        let c = core(
            CircuitBreakerBuilder::new("l")
                .count_window(2)
                .permitted_calls_in_half_open(1),
        );
        c.force(State::HalfOpen, None, &mut now(&c));
        let other = Arc::clone(&c);
        let t = thread::spawn(move || matches!(other.admit(&mut now(&other)), Admit::Probe(_)));
        let here = matches!(c.admit(&mut now(&c)), Admit::Probe(_));
        let there = t.join().unwrap();
        assert!(here ^ there, "exactly one of two callers probes");
        assert_one_claim_per_transition(&c);
    });
}

#[test]
fn loom_released_permits_come_back() {
    loom::model(|| {
        let c = core(
            CircuitBreakerBuilder::new("l")
                .count_window(2)
                .permitted_calls_in_half_open(1),
        );
        c.force(State::HalfOpen, None, &mut now(&c));
        let other = Arc::clone(&c);
        let t = thread::spawn(move || {
            if let Admit::Probe(ticket) = other.admit(&mut now(&other)) {
                other.release_probe(ticket);
            }
        });
        let mine = c.admit(&mut now(&c));
        t.join().unwrap();
        if let Admit::Probe(ticket) = mine {
            // My probe succeeds: closed.
            c.record(ticket, true, false, false, &mut now(&c));
            assert_eq!(c.state_now(), State::Closed);
        } else {
            // The other caller held the permit and gave it back.
            assert!(matches!(c.admit(&mut now(&c)), Admit::Probe(_)));
        }
    });
}

#[test]
fn loom_probe_outcomes_close_once() {
    loom::model(|| {
        let c = core(
            CircuitBreakerBuilder::new("l")
                .count_window(2)
                .failure_rate_threshold(100.0)
                .permitted_calls_in_half_open(2),
        );
        c.force(State::HalfOpen, None, &mut now(&c));
        let a = c.admit(&mut now(&c));
        let b = c.admit(&mut now(&c));
        let (Admit::Probe(ta), Admit::Probe(tb)) = (a, b) else {
            panic!("two permits")
        };
        let other = Arc::clone(&c);
        let t = thread::spawn(move || other.record(tb, true, false, false, &mut now(&other)));
        c.record(ta, true, false, false, &mut now(&c));
        t.join().unwrap();
        assert_eq!(c.state_now(), State::Closed);
        assert_eq!(c.observer().to_closed.load(Ordering::SeqCst), 1);
        assert_one_claim_per_transition(&c);
    });
}

#[test]
fn loom_count_window_totals_match_the_ring() {
    loom::model(|| {
        let w = Arc::new(Window::Count(CountWindow::new(1)));
        let other = Arc::clone(&w);
        let t = thread::spawn(move || {
            other.record(FAILED, || 0);
        });
        w.record(0, || 0);
        t.join().unwrap();
        // One slot: whichever write landed last is the window.
        let totals = w.totals(|| 0);
        assert_eq!(totals.calls, 1);
        assert!(totals.failed <= 1);
        w.record(0, || 0);
        assert_eq!(
            w.totals(|| 0),
            Totals {
                calls: 1,
                failed: 0,
                slow: 0
            }
        );
    });
}

#[test]
fn loom_time_window_totals_match_the_buckets() {
    const SEC: u64 = 1_000_000_000;
    loom::model(|| {
        let w = Arc::new(Window::Time(TimeWindow::new(2)));
        let other = Arc::clone(&w);
        let t = thread::spawn(move || {
            other.record(FAILED, || 2 * SEC);
        });
        w.record(0, || 0);
        w.record(0, || SEC);
        t.join().unwrap();
        // Whatever the interleaving, once every writer is done the totals are
        // the sum of what the buckets hold, and never more than was recorded.
        let totals = w.totals(|| 2 * SEC);
        assert!(totals.calls <= 3 && totals.failed <= 1);
        // Four seconds on, the window is empty: nothing was lost or doubled.
        assert_eq!(w.totals(|| 4 * SEC), Totals::default());
    });
}

#[test]
fn loom_a_window_of_failures_trips_whichever_caller_lands_last() {
    // 100 % over a window of 2, full of successes. The other caller's
    // failure may be preempted anywhere in its update; three failures here
    // fill the window on their own, so once they are recorded nothing more
    // is admitted, whatever the other caller has done so far.
    let mut model = loom::model::Builder::new();
    model.preemption_bound.get_or_insert(3);
    model.check(|| {
        let c = core(
            CircuitBreakerBuilder::new("l")
                .count_window(2)
                .minimum_calls(2)
                .failure_rate_threshold(100.0),
        );
        call(&c, false);
        call(&c, false);
        let other = Arc::clone(&c);
        let t = thread::spawn(move || {
            call(&other, true);
        });
        for _ in 0..3 {
            call(&c, true);
        }
        assert!(
            matches!(c.admit(&mut now(&c)), Admit::Reject { .. }),
            "a window of failures admitted another call"
        );
        t.join().unwrap();
        assert_eq!(c.state_now(), State::Open);
        assert_eq!(c.observer().to_open.load(Ordering::SeqCst), 1);
        assert_one_claim_per_transition(&c);
    });
}
