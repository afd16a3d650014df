//! The Redis backend (feature `redis`): one limit shared by every instance
//! of a fleet.
//!
//! - **One round trip per decision.** The GCRA step runs in Redis as one Lua
//!   script ([`GCRA_SCRIPT`]): read the key's TAT, decide with the server's
//!   clock (`TIME`, so the instances' clocks never disagree), write the new
//!   TAT with an expiry at which the allowance is whole again (so Redis
//!   holds only keys that carry information). Called with `EVALSHA`, loaded
//!   once on `NOSCRIPT`.
//! - **Refusals are remembered locally.** When Redis refuses a key until
//!   time T, the instance keeps "over the limit until T" in a local table
//!   and refuses that key without a round trip until then. The TAT only
//!   grows between two admissions, so this never refuses a call Redis would
//!   admit (a limit raised through the handle clears it).
//! - **Failures cost nothing per call.** The script call sits behind a
//!   palisade circuit breaker: when Redis fails or does not answer within
//!   `backend_timeout`, the call is decided by the failure mode at once
//!   (`open`: the local limiter; `closed`: refuse with `503`), and once the
//!   breaker opens no call goes to Redis until its probe succeeds.
//!
//! The client is redis-rs with its [`ConnectionManager`]: one multiplexed
//! connection shared by every clone (concurrent calls are pipelined on it),
//! which reconnects by itself after a failure. It is the most used Redis
//! client for Rust, kept by the redis-rs organisation, and needs nothing
//! beyond tokio here (no TLS stack is pulled in).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use palisade_circuit_breaker::future::ResponseFuture as BreakerFuture;
use palisade_circuit_breaker::{
    CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer, ErrorsAsFailures,
};
use palisade_core::{BoxError, CircuitOpen, cause_ref};
use pin_project_lite::pin_project;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::memory::MemoryStore;
use crate::metrics::BackendMetrics;
use crate::settings::FailureMode;
use crate::state::table::{KeyRef, TAG_TEXT, Table};
use crate::state::{Decision, Gcra};

/// The GCRA step, run atomically by Redis.
///
/// `KEYS[1]`: the key. `ARGV`: the emission interval `T`, the tolerance `τ`
/// and the longest wait allowed, in microseconds. Returns
/// `{admitted (1 or 0), wait or retry-after (µs), TAT - now (µs)}`.
pub const GCRA_SCRIPT: &str = r"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local max_delay = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local wait = tat - tau - now
if wait > max_delay then
  return {0, wait, tat - now}
end
if wait < 0 then
  wait = 0
end
local new_tat = tat + t
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, wait, new_tat - now}
";

/// A Redis server for a rate limiter: give it to
/// [`RateLimitBuilder::redis`](crate::RateLimitBuilder::redis).
///
/// Holds a redis-rs [`ConnectionManager`]: cheap to clone, one multiplexed
/// connection that reconnects by itself. Share one manager with the rest of
/// the application if you like; limiters that must share a limit need the
/// same name or `key_prefix`, and the same limits.
#[derive(Clone)]
pub struct RedisBackend {
    conn: ConnectionManager,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend on an existing connection manager.
    #[must_use]
    pub const fn new(conn: ConnectionManager) -> Self {
        Self { conn }
    }

    /// Connects to `url` (`redis://host:port/db`) with a connection manager
    /// suited to a limiter: reconnection retried quickly (10 ms doubling to
    /// at most 200 ms, four times per failure, then again on the next call),
    /// connection attempts limited to one second. Returns once connected.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200))
            .set_number_of_retries(4)
            .set_connection_timeout(Some(Duration::from_secs(1)));
        Ok(Self::new(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }

    /// The connection manager.
    #[must_use]
    pub const fn connection(&self) -> &ConnectionManager {
        &self.conn
    }
}

/// The script's arguments for one call.
pub(crate) struct ScriptArgs {
    key: Vec<u8>,
    emission_us: u64,
    tolerance_us: u64,
    max_delay_us: u64,
}

/// The script's answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reply {
    admitted: bool,
    wait_us: u64,
    debt_us: u64,
}

/// The backend did not answer within `backend_timeout`.
#[derive(Debug)]
pub(crate) struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis did not answer within {:?}", self.0)
    }
}

impl StdError for TimedOut {}

/// One script call: the service the breaker guards.
#[derive(Clone)]
pub(crate) struct ScriptCall {
    conn: ConnectionManager,
    script: Arc<redis::Script>,
    timeout: Duration,
}

impl Service<ScriptArgs> for ScriptCall {
    type Response = Reply;
    type Error = BoxError;
    // redis-rs boxes every command's future itself; one more box here costs
    // little next to the round trip.
    type Future = Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, args: ScriptArgs) -> Self::Future {
        let mut conn = self.conn.clone();
        let script = Arc::clone(&self.script);
        let timeout = self.timeout;
        Box::pin(async move {
            let mut invocation = script.key(args.key);
            invocation
                .arg(args.emission_us)
                .arg(args.tolerance_us)
                .arg(args.max_delay_us);
            let call = invocation.invoke_async::<(i64, i64, i64)>(&mut conn);
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok((admitted, wait, debt))) => Ok(Reply {
                    admitted: admitted == 1,
                    wait_us: u64::try_from(wait).unwrap_or(0),
                    debt_us: u64::try_from(debt).unwrap_or(0),
                }),
                Ok(Err(error)) => Err(error.into()),
                Err(_) => Err(TimedOut(timeout).into()),
            }
        })
    }
}

/// The Redis store of one limiter.
pub(crate) struct RedisStore {
    breaker: CircuitBreaker<ScriptCall>,
    breaker_handle: CircuitBreakerHandle,
    /// Keys refused by Redis: "limited until" times.
    cache: Table,
    /// The local limiter for `FailureMode::Open`.
    fallback: MemoryStore,
    prefix: Box<[u8]>,
    failure_mode: FailureMode,
    pub(crate) metrics: BackendMetrics,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("breaker", &self.breaker_handle.name())
            .field("failure_mode", &self.failure_mode)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// The settings a Redis store is built from.
pub(crate) struct RedisParts {
    pub(crate) backend: RedisBackend,
    pub(crate) breaker: CircuitBreakerLayer<ErrorsAsFailures>,
    pub(crate) prefix: String,
    pub(crate) failure_mode: FailureMode,
    pub(crate) timeout: Duration,
    pub(crate) max_keys: usize,
    pub(crate) hasher: hashbrown::DefaultHashBuilder,
}

impl RedisStore {
    pub(crate) fn new(parts: RedisParts, metrics: BackendMetrics, now: u64) -> Self {
        let call = ScriptCall {
            conn: parts.backend.conn,
            script: Arc::new(redis::Script::new(GCRA_SCRIPT)),
            timeout: parts.timeout,
        };
        Self {
            breaker_handle: parts.breaker.handle(),
            breaker: parts.breaker.layer(call),
            cache: Table::new(
                parts.max_keys,
                crate::backend::memory::SWEEP_EVERY,
                now,
                parts.hasher.clone(),
            ),
            fallback: MemoryStore::new(parts.max_keys, now, parts.hasher),
            prefix: parts.prefix.into_bytes().into_boxed_slice(),
            failure_mode: parts.failure_mode,
            metrics,
        }
    }

    /// The local limiter used when Redis fails (fail open).
    pub(crate) const fn fallback(&self) -> &MemoryStore {
        &self.fallback
    }

    /// The local "limited until" cache.
    pub(crate) const fn cache(&self) -> &Table {
        &self.cache
    }

    pub(crate) const fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    pub(crate) const fn breaker(&self) -> &CircuitBreakerHandle {
        &self.breaker_handle
    }

    /// The Redis key of `key` (`None`: the shared word of unkeyed calls).
    pub(crate) fn redis_key(&self, key: Option<KeyRef<'_>>) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.prefix.len() + 3 + key.map_or(8, |k| k.bytes.len() + 40));
        out.extend_from_slice(&self.prefix);
        match key {
            None => out.extend_from_slice(b"unkeyed"),
            Some(key) if key.tag == TAG_TEXT => {
                out.extend_from_slice(b"k:");
                out.extend_from_slice(key.bytes);
            }
            Some(key) => {
                out.extend_from_slice(b"ip:");
                let mut text = String::new();
                // Writing an address to a String cannot fail.
                let _ = crate::key::write_key(key, &mut text);
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    /// A call for `key` refused from the cache: `Some(retry_after)` in
    /// nanoseconds if the key is known to be over its limit at `now`.
    pub(crate) fn cached_refusal(
        &self,
        key: KeyRef<'_>,
        hash: u64,
        now: u64,
        max_delay: u64,
    ) -> Option<u64> {
        let until = self.cache.get(key, hash)?;
        (until > now).then(|| until - now + max_delay)
    }

    /// Starts a remote decision.
    pub(crate) fn call(&self, redis_key: Vec<u8>, gcra: &Gcra, max_delay: u64) -> RemoteCall {
        let micros = |nanos: u64| nanos.div_ceil(1_000);
        RemoteCall {
            state: CallState::Ready {
                service: self.breaker.clone(),
                args: Some(ScriptArgs {
                    key: redis_key,
                    emission_us: micros(gcra.emission()).max(1),
                    tolerance_us: gcra.tolerance() / 1_000,
                    max_delay_us: max_delay / 1_000,
                }),
            },
        }
    }

    /// Forgets the cached refusals (a limit changed).
    pub(crate) fn clear_cache(&self) {
        self.cache.clear();
    }
}

/// How a remote decision went.
#[derive(Debug)]
pub(crate) enum Remote {
    /// Redis decided.
    Decided(Decision),
    /// Redis could not decide: `None` when its breaker refused the call (with
    /// the time until it is tried again), else the error.
    Failed {
        cause: Option<Arc<dyn StdError + Send + Sync>>,
        retry_after: Option<Duration>,
    },
}

pin_project! {
    #[project = CallStateProj]
    enum CallState {
        Ready {
            service: CircuitBreaker<ScriptCall>,
            args: Option<ScriptArgs>,
        },
        Calling {
            #[pin]
            future: BreakerFuture<Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>, ErrorsAsFailures>,
        },
    }
}

pin_project! {
    /// One decision in flight to Redis.
    pub(crate) struct RemoteCall {
        #[pin]
        state: CallState,
    }
}

impl fmt::Debug for RemoteCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCall").finish_non_exhaustive()
    }
}

impl RemoteCall {
    /// Drives the call; `now` (nanoseconds since the limiter's base) is read
    /// when the answer arrives. Records the outcome in `store`.
    pub(crate) fn poll_decide(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: &RedisStore,
        key: Option<(KeyRef<'_>, u64)>,
        max_delay: u64,
        now: impl FnOnce() -> u64,
    ) -> Poll<Remote> {
        let mut state = self.project().state;
        let result = loop {
            match state.as_mut().project() {
                CallStateProj::Ready { service, args } => {
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        break Err(error);
                    }
                    let args = args.take().expect("a remote call is started once");
                    let future = service.call(args);
                    state.set(CallState::Calling { future });
                }
                CallStateProj::Calling { future } => break ready!(future.poll(cx)),
            }
        };
        Poll::Ready(match result {
            Ok(reply) => {
                store.metrics.ok();
                let now = now();
                let debt = reply.debt_us.saturating_mul(1_000);
                let tat = now.saturating_add(debt);
                if reply.admitted {
                    Remote::Decided(Decision::Admit {
                        tat,
                        wait: reply.wait_us.saturating_mul(1_000),
                    })
                } else {
                    let retry_after = reply.wait_us.saturating_mul(1_000);
                    if let Some((key, hash)) = key {
                        // A call may be admitted (waiting) `max_delay` before
                        // its slot: remember the key until then.
                        let until = now.saturating_add(retry_after.saturating_sub(max_delay));
                        if until > now {
                            store.cache.update(
                                key,
                                hash,
                                now,
                                |cur| (until > cur).then_some(until),
                                |_| {},
                            );
                        }
                    }
                    Remote::Decided(Decision::Reject { tat, retry_after })
                }
            }
            Err(error) => {
                if let Some(open) = cause_ref::<CircuitOpen>(&*error) {
                    store.metrics.not_permitted();
                    Remote::Failed {
                        cause: None,
                        retry_after: open.retry_after(),
                    }
                } else {
                    store.metrics.error();
                    tracing::debug!(breaker = %store.breaker_handle.name(), error = %error, "rate limit backend call failed");
                    Remote::Failed {
                        cause: Some(Arc::from(error)),
                        retry_after: None,
                    }
                }
            }
        })
    }
}
