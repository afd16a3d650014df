//! The in-flight cap, and readiness without head-of-line blocking.

mod support;

use std::sync::atomic::Ordering;

use palisade_fan_out::{Branch, FanOut};
use serde_json::json;
use support::{Backend, Gauge, elapsed_ms, ms};
use tokio::time::Instant;
use tokio_test::{assert_pending, task};
use tower::ServiceExt;

fn branch(backend: Backend) -> Branch<Backend, u64, u64> {
    Branch::new(backend.name, backend, |id: &u64| *id)
}

fn six(gauge: &Gauge, delay: u64) -> Vec<Branch<Backend, u64, u64>> {
    [
        "user",
        "order",
        "product",
        "review",
        "reward",
        "notification",
    ]
    .into_iter()
    .enumerate()
    .map(|(i, name)| branch(Backend::json(name, delay, json!(i)).gauge(gauge)))
    .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_in_flight_cap_is_respected() {
    for (cap, expected_ms) in [(1, 600), (2, 300), (4, 200), (6, 100)] {
        let gauge = Gauge::default();
        let fan_out = FanOut::builder("capped")
            .max_in_flight(cap)
            .branches(six(&gauge, 100))
            .build()
            .unwrap();
        let start = Instant::now();
        let merged = fan_out.oneshot(1).await.unwrap();
        assert_eq!(
            gauge.max(),
            cap,
            "never more than {cap} branch calls at once"
        );
        assert_eq!(gauge.calls(), 6, "every branch was called");
        assert_eq!(elapsed_ms(start), expected_ms, "cap {cap}");
        assert_eq!(merged.as_object().unwrap().len(), 6);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn capped_branches_start_in_order_as_places_free_up() {
    let gauge = Gauge::default();
    let fan_out = FanOut::builder("capped")
        .max_in_flight(2)
        .branch(branch(Backend::json("a", 30, json!(1)).gauge(&gauge)))
        .branch(branch(Backend::json("b", 10, json!(2)).gauge(&gauge)))
        .branch(branch(Backend::json("c", 10, json!(3)).gauge(&gauge)))
        .branch(branch(Backend::json("d", 10, json!(4)).gauge(&gauge)))
        .build()
        .unwrap();
    // a and b start; b ends at 10 so c starts; c ends at 20 so d starts;
    // a ends at 30, d at 30.
    let start = Instant::now();
    fan_out.oneshot(1).await.unwrap();
    assert_eq!(elapsed_ms(start), 30);
    assert_eq!(gauge.max(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timed_out_branch_frees_its_place() {
    let gauge = Gauge::default();
    let fan_out = FanOut::builder("capped")
        .max_in_flight(1)
        .branch(branch(Backend::json("stuck", 10_000, json!(1)).gauge(&gauge)).timeout(ms(50)))
        .branch(branch(Backend::json("next", 10, json!(2)).gauge(&gauge)))
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(
        elapsed_ms(start),
        60,
        "next starts when stuck times out at 50"
    );
    assert_eq!(merged["next"], 2);
    assert_eq!(merged["errors"]["stuck"]["reason"], "timeout");
    assert_eq!(gauge.max(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_deadline_cuts_branches_still_queued() {
    let fan_out = FanOut::builder("capped")
        .max_in_flight(1)
        .deadline(ms(150))
        .branch(branch(Backend::json("a", 100, json!(1))))
        .branch(branch(Backend::json("b", 100, json!(2))))
        .branch(branch(Backend::json("c", 100, json!(3))))
        .build()
        .unwrap();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(merged["a"], 1);
    assert_eq!(merged["errors"]["b"]["reason"], "deadline", "b was running");
    assert_eq!(
        merged["errors"]["c"]["reason"], "deadline",
        "c never started"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_branch_slow_to_become_ready_does_not_delay_the_others() {
    let slow = Backend::json("slow", 0, json!("late")).ready_after(1000);
    let slow_gauge = slow.gauge.clone();
    let fast_gauge = Gauge::default();
    let fan_out = FanOut::builder("d")
        .branch(branch(slow).timeout(ms(100)))
        .branch(branch(Backend::json("a", 50, json!(1)).gauge(&fast_gauge)))
        .branch(branch(Backend::json("b", 20, json!(2)).gauge(&fast_gauge)))
        .build()
        .unwrap();

    let start = Instant::now();
    let mut gather = task::spawn(fan_out.oneshot(1));
    assert_pending!(gather.poll());
    // The others were called on the first poll although `slow` is not ready.
    assert_eq!(fast_gauge.calls(), 2);
    assert_eq!(slow_gauge.calls(), 0);

    let merged = gather.await.unwrap();
    // Its readiness wait counts against its own timeout.
    assert_eq!(elapsed_ms(start), 100);
    assert_eq!(merged["a"], 1);
    assert_eq!(merged["b"], 2);
    assert_eq!(merged["errors"]["slow"]["reason"], "timeout");
    assert_eq!(slow_gauge.calls(), 0, "never became ready, never called");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_branch_that_becomes_ready_late_is_called_then() {
    let slow = Backend::json("slow", 10, json!("ok")).ready_after(40);
    let polls = slow.ready_polls.clone();
    let fan_out = FanOut::builder("d")
        .branch(branch(slow))
        .branch(branch(Backend::json("a", 5, json!(1))))
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(elapsed_ms(start), 50, "ready at 40, answered 10 later");
    assert_eq!(merged["slow"], "ok");
    assert!(polls.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_cap_is_per_gather() {
    // Two gathers at once on clones of one fan-out: each has its own cap.
    let gauge = Gauge::default();
    let fan_out = FanOut::builder("capped")
        .max_in_flight(1)
        .branches(six(&gauge, 100).into_iter().take(2))
        .build()
        .unwrap();
    let (a, b) = tokio::join!(fan_out.clone().oneshot(1), fan_out.oneshot(2));
    a.unwrap();
    b.unwrap();
    assert_eq!(gauge.max(), 2);
}
