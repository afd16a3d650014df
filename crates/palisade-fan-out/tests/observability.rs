//! Metrics per branch and per gather.

mod support;

use palisade_fan_out::{Branch, FanOut};
use palisade_test_util::MetricsCapture;
use serde_json::json;
use support::{Backend, ms};
use tokio_test::{assert_pending, task};
use tower::ServiceExt;

fn branch(backend: Backend) -> Branch<Backend, u64, u64> {
    Branch::new(backend.name, backend, |id: &u64| *id)
}

const BRANCH_TOTAL: &str = "palisade_fan_out_branch_total";
const BRANCH_DURATION: &str = "palisade_fan_out_branch_duration_seconds";
const GATHERS: &str = "palisade_fan_out_gathers_total";
const GATHER_DURATION: &str = "palisade_fan_out_gather_duration_seconds";

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn branch_and_gather_metrics() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let fan_out = FanOut::builder("dash")
        .branch(branch(Backend::json("user", 80, json!(1))).required())
        .branch(branch(Backend::json("review", 500, json!(2))).timeout(ms(100)))
        .branch(branch(Backend::rejected("reward")))
        .build()
        .unwrap();

    // A partial gather: user answers, review times out, reward is rejected.
    fan_out.clone().oneshot(1).await.unwrap();
    let count = |branch: &str, outcome: &str| {
        capture.counter(
            BRANCH_TOTAL,
            &[("name", "dash"), ("branch", branch), ("outcome", outcome)],
        )
    };
    assert_eq!(count("user", "success"), 1);
    assert_eq!(count("review", "timeout"), 1);
    assert_eq!(count("reward", "rejected"), 1);
    assert_eq!(
        capture.histogram(
            BRANCH_DURATION,
            &[("branch", "user"), ("outcome", "success")]
        ),
        [0.08]
    );
    assert_eq!(
        capture.histogram(
            BRANCH_DURATION,
            &[("branch", "review"), ("outcome", "timeout")]
        ),
        [0.1]
    );
    assert_eq!(
        capture.counter(GATHERS, &[("name", "dash"), ("result", "partial")]),
        1
    );
    assert_eq!(
        capture.histogram(GATHER_DURATION, &[("result", "partial")]),
        [0.1]
    );

    // A failed gather: the required branch fails, the others are cancelled.
    let failing = FanOut::builder("dash2")
        .branch(branch(Backend::failing("user", 10, "down")).required())
        .branch(branch(Backend::json("order", 1000, json!(1))))
        .build()
        .unwrap();
    failing.oneshot(1).await.unwrap_err();
    let count2 = |branch: &str, outcome: &str| {
        capture.counter(
            BRANCH_TOTAL,
            &[("name", "dash2"), ("branch", branch), ("outcome", outcome)],
        )
    };
    assert_eq!(count2("user", "failed"), 1);
    assert_eq!(count2("order", "cancelled"), 1);
    assert_eq!(
        capture.histogram(
            BRANCH_DURATION,
            &[
                ("name", "dash2"),
                ("branch", "order"),
                ("outcome", "cancelled")
            ]
        ),
        [0.01],
        "a cancelled call's latency is how long it ran"
    );
    assert_eq!(
        capture.counter(GATHERS, &[("name", "dash2"), ("result", "failed")]),
        1
    );

    // A complete gather.
    let complete = FanOut::builder("dash3")
        .branch(branch(Backend::json("a", 1, json!(1))))
        .build()
        .unwrap();
    complete.oneshot(1).await.unwrap();
    assert_eq!(
        capture.counter(GATHERS, &[("name", "dash3"), ("result", "complete")]),
        1
    );

    // A gather dropped by its caller.
    let mut dropped = task::spawn(fan_out.oneshot(1));
    assert_pending!(dropped.poll());
    drop(dropped);
    assert_eq!(
        capture.counter(GATHERS, &[("name", "dash"), ("result", "cancelled")]),
        1
    );
    assert_eq!(count("user", "cancelled"), 1);
    assert_eq!(count("review", "cancelled"), 1);
    // `reward` was rejected on the first poll, before the drop.
    assert_eq!(count("reward", "rejected"), 2);

    // Every call counts exactly one outcome per branch.
    for b in ["user", "review", "reward"] {
        let total: u64 = [
            "success",
            "timeout",
            "deadline",
            "rejected",
            "status",
            "invalid_response",
            "request",
            "failed",
            "cancelled",
        ]
        .iter()
        .map(|o| count(b, o))
        .sum();
        assert_eq!(total, 2, "{b}: one outcome per gather");
    }
}
