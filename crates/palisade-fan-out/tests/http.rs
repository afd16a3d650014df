//! The HTTP integration: request templates, JSON branch bodies, partial
//! `200`s marked incomplete, problem responses for failed gathers.
#![cfg(feature = "http")]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use palisade_core::{BoxError, CircuitOpen};
use palisade_fan_out::http::{
    COMPLETED_HEADER, JsonResponse, ParseJson, ParseJsonLayer, Route, Target, error_response,
};
use palisade_fan_out::{Branch, FanOut};
use serde_json::{Value, json};
use support::{elapsed_ms, ms};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// What a fake backend saw.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: String,
    headers: http::HeaderMap,
}

/// A fake HTTP backend: after `delay`, answers `status` with `body` and
/// `content_type` (or fails like a connection error, or is rejected).
#[derive(Clone)]
struct Backend {
    delay: Duration,
    status: StatusCode,
    content_type: Option<&'static str>,
    body: String,
    reject: bool,
    declared_length: Option<&'static str>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    fn json(delay_ms: u64, body: &Value) -> Self {
        Self {
            delay: ms(delay_ms),
            status: StatusCode::OK,
            content_type: Some("application/json"),
            body: body.to_string(),
            reject: false,
            declared_length: None,
            seen: Arc::default(),
        }
    }

    fn raw(delay_ms: u64, status: u16, content_type: Option<&'static str>, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            content_type,
            body: body.to_owned(),
            ..Self::json(delay_ms, &Value::Null)
        }
    }

    fn rejecting() -> Self {
        Self {
            reject: true,
            ..Self::json(0, &Value::Null)
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Service<Request<String>> for Backend {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        self.seen.lock().unwrap().push(Seen {
            method: request.method().clone(),
            uri: request.uri().to_string(),
            headers: request.headers().clone(),
        });
        let this = self.clone();
        Box::pin(async move {
            tokio::time::sleep(this.delay).await;
            if this.reject {
                return Err(CircuitOpen::new("reward", Some(ms(2500))).into());
            }
            let mut response = Response::new(this.body);
            *response.status_mut() = this.status;
            if let Some(ct) = this.content_type {
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            if let Some(len) = this.declared_length {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static(len));
            }
            Ok(response)
        })
    }
}

type Json = ParseJson<Backend>;
type HttpBranch = Branch<Json, Request<()>, Request<String>>;

fn route() -> Route {
    Route::new("/api/dashboard/user/{id}").unwrap()
}

fn branch(name: &'static str, backend: &Backend, template: &str) -> HttpBranch {
    let target = route()
        .target("http://backend.test:8080", template)
        .unwrap();
    Branch::http(name, ParseJsonLayer::new().layer(backend.clone()), target)
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

async fn body(response: Response<String>) -> Value {
    serde_json::from_str(response.body()).unwrap()
}

/// Checks that `response` is the required-branch-failed problem (its
/// headers and type) and returns its body.
async fn required_branch_failed(response: Response<String>) -> Value {
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let problem = body(response).await;
    assert_eq!(
        problem["type"],
        "urn:palisade:problem:required-branch-failed"
    );
    problem
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_optional_branch_timing_out_gives_a_partial_200_marked_incomplete() {
    let user = Backend::json(80, &json!({"name": "John"}));
    let review = Backend::json(500, &json!({"written": 8}));
    let fan_out = FanOut::builder("dashboard")
        .branch(branch("user", &user, "/users/{id}").required())
        .branch(branch("review", &review, "/reviews?user={id}").timeout(ms(100)))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let start = Instant::now();
    let response = fan_out
        .oneshot(get("/api/dashboard/user/12345"))
        .await
        .unwrap();
    assert_eq!(elapsed_ms(start), 100);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(
        body(response).await,
        json!({
            "user": {"name": "John"},
            "errors": {"review": {"reason": "timeout", "message": "timed out after 100ms", "fallback": false}}
        })
    );
    assert_eq!(
        review.seen()[0].uri,
        "http://backend.test:8080/reviews?user=12345"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_complete_answer_says_so_and_may_be_cached() {
    let user = Backend::json(10, &json!({"name": "John"}));
    let order = Backend::json(20, &json!({"orders": 15}));
    let fan_out = FanOut::builder("dashboard")
        .branch(branch("user", &user, "/users/{id}").required())
        .branch(branch("order", &order, "/users/{id}/orders").required())
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let response = fan_out.oneshot(get("/api/dashboard/user/7")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[COMPLETED_HEADER], "true");
    assert!(response.headers().get(CACHE_CONTROL).is_none());
    assert_eq!(
        body(response).await,
        json!({"user": {"name": "John"}, "order": {"orders": 15}})
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn branches_answering_badly_get_a_clear_reason_not_a_panic() {
    let good = Backend::json(1, &json!({"ok": true}));
    let html = Backend::raw(
        1,
        200,
        Some("text/html; charset=utf-8"),
        "<html>oops</html>",
    );
    let garbage = Backend::raw(1, 200, Some("application/json"), "{not json");
    let untyped = Backend::raw(1, 200, None, "plain words");
    let empty = Backend::raw(1, 200, Some("application/json"), "");
    let huge = Backend::raw(
        1,
        200,
        Some("application/json"),
        &format!("\"{}\"", "x".repeat(200)),
    );
    let unavailable = Backend::raw(1, 503, Some("application/json"), "{}");
    let no_content = Backend::raw(1, 204, None, "");
    let problem_json = Backend::raw(1, 200, Some("application/problem+json"), "{\"a\":1}");
    // Refused from its content-length alone, before the body is read.
    let declared = Backend {
        declared_length: Some("1000000"),
        ..Backend::raw(1, 200, Some("application/json"), "{}")
    };
    let limited = |name, backend: &Backend| {
        let target = route().target("http://b.test", "/x/{id}").unwrap();
        Branch::http(
            name,
            ParseJsonLayer::new().limit(64).layer(backend.clone()),
            target,
        )
    };
    let fan_out = FanOut::builder("d")
        .branch(limited("good", &good))
        .branch(limited("html", &html))
        .branch(limited("garbage", &garbage))
        .branch(limited("untyped", &untyped))
        .branch(limited("empty", &empty))
        .branch(limited("huge", &huge))
        .branch(limited("unavailable", &unavailable))
        .branch(limited("no_content", &no_content))
        .branch(limited("problem_json", &problem_json))
        .branch(limited("declared", &declared))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    let body = body(response).await;
    assert_eq!(body["good"], json!({"ok": true}));
    assert_eq!(body["no_content"], Value::Null, "204 is null");
    assert_eq!(body["problem_json"], json!({"a": 1}), "+json is JSON");
    let errors = &body["errors"];
    let reason = |name: &str| errors[name]["reason"].as_str().unwrap().to_owned();
    let message = |name: &str| errors[name]["message"].as_str().unwrap().to_owned();
    assert_eq!(reason("html"), "invalid_response");
    assert_eq!(
        message("html"),
        "answered an invalid response: response is not JSON: content-type `text/html; charset=utf-8` is not JSON"
    );
    assert_eq!(reason("garbage"), "invalid_response");
    assert!(
        message("garbage").contains("the body is not valid JSON"),
        "{}",
        message("garbage")
    );
    assert_eq!(reason("untyped"), "invalid_response");
    assert_eq!(reason("empty"), "invalid_response");
    assert!(message("empty").ends_with("the body is empty"));
    assert_eq!(reason("huge"), "invalid_response");
    assert!(message("huge").ends_with("response body is larger than 64 bytes"));
    assert_eq!(reason("declared"), "invalid_response");
    assert!(message("declared").ends_with("response body is larger than 64 bytes"));
    assert_eq!(reason("unavailable"), "status");
    assert_eq!(errors["unavailable"]["status"], 503);
    assert_eq!(message("unavailable"), "answered status 503");
}

/// A body streamed in chunks with no size hint, as a chunked response is.
struct Chunks(std::collections::VecDeque<bytes::Bytes>);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        Poll::Ready(
            self.0
                .pop_front()
                .map(|chunk| Ok(http_body::Frame::data(chunk))),
        )
    }
}

#[derive(Clone)]
struct Streaming;

impl Service<Request<String>> for Streaming {
    type Response = Response<Chunks>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Chunks>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        let chunks = [&b"[1,2,3,"[..], b"4,5,6,", b"7,8,9]"].map(bytes::Bytes::from_static);
        std::future::ready(Ok(Response::new(Chunks(chunks.into_iter().collect()))))
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_streamed_body_over_the_limit_is_refused_while_reading() {
    let target = route().target("http://b.test", "/x/{id}").unwrap();
    let fan_out = FanOut::builder("d")
        .branch(Branch::http(
            "small",
            ParseJson::new(Streaming, 10),
            target.clone(),
        ))
        .branch(Branch::http(
            "big_enough",
            ParseJson::new(Streaming, 100),
            target,
        ))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let body = body(fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap()).await;
    assert_eq!(body["big_enough"], json!([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert_eq!(body["errors"]["small"]["reason"], "invalid_response");
    assert!(
        body["errors"]["small"]["message"]
            .as_str()
            .unwrap()
            .ends_with("response body is larger than 10 bytes")
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn templates_fill_path_and_query_and_forward_method_and_chosen_headers() {
    let backend = Backend::json(1, &json!({}));
    let base = route();
    let user = base
        .target("http://users.test:8081", "/users/{id}")
        .unwrap()
        .forward_header(AUTHORIZATION);
    let orders = base
        .target(
            "http://orders.test:8082/v2/",
            "/users/{id}/orders?limit={query.limit}&sort=desc",
        )
        .unwrap()
        .forward_query(true)
        .method(Method::GET)
        .header(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
    let fan_out = FanOut::builder("d")
        .branch(Branch::http(
            "user",
            ParseJson::new(backend.clone(), 1024),
            user,
        ))
        .branch(Branch::http(
            "order",
            ParseJson::new(backend.clone(), 1024),
            orders,
        ))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let incoming = Request::head("/api/dashboard/user/12345?limit=5&page=2")
        .header(AUTHORIZATION, "Bearer abc")
        .header(COOKIE, "session=secret")
        .body(())
        .unwrap();
    let response = fan_out.oneshot(incoming).await.unwrap();
    assert_eq!(response.headers()[COMPLETED_HEADER], "true");
    let mut seen = backend.seen();
    seen.sort_by(|a, b| a.uri.cmp(&b.uri));
    let (order, user) = (&seen[0], &seen[1]);
    assert_eq!(user.uri, "http://users.test:8081/users/12345");
    assert_eq!(user.method, Method::HEAD, "the incoming method by default");
    assert_eq!(user.headers[AUTHORIZATION], "Bearer abc");
    assert!(
        user.headers.get(COOKIE).is_none(),
        "only named headers are forwarded"
    );
    assert_eq!(
        order.uri,
        "http://orders.test:8082/v2/users/12345/orders?limit=5&sort=desc&limit=5&page=2"
    );
    assert_eq!(order.method, Method::GET);
    assert!(order.headers.get(AUTHORIZATION).is_none());
    assert_eq!(order.headers[http::header::ACCEPT], "application/json");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_missing_parameter_fails_its_branch_with_a_clear_reason() {
    let backend = Backend::json(1, &json!({"ok": 1}));
    let fan_out = FanOut::builder("d")
        .branch(branch("user", &backend, "/users/{id}"))
        .branch(branch("order", &backend, "/orders?limit={query.limit}"))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let body = body(fan_out.oneshot(get("/api/dashboard/user/9")).await.unwrap()).await;
    assert_eq!(body["user"], json!({"ok": 1}));
    assert_eq!(body["errors"]["order"]["reason"], "request");
    assert_eq!(
        body["errors"]["order"]["message"],
        "could not build the request: missing query parameter `limit`"
    );
    assert_eq!(backend.seen().len(), 1, "the order branch was not called");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_path_that_does_not_fit_the_route_is_refused_per_branch() {
    let backend = Backend::json(1, &json!(1));
    let fan_out = FanOut::builder("d")
        .branch(branch("user", &backend, "/users/{id}").required())
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let response = fan_out
        .clone()
        .oneshot(get("/api/dashboard/user/"))
        .await
        .unwrap();
    // The incoming request's fault: a 400, still marked incomplete.
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let problem = body(response).await;
    assert_eq!(problem["reason"], "request");
    assert_eq!(problem["branch"], "user");
    assert_eq!(
        problem["errors"]["user"]["message"],
        "could not build the request: missing path parameter `id`"
    );
    let response = fan_out
        .oneshot(get("/api/dashboard/user/.."))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body(response).await["errors"]["user"]["message"],
        "could not build the request: parameter `id` may not be `.` or `..`"
    );
    assert!(backend.seen().is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_required_branch_answers_a_problem() {
    let user = Backend::raw(5, 500, Some("application/json"), "{}");
    let order = Backend::json(1000, &json!(1));
    let fan_out = FanOut::builder("dashboard")
        .branch(branch("user", &user, "/users/{id}").required())
        .branch(branch("order", &order, "/orders/{id}"))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let start = Instant::now();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(elapsed_ms(start), 5);
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let problem = required_branch_failed(response).await;
    assert_eq!(problem["status"], 502);
    assert_eq!(problem["fan_out"], "dashboard");
    assert_eq!(problem["branch"], "user");
    assert_eq!(problem["reason"], "status");
    assert_eq!(problem["errors"]["user"]["status"], 500);
    assert_eq!(
        problem["detail"],
        "required branch `user` of fan-out `dashboard` failed: answered status 500"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_required_branch_answering_a_client_error_passes_it_on() {
    // (branch answers, gather answers): a client error about the request is
    // the client's; 407, 408, 421 and 429 are the gateway's trouble with the
    // backend; server errors stay 502.
    for (answered, expected) in [
        (400, 400),
        (401, 401),
        (403, 403),
        (404, 404),
        (410, 410),
        (422, 422),
        (407, 502),
        (408, 502),
        (421, 502),
        (429, 503),
        (500, 502),
        (503, 502),
    ] {
        let user = Backend::raw(1, answered, Some("application/problem+json"), "{}");
        let order = Backend::json(1000, &json!(1));
        let fan_out = FanOut::builder("dashboard")
            .branch(branch("user", &user, "/users/{id}").required())
            .branch(branch("order", &order, "/orders/{id}").required())
            .merge(JsonResponse::<String>::keyed())
            .build()
            .unwrap();
        let start = Instant::now();
        let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
        assert_eq!(elapsed_ms(start), 1, "fails fast on {answered}");
        assert_eq!(
            response.status().as_u16(),
            expected,
            "branch answered {answered}"
        );
        let problem = required_branch_failed(response).await;
        assert_eq!(problem["status"], expected);
        assert_eq!(problem["branch"], "user");
        assert_eq!(problem["reason"], "status");
        assert_eq!(problem["errors"]["user"]["status"], answered);
        assert_eq!(
            problem["detail"],
            format!(
                "required branch `user` of fan-out `dashboard` failed: answered status {answered}"
            )
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn required_timeouts_and_rejections_map_to_504_and_503() {
    let slow = Backend::json(1000, &json!(1));
    let fan_out = FanOut::builder("d")
        .branch(
            branch("user", &slow, "/users/{id}")
                .required()
                .timeout(ms(50)),
        )
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);

    let rejecting = Backend::rejecting();
    let fan_out = FanOut::builder("d")
        .branch(branch("reward", &rejecting, "/rewards/{id}").required())
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()[RETRY_AFTER],
        "3",
        "from the breaker's 2.5 s, rounded up"
    );
    assert_eq!(body(response).await["reason"], "rejected");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn nothing_succeeding_answers_a_problem_not_an_empty_200() {
    let broken = Backend::raw(1, 500, Some("application/json"), "{}");
    let slow = Backend::json(1000, &json!(1));
    let fan_out = FanOut::builder("d")
        .branch(branch("a", &broken, "/a/{id}"))
        .branch(branch("b", &slow, "/b/{id}").timeout(ms(10)))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let problem = body(response).await;
    assert_eq!(problem["type"], "urn:palisade:problem:nothing-succeeded");
    assert_eq!(problem["errors"]["a"]["reason"], "status");
    assert_eq!(problem["errors"]["b"]["reason"], "timeout");

    // Every branch timed out: a gateway timeout.
    let fan_out = FanOut::builder("d")
        .deadline(ms(20))
        .branch(branch("b", &slow, "/b/{id}"))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_deadline_with_a_required_branch_pending_answers_504() {
    let slow = Backend::json(1000, &json!(1));
    let fast = Backend::json(1, &json!(1));
    let fan_out = FanOut::builder("d")
        .deadline(ms(300))
        .branch(branch("user", &slow, "/u/{id}").required())
        .branch(branch("review", &fast, "/r/{id}"))
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let start = Instant::now();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(elapsed_ms(start), 300);
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let problem = body(response).await;
    assert_eq!(problem["type"], "urn:palisade:problem:deadline-elapsed");
    assert_eq!(problem["pending"], json!(["user"]));
    assert_eq!(problem["deadline_ms"], 300);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fallbacks_are_marked_in_the_http_account() {
    let user = Backend::json(1, &json!({"name": "John"}));
    let reward = Backend::raw(1, 503, None, "");
    let fan_out = FanOut::builder("d")
        .branch(branch("user", &user, "/u/{id}").required())
        .branch(branch("reward", &reward, "/r/{id}").fallback(json!({"points": 0})))
        .merge(JsonResponse::<String>::flatten())
        .build()
        .unwrap();
    let response = fan_out.oneshot(get("/api/dashboard/user/1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(
        body(response).await,
        json!({
            "name": "John",
            "points": 0,
            "errors": {"reward": {"reason": "status", "status": 503, "message": "answered status 503", "fallback": true}}
        })
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn error_response_maps_errors_of_other_merges() {
    let user = Backend::raw(1, 404, None, "");
    let fan_out = FanOut::builder("d")
        .branch(branch("user", &user, "/u/{id}").required())
        .build()
        .unwrap();
    let err = fan_out
        .oneshot(get("/api/dashboard/user/1"))
        .await
        .unwrap_err();
    let response: Response<String> = error_response(&*err).expect("a fan-out error");
    // The required branch's 404 is the answer's (an unknown id).
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    assert_eq!(body(response).await["errors"]["user"]["status"], 404);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_gateway_dashboard_shape() {
    // The gateway's `GET /api/dashboard/user/{id}`: user and order required,
    // the rest optional; one backend is down.
    let services = [
        (
            "user",
            "/users/{id}",
            Backend::json(80, &json!({"name": "John", "level": "Gold"})),
        ),
        (
            "order",
            "/users/{id}/orders",
            Backend::json(120, &json!({"orders": 15})),
        ),
        (
            "product",
            "/users/{id}/products",
            Backend::json(150, &json!({"viewed": 45})),
        ),
        (
            "review",
            "/users/{id}/reviews",
            Backend::json(100, &json!({"written": 8})),
        ),
        (
            "reward",
            "/users/{id}/rewards",
            Backend::raw(30, 503, None, ""),
        ),
        (
            "notification",
            "/users/{id}/notifications",
            Backend::json(60, &json!({"unread": 5})),
        ),
    ];
    let mut builder = FanOut::builder("dashboard").deadline(ms(500));
    for (name, path, backend) in &services {
        let mut b = branch(name, backend, path).timeout(ms(250));
        if matches!(*name, "user" | "order") {
            b = b.required();
        }
        builder = builder.branch(b);
    }
    let fan_out = builder
        .merge(JsonResponse::<String>::keyed())
        .build()
        .unwrap();
    let start = Instant::now();
    let response = fan_out
        .oneshot(get("/api/dashboard/user/12345"))
        .await
        .unwrap();
    assert_eq!(elapsed_ms(start), 150);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[COMPLETED_HEADER], "false");
    let body = body(response).await;
    for name in ["user", "order", "product", "review", "notification"] {
        assert!(body.get(name).is_some(), "{name} answered");
    }
    assert_eq!(body["errors"]["reward"]["status"], 503);
    assert_eq!(
        services[1].2.seen()[0].uri,
        "http://backend.test:8080/users/12345/orders"
    );
}

#[test]
fn templates_are_checked_when_built() {
    let route = route();
    let field = |r: Result<Target, palisade_core::ConfigError>| r.unwrap_err().field().to_owned();
    assert_eq!(
        field(route.target("http://x", "/users/{user_id}")),
        "target"
    );
    let err = route.target("http://x", "/users/{user_id}").unwrap_err();
    assert!(
        err.reason()
            .contains("route `/api/dashboard/user/{id}` does not declare"),
        "{err}"
    );
    assert_eq!(field(route.target("users.test", "/users/{id}")), "target");
    assert_eq!(field(route.target("http://x?a=1", "/users/{id}")), "target");
    assert_eq!(field(route.target("http://x", "users/{id}")), "target");
    assert_eq!(field(route.target("http://x", "/users/{id")), "target");
    assert_eq!(field(route.target("http://x", "/users/id}")), "target");
    assert_eq!(field(route.target("http://x", "/users/{id}/a b")), "target");
    assert_eq!(
        field(route.target("http://x", "/q?x={query.a-b}")),
        "target"
    );
    assert!(route.target("http://x", "/q?x={query.a_b}").is_ok());
    for bad in [
        "api",
        "/a/{}",
        "/a/{*rest}/b",
        "/a/x{id}",
        "/a/{id}/{id}",
        "/a/{1d}",
    ] {
        assert_eq!(Route::new(bad).unwrap_err().field(), "route", "{bad}");
    }
}

#[test]
fn wildcards_keep_their_slashes_but_may_not_climb() {
    let route = Route::new("/proxy/{svc}/{*rest}").unwrap();
    let target = route.target("http://b.test", "/{svc}/{rest}").unwrap();
    let uri = |path: &str| target.uri(&path.parse().unwrap());
    assert_eq!(
        uri("/proxy/users/a/b/c").unwrap(),
        "http://b.test/users/a/b/c"
    );
    assert_eq!(
        uri("/proxy/users/a/../../etc").unwrap_err().to_string(),
        "parameter `rest` may not be `.` or `..`"
    );
    assert_eq!(
        uri("/proxy/users").unwrap_err().to_string(),
        "missing path parameter `rest`"
    );
    assert_eq!(
        uri("/elsewhere/users/a").unwrap_err().to_string(),
        "path does not match route `/proxy/{svc}/{*rest}`"
    );
    // A query value placed in a path cannot add segments or a query.
    let route = Route::new("/search").unwrap();
    let target = route
        .target("http://b.test", "/items/{query.id}?q={query.q}")
        .unwrap();
    assert_eq!(
        target
            .uri(&"/search?id=a/b?c%2F&q=x%26y=z&k".parse().unwrap())
            .unwrap(),
        "http://b.test/items/a%2Fb%3Fc%2F?q=x%26y%3Dz"
    );
    assert!(target.uri(&"/search?id=..&q=1".parse().unwrap()).is_err());
    assert!(
        target
            .uri(&"/search?id=%2E%2e&q=1".parse().unwrap())
            .is_err()
    );
}

/// Spellings of `..` that a branch's server (Tomcat and Spring read `..;` as
/// `..`; others decode `%2F` or read `\` as `/` before normalising) would
/// climb with. Each is refused in a path parameter, a wildcard and a query
/// value put into the path.
const TRAVERSALS: &[&str] = &[
    "..",
    ".",
    "..;",
    "..;jsessionid=x",
    "%2e%2e",
    "%2E.",
    "..%2F..%2Fadmin",
    "..%2f..%2fadmin",
    "%2e%2e%2fadmin",
    "..%5C..%5Cadmin",
    "..%5c..%5cadmin",
    "%252e%252e%252fadmin",
    "..%00",
    "%c0%ae%c0%ae",
    "a%5Cb",
    "..%20",
];

#[test]
fn every_spelling_of_a_climb_is_refused_in_a_branch_path() {
    let route = Route::new("/api/items/{id}/{*rest}").unwrap();
    let by_id = route.target("http://b.test", "/items/{id}").unwrap();
    let by_rest = route.target("http://b.test", "/files/{rest}").unwrap();
    let search = Route::new("/search").unwrap();
    let by_query = search.target("http://b.test", "/items/{query.id}").unwrap();
    for spelling in TRAVERSALS {
        let incoming = format!("/api/items/{spelling}/x").parse().unwrap();
        let err = by_id.uri(&incoming).expect_err(spelling);
        assert!(
            err.to_string().starts_with("parameter `id` "),
            "{spelling}: {err}"
        );
        let incoming = format!("/api/items/7/x/{spelling}/admin").parse().unwrap();
        let err = by_rest.uri(&incoming).expect_err(spelling);
        assert!(
            err.to_string().starts_with("parameter `rest` "),
            "{spelling}: {err}"
        );
        let incoming = format!("/search?id={spelling}").parse().unwrap();
        let err = by_query.uri(&incoming).expect_err(spelling);
        assert!(
            err.to_string().starts_with("parameter `id` "),
            "{spelling}: {err}"
        );
    }
    // A raw backslash (http accepts one in a path) is refused too.
    let incoming = "/api/items/7/x/..\\..\\admin".parse().unwrap();
    assert_eq!(
        by_rest.uri(&incoming).unwrap_err().to_string(),
        "parameter `rest` may not be `.` or `..`"
    );
    let incoming = "/api/items/a%5Cb/x".parse().unwrap();
    assert_eq!(
        by_id.uri(&incoming).unwrap_err().to_string(),
        "parameter `id` is refused: the path has a backslash (raw or percent-encoded)"
    );
    // Names that only look like a climb pass, escapes untouched.
    for fine in ["...", "a..b", ".hidden", "%2e%2e%2e", "a%2Fb", "100%25"] {
        let incoming = format!("/api/items/{fine}/x").parse().unwrap();
        assert_eq!(
            by_id.uri(&incoming).unwrap(),
            format!("http://b.test/items/{fine}").as_str(),
            "{fine}"
        );
    }
}
