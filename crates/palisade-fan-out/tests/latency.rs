//! A gather takes as long as its slowest branch, not the sum of them.

mod support;

use palisade_fan_out::{Branch, FanOut};
use serde_json::json;
use support::{Backend, elapsed_ms};
use tokio::time::Instant;
use tower::ServiceExt;

fn branch(backend: Backend) -> Branch<Backend, u64, u64> {
    Branch::new(backend.name, backend, |id: &u64| *id)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn total_latency_is_the_slowest_branch_not_the_sum() {
    // The seed's dashboard: user 80 ms, order 120 ms, product 150 ms,
    // review 100 ms. Sequentially that would be 450 ms.
    let fan_out = FanOut::builder("dashboard")
        .branch(branch(Backend::json("user", 80, json!({"name": "John"}))).required())
        .branch(branch(Backend::json("order", 120, json!({"orders": 15}))).required())
        .branch(branch(Backend::json("product", 150, json!({"viewed": 45}))))
        .branch(branch(Backend::json("review", 100, json!({"written": 8}))))
        .build()
        .unwrap();

    let start = Instant::now();
    let merged = fan_out.oneshot(12345).await.unwrap();
    assert_eq!(
        elapsed_ms(start),
        150,
        "the slowest branch, not 80+120+150+100 = 450"
    );
    assert_eq!(
        merged,
        json!({
            "user": {"name": "John"},
            "order": {"orders": 15},
            "product": {"viewed": 45},
            "review": {"written": 8},
        })
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn six_service_dashboard_answers_at_its_slowest_branch() {
    let fan_out = FanOut::builder("dashboard")
        .branch(branch(Backend::json("user", 80, json!({"level": "Gold"}))).required())
        .branch(branch(Backend::json("order", 120, json!({"pending": 2}))).required())
        .branch(branch(Backend::json("product", 150, json!({"cart": 3}))))
        .branch(branch(Backend::json("review", 100, json!({"helpful": 23}))))
        .branch(branch(Backend::json("reward", 70, json!({"points": 2450}))))
        .branch(branch(Backend::json(
            "notification",
            60,
            json!({"unread": 5}),
        )))
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(12345).await.unwrap();
    assert_eq!(elapsed_ms(start), 150, "sequentially: 580 ms");
    assert_eq!(merged.as_object().unwrap().len(), 6);
    assert!(merged.get("errors").is_none(), "complete: no account");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_branch_gets_its_own_mapped_request() {
    let user = Backend::json("user", 10, json!(1));
    let order = Backend::json("order", 10, json!(2));
    let (user_log, order_log) = (user.requests.clone(), order.requests.clone());
    let fan_out = FanOut::builder("map")
        .branch(Branch::new("user", user, |id: &u64| *id))
        .branch(Branch::new("order", order, |id: &u64| id * 10))
        .build()
        .unwrap();
    fan_out.oneshot(7).await.unwrap();
    assert_eq!(user_log.all(), [7]);
    assert_eq!(order_log.all(), [70]);
}
