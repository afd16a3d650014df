//! The admin API's JSON bodies, through the gateway's own router:
//! `PATCH /admin/chaos/{backend}` (`ChaosPatch`) and
//! `PATCH /admin/bulkheads/{name}` (`BulkheadPatch`), driven in-process with
//! `tower::ServiceExt::oneshot` on a current-thread runtime.
//!
//! The first byte picks the endpoint; the rest is the body. Properties: the
//! answer is 200, 400 or 422, never a 5xx; a refusal is problem+json whose
//! `status` is the response's; 200 exactly when the body deserializes and
//! its change is valid; what the handle holds after a 200 is what the patch
//! said (the chaos settings `ChaosPatch::apply_to` computed, valid ones;
//! the bulkhead's limit and wait); and a refused change changes nothing.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use palisade_chaos::{ChaosLayer, ChaosSettings};
use palisade_gateway::admin::{BulkheadPatch, ChaosPatch, MAX_LATENCY_MS};
use palisade_gateway::config::DEMO_SERVICES;
use palisade_gateway::state::BackendInfo;
use palisade_gateway::{App, AppState, Config};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

struct Gateway {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    app: App,
}

static GATEWAY: LazyLock<Gateway> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let config = Config::embedded_default();
    // Every service, and every backend the config names (a sharded
    // service runs on several: `user-0`, `user-1`, ...).
    let names: Vec<String> = DEMO_SERVICES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(config.demo.iter().flat_map(|d| d.backends.keys().cloned()))
        .collect();
    let backends: BTreeMap<String, BackendInfo> = names
        .iter()
        .map(|name| {
            let chaos = ChaosLayer::builder(name.as_str())
                .build()
                .expect("the default chaos layer builds")
                .handle();
            let addr = "127.0.0.1:9".parse().expect("an address");
            (name.clone(), BackendInfo { addr, chaos })
        })
        .collect();
    let (state, app) = runtime.block_on(async {
        let state = AppState::from_config(&config, backends, Some(TOKEN.to_owned()))
            .expect("the default config builds");
        let app = palisade_gateway::app(&state);
        (state, app)
    });
    Gateway {
        runtime,
        state,
        app,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let gw = &*GATEWAY;
    if which % 2 == 0 {
        chaos(gw, body);
    } else {
        bulkhead(gw, body);
    }
});

fn send(gw: &Gateway, uri: &str, body: &[u8]) -> (StatusCode, Vec<u8>, Option<String>) {
    let req = Request::builder()
        .method(Method::PATCH)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    gw.runtime.block_on(async {
        let res = gw.app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let kind = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = res
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes()
            .to_vec();
        (status, bytes, kind)
    })
}

/// A refusal: problem+json whose `status` is the response's.
fn check_problem(status: StatusCode, body: &[u8], kind: Option<&str>, sent: &[u8]) {
    let sent = String::from_utf8_lossy(sent);
    assert!(
        matches!(status.as_u16(), 400 | 415 | 422),
        "{status} for {sent:?}: {}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(
        kind,
        Some("application/problem+json"),
        "{status} for {sent:?}"
    );
    let problem: serde_json::Value = serde_json::from_slice(body).expect("a JSON problem");
    assert_eq!(problem["status"], status.as_u16(), "{problem} for {sent:?}");
}

fn chaos(gw: &Gateway, body: &[u8]) {
    let backend = &DEMO_SERVICES[0];
    let handle = gw
        .state
        .chaos()
        .get(backend)
        .expect("the demo backend's chaos handle");
    handle.reset();
    let before = handle.settings();
    let expected = serde_json::from_slice::<ChaosPatch>(body)
        .ok()
        .map(|patch| patch.apply_to(before));
    let (status, res, kind) = send(gw, &format!("/admin/chaos/{backend}"), body);
    let after = handle.settings();
    let sent = String::from_utf8_lossy(body);
    match expected {
        None => {
            check_problem(status, &res, kind.as_deref(), body);
            assert_ne!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{sent:?}");
            assert_eq!(
                after, before,
                "a refused body changed the settings: {sent:?}"
            );
        }
        Some(Err(err)) => {
            check_problem(status, &res, kind.as_deref(), body);
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sent:?}");
            let problem: serde_json::Value = serde_json::from_slice(&res).expect("JSON");
            assert_eq!(problem["field"], err.field, "{sent:?}");
            assert_eq!(
                after, before,
                "a refused change changed the settings: {sent:?}"
            );
        }
        Some(Ok(settings)) => {
            let valid = settings.validate().is_ok();
            if status == StatusCode::OK {
                assert!(
                    valid,
                    "accepted invalid settings {settings:?} from {sent:?}"
                );
                assert_eq!(after, settings, "{sent:?}");
                check_settings(&after, &sent);
            } else {
                check_problem(status, &res, kind.as_deref(), body);
                assert!(!valid, "refused valid settings {settings:?} from {sent:?}");
                assert_eq!(
                    after, before,
                    "a refused change changed the settings: {sent:?}"
                );
            }
        }
    }
    handle.reset();
}

fn check_settings(s: &ChaosSettings, sent: &str) {
    for rate in [s.error_rate, s.abort_rate, s.latency_rate] {
        assert!((0.0..=1.0).contains(&rate), "{s:?} from {sent:?}");
    }
    assert!(s.latency_min <= s.latency_max, "{s:?} from {sent:?}");
    assert!(
        s.latency_max <= Duration::from_millis(MAX_LATENCY_MS),
        "{s:?} from {sent:?}"
    );
}

fn bulkhead(gw: &Gateway, body: &[u8]) {
    let registry = gw.state.bulkheads();
    let name = registry.names().into_iter().next().expect("a bulkhead");
    let handle = registry.get(&name).expect("the bulkhead's handle");
    let before = handle.snapshot();
    let patch = serde_json::from_slice::<BulkheadPatch>(body).ok();
    let (status, res, kind) = send(gw, &format!("/admin/bulkheads/{name}"), body);
    let after = handle.snapshot();
    let sent = String::from_utf8_lossy(body);
    match (patch, status) {
        (Some(patch), StatusCode::OK) => {
            if let Some(limit) = patch.max_concurrent_calls {
                assert_eq!(after.limit, limit, "{sent:?}");
            } else {
                assert_eq!(after.limit, before.limit, "{sent:?}");
            }
            let wait = patch
                .max_wait_ms
                .map_or(before.max_wait, Duration::from_millis);
            assert_eq!(after.max_wait, wait, "{sent:?}");
        }
        (Some(patch), _) => {
            check_problem(status, &res, kind.as_deref(), body);
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sent:?}");
            assert!(patch.max_concurrent_calls.is_some(), "{sent:?}");
            assert_eq!(
                (after.limit, after.max_wait),
                (before.limit, before.max_wait),
                "a refused change changed the bulkhead: {sent:?}"
            );
        }
        (None, _) => {
            check_problem(status, &res, kind.as_deref(), body);
            assert_ne!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{sent:?}");
            assert_eq!(
                (after.limit, after.max_wait),
                (before.limit, before.max_wait),
                "{sent:?}"
            );
        }
    }
    // Back to where it was for the next input.
    handle.set_limit(before.limit).expect("the original limit");
    handle.set_max_wait(before.max_wait);
}
