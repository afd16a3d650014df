//! The Redis tier: entries shared by a fleet, with their expiry, behind a
//! circuit breaker.
//!
//! Each entry is one Redis string under `<key_prefix><key text>`, with a
//! `PX` expiry at the end of its life (fresh time plus the longer stale
//! window), so Redis drops it when no instance could serve it any more. The
//! value starts with its lifetime; its age is read back from `PTTL`, so the
//! instances agree on freshness through Redis's clock, not their own:
//!
//! ```text
//! "PC" | 1 (format) | flags u8 (1: must revalidate) | fresh ms u64 | swr ms u64 | sie ms u64 | value
//! ```
//!
//! A process-tier miss asks Redis (`GET` and `PTTL` in one pipeline) before
//! the backend; a stored entry is written (`SET .. PX`) in a background task.
//! Every operation goes through a
//! [`palisade_circuit_breaker::CircuitBreaker`] and a timeout: when Redis fails or hangs, the breaker opens and the cache
//! goes on with its process tier alone, without waiting on Redis, until a
//! probe finds it back.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer};
use palisade_core::{BoxError, ConfigError, is_rejection};
use redis::aio::ConnectionManager;
use tower::{Layer, Service, ServiceExt};

use crate::settings::RedisSettings;
use crate::shared::{SharedTier, TierEntry, TierError, TierFuture};
use crate::state::Lifetime;

const MAGIC: &[u8; 2] = b"PC";
const FORMAT: u8 = 1;
const HEADER: usize = 2 + 1 + 1 + 8 * 3;
/// Deleting by pattern scans the keyspace: it gets more time than a lookup.
const MIN_DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis tier for a cache: a connection, settings and the breaker in front
/// of it. Give it to [`CacheBuilder::redis`](crate::CacheBuilder::redis).
///
/// ```no_run
/// use palisade_cache::CacheLayer;
/// use palisade_cache::backend::redis::RedisTier;
///
/// # async fn example() -> Result<(), palisade_core::BoxError> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let connection = client.get_connection_manager().await?;
/// let cache = CacheLayer::http_builder("products")
///     .redis(RedisTier::new(connection).key_prefix("shop:products:"))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTier {
    connection: ConnectionManager,
    settings: RedisSettings,
    breaker: Option<CircuitBreakerLayer>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("settings", &self.settings)
            .field(
                "breaker",
                &self.breaker.as_ref().map(CircuitBreakerLayer::name),
            )
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// A tier over `connection` (redis-rs's reconnecting `ConnectionManager`),
    /// with the default settings and breaker.
    #[must_use]
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            settings: RedisSettings::default(),
            breaker: None,
        }
    }

    /// Replaces every setting.
    #[must_use]
    pub fn settings(mut self, settings: RedisSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The prefix of every key (default `palisade:cache:<name>:`).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.key_prefix = Some(prefix.into());
        self
    }

    /// The longest one operation may take (default 250 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = Some(timeout);
        self
    }

    /// A cap on how long an entry read from Redis stays fresh in process.
    #[must_use]
    pub fn max_local_ttl(mut self, ttl: Duration) -> Self {
        self.settings.max_local_ttl = Some(ttl);
        self
    }

    /// The breaker in front of Redis. Default: `<name>-redis`, opening after
    /// 5 failures in a row (or half of the last 20 operations), for 5 s.
    #[must_use]
    pub fn breaker(mut self, breaker: CircuitBreakerLayer) -> Self {
        self.breaker = Some(breaker);
        self
    }

    pub(crate) fn build(self, name: &str) -> Result<Arc<dyn SharedTier>, ConfigError> {
        self.settings.validate()?;
        let breaker = match self.breaker {
            Some(breaker) => breaker,
            None => CircuitBreakerLayer::builder(format!("{name}-redis"))
                .count_window(20)
                .minimum_calls(10)
                .failure_rate_threshold(50.0)
                .consecutive_failures(5)
                .wait_in_open(Duration::from_secs(5))
                .permitted_calls_in_half_open(1)
                .build()?,
        };
        let timeout = self
            .settings
            .timeout
            .unwrap_or(RedisSettings::DEFAULT_TIMEOUT);
        let prefix = self
            .settings
            .key_prefix
            .clone()
            .unwrap_or_else(|| format!("palisade:cache:{name}:"));
        Ok(Arc::new(Redis {
            handle: breaker.handle(),
            service: breaker.layer(Ops {
                connection: self.connection,
                timeout,
            }),
            prefix,
            max_local_ttl: self.settings.max_local_ttl,
        }))
    }
}

/// One Redis operation.
#[derive(Debug)]
enum Op {
    Get(String),
    Put(String, Vec<u8>, u64),
    Delete(String),
}

#[derive(Debug)]
enum Done {
    Got(Option<Vec<u8>>, i64),
    Put,
    Deleted(u64),
}

/// The operations as a tower service, so the breaker can sit in front.
#[derive(Clone)]
struct Ops {
    connection: ConnectionManager,
    timeout: Duration,
}

impl Service<Op> for Ops {
    type Response = Done;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Done, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, op: Op) -> Self::Future {
        let mut connection = self.connection.clone();
        let timeout = match op {
            Op::Delete(_) => self.timeout.max(MIN_DELETE_TIMEOUT),
            _ => self.timeout,
        };
        Box::pin(async move {
            let run = async {
                match op {
                    Op::Get(key) => {
                        let (value, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
                            .cmd("GET")
                            .arg(&key)
                            .cmd("PTTL")
                            .arg(&key)
                            .query_async(&mut connection)
                            .await?;
                        Ok(Done::Got(value, pttl))
                    }
                    Op::Put(key, value, px) => {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(value)
                            .arg("PX")
                            .arg(px)
                            .query_async::<()>(&mut connection)
                            .await?;
                        Ok(Done::Put)
                    }
                    Op::Delete(pattern) => {
                        let mut cursor: u64 = 0;
                        let mut deleted = 0;
                        loop {
                            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                                .arg(cursor)
                                .arg("MATCH")
                                .arg(&pattern)
                                .arg("COUNT")
                                .arg(500)
                                .query_async(&mut connection)
                                .await?;
                            if !keys.is_empty() {
                                let n: u64 = redis::cmd("UNLINK")
                                    .arg(&keys)
                                    .query_async(&mut connection)
                                    .await?;
                                deleted += n;
                            }
                            if next == 0 {
                                break Ok(Done::Deleted(deleted));
                            }
                            cursor = next;
                        }
                    }
                }
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(result) => result.map_err(|e: redis::RedisError| -> BoxError { Box::new(e) }),
                Err(elapsed) => Err(Box::new(elapsed) as BoxError),
            }
        })
    }
}

struct Redis {
    service: CircuitBreaker<Ops>,
    handle: CircuitBreakerHandle,
    prefix: String,
    max_local_ttl: Option<Duration>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A glob pattern matching `text` literally.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) fn encode(entry: &TierEntry) -> Vec<u8> {
    let lifetime = &entry.lifetime;
    let mut out = Vec::with_capacity(HEADER + entry.value.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.push(u8::from(lifetime.must_revalidate));
    out.extend_from_slice(&millis(lifetime.fresh).to_be_bytes());
    out.extend_from_slice(&millis(lifetime.stale_while_revalidate).to_be_bytes());
    out.extend_from_slice(&millis(lifetime.stale_if_error).to_be_bytes());
    out.extend_from_slice(&entry.value);
    out
}

/// Reads an entry written by [`encode`] whose key has `pttl` ms to live.
pub(crate) fn decode(bytes: &[u8], pttl: i64) -> Option<TierEntry> {
    if bytes.len() < HEADER || &bytes[..2] != MAGIC || bytes[2] != FORMAT {
        return None;
    }
    let read = |at: usize| -> Option<Duration> {
        let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(Duration::from_millis(u64::from_be_bytes(raw)))
    };
    let lifetime = Lifetime {
        fresh: read(4)?,
        stale_while_revalidate: read(12)?,
        stale_if_error: read(20)?,
        must_revalidate: bytes[3] & 1 == 1,
    }
    .clamped();
    // PTTL: ms left; -1: no expiry (not written by this tier); -2: gone.
    let left = match pttl {
        -2 => return None,
        n if n < 0 => lifetime.keep(),
        n => Duration::from_millis(n.unsigned_abs()),
    };
    Some(TierEntry {
        value: bytes[HEADER..].to_vec(),
        age: lifetime.keep().saturating_sub(left),
        lifetime,
    })
}

fn failed(error: BoxError) -> TierError {
    if is_rejection(&*error) {
        TierError::Skipped(error)
    } else {
        TierError::Failed(error)
    }
}

impl SharedTier for Redis {
    fn get(&self, key: String) -> TierFuture<Result<Option<TierEntry>, TierError>> {
        let call = self
            .service
            .clone()
            .oneshot(Op::Get(format!("{}{key}", self.prefix)));
        Box::pin(async move {
            match call.await.map_err(failed)? {
                Done::Got(Some(bytes), pttl) => Ok(decode(&bytes, pttl)),
                _ => Ok(None),
            }
        })
    }

    fn put(&self, key: String, entry: TierEntry) -> TierFuture<Result<(), TierError>> {
        let left = entry.lifetime.keep().saturating_sub(entry.age);
        let px = millis(left).max(1);
        let call = self.service.clone().oneshot(Op::Put(
            format!("{}{key}", self.prefix),
            encode(&entry),
            px,
        ));
        Box::pin(async move { call.await.map(|_| ()).map_err(failed) })
    }

    fn delete(&self, pattern: String, prefix: bool) -> TierFuture<Result<u64, TierError>> {
        let base = escape_glob(&format!("{}{pattern}", self.prefix));
        let globs = if prefix {
            vec![format!("{base}*")]
        } else {
            // The key itself, and its variants (`<uri> HEAD`, `<uri> <vary>`).
            vec![base.clone(), format!("{base} *")]
        };
        let service = self.service.clone();
        Box::pin(async move {
            let mut deleted = 0;
            for glob in globs {
                if let Done::Deleted(n) = service
                    .clone()
                    .oneshot(Op::Delete(glob))
                    .await
                    .map_err(failed)?
                {
                    deleted += n;
                }
            }
            Ok(deleted)
        })
    }

    fn max_local_ttl(&self) -> Option<Duration> {
        self.max_local_ttl
    }

    fn describe(&self) -> (String, &'static str) {
        (self.prefix.clone(), self.handle.state().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_its_age_comes_from_the_ttl() {
        let lifetime = Lifetime::new(
            Duration::from_secs(10),
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        let entry = TierEntry {
            value: b"value".to_vec(),
            lifetime,
            age: Duration::ZERO,
        };
        let bytes = encode(&entry);
        // Written with 70 s to live; read back with 67 s left: 3 s old.
        let back = decode(&bytes, 67_000).unwrap();
        assert_eq!(back.value, b"value");
        assert_eq!(back.lifetime, lifetime);
        assert_eq!(back.age, Duration::from_secs(3));
        assert!(decode(&bytes, -2).is_none());
        assert!(decode(&bytes[..HEADER - 1], 1000).is_none());
        assert!(decode(b"XX\x01\x00", 1000).is_none());
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
