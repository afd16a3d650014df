//! What a limiter's layer owns in one `Arc`: the tiers and their limits,
//! the key assignments, the backend with its words, metrics and listeners.
//! Every service the layer builds, every clone and every handle share it.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::{DefaultHashBuilder, HashTable};
use palisade_core::{BoxError, ConfigError, Listeners, RateLimited};
use tokio::time::Instant;

use crate::backend::memory::Word;
use crate::backend::{Backend, RemoteCall};
use crate::error::{InvalidKey, KeyProblem};
use crate::event::RateLimitEvent;
use crate::key::{Key, KeyResult};
use crate::metrics::{LimiterMetrics, TierStats};
use crate::settings::{
    DEFAULT_TIER, Limit, MAX_TIERS, MissingKey, RateLimitSettings, check_tier_name,
};
use crate::state::table::{Full, KeyRef};
use crate::state::{Decision, Gcra, Quota};

// ===== Tiers =====

/// One tier: its limit and its counters.
#[derive(Clone, Debug)]
pub(crate) struct Tier {
    pub(crate) name: Arc<str>,
    pub(crate) limit: Limit,
    pub(crate) gcra: Gcra,
    pub(crate) stats: Arc<TierStats>,
}

/// The tiers, by index (index 0 is the default tier), and the keys assigned
/// to them. Tiers are never removed, so an index stays valid across limit
/// changes. Replaced whole on a change; services read it through a cache of
/// their own ([`LimitsCache`]), which costs one plain load per call.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) tiers: Box<[Tier]>,
    key_tiers: KeyTiers,
}

/// A service's view of the limits: checks for a change with one relaxed
/// load, no atomic read-modify-write.
pub(crate) type LimitsCache = arc_swap::cache::Cache<Arc<ArcSwap<Limits>>, Arc<Limits>>;

impl Limits {
    #[inline]
    fn find(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| &*t.name == name)
    }
}

/// Keys assigned to a tier.
#[derive(Clone, Debug, Default)]
struct KeyTiers {
    map: HashTable<(Box<[u8]>, u32)>,
}

// ===== Admission =====

/// What a decision leaves for the `RateLimit` header field.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct Info {
    pub(crate) tier: u32,
    pub(crate) gcra: Gcra,
    pub(crate) tat: u64,
    pub(crate) now: u64,
}

impl Info {
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) const fn quota(&self) -> Quota {
        self.gcra.quota(self.tat, self.now)
    }
}

/// Why a call is refused.
#[derive(Debug)]
#[cfg_attr(not(all(feature = "http", feature = "redis")), allow(dead_code))]
pub(crate) enum Refusal {
    /// Over its limit.
    Limited { error: RateLimited, info: Info },
    /// The key could not be used.
    Invalid(InvalidKey),
    /// The remote backend could not decide and the limiter fails closed.
    Unavailable(crate::error::Unavailable),
}

impl Refusal {
    pub(crate) fn into_error(self) -> BoxError {
        match self {
            Self::Limited { error, .. } => error.into(),
            Self::Invalid(error) => error.into(),
            Self::Unavailable(error) => error.into(),
        }
    }
}

/// A slot reserved for a throttled call. Dropped before the call starts
/// (the caller gave up), it gives the slot back if no later call reserved
/// after it: the key is then exactly as if the call had never come.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    word: Word,
    key: Option<(Box<[u8]>, u64)>,
    from: u64,
    to: u64,
    armed: bool,
}

impl Reservation {
    /// The call starts: the slot is spent.
    pub(crate) fn spend(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let key = self.key.as_ref().map(|(k, h)| (KeyRef::from_stored(k), *h));
        let given = self
            .shared
            .backend
            .local()
            .give_back(self.word, key, self.from, self.to);
        tracing::trace!(name = %self.shared.name, given_back = given, "throttled call dropped before its slot");
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("word", &self.word)
            .finish_non_exhaustive()
    }
}

/// The context of a decision in flight to the remote backend.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct RemoteCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: Option<(Box<[u8]>, u64)>,
    pub(crate) tier: u32,
    pub(crate) max_delay: u64,
}

impl RemoteCtx {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn key(&self) -> Option<(KeyRef<'_>, u64)> {
        self.key.as_ref().map(|(k, h)| (KeyRef::from_stored(k), *h))
    }
}

/// What the limiter decided for a call.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Admission {
    /// Call the inner service now.
    Now(Info),
    /// Call it at `until` (throttled).
    Wait {
        info: Info,
        until: Instant,
        reservation: Option<Reservation>,
    },
    /// Refuse it.
    Refused(Refusal),
    /// Not limited (no key, and `MissingKey::Bypass`).
    Bypass,
    /// Ask the remote backend.
    Remote(Box<(RemoteCall, RemoteCtx)>),
}

// ===== Shared =====

/// Settings fixed when the limiter is built.
#[derive(Clone, Debug)]
pub(crate) struct Fixed {
    pub(crate) max_key_len: usize,
    pub(crate) missing_key: MissingKey,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) headers: bool,
    pub(crate) max_keys: usize,
}

/// The limiter's state; see the module docs.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    base: Clock,
    hasher: DefaultHashBuilder,
    limits: Arc<ArcSwap<Limits>>,
    max_delay: AtomicU64,
    pub(crate) fixed: Fixed,
    pub(crate) backend: Backend,
    pub(crate) metrics: LimiterMetrics,
    pub(crate) listeners: Listeners<RateLimitEvent>,
    /// Serialises the handle's changes (read, copy, swap).
    writer: Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The clock of a limiter, read as nanoseconds since it was built.
pub(crate) enum Clock {
    /// tokio's clock (paused in tests).
    Tokio { base: Instant },
    /// The time-stamp counter: raw counts since `base`, scaled to
    /// nanoseconds (one multiply and shift).
    Tsc { clock: quanta::Clock, base: u64 },
}

impl Clock {
    pub(crate) fn new(source: crate::settings::ClockSource) -> Self {
        match source {
            crate::settings::ClockSource::Tsc => {
                let clock = quanta::Clock::new();
                let base = clock.raw();
                Self::Tsc { clock, base }
            }
            _ => Self::Tokio {
                base: Instant::now(),
            },
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        match self {
            Self::Tokio { base } => nanos(Instant::now().saturating_duration_since(*base)),
            Self::Tsc { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
        }
    }

    /// tokio's instant at `at` (a time of this clock, not before `now`).
    fn instant(&self, at: u64, now: u64) -> Instant {
        match self {
            Self::Tokio { base } => *base + Duration::from_nanos(at),
            Self::Tsc { .. } => Instant::now() + Duration::from_nanos(at.saturating_sub(now)),
        }
    }
}

/// Everything `Shared::new` needs beyond the settings.
pub(crate) struct Parts {
    pub(crate) name: Arc<str>,
    pub(crate) listeners: Listeners<RateLimitEvent>,
    pub(crate) hasher: DefaultHashBuilder,
    pub(crate) base: Clock,
    pub(crate) backend: Backend,
}

impl Shared {
    /// The state for valid `settings` (see `RateLimitSettings::validate`).
    pub(crate) fn new(settings: &RateLimitSettings, parts: Parts) -> Self {
        let name = parts.name;
        let mut tiers = Vec::with_capacity(settings.tiers.len() + 1);
        let mut add = |tier: &str, limit: Limit| {
            let tier: Arc<str> = Arc::from(tier);
            let stats = Arc::new(TierStats::new(&name, &tier));
            stats.set_limit(limit);
            tiers.push(Tier {
                name: tier,
                limit,
                gcra: Gcra::new(limit),
                stats,
            });
        };
        add(DEFAULT_TIER, settings.default_limit());
        for (tier, limit) in &settings.tiers {
            add(tier, *limit);
        }
        let mut limits = Limits {
            tiers: tiers.into_boxed_slice(),
            key_tiers: KeyTiers::default(),
        };
        for (key, tier) in &settings.key_tiers {
            let index = limits.find(tier).unwrap_or(0);
            let key = Key::parse_assigned(key);
            Self::assign(
                &mut limits.key_tiers,
                &parts.hasher,
                key.as_ref(),
                Some(index),
            );
        }
        let metrics = LimiterMetrics::new(&name);
        metrics.keys(0);
        Self {
            limits: Arc::new(ArcSwap::from_pointee(limits)),
            max_delay: AtomicU64::new(nanos(settings.max_delay)),
            fixed: Fixed {
                max_key_len: settings.max_key_len,
                missing_key: settings.missing_key,
                headers: settings.headers,
                max_keys: settings.max_keys,
            },
            name,
            base: parts.base,
            hasher: parts.hasher,
            backend: parts.backend,
            metrics,
            listeners: parts.listeners,
            writer: Mutex::new(()),
        }
    }

    /// Nanoseconds since the limiter was built.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.base.now()
    }

    #[inline]
    pub(crate) fn hash(&self, key: KeyRef<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u8(key.tag);
        hasher.write(key.bytes);
        hasher.finish()
    }

    pub(crate) fn limits(&self) -> arc_swap::Guard<Arc<Limits>> {
        self.limits.load()
    }

    /// A cache of the limits for one service.
    pub(crate) fn limits_cache(&self) -> LimitsCache {
        arc_swap::cache::Cache::new(Arc::clone(&self.limits))
    }

    pub(crate) fn max_delay(&self) -> Duration {
        Duration::from_nanos(self.max_delay.load(Ordering::Relaxed))
    }

    // ===== The call path =====

    /// Decides a call whose key extraction gave `extracted` (ignored when
    /// `unkeyed`). Inlined into each service's `call` (the remote backend's
    /// part and every refusal are out of line), so that an admitted call
    /// builds its future where it is used.
    #[inline(always)]
    pub(crate) fn admit(
        self: &Arc<Self>,
        limits: &Limits,
        extracted: KeyResult<'_>,
        unkeyed: bool,
    ) -> Admission {
        let key = if unkeyed {
            None
        } else {
            match extracted {
                Ok(Some(key)) => {
                    if key.is_empty() {
                        return self.invalid(KeyProblem::Empty);
                    }
                    if key.len() > self.fixed.max_key_len {
                        return self.invalid(KeyProblem::TooLong);
                    }
                    Some(key)
                }
                Ok(None) => match self.fixed.missing_key {
                    MissingKey::Reject => return self.invalid(KeyProblem::Missing),
                    MissingKey::Bypass => return Admission::Bypass,
                    MissingKey::Shared => None,
                },
                Err(problem) => return self.invalid(problem),
            }
        };
        let tier = self.resolve(limits, key.as_ref());
        let key = key.as_ref().map(|k| {
            let k = k.as_ref();
            (k, self.hash(k))
        });
        let max_delay = self.max_delay.load(Ordering::Relaxed);
        let now = self.now();
        match &self.backend {
            Backend::Memory(store) => {
                let gcra = &limits.tiers[tier].gcra;
                let (decision, word) =
                    store.decide(key, gcra, now, max_delay, |full| self.full(full));
                if word == Word::Inserted {
                    self.metrics.keys(store.table().len());
                }
                // The common case, inline: admitted at once.
                if let Decision::Admit { tat, wait: 0 } = decision {
                    let t = &limits.tiers[tier];
                    t.stats.admitted();
                    return Admission::Now(Info {
                        tier: tier as u32,
                        gcra: t.gcra,
                        tat,
                        now,
                    });
                }
                self.conclude(limits, tier, decision, now, Some((word, key)))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => self.admit_remote(limits, tier, key, now, max_delay),
        }
    }

    /// The remote backend's part of [`admit`](Self::admit).
    #[cfg(feature = "redis")]
    #[inline(never)]
    fn admit_remote(
        self: &Arc<Self>,
        limits: &Limits,
        tier: usize,
        key: Option<(KeyRef<'_>, u64)>,
        now: u64,
        max_delay: u64,
    ) -> Admission {
        let Backend::Redis(store) = &self.backend else {
            unreachable!("called for the remote backend")
        };
        if let Some((k, hash)) = key
            && let Some(retry_after) = store.cached_refusal(k, hash, now, max_delay)
        {
            store.metrics.cache_hit();
            let gcra = limits.tiers[tier].gcra;
            let decision = Decision::Reject {
                tat: now
                    .saturating_add(retry_after)
                    .saturating_add(gcra.tolerance()),
                retry_after,
            };
            return self.conclude(limits, tier, decision, now, None);
        }
        let call = store.call(
            store.redis_key(key.map(|(k, _)| k)),
            &limits.tiers[tier].gcra,
            max_delay,
        );
        Admission::Remote(Box::new((
            call,
            RemoteCtx {
                shared: Arc::clone(self),
                key: key.map(|(k, h)| (k.to_stored(), h)),
                tier: tier as u32,
                max_delay,
            },
        )))
    }

    /// The tier of `key`: its assignment, else its class, else the default.
    #[inline]
    fn resolve(&self, limits: &Limits, key: Option<&Key<'_>>) -> usize {
        let Some(key) = key else { return 0 };
        if !limits.key_tiers.map.is_empty() {
            let k = key.as_ref();
            let hash = self.hash(k);
            if let Some((_, tier)) = limits
                .key_tiers
                .map
                .find(hash, |(stored, _)| KeyRef::from_stored(stored) == k)
            {
                return *tier as usize;
            }
        }
        match key.class() {
            Some(class) => limits.find(class).unwrap_or_else(|| {
                tracing::trace!(name = %self.name, class, "no tier of that name: the default tier applies");
                0
            }),
            None => 0,
        }
    }

    /// Turns a decision into what the call does, counting it. `word` (with
    /// the key) is where a throttled call's slot was reserved, if it can be
    /// given back.
    #[inline(never)]
    fn conclude(
        self: &Arc<Self>,
        limits: &Limits,
        tier: usize,
        decision: Decision,
        now: u64,
        word: Option<(Word, Option<(KeyRef<'_>, u64)>)>,
    ) -> Admission {
        let t = &limits.tiers[tier];
        let index = tier as u32;
        match decision {
            Decision::Admit { tat, wait: 0 } => {
                t.stats.admitted();
                Admission::Now(Info {
                    tier: index,
                    gcra: t.gcra,
                    tat,
                    now,
                })
            }
            Decision::Admit { tat, wait } => {
                t.stats.delayed(wait);
                tracing::debug!(name = %self.name, class = %t.name, delay_ms = wait / 1_000_000, "rate limit: call delayed");
                self.listeners.emit_with(|| RateLimitEvent::Delayed {
                    name: Arc::clone(&self.name),
                    class: Arc::clone(&t.name),
                    delay: Duration::from_nanos(wait),
                });
                let reservation = word.map(|(word, key)| Reservation {
                    shared: Arc::clone(self),
                    word,
                    key: key.map(|(k, h)| (k.to_stored(), h)),
                    from: tat,
                    to: tat - t.gcra.emission(),
                    armed: true,
                });
                Admission::Wait {
                    info: Info {
                        tier: index,
                        gcra: t.gcra,
                        tat,
                        now,
                    },
                    until: self.base.instant(now.saturating_add(wait), now),
                    reservation,
                }
            }
            Decision::Reject { tat, retry_after } => {
                t.stats.limited();
                let after = Duration::from_nanos(retry_after);
                tracing::debug!(name = %self.name, class = %t.name, retry_after_ms = retry_after / 1_000_000, "rate limit: call refused");
                self.listeners.emit_with(|| RateLimitEvent::Limited {
                    name: Arc::clone(&self.name),
                    class: Arc::clone(&t.name),
                    retry_after: after,
                });
                Admission::Refused(Refusal::Limited {
                    error: RateLimited::new(Arc::clone(&self.name), Some(after))
                        .with_class(Arc::clone(&t.name)),
                    info: Info {
                        tier: index,
                        gcra: t.gcra,
                        tat,
                        now,
                    },
                })
            }
        }
    }

    #[cold]
    fn invalid(&self, problem: KeyProblem) -> Admission {
        self.metrics.invalid_key(problem);
        tracing::debug!(name = %self.name, problem = problem.as_str(), "rate limit: request refused, its key cannot be used");
        self.listeners.emit_with(|| RateLimitEvent::InvalidKey {
            name: Arc::clone(&self.name),
            problem,
        });
        Admission::Refused(Refusal::Invalid(InvalidKey::new(
            Arc::clone(&self.name),
            problem,
        )))
    }

    #[cold]
    fn full(&self, full: Full) {
        self.metrics.overflow();
        if full == Full::Newly {
            tracing::warn!(
                name = %self.name,
                max_keys = self.fixed.max_keys,
                "rate limit key table is full: new keys share one overflow allowance until idle keys are evicted"
            );
            self.listeners.emit_with(|| RateLimitEvent::KeysFull {
                name: Arc::clone(&self.name),
                max_keys: self.fixed.max_keys,
            });
        }
    }

    /// Concludes a remote decision: Redis decided, or the failure mode does.
    #[cfg(feature = "redis")]
    pub(crate) fn finish_remote(
        self: &Arc<Self>,
        ctx: &RemoteCtx,
        remote: crate::backend::redis::Remote,
    ) -> Admission {
        use crate::backend::redis::Remote;
        let limits = self.limits.load();
        let tier = ctx.tier as usize;
        let now = self.now();
        let Backend::Redis(store) = &self.backend else {
            unreachable!("remote decisions come from the remote backend")
        };
        match remote {
            Remote::Decided(decision) => self.conclude(&limits, tier, decision, now, None),
            Remote::Failed { cause, retry_after } => {
                store.metrics.fallback();
                match store.failure_mode() {
                    crate::settings::FailureMode::Open => {
                        let gcra = &limits.tiers[tier].gcra;
                        let (decision, word) =
                            store
                                .fallback()
                                .decide(ctx.key(), gcra, now, ctx.max_delay, |full| {
                                    self.full(full)
                                });
                        if word == Word::Inserted {
                            self.metrics.keys(store.fallback().table().len());
                        }
                        self.conclude(&limits, tier, decision, now, Some((word, ctx.key())))
                    }
                    crate::settings::FailureMode::Closed => {
                        let limited = RateLimited::new(Arc::clone(&self.name), retry_after)
                            .with_class(Arc::clone(&limits.tiers[tier].name));
                        Admission::Refused(Refusal::Unavailable(crate::error::Unavailable::new(
                            limited, cause,
                        )))
                    }
                }
            }
        }
    }

    // ===== The handle's changes =====

    fn write(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets (or adds) a tier's limit.
    pub(crate) fn set_limit(&self, tier: &str, limit: Limit) -> Result<(), ConfigError> {
        check_tier_name(tier)?;
        limit.check("limit")?;
        #[cfg(feature = "redis")]
        if matches!(self.backend, Backend::Redis(_)) {
            limit.check_micros("limit")?;
        }
        let _writer = self.write();
        let current = self.limits.load();
        let mut tiers = current.tiers.to_vec();
        let stats = match tiers.iter_mut().find(|t| &*t.name == tier) {
            Some(t) => {
                t.limit = limit;
                t.gcra = Gcra::new(limit);
                Arc::clone(&t.stats)
            }
            None => {
                if tiers.len() >= MAX_TIERS {
                    return Err(ConfigError::new(
                        "tiers",
                        format!("at most {MAX_TIERS} tiers, the default one included"),
                    ));
                }
                let name: Arc<str> = Arc::from(tier);
                let stats = Arc::new(TierStats::new(&self.name, &name));
                tiers.push(Tier {
                    name,
                    limit,
                    gcra: Gcra::new(limit),
                    stats: Arc::clone(&stats),
                });
                stats
            }
        };
        self.limits.store(Arc::new(Limits {
            tiers: tiers.into_boxed_slice(),
            key_tiers: current.key_tiers.clone(),
        }));
        stats.set_limit(limit);
        #[cfg(feature = "redis")]
        if let Backend::Redis(store) = &self.backend {
            store.clear_cache();
        }
        tracing::info!(name = %self.name, class = tier, rate = %limit.rate, burst = limit.burst, "rate limit changed");
        self.listeners.emit_with(|| RateLimitEvent::LimitChanged {
            name: Arc::clone(&self.name),
            class: Arc::from(tier),
            limit,
        });
        Ok(())
    }

    fn assign(
        map: &mut KeyTiers,
        hasher: &DefaultHashBuilder,
        key: KeyRef<'_>,
        tier: Option<usize>,
    ) -> bool {
        let hash_of = |k: KeyRef<'_>| {
            let mut h = hasher.build_hasher();
            h.write_u8(k.tag);
            h.write(k.bytes);
            h.finish()
        };
        let hash = hash_of(key);
        let found = map
            .map
            .find_entry(hash, |(stored, _)| KeyRef::from_stored(stored) == key);
        match (found, tier) {
            (Ok(mut entry), Some(tier)) => {
                entry.get_mut().1 = tier as u32;
                true
            }
            (Ok(entry), None) => {
                entry.remove();
                true
            }
            (Err(_), Some(tier)) => {
                map.map
                    .insert_unique(hash, (key.to_stored(), tier as u32), |(stored, _)| {
                        hash_of(KeyRef::from_stored(stored))
                    });
                true
            }
            (Err(_), None) => false,
        }
    }

    /// Assigns `key` (its text; an IP address for client-IP keys) to `tier`,
    /// or removes its assignment (`None`). Returns whether anything changed.
    pub(crate) fn set_key_tier(&self, key: &str, tier: Option<&str>) -> Result<bool, ConfigError> {
        if key.is_empty() || key.len() > self.fixed.max_key_len {
            return Err(ConfigError::new(
                "key_tiers",
                format!("a key must have 1 to {} bytes", self.fixed.max_key_len),
            ));
        }
        let index = match tier {
            None => None,
            Some(tier) => Some(self.limits.load().find(tier).ok_or_else(|| {
                ConfigError::new("key_tiers", format!("no tier is called {tier:?}"))
            })?),
        };
        let _writer = self.write();
        let current = self.limits.load();
        let mut next = current.key_tiers.clone();
        let changed = Self::assign(
            &mut next,
            &self.hasher,
            Key::parse_assigned(key).as_ref(),
            index,
        );
        if changed {
            self.limits.store(Arc::new(Limits {
                tiers: current.tiers.clone(),
                key_tiers: next,
            }));
            tracing::info!(name = %self.name, tier = tier.unwrap_or("(none)"), "rate limit key assignment changed");
        }
        Ok(changed)
    }

    /// The tier a key is assigned to, by name.
    pub(crate) fn key_tier(&self, key: &str) -> Option<Arc<str>> {
        let parsed = Key::parse_assigned(key);
        let k = parsed.as_ref();
        let hash = self.hash(k);
        let limits = self.limits.load();
        let (_, tier) = limits
            .key_tiers
            .map
            .find(hash, |(stored, _)| KeyRef::from_stored(stored) == k)?;
        Some(Arc::clone(&limits.tiers[*tier as usize].name))
    }

    /// Sets how long a call may wait for its slot.
    pub(crate) fn set_max_delay(&self, max_delay: Duration) -> Result<(), ConfigError> {
        if max_delay > crate::settings::MAX_DELAY {
            return Err(ConfigError::new("max_delay", "must be at most an hour"));
        }
        self.max_delay.store(nanos(max_delay), Ordering::Relaxed);
        tracing::info!(name = %self.name, max_delay_ms = max_delay.as_millis(), "rate limit max_delay changed");
        Ok(())
    }

    /// What a key has left now, by its text (an IP address for client-IP
    /// keys), under the tier its class names (the default tier when `None`).
    pub(crate) fn remaining(&self, key: &str, class: Option<&str>) -> Option<(Arc<str>, Quota)> {
        let parsed = Key::parse_assigned(key);
        let parsed = match class {
            Some(class) => parsed.with_class(class),
            None => parsed,
        };
        let limits = self.limits.load();
        let tier = &limits.tiers[self.resolve(&limits, Some(&parsed))];
        let k = parsed.as_ref();
        let tat = self.backend.local().tat(Some((k, self.hash(k))))?;
        Some((Arc::clone(&tier.name), tier.gcra.quota(tat, self.now())))
    }

    /// Drops the idle keys now. Returns how many.
    pub(crate) fn evict_idle(&self) -> usize {
        let now = self.now();
        let removed = self.backend.local().table().sweep(now);
        #[cfg(feature = "redis")]
        let removed = removed
            + match &self.backend {
                Backend::Redis(store) => store.cache().sweep(now),
                Backend::Memory(_) => 0,
            };
        self.metrics.keys(self.backend.local().table().len());
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryStore;
    use crate::settings::Rate;

    fn shared(settings: &RateLimitSettings) -> Arc<Shared> {
        let hasher = DefaultHashBuilder::default();
        Arc::new(Shared::new(
            settings,
            Parts {
                name: Arc::from("t"),
                listeners: Listeners::new(),
                hasher: hasher.clone(),
                base: Clock::new(crate::settings::ClockSource::Tokio),
                backend: Backend::Memory(MemoryStore::new(settings.max_keys, 0, hasher)),
            },
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn tiers_by_assignment_class_or_default() {
        let mut settings = RateLimitSettings::default();
        settings
            .tiers
            .insert("paid".into(), Limit::new(Rate::per_second(1000), 1000));
        settings
            .tiers
            .insert("free".into(), Limit::new(Rate::per_second(1), 1));
        settings.key_tiers.insert("vip".into(), "paid".into());
        settings.key_tiers.insert("10.1.2.3".into(), "free".into());
        let s = shared(&settings);
        let limits = s.limits();
        let tier_of = |key: Key<'_>| &*limits.tiers[s.resolve(&limits, Some(&key))].name;
        assert_eq!(tier_of(Key::text("vip")), "paid");
        assert_eq!(tier_of(Key::text("vip").with_class("free")), "paid");
        assert_eq!(tier_of(Key::text("other").with_class("free")), "free");
        assert_eq!(tier_of(Key::text("other").with_class("nope")), "default");
        assert_eq!(tier_of(Key::text("other")), "default");
        assert_eq!(tier_of(Key::ip("10.1.2.3".parse().unwrap())), "free");
        assert_eq!(tier_of(Key::text("10.1.2.3")), "default");
        assert!(s.set_key_tier("other", Some("paid")).unwrap());
        assert_eq!(s.key_tier("other").as_deref(), Some("paid"));
        assert!(s.set_key_tier("vip", None).unwrap());
        assert!(!s.set_key_tier("vip", None).unwrap());
        assert!(s.set_key_tier("x", Some("gold")).is_err());
        let limits = s.limits();
        let tier_of = |key: Key<'_>| &*limits.tiers[s.resolve(&limits, Some(&key))].name;
        assert_eq!(tier_of(Key::text("vip")), "default");
        assert_eq!(tier_of(Key::text("other")), "paid");
    }
}
