//! The deadline an incoming request carries (`palisade_core::Deadline`, set
//! by a deadline layer above): the gather ends when it passes, and every
//! HTTP branch's request carries what is left of it.
#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use palisade_core::{BoxError, Deadline};
use palisade_fan_out::http::{Route, request_deadline};
use palisade_fan_out::{Branch, FanOut};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use tower::{ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

type Seen = Arc<Mutex<Vec<(String, Option<Duration>)>>>;

/// A branch whose backend answers after `delay`, recording the time its
/// request had left.
fn branch(
    name: &'static str,
    delay: Duration,
    seen: &Seen,
) -> Branch<
    impl tower::Service<Request<String>, Response = Value, Error = BoxError, Future: Send> + Clone,
    Request<()>,
    Request<String>,
> {
    let seen = Arc::clone(seen);
    let backend = service_fn(move |req: Request<String>| {
        seen.lock()
            .unwrap()
            .push((name.to_owned(), Deadline::of(&req).map(|d| d.remaining())));
        async move {
            sleep(delay).await;
            Ok::<_, BoxError>(json!({ "from": name }))
        }
    });
    let target = Route::new("/dashboard/{id}")
        .unwrap()
        .target("http://backend.test", "/x/{id}")
        .unwrap();
    Branch::http(name, backend, target)
}

fn get(deadline: Option<Duration>) -> Request<()> {
    let mut req = Request::get("/dashboard/7").body(()).unwrap();
    if let Some(left) = deadline {
        Deadline::after(left).set_on(&mut req);
    }
    req
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_gather_gets_what_is_left_of_the_callers_deadline() {
    let seen = Seen::default();
    let fan_out = FanOut::builder("dashboard")
        .branch(branch("user", 20 * MS, &seen).required())
        .branch(branch("reviews", Duration::from_secs(1), &seen))
        .deadline(Duration::from_secs(5))
        .carried_deadline(request_deadline)
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(get(Some(150 * MS))).await.unwrap();
    // The caller's 150 ms, not the gather's own 5 s.
    assert_eq!(start.elapsed(), 150 * MS);
    assert_eq!(merged["user"]["from"], "user");
    assert_eq!(merged["errors"]["reviews"]["reason"], "deadline");
    // Each branch's request carried what was left.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|(_, left)| *left == Some(150 * MS)),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_gathers_own_deadline_wins_when_it_is_earlier() {
    let seen = Seen::default();
    let fan_out = FanOut::builder("dashboard")
        .branch(branch("user", 20 * MS, &seen).required())
        .branch(branch("reviews", Duration::from_secs(1), &seen))
        .deadline(100 * MS)
        .carried_deadline(request_deadline)
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out
        .oneshot(get(Some(Duration::from_secs(2))))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!(merged["errors"]["reviews"]["reason"], "deadline");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_a_carried_deadline_nothing_changes() {
    let seen = Seen::default();
    let fan_out = FanOut::builder("dashboard")
        .branch(branch("user", 20 * MS, &seen).required())
        .branch(branch("reviews", 300 * MS, &seen))
        .carried_deadline(request_deadline)
        .build()
        .unwrap();
    let start = Instant::now();
    let merged = fan_out.oneshot(get(None)).await.unwrap();
    assert_eq!(start.elapsed(), 300 * MS);
    assert_eq!(merged["reviews"]["from"], "reviews");
    assert!(seen.lock().unwrap().iter().all(|(_, left)| left.is_none()));
}
