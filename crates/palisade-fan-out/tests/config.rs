//! Bad configuration is refused when built; the public types are `Send`,
//! `Sync` and `Clone`; clones share one configuration.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use palisade_core::BoxError;
use palisade_fan_out::future::ResponseFuture;
use palisade_fan_out::{Branch, FanOut, FanOutBuilder, JsonMerge, MergeFn};
use palisade_test_util::{assert_send, assert_send_sync, assert_send_sync_clone};
use serde_json::{Value, json};
use support::{Backend, ms};
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

fn branch(name: &'static str) -> Branch<Backend, u64, u64> {
    Branch::new(name, Backend::json(name, 1, json!(1)), |id: &u64| *id)
}

fn field(builder: FanOutBuilder<Backend, u64, u64, JsonMerge>) -> String {
    builder.build().unwrap_err().field().to_owned()
}

#[test]
fn bad_config_is_refused_with_the_setting_named() {
    assert_eq!(field(FanOut::builder("d")), "branch");
    assert_eq!(field(FanOut::builder("").branch(branch("a"))), "name");
    assert_eq!(field(FanOut::builder("d").branch(branch(""))), "branch");
    let dup = FanOut::builder("d").branch(branch("a")).branch(branch("a"));
    let err = dup.build().unwrap_err();
    assert_eq!(err.field(), "branch");
    assert_eq!(
        err.to_string(),
        "invalid `branch`: branch name `a` is used twice"
    );
    assert_eq!(
        field(FanOut::builder("d").branch(branch("a").timeout(ms(0)))),
        "timeout"
    );
    assert_eq!(
        field(FanOut::builder("d").branch(branch("a")).deadline(ms(0))),
        "deadline"
    );
    assert_eq!(
        field(FanOut::builder("d").branch(branch("a")).max_in_flight(0)),
        "max_in_flight"
    );
    // The account's key may not be a keyed branch's name...
    assert_eq!(
        field(FanOut::builder("d").branch(branch("errors"))),
        "errors_key"
    );
    let empty_key = FanOut::builder("d")
        .branch(branch("a"))
        .merge(JsonMerge::keyed().errors_key(""));
    assert_eq!(empty_key.build().unwrap_err().field(), "errors_key");
    // ...but may be a flattened one's (its fields are merged, not its name).
    let flat = FanOut::builder("d")
        .branch(branch("errors"))
        .merge(JsonMerge::flatten());
    assert!(flat.build().is_ok());
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let fan_out = FanOut::builder("d")
        .deadline(std::time::Duration::MAX)
        .branch(branch("a").timeout(std::time::Duration::MAX))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(fan_out.oneshot(1)).unwrap(), json!({"a": 1}));
}

#[test]
fn public_types_are_send_sync_and_clone() {
    type Svc = FanOut<Backend, u64, u64>;
    assert_send_sync_clone::<Svc>();
    assert_send::<ResponseFuture<Backend, u64, u64, JsonMerge>>();
    assert_send_sync_clone::<Branch<Backend, u64, u64>>();
    assert_send_sync::<FanOutBuilder<Backend, u64, u64, JsonMerge>>();
    assert_send_sync_clone::<JsonMerge>();
    #[cfg(feature = "http")]
    {
        use palisade_fan_out::http::{JsonResponse, ParseJson, Route, Target};
        type HttpSvc =
            ParseJson<BoxCloneSyncService<http::Request<String>, http::Response<String>, BoxError>>;
        assert_send_sync_clone::<
            FanOut<HttpSvc, http::Request<()>, http::Request<String>, JsonResponse<String>>,
        >();
        assert_send::<
            ResponseFuture<HttpSvc, http::Request<()>, http::Request<String>, JsonResponse<String>>,
        >();
        assert_send_sync_clone::<Route>();
        assert_send_sync_clone::<Target>();
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_share_one_configuration_and_branch_state() {
    // The branch service's own state (here a call counter, in practice a
    // breaker or a bulkhead) is shared by every clone of the fan-out, since
    // each gather calls a clone of the same branch service.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = Arc::clone(&calls);
        service_fn(move |n: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(Value::from(n)) }
        })
    };
    let fan_out = FanOut::builder("d")
        .branch(Branch::new("a", counted, |n: &u64| *n))
        .build()
        .unwrap();
    let clone = fan_out.clone();
    fan_out.oneshot(1).await.unwrap();
    clone.clone().oneshot(2).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(clone.branch_names().collect::<Vec<_>>(), ["a"]);
    assert_eq!(clone.name(), "d");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn heterogeneous_services_share_a_fan_out_once_boxed() {
    type Boxed = BoxCloneSyncService<u64, Value, BoxError>;
    let numbers: Boxed = BoxCloneSyncService::new(service_fn(|n: u64| async move {
        Ok::<_, BoxError>(Value::from(n))
    }));
    let words: Boxed = BoxCloneSyncService::new(
        service_fn(|n: u64| async move { Ok::<_, BoxError>(format!("#{n}")) })
            .map_response(Value::from),
    );
    let fan_out = FanOut::builder("mixed")
        .branch(Branch::new("n", numbers, |n: &u64| *n))
        .branch(Branch::new("w", words, |n: &u64| *n))
        .build()
        .unwrap();
    assert_eq!(
        fan_out.oneshot(3).await.unwrap(),
        json!({"n": 3, "w": "#3"})
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn merge_fn_answers_any_type() {
    let fan_out: FanOut<_, u64, u64, MergeFn<_>> = FanOut::builder("sum")
        .branch(branch("a"))
        .branch(branch("b"))
        .merge_fn(|g| Ok(g.iter().filter(|(_, r)| r.is_answered()).count()))
        .build()
        .unwrap();
    assert_eq!(fan_out.oneshot(1).await.unwrap(), 2);
}
