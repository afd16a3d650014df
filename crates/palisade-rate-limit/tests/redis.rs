//! The Redis backend against a real server: instances share one limit, a
//! refused key costs no round trip, and a Redis stopped mid-run switches to
//! the failure mode at once and back to Redis when it returns.
//!
//! Shared-server tests read `PALISADE_TEST_REDIS_URL` and use their own key
//! prefix. The stop-and-restart tests run their own `redis-server` (Debian's
//! binary) on a free port, since the shared one cannot be stopped.
#![cfg(feature = "redis")]

mod support;

use std::process::Stdio;
use std::time::Duration;

use palisade_core::{BoxError, RateLimited, is_rejection, rejection};
use palisade_rate_limit::backend::RedisBackend;
use palisade_rate_limit::error::Unavailable;
use palisade_rate_limit::{FailureMode, Key, Rate, RateLimitLayer, RemoteSnapshot};
use palisade_test_util::{REDIS_URL_VAR, in_ci, service_url, unique_name};
use redis::aio::ConnectionManager;
use support::Echo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tower::{Layer, ServiceExt};

fn by_key<'a>(k: &'a &str) -> Option<Key<'a>> {
    Some(Key::text(k))
}

async fn cleanup(conn: &ConnectionManager, prefix: &str) {
    let mut conn = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

fn remote(layer: &RateLimitLayer<impl Sized>) -> RemoteSnapshot {
    layer.handle().snapshot().remote.expect("a remote backend")
}

/// Calls once; `Ok(true)` admitted, `Ok(false)` refused for the limit.
async fn try_call<S>(svc: &S, key: &'static str) -> Result<bool, BoxError>
where
    S: tower::Service<&'static str, Error = BoxError> + Clone,
{
    match svc.clone().oneshot(key).await {
        Ok(_) => Ok(true),
        Err(e) if e.is::<RateLimited>() => Ok(false),
        Err(e) => Err(e),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn two_instances_on_one_redis_share_one_limit() {
    let Some(url) = service_url(REDIS_URL_VAR, "two_instances_on_one_redis_share_one_limit") else {
        return;
    };
    let prefix = format!("{}:", unique_name("rl_share"));
    let limiter = |backend| {
        RateLimitLayer::builder("shared")
            .rate(Rate::per_hour(1))
            .burst(20)
            .key_prefix(prefix.clone())
            .key_by(by_key)
            .redis(backend)
            .build()
            .unwrap()
    };
    // Two clients, two connections: two instances of a fleet.
    let a = limiter(RedisBackend::connect(&url).await.unwrap());
    let b = limiter(RedisBackend::connect(&url).await.unwrap());
    let (sa, sb) = (a.layer(Echo), b.layer(Echo));
    let calls: Vec<_> = (0..60)
        .map(|n| {
            let svc = if n % 2 == 0 { sa.clone() } else { sb.clone() };
            tokio::spawn(async move { try_call(&svc, "tenant-1").await.unwrap() })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        admitted += usize::from(call.await.unwrap());
    }
    assert_eq!(admitted, 20, "together they admit the limit, no more");
    let (ra, rb) = (remote(&a), remote(&b));
    assert!(
        ra.decided > 0 && rb.decided > 0,
        "both asked Redis: {ra:?} {rb:?}"
    );
    assert_eq!(ra.errors + rb.errors + ra.fallbacks + rb.fallbacks, 0);
    // Another key has its own allowance.
    assert!(try_call(&sa, "tenant-2").await.unwrap());
    cleanup(
        RedisBackend::connect(&url).await.unwrap().connection(),
        &prefix,
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_key_is_refused_locally_without_a_round_trip() {
    let Some(url) = service_url(
        REDIS_URL_VAR,
        "a_refused_key_is_refused_locally_without_a_round_trip",
    ) else {
        return;
    };
    let prefix = format!("{}:", unique_name("rl_cache"));
    let backend = RedisBackend::connect(&url).await.unwrap();
    let layer = RateLimitLayer::builder("cache")
        .rate(Rate::per_hour(1))
        .burst(2)
        .key_prefix(prefix.clone())
        .key_by(by_key)
        .redis(backend.clone())
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(try_call(&svc, "k").await.unwrap());
    assert!(try_call(&svc, "k").await.unwrap());
    let err = svc.clone().oneshot("k").await.unwrap_err();
    let after = err
        .downcast_ref::<RateLimited>()
        .unwrap()
        .retry_after()
        .unwrap();
    assert!(
        after > Duration::from_secs(3590) && after <= Duration::from_secs(3600),
        "{after:?}"
    );
    assert_eq!(remote(&layer).decided, 3);
    for _ in 0..10 {
        assert!(!try_call(&svc, "k").await.unwrap());
    }
    let r = remote(&layer);
    assert_eq!(
        (r.decided, r.cache_hits, r.cached_keys),
        (3, 10, 1),
        "no round trip: {r:?}"
    );
    // The key's TAT is in Redis, with an expiry at which it is whole again.
    let mut conn = backend.connection().clone();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}k:k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 7_190_000 && ttl <= 7_200_000, "{ttl}");
    // Raising the limit forgets the cached refusals.
    layer
        .handle()
        .set_limit(
            "default",
            palisade_rate_limit::Limit::new(Rate::per_hour(1), 3),
        )
        .unwrap();
    assert!(try_call(&svc, "k").await.unwrap());
    cleanup(backend.connection(), &prefix).await;
}

#[tokio::test(flavor = "current_thread")]
async fn throttled_calls_wait_for_the_slot_redis_gave_them() {
    let Some(url) = service_url(
        REDIS_URL_VAR,
        "throttled_calls_wait_for_the_slot_redis_gave_them",
    ) else {
        return;
    };
    let prefix = format!("{}:", unique_name("rl_throttle"));
    let backend = RedisBackend::connect(&url).await.unwrap();
    let layer = RateLimitLayer::builder("throttle")
        .rate(Rate::per_second(2))
        .burst(1)
        .max_delay(Duration::from_secs(2))
        .key_prefix(prefix.clone())
        .redis(backend.clone())
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|()| async {
        Ok::<_, std::convert::Infallible>(tokio::time::Instant::now())
    }));
    svc.clone().oneshot(()).await.unwrap();
    let waiting = tokio::spawn(svc.clone().oneshot(()));
    // Until Redis has answered (real I/O), then freeze the clock: the
    // waiting call runs when the paused clock reaches its slot, ~500 ms on
    // (tokio's timers tick in whole milliseconds: up to 1 ms later).
    let handle = layer.handle();
    while handle.snapshot().tiers[0].delayed == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::pause();
    let frozen = tokio::time::Instant::now();
    let ran_at = waiting.await.unwrap().unwrap();
    let waited = ran_at - frozen;
    assert!(
        waited > Duration::from_millis(400) && waited <= Duration::from_millis(501),
        "{waited:?}"
    );
    tokio::time::resume();
    cleanup(backend.connection(), &prefix).await;
}

// ===== Redis stopped mid-run =====

/// A `redis-server` of the test's own, on a free port.
struct OwnRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    /// `None` (with the reason printed) when the binary is missing by hand;
    /// with `CI=true`, a missing binary fails the test.
    fn available(test: &str) -> bool {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                !in_ci(),
                "{test}: CI=true but `redis-server` is not installed"
            );
            println!("{test}: skipped, `redis-server` is not installed");
        }
        found
    }

    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut own = Self { port, child: None };
        own.restart().await;
        own
    }

    /// Starts the server on its port and returns once it accepts
    /// connections (it says so on its output).
    async fn restart(&mut self) {
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            ready,
            Ok(true),
            "redis-server did not start on port {}",
            self.port
        );
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Waits until the backend's connection manager talks to the server again
/// (each PING awaits its reconnection; no timed sleep).
async fn reconnected(backend: &RedisBackend) {
    let mut conn = backend.connection().clone();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
            if pong.is_ok() {
                return;
            }
        }
    })
    .await
    .expect("the connection manager reconnects");
}

/// Moves tokio's clock by `d` (the breaker's open wait) without waiting.
async fn skip(d: Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    tokio::time::resume();
}

#[tokio::test(flavor = "current_thread")]
async fn redis_stopped_mid_run_fails_open_at_once_and_is_used_again_when_back() {
    let test = "redis_stopped_mid_run_fails_open_at_once_and_is_used_again_when_back";
    if !OwnRedis::available(test) {
        return;
    }
    let mut server = OwnRedis::start().await;
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let layer = RateLimitLayer::builder("fail-open")
        .rate(Rate::per_hour(1))
        .burst(3)
        .failure_mode(FailureMode::Open)
        .key_by(by_key)
        .redis(backend.clone())
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(try_call(&svc, "a").await.unwrap());
    assert_eq!(remote(&layer).decided, 1);

    server.stop().await;
    // At once: the very next call is decided by the local limiter (its own
    // allowance of 3 for the key), without an error.
    assert!(try_call(&svc, "a").await.unwrap());
    let r = remote(&layer);
    assert_eq!((r.decided, r.fallbacks), (1, 1), "{r:?}");
    assert!(try_call(&svc, "a").await.unwrap());
    assert!(try_call(&svc, "a").await.unwrap());
    assert!(!try_call(&svc, "a").await.unwrap(), "the local limit holds");
    // Three failures in a row opened the breaker: from then on Redis is not
    // asked at all.
    let r = remote(&layer);
    assert_eq!(r.breaker, "open", "{r:?}");
    let errors = r.errors;
    for _ in 0..20 {
        let _ = try_call(&svc, "b").await.unwrap();
    }
    let r = remote(&layer);
    assert_eq!(r.errors, errors, "no call reached the dead server: {r:?}");
    assert!(r.not_permitted >= 20, "{r:?}");

    // Back: after the breaker's wait a probe goes to Redis, and Redis
    // decides again (a fresh server: the key's allowance is whole).
    server.restart().await;
    reconnected(&backend).await;
    skip(Duration::from_secs(1)).await;
    let decided = remote(&layer).decided;
    assert!(try_call(&svc, "c").await.unwrap());
    let r = remote(&layer);
    assert_eq!(r.decided, decided + 1, "{r:?}");
    assert_eq!(r.breaker, "closed", "{r:?}");
    let mut conn = backend.connection().clone();
    let stored: Option<String> = redis::cmd("GET")
        .arg("palisade:rate-limit:fail-open:k:c")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(stored.is_some(), "the decision is in Redis");
    server.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn redis_stopped_mid_run_fails_closed_at_once_and_is_used_again_when_back() {
    let test = "redis_stopped_mid_run_fails_closed_at_once_and_is_used_again_when_back";
    if !OwnRedis::available(test) {
        return;
    }
    let mut server = OwnRedis::start().await;
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let layer = RateLimitLayer::builder("fail-closed")
        .rate(Rate::per_hour(1))
        .burst(3)
        .failure_mode(FailureMode::Closed)
        .key_by(by_key)
        .redis(backend.clone())
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(try_call(&svc, "a").await.unwrap());

    server.stop().await;
    for n in 0..10 {
        let err = svc.clone().oneshot("a").await.unwrap_err();
        let unavailable = err
            .downcast_ref::<Unavailable>()
            .expect("refused, failing closed");
        assert!(
            is_rejection(&*err),
            "a rejection: not retried, not a breaker failure"
        );
        assert_eq!(rejection(&*err).unwrap().name(), "fail-closed");
        if n < 3 {
            assert!(
                unavailable.cause().is_some(),
                "call {n}: Redis was asked and failed"
            );
        } else {
            // The breaker is open: Redis is not asked, and the refusal says
            // when it will be tried again.
            assert!(unavailable.cause().is_none(), "call {n}");
            assert!(unavailable.rejection().retry_after().is_some());
        }
    }
    server.restart().await;
    reconnected(&backend).await;
    skip(Duration::from_secs(1)).await;
    assert!(try_call(&svc, "a").await.unwrap(), "Redis decides again");
    assert_eq!(remote(&layer).breaker, "closed");
    server.stop().await;
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "current_thread")]
async fn the_http_layer_carries_the_fields_of_a_redis_decision() {
    use palisade_rate_limit::http::header;
    let Some(url) = service_url(
        REDIS_URL_VAR,
        "the_http_layer_carries_the_fields_of_a_redis_decision",
    ) else {
        return;
    };
    let prefix = format!("{}:", unique_name("rl_http"));
    let backend = RedisBackend::connect(&url).await.unwrap();
    let layer = RateLimitLayer::builder("edge")
        .rate(Rate::per_minute(1))
        .burst(2)
        .key_prefix(prefix.clone())
        .key(header("x-api-key"))
        .redis(backend.clone())
        .build()
        .unwrap();
    let svc = layer
        .http_layer()
        .layer(tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        }));
    let req = || {
        http::Request::get("/")
            .header("x-api-key", "k1")
            .body(String::new())
            .unwrap()
    };
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""default";q=1;w=60;palisade-burst=2"#
    );
    assert_eq!(res.headers()["ratelimit"], r#""default";r=1;t=60"#);
    svc.clone().oneshot(req()).await.unwrap();
    // Refused by Redis: 429 with the fields.
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["ratelimit"], r#""default";r=0;t=60"#);
    assert_eq!(res.headers()["retry-after"], "60");
    // Refused from the local cache, with no round trip: the same answer.
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("ratelimit"));
    assert_eq!(remote(&layer).cache_hits, 1);
    cleanup(backend.connection(), &prefix).await;
}
