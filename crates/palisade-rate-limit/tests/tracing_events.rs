//! Tracing events and listeners name the tier, never the key. One test
//! function, alone in its binary: tracing caches each callsite's interest
//! process-wide.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_rate_limit::{Key, Limit, Rate, RateLimitEvent, RateLimitLayer};
use palisade_test_util::EventCapture;
use support::{Echo, admitted, call_now};
use tower::Layer;

fn by_key<'a>(k: &'a (&'static str, &'static str)) -> Option<Key<'a>> {
    Some(Key::text(k.0).with_class(k.1))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn events_and_tracing_name_the_tier_not_the_key() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let capture = EventCapture::default();
    let _guard = capture.set_default();
    let layer = RateLimitLayer::builder("api")
        .rate(Rate::per_second(1))
        .burst(1)
        .max_keys(1)
        .key_by(by_key)
        .on_event(move |e: &RateLimitEvent| seen.lock().unwrap().push(e.clone()))
        .on_event(|_: &RateLimitEvent| panic!("a broken listener"))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert!(admitted(&mut svc, ("secret", "default")));
    assert!(!admitted(&mut svc, ("secret", "default")));
    assert!(admitted(&mut svc, ("another", "default")), "overflow");
    assert!(call_now(&mut svc, ("", "default")).unwrap().is_err());
    layer
        .handle()
        .set_limit("default", Limit::new(Rate::per_second(2), 2))
        .unwrap();

    let events = events.lock().unwrap().clone();
    let name: Arc<str> = Arc::from("api");
    assert_eq!(
        events,
        vec![
            RateLimitEvent::Limited {
                name: name.clone(),
                class: Arc::from("default"),
                retry_after: Duration::from_secs(1)
            },
            RateLimitEvent::KeysFull {
                name: name.clone(),
                max_keys: 1
            },
            RateLimitEvent::InvalidKey {
                name: name.clone(),
                problem: palisade_rate_limit::error::KeyProblem::Empty
            },
            RateLimitEvent::LimitChanged {
                name,
                class: Arc::from("default"),
                limit: Limit::new(Rate::per_second(2), 2)
            },
        ]
    );
    let lines: Vec<String> = capture
        .take()
        .into_iter()
        .filter(|e| e.target.starts_with("palisade_rate_limit"))
        .map(|e| e.line())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("DEBUG")
            && l.contains("class=default")
            && l.contains("retry_after_ms=1000")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("max_keys=1")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INFO") && l.contains("rate limit changed")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("secret")), "{lines:#?}");
}
