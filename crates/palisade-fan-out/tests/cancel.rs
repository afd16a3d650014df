//! A required failure cancels the other calls at once; dropping the gather
//! cancels everything; nothing is reserved before a call.

mod support;

use std::task::Poll;

use palisade_core::cause_ref;
use palisade_fan_out::{Branch, BranchErrorKind, FanOut, RequiredBranchFailed};
use palisade_test_util::DropProbe;
use serde_json::json;
use support::{Backend, Gauge, elapsed_ms, ms};
use tokio::time::Instant;
use tokio_test::{assert_pending, task};
use tower::{Service, ServiceExt};

fn branch(backend: Backend) -> Branch<Backend, u64, u64> {
    Branch::new(backend.name, backend, |id: &u64| *id)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_required_failure_fails_at_once_and_cancels_the_rest() {
    let probe = DropProbe::new();
    let gauge = Gauge::default();
    let fan_out = FanOut::builder("dashboard")
        .branch(branch(Backend::failing("user", 10, "user store down")).required())
        .branch(branch(
            Backend::json("order", 1000, json!(1))
                .probe(&probe)
                .gauge(&gauge),
        ))
        .branch(branch(
            Backend::json("product", 1000, json!(2))
                .probe(&probe)
                .gauge(&gauge),
        ))
        .branch(branch(
            Backend::json("review", 1000, json!(3))
                .probe(&probe)
                .gauge(&gauge),
        ))
        .build()
        .unwrap();

    let start = Instant::now();
    let mut gather = task::spawn(fan_out.oneshot(1));
    assert_pending!(gather.poll());
    assert_eq!(gauge.now(), 3, "the three slow branches are running");
    assert_eq!(probe.count(), 0);

    tokio::time::advance(ms(10)).await;
    assert!(gather.is_woken());
    let Poll::Ready(result) = gather.poll() else {
        panic!("the gather must fail as soon as the required branch does");
    };
    assert_eq!(elapsed_ms(start), 10, "at once, not after the 1 s branches");
    // The other calls were dropped when the gather failed, while the gather
    // future itself is still alive.
    assert_eq!(probe.count(), 3, "every other branch future was dropped");
    assert_eq!(gauge.now(), 0);

    let err = result.unwrap_err();
    let failed = cause_ref::<RequiredBranchFailed>(&*err).unwrap();
    assert_eq!(failed.branch(), "user");
    assert_eq!(failed.cause().kind(), BranchErrorKind::Failed);
    drop(gather);
    assert_eq!(probe.count(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_required_timeout_cancels_the_rest_at_the_timeout() {
    let probe = DropProbe::new();
    let fan_out = FanOut::builder("d")
        .branch(
            branch(Backend::json("user", 500, json!(1)).probe(&probe))
                .required()
                .timeout(ms(40)),
        )
        .branch(branch(Backend::json("order", 800, json!(2)).probe(&probe)))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = fan_out.oneshot(1).await.unwrap_err();
    assert_eq!(elapsed_ms(start), 40);
    let failed = cause_ref::<RequiredBranchFailed>(&*err).unwrap();
    assert_eq!(failed.cause().kind(), BranchErrorKind::Timeout);
    assert_eq!(failed.cause().timeout(), Some(ms(40)));
    assert_eq!(
        probe.count(),
        2,
        "the timed-out call and the other one were dropped"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_gather_cancels_every_branch_call() {
    let probe = DropProbe::new();
    let gauge = Gauge::default();
    let fan_out = FanOut::builder("d")
        .deadline(ms(5000))
        .branch(branch(
            Backend::json("a", 10, json!(1)).probe(&probe).gauge(&gauge),
        ))
        .branch(branch(
            Backend::json("b", 100, json!(2))
                .probe(&probe)
                .gauge(&gauge),
        ))
        .branch(branch(
            Backend::json("c", 100, json!(3))
                .probe(&probe)
                .gauge(&gauge),
        ))
        .build()
        .unwrap();
    let mut gather = task::spawn(fan_out.oneshot(1));
    assert_pending!(gather.poll());
    tokio::time::advance(ms(10)).await;
    assert_pending!(gather.poll());
    assert_eq!(gauge.now(), 2, "a answered, b and c are running");
    drop(gather);
    assert_eq!(
        probe.count(),
        2,
        "b's and c's calls were dropped with the gather"
    );
    assert_eq!(gauge.now(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_an_unpolled_gather_calls_nothing() {
    let gauge = Gauge::default();
    let backend = Backend::json("a", 10, json!(1)).gauge(&gauge);
    let ready_polls = backend.ready_polls.clone();
    let mut fan_out = FanOut::builder("d")
        .branch(branch(backend))
        .build()
        .unwrap();
    fan_out.ready().await.unwrap();
    let gather = fan_out.call(1);
    drop(gather);
    assert_eq!(gauge.calls(), 0);
    assert_eq!(ready_polls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_reserves_nothing_and_touches_no_branch() {
    let backend = Backend::json("a", 10, json!(1)).ready_after(1000);
    let ready_polls = backend.ready_polls.clone();
    let mut fan_out = FanOut::builder("d")
        .branch(branch(backend))
        .build()
        .unwrap();
    // Ready at once even though the branch is not, and polling again is the
    // same: nothing is held, so dropping the service frees nothing either.
    let mut ready = task::spawn(());
    for _ in 0..3 {
        assert!(ready.enter(|cx, _| fan_out.poll_ready(cx)).is_ready());
    }
    assert_eq!(ready_polls.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(fan_out);
}
