//! Partial results: optional branches that fail or time out leave an account
//! of what is missing; fallbacks stand in; the deadline returns what arrived;
//! nothing at all is an error.

mod support;

use palisade_core::{BoxError, cause_ref, is_caused_by};
use palisade_fan_out::{
    Branch, BranchErrorKind, DeadlineElapsed, FanOut, JsonMerge, NothingSucceeded,
    RequiredBranchFailed,
};
use serde_json::{Value, json};
use support::{Backend, elapsed_ms, ms};
use tokio::time::Instant;
use tower::ServiceExt;

fn branch(backend: Backend) -> Branch<Backend, u64, u64> {
    Branch::new(backend.name, backend, |id: &u64| *id)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn optional_branch_timing_out_gives_a_partial_answer_with_an_account() {
    let fan_out = FanOut::builder("dashboard")
        .branch(branch(Backend::json("user", 80, json!({"name": "John"}))).required())
        .branch(branch(Backend::json("review", 500, json!({"written": 8}))).timeout(ms(100)))
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(elapsed_ms(start), 100, "cut at the review branch's timeout");
    assert_eq!(
        merged,
        json!({
            "user": {"name": "John"},
            "errors": {
                "review": {"reason": "timeout", "message": "timed out after 100ms", "fallback": false}
            }
        })
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn optional_failures_are_named_with_their_reason() {
    let fan_out = FanOut::builder("dashboard")
        .branch(branch(Backend::json("user", 10, json!({"name": "John"}))))
        .branch(branch(Backend::failing(
            "order",
            5,
            "connection refused to 10.0.0.7",
        )))
        .branch(branch(Backend::rejected("reward")))
        .build()
        .unwrap();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(merged["user"], json!({"name": "John"}));
    assert!(merged.get("order").is_none() && merged.get("reward").is_none());
    let errors = &merged["errors"];
    assert_eq!(errors["order"]["reason"], "failed");
    // The downstream's own text (an internal address) is not shown...
    assert_eq!(errors["order"]["message"], "call failed");
    assert_eq!(errors["reward"]["reason"], "rejected");
    // ...a rejection's text is Palisade's own and is.
    assert_eq!(
        errors["reward"]["message"],
        "rejected by a resilience layer: circuit breaker `reward` is open; next probe in 1.5s"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn error_details_show_the_cause_when_asked() {
    let fan_out = FanOut::builder("d")
        .branch(branch(Backend::json("user", 1, json!(1))))
        .branch(branch(Backend::failing("order", 1, "connection refused")))
        .merge(JsonMerge::keyed().error_details(true))
        .build()
        .unwrap();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(
        merged["errors"]["order"]["message"],
        "call failed: connection refused"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fallback_values_appear_in_place_of_failed_branches() {
    let fan_out = FanOut::builder("dashboard")
        .branch(branch(Backend::json("user", 10, json!({"name": "John"}))).required())
        // A required branch with a fallback never fails the gather.
        .branch(
            branch(Backend::failing("order", 20, "boom"))
                .required()
                .fallback(json!({"orders": []})),
        )
        .branch(
            branch(Backend::json("reward", 900, json!({"points": 2450})))
                .timeout(ms(50))
                .fallback(json!({"points": 0})),
        )
        .merge_fn(|mut gathered| {
            assert!(!gathered.is_complete());
            let order = gathered.take("order").unwrap();
            assert!(order.is_fallback());
            assert_eq!(order.error().unwrap().kind(), BranchErrorKind::Failed);
            Ok::<_, BoxError>((order.into_value(), JsonMerge::keyed().to_value(gathered)))
        })
        .build()
        .unwrap();
    let start = Instant::now();
    let (order, rest) = fan_out.clone().oneshot(1).await.unwrap();
    assert_eq!(elapsed_ms(start), 50);
    assert_eq!(order, Some(json!({"orders": []})));
    assert_eq!(
        rest["reward"],
        json!({"points": 0}),
        "the fallback stands in"
    );
    assert_eq!(
        rest["errors"]["reward"],
        json!({"reason": "timeout", "message": "timed out after 50ms", "fallback": true})
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fallback_with_chooses_by_the_failure() {
    let only_on_timeout = |b: Branch<Backend, u64, u64>| {
        b.fallback_with(|error| error.kind().is_timeout().then(|| json!("stale")))
    };
    let fan_out = FanOut::builder("d")
        .branch(branch(Backend::json("user", 1, json!(1))))
        .branch(only_on_timeout(
            branch(Backend::json("slow", 100, json!(2))).timeout(ms(10)),
        ))
        .branch(only_on_timeout(branch(Backend::failing("broken", 1, "x"))))
        .build()
        .unwrap();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(merged["slow"], "stale");
    assert_eq!(merged["errors"]["slow"]["fallback"], true);
    assert!(merged.get("broken").is_none());
    assert_eq!(merged["errors"]["broken"]["fallback"], false);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn nothing_succeeding_is_an_error_not_an_empty_answer() {
    let fan_out = FanOut::builder("dashboard")
        .branch(branch(Backend::failing("product", 10, "boom")))
        .branch(branch(Backend::json("review", 500, json!(1))).timeout(ms(30)))
        // Fallbacks are not successes.
        .branch(branch(Backend::rejected("reward")).fallback(json!({})))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = fan_out.oneshot(1).await.unwrap_err();
    assert_eq!(elapsed_ms(start), 30);
    let none = cause_ref::<NothingSucceeded>(&*err).expect("NothingSucceeded");
    let reasons: Vec<(&str, BranchErrorKind)> = none.errors().map(|(n, e)| (n, e.kind())).collect();
    assert_eq!(
        reasons,
        [
            ("product", BranchErrorKind::Failed),
            ("review", BranchErrorKind::Timeout),
            ("reward", BranchErrorKind::Rejected),
        ]
    );
    assert_eq!(
        err.to_string(),
        "no branch of fan-out `dashboard` succeeded"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_deadline_returns_what_completed() {
    let fan_out = FanOut::builder("dashboard")
        .deadline(ms(200))
        .branch(branch(Backend::json("user", 80, json!({"name": "John"}))).required())
        .branch(branch(Backend::json("order", 150, json!({"orders": 15}))).required())
        .branch(branch(Backend::json("product", 300, json!({"viewed": 45}))))
        .branch(branch(Backend::json("review", 900, json!({"written": 8}))).fallback(json!(null)))
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(
        elapsed_ms(start),
        200,
        "latency is the deadline, not the slowest branch"
    );
    assert_eq!(merged["user"], json!({"name": "John"}));
    assert_eq!(merged["order"], json!({"orders": 15}));
    assert!(merged.get("product").is_none());
    assert_eq!(merged["review"], Value::Null);
    assert_eq!(merged["errors"]["product"]["reason"], "deadline");
    assert_eq!(
        merged["errors"]["product"]["message"],
        "still pending when the deadline elapsed"
    );
    assert_eq!(merged["errors"]["review"]["fallback"], true);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_deadline_fails_the_gather_when_a_required_branch_is_pending() {
    let fan_out = FanOut::builder("dashboard")
        .deadline(ms(100))
        .branch(branch(Backend::json("user", 300, json!(1))).required())
        .branch(branch(Backend::json("order", 400, json!(2))).required())
        .branch(branch(Backend::json("review", 10, json!(3))))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = fan_out.oneshot(1).await.unwrap_err();
    assert_eq!(elapsed_ms(start), 100);
    let elapsed = cause_ref::<DeadlineElapsed>(&*err).expect("DeadlineElapsed");
    assert_eq!(elapsed.deadline(), ms(100));
    assert_eq!(elapsed.pending().collect::<Vec<_>>(), ["user", "order"]);
    assert_eq!(
        err.to_string(),
        "deadline of 100ms elapsed in fan-out `dashboard` before required branches `user`, `order` answered"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_branch_timeout_longer_than_the_deadline_is_cut_by_the_deadline() {
    let fan_out = FanOut::builder("d")
        .deadline(ms(50))
        .branch(branch(Backend::json("fast", 10, json!(1))))
        .branch(branch(Backend::json("slow", 500, json!(2))).timeout(ms(400)))
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(elapsed_ms(start), 50);
    assert_eq!(merged["errors"]["slow"]["reason"], "deadline");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_that_cannot_be_built_fails_only_its_branch() {
    let user = Backend::json("user", 10, json!(1));
    let order = Backend::json("order", 10, json!(2));
    let order_gauge = order.gauge.clone();
    let fan_out = FanOut::builder("d")
        .branch(Branch::new("user", user, |id: &u64| *id))
        .branch(Branch::fallible("order", order, |id: &u64| {
            if *id == 0 {
                Err("order ids start at 1")
            } else {
                Ok(*id)
            }
        }))
        .build()
        .unwrap();
    let merged = fan_out.oneshot(0).await.unwrap();
    assert_eq!(merged["user"], 1);
    assert_eq!(merged["errors"]["order"]["reason"], "request");
    assert_eq!(
        merged["errors"]["order"]["message"],
        "could not build the request: order ids start at 1"
    );
    assert_eq!(order_gauge.calls(), 0, "the branch was never called");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_required_request_that_cannot_be_built_fails_before_any_call() {
    let user = Backend::json("user", 10, json!(1));
    let user_gauge = user.gauge.clone();
    let fan_out = FanOut::builder("d")
        .branch(Branch::new("user", user, |id: &u64| *id))
        .branch(
            Branch::fallible("order", Backend::json("order", 10, json!(2)), |_: &u64| {
                Err::<u64, _>("no order id")
            })
            .required(),
        )
        .build()
        .unwrap();
    let err = fan_out.oneshot(1).await.unwrap_err();
    let failed = cause_ref::<RequiredBranchFailed>(&*err).unwrap();
    assert_eq!(failed.branch(), "order");
    assert_eq!(failed.cause().kind(), BranchErrorKind::Request);
    assert_eq!(user_gauge.calls(), 0, "no branch was called");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn flatten_merges_objects_and_the_first_declared_branch_wins() {
    let fan_out = FanOut::builder("d")
        .branch(branch(Backend::json(
            "user",
            30,
            json!({"id": 1, "name": "John", "tier": "Gold"}),
        )))
        // Answers first, but declared second: it does not override `tier`.
        .branch(branch(Backend::json(
            "reward",
            10,
            json!({"points": 2450, "tier": "Silver"}),
        )))
        .branch(branch(Backend::json("tags", 5, json!(["a", "b"]))))
        .branch(branch(Backend::failing("review", 5, "boom")))
        .merge(JsonMerge::flatten())
        .build()
        .unwrap();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(
        merged,
        json!({
            "id": 1,
            "name": "John",
            "tier": "Gold",
            "points": 2450,
            "tags": ["a", "b"],
            "errors": {"review": {"reason": "failed", "message": "call failed", "fallback": false}}
        })
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_errors_key_can_be_renamed() {
    let fan_out = FanOut::builder("d")
        .branch(branch(Backend::json("errors", 1, json!(1))))
        .branch(branch(Backend::failing("b", 1, "x")))
        .merge(JsonMerge::keyed().errors_key("_missing"))
        .build()
        .unwrap();
    let merged = fan_out.oneshot(1).await.unwrap();
    assert_eq!(merged["errors"], 1);
    assert_eq!(merged["_missing"]["b"]["reason"], "failed");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gather_errors_are_found_through_the_chain() {
    let fan_out = FanOut::builder("d")
        .branch(branch(Backend::failing("user", 1, "boom")).required())
        .branch(branch(Backend::json("b", 1, json!(1))))
        .build()
        .unwrap();
    let err = fan_out.oneshot(1).await.unwrap_err();
    assert!(is_caused_by::<RequiredBranchFailed>(&*err));
    let failed = cause_ref::<RequiredBranchFailed>(&*err).unwrap();
    assert_eq!(failed.fan_out(), "d");
    assert_eq!(failed.cause().kind(), BranchErrorKind::Failed);
    let cause = std::error::Error::source(failed.cause()).unwrap();
    assert_eq!(cause.to_string(), "boom");
}
