//! The entry's life and the storage decision: pure, synchronous, no I/O.
//!
//! An entry stored at `t` with a [`Lifetime`] is, at a later instant:
//!
//! | instant | [`Freshness`] | served |
//! |---|---|---|
//! | `t ≤ now < t + fresh` | `Fresh` | at once |
//! | then, within `stale_while_revalidate` | `StaleWhileRevalidate` | at once, while one background refresh runs |
//! | then, within `stale_if_error` | `StaleIfError` | only if the backend fails |
//! | `must_revalidate`, after `fresh`, while kept | `MustRevalidate` | never stale: the backend is asked (with the entry's validator) |
//! | after all of it | `Expired` | never: a miss |
//!
//! [`decide`] turns what an HTTP response says about itself
//! ([`Directives`]) into a [`Decision`]: store it for a lifetime, or only
//! share it with the requests waiting on it.

use std::time::Duration;

use tokio::time::Instant;

use crate::settings::MAX_DURATION;

/// How long an entry is fresh, and for how long it may be served stale after
/// that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// Served as is for this long after it was produced.
    pub fresh: Duration,
    /// After `fresh`: served at once while one background refresh runs.
    pub stale_while_revalidate: Duration,
    /// After `fresh`: served when the backend fails.
    pub stale_if_error: Duration,
    /// Never served stale (`no-cache`, `must-revalidate`,
    /// `proxy-revalidate`): once `fresh` is over the backend is asked, with
    /// the entry's validator, before each use.
    pub must_revalidate: bool,
}

impl Lifetime {
    /// An entry fresh for `fresh`, with the stale windows given.
    #[must_use]
    pub const fn new(
        fresh: Duration,
        stale_while_revalidate: Duration,
        stale_if_error: Duration,
    ) -> Self {
        Self {
            fresh,
            stale_while_revalidate,
            stale_if_error,
            must_revalidate: false,
        }
    }

    /// How long the entry is kept after it was produced: its fresh time
    /// plus the longer stale window. A must-revalidate entry is kept as long
    /// (for its validator), but never served stale.
    #[must_use]
    pub fn keep(&self) -> Duration {
        self.fresh
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }

    /// The same lifetime with every part at most [`MAX_DURATION`] (a year).
    #[must_use]
    pub fn clamped(self) -> Self {
        Self {
            fresh: self.fresh.min(MAX_DURATION),
            stale_while_revalidate: self.stale_while_revalidate.min(MAX_DURATION),
            stale_if_error: self.stale_if_error.min(MAX_DURATION),
            must_revalidate: self.must_revalidate,
        }
    }

    /// The same lifetime, fresh for at most `cap`.
    #[must_use]
    pub fn capped(mut self, cap: Duration) -> Self {
        self.fresh = self.fresh.min(cap);
        self
    }
}

/// Where an entry stands at one instant.
///
/// An entry stored at `t` with a [`Lifetime`] is `Fresh` until `t + fresh`;
/// then `StaleWhileRevalidate` within `stale_while_revalidate`, then
/// `StaleIfError` within `stale_if_error` (or `MustRevalidate` all along
/// for a `must_revalidate` entry); then `Expired`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it, and refresh it in the background (once).
    StaleWhileRevalidate,
    /// Ask the backend; serve it if the backend fails.
    StaleIfError,
    /// Ask the backend with the entry's validator; never serve it stale.
    MustRevalidate,
    /// Gone: a miss.
    Expired,
}

impl Freshness {
    /// A label for logs and events.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::StaleWhileRevalidate => "stale_while_revalidate",
            Self::StaleIfError => "stale_if_error",
            Self::MustRevalidate => "must_revalidate",
            Self::Expired => "expired",
        }
    }
}

/// The instants of one entry's life, computed once when it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Times {
    /// When the response was produced (stored now, minus the age it
    /// arrived with).
    pub(crate) born: Instant,
    fresh_until: Instant,
    swr_until: Instant,
    sie_until: Instant,
    expires: Instant,
    must_revalidate: bool,
}

fn add(at: Instant, d: Duration) -> Instant {
    // Every duration is bounded by the settings (one year), so this only
    // saturates on a clock near its end.
    at.checked_add(d)
        .unwrap_or(at + Duration::from_secs(365 * 24 * 3600))
}

impl Times {
    /// An entry stored at `now`, `age` old already, living `lifetime`.
    pub(crate) fn new(now: Instant, age: Duration, lifetime: &Lifetime) -> Self {
        let born = now.checked_sub(age).unwrap_or(now);
        let fresh_until = add(born, lifetime.fresh);
        Self {
            born,
            fresh_until,
            swr_until: add(fresh_until, lifetime.stale_while_revalidate),
            sie_until: add(fresh_until, lifetime.stale_if_error),
            expires: add(born, lifetime.keep()),
            must_revalidate: lifetime.must_revalidate,
        }
    }

    /// Where the entry stands at `now`.
    #[inline]
    pub(crate) fn freshness(&self, now: Instant) -> Freshness {
        if now < self.fresh_until {
            Freshness::Fresh
        } else if now >= self.expires {
            Freshness::Expired
        } else if self.must_revalidate {
            Freshness::MustRevalidate
        } else if now < self.swr_until {
            Freshness::StaleWhileRevalidate
        } else if now < self.sie_until {
            Freshness::StaleIfError
        } else {
            Freshness::Expired
        }
    }

    /// `true` if the entry may answer a request whose backend call failed,
    /// at `now`: not must-revalidate, and within `stale_if_error` (or
    /// still fresh, which happens when a revalidation was forced).
    #[inline]
    pub(crate) fn serves_on_error(&self, now: Instant) -> bool {
        !self.must_revalidate && now < self.sie_until
    }

    /// How old the response is at `now`.
    #[inline]
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.born)
    }

    /// How long the entry is still kept after `now`.
    #[cfg(test)]
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.expires.saturating_duration_since(now)
    }

    /// The entry's lifetime, measured from its birth.
    pub(crate) fn lifetime(&self) -> Lifetime {
        Lifetime {
            fresh: self.fresh_until.saturating_duration_since(self.born),
            stale_while_revalidate: self.swr_until.saturating_duration_since(self.fresh_until),
            stale_if_error: self.sie_until.saturating_duration_since(self.fresh_until),
            must_revalidate: self.must_revalidate,
        }
    }
}

/// What an HTTP response says about its own caching, already parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools, reason = "one flag per directive")]
pub struct Directives {
    /// The `Cache-Control` header could not be parsed (a malformed
    /// `max-age`, say): nothing it says can be trusted.
    pub malformed: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `private` (also `private="..."`).
    pub private: bool,
    /// `no-cache` (also `no-cache="..."`).
    pub no_cache: bool,
    /// `must-revalidate` or `proxy-revalidate`.
    pub must_revalidate: bool,
    /// `public`.
    pub public: bool,
    /// `s-maxage`, in seconds.
    pub s_maxage: Option<Duration>,
    /// `max-age`, in seconds.
    pub max_age: Option<Duration>,
    /// `Expires` minus `Date`, when both are present and valid.
    pub expires_in: Option<Duration>,
    /// `Expires` is present but invalid or in the past: already stale.
    pub expired: bool,
    /// The `Age` the response arrived with.
    pub age: Duration,
    /// The response sets a cookie (`Set-Cookie`).
    pub sets_cookie: bool,
    /// `Vary: *`: the response varies on something no request header names.
    pub vary_any: bool,
    /// The fan-out layer marked it incomplete (`x-palisade-completed: false`).
    pub partial: bool,
    /// The request carried `Authorization`.
    pub authorized_request: bool,
}

/// Why a response is not stored: a metric label, bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotStored {
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: private` (this is a shared cache).
    Private,
    /// A status the cache does not store (or a 404 without negative caching).
    Status,
    /// It sets a cookie.
    SetCookie,
    /// `Vary: *`.
    VaryAny,
    /// An incomplete fan-out result.
    Partial,
    /// The request was authorized and the response does not say it may be
    /// shared (`public`, `s-maxage` or `must-revalidate`).
    Authorized,
    /// A malformed `Cache-Control`.
    Malformed,
    /// Larger than `max_entry_bytes`.
    TooLarge,
    /// Its freshness lifetime is zero and nothing can revalidate it.
    NoLifetime,
    /// The backend call failed.
    Failure,
    /// Entries were invalidated while the call ran: its response may
    /// predate the invalidation.
    Invalidated,
}

impl NotStored {
    /// Every reason, in label order.
    pub const ALL: [Self; 12] = [
        Self::NoStore,
        Self::Private,
        Self::Status,
        Self::SetCookie,
        Self::VaryAny,
        Self::Partial,
        Self::Authorized,
        Self::Malformed,
        Self::TooLarge,
        Self::NoLifetime,
        Self::Failure,
        Self::Invalidated,
    ];

    /// The metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoStore => "no_store",
            Self::Private => "private",
            Self::Status => "status",
            Self::SetCookie => "set_cookie",
            Self::VaryAny => "vary_any",
            Self::Partial => "partial",
            Self::Authorized => "authorized",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::NoLifetime => "no_lifetime",
            Self::Failure => "failure",
            Self::Invalidated => "invalidated",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Store it: its lifetime, and the age it arrived with.
    Store {
        /// The entry's lifetime.
        lifetime: Lifetime,
        /// The age it arrived with.
        age: Duration,
    },
    /// Do not store it.
    Skip(NotStored),
}

/// The statuses stored when the response says nothing: 200, 203, 204 and
/// the permanent answers 301, 308, 410. A 404 only with negative caching.
fn storable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 204 | 301 | 308 | 410)
}

/// `true` for the statuses that are failures of the backend, for which a
/// stale entry is served instead (RFC 5861: 500, 502, 503, 504).
#[must_use]
pub const fn is_failure_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// Decides whether a response with `status` and `directives` is stored, and
/// for how long, given the configured windows (`base`: the TTL used when
/// the response says nothing, and the stale windows) and negative caching.
///
/// The freshness lifetime is, first found: `s-maxage`, `max-age`,
/// `Expires − Date`, the configured TTL. A 404 uses `negative_ttl` (at most
/// the response's own lifetime when it gives one). `no-cache` and
/// `must-revalidate` store the entry but never serve it stale: `no-cache`
/// makes it stale at once, so every use is revalidated (cheaply, with its
/// `ETag`).
#[must_use]
pub fn decide(
    status: u16,
    d: &Directives,
    base: &Lifetime,
    negative_ttl: Option<Duration>,
) -> Decision {
    let skip = Decision::Skip;
    if d.malformed {
        return skip(NotStored::Malformed);
    }
    if d.no_store {
        return skip(NotStored::NoStore);
    }
    if d.private {
        return skip(NotStored::Private);
    }
    if d.partial {
        return skip(NotStored::Partial);
    }
    if d.sets_cookie {
        return skip(NotStored::SetCookie);
    }
    if d.vary_any {
        return skip(NotStored::VaryAny);
    }
    if d.authorized_request && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return skip(NotStored::Authorized);
    }
    let declared = d.s_maxage.or(d.max_age).or(d.expires_in).or(if d.expired {
        Some(Duration::ZERO)
    } else {
        None
    });
    let fresh = if status == 404 {
        let Some(negative) = negative_ttl else {
            return skip(NotStored::Status);
        };
        declared.map_or(negative, |own| own.min(negative))
    } else if storable_status(status) {
        declared.unwrap_or(base.fresh)
    } else {
        return skip(NotStored::Status);
    };
    let must_revalidate = d.must_revalidate || d.no_cache;
    // An origin may declare any max-age; a year is the longest kept.
    let fresh = if d.no_cache {
        Duration::ZERO
    } else {
        fresh.min(MAX_DURATION)
    };
    let lifetime = Lifetime {
        fresh,
        stale_while_revalidate: base.stale_while_revalidate,
        stale_if_error: base.stale_if_error,
        must_revalidate,
    };
    if lifetime.keep().saturating_sub(d.age).is_zero() {
        return skip(NotStored::NoLifetime);
    }
    Decision::Store {
        lifetime,
        age: d.age.min(MAX_DURATION),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn base() -> Lifetime {
        Lifetime::new(60 * S, 10 * S, 300 * S)
    }

    #[test]
    fn an_entry_lives_through_each_state_in_order() {
        let t0 = Instant::now();
        let times = Times::new(t0, Duration::ZERO, &base());
        let at = |secs: u64| times.freshness(t0 + Duration::from_secs(secs));
        assert_eq!(at(0), Freshness::Fresh);
        assert_eq!(at(59), Freshness::Fresh);
        assert_eq!(at(60), Freshness::StaleWhileRevalidate);
        assert_eq!(at(69), Freshness::StaleWhileRevalidate);
        assert_eq!(at(70), Freshness::StaleIfError);
        assert_eq!(at(359), Freshness::StaleIfError);
        assert_eq!(at(360), Freshness::Expired);
        assert!(times.serves_on_error(t0 + 359 * S));
        assert!(!times.serves_on_error(t0 + 360 * S));
        assert_eq!(times.age(t0 + 5 * S), 5 * S);
        assert_eq!(times.remaining(t0 + 300 * S), 60 * S);
        assert_eq!(times.lifetime(), base());
    }

    #[test]
    fn swr_longer_than_sie_is_kept_for_swr() {
        let t0 = Instant::now();
        let times = Times::new(t0, Duration::ZERO, &Lifetime::new(S, 100 * S, 10 * S));
        assert_eq!(
            times.freshness(t0 + 50 * S),
            Freshness::StaleWhileRevalidate
        );
        assert!(!times.serves_on_error(t0 + 50 * S));
        assert_eq!(times.freshness(t0 + 101 * S), Freshness::Expired);
    }

    #[test]
    fn an_age_shortens_the_life() {
        let t0 = Instant::now() + 1000 * S;
        let times = Times::new(t0, 50 * S, &base());
        assert_eq!(times.freshness(t0 + 9 * S), Freshness::Fresh);
        assert_eq!(
            times.freshness(t0 + 10 * S),
            Freshness::StaleWhileRevalidate
        );
        assert_eq!(times.age(t0), 50 * S);
    }

    #[test]
    fn must_revalidate_is_never_served_stale() {
        let t0 = Instant::now();
        let lifetime = Lifetime {
            must_revalidate: true,
            ..base()
        };
        let times = Times::new(t0, Duration::ZERO, &lifetime);
        assert_eq!(times.freshness(t0), Freshness::Fresh);
        assert_eq!(times.freshness(t0 + 61 * S), Freshness::MustRevalidate);
        assert!(!times.serves_on_error(t0 + 61 * S));
        assert_eq!(times.freshness(t0 + 400 * S), Freshness::Expired);
    }

    #[test]
    fn zero_windows_expire_at_the_end_of_freshness() {
        let t0 = Instant::now();
        let times = Times::new(
            t0,
            Duration::ZERO,
            &Lifetime::new(5 * S, Duration::ZERO, Duration::ZERO),
        );
        assert_eq!(times.freshness(t0 + 4 * S), Freshness::Fresh);
        assert_eq!(times.freshness(t0 + 5 * S), Freshness::Expired);
    }

    /// The storage decision, one row per rule.
    #[test]
    fn decision_table() {
        let d = Directives::default;
        let store = |fresh: u64, must_revalidate: bool| Decision::Store {
            lifetime: Lifetime {
                fresh: Duration::from_secs(fresh),
                must_revalidate,
                ..base()
            },
            age: Duration::ZERO,
        };
        let neg = Some(30 * S);
        #[rustfmt::skip]
        let rows: Vec<(&str, u16, Directives, Option<Duration>, Decision)> = vec![
            ("nothing said: the configured ttl", 200, d(), None, store(60, false)),
            ("max-age", 200, Directives { max_age: Some(5 * S), ..d() }, None, store(5, false)),
            ("s-maxage wins over max-age", 200, Directives { max_age: Some(5 * S), s_maxage: Some(7 * S), ..d() }, None, store(7, false)),
            ("expires minus date", 200, Directives { expires_in: Some(9 * S), ..d() }, None, store(9, false)),
            ("max-age wins over expires", 200, Directives { max_age: Some(5 * S), expires_in: Some(9 * S), ..d() }, None, store(5, false)),
            ("expires in the past: stale at once, kept for the windows", 200, Directives { expired: true, ..d() }, None, store(0, false)),
            ("no-store", 200, Directives { no_store: true, max_age: Some(5 * S), ..d() }, None, Decision::Skip(NotStored::NoStore)),
            ("private", 200, Directives { private: true, ..d() }, None, Decision::Skip(NotStored::Private)),
            ("no-cache: stored, revalidated on each use", 200, Directives { no_cache: true, max_age: Some(5 * S), ..d() }, None, store(0, true)),
            ("must-revalidate: fresh, then never stale", 200, Directives { must_revalidate: true, max_age: Some(5 * S), ..d() }, None, store(5, true)),
            ("partial fan-out result", 200, Directives { partial: true, ..d() }, None, Decision::Skip(NotStored::Partial)),
            ("set-cookie", 200, Directives { sets_cookie: true, ..d() }, None, Decision::Skip(NotStored::SetCookie)),
            ("vary: *", 200, Directives { vary_any: true, ..d() }, None, Decision::Skip(NotStored::VaryAny)),
            ("malformed cache-control", 200, Directives { malformed: true, ..d() }, None, Decision::Skip(NotStored::Malformed)),
            ("authorized request, not public", 200, Directives { authorized_request: true, max_age: Some(5 * S), ..d() }, None, Decision::Skip(NotStored::Authorized)),
            ("authorized request, public", 200, Directives { authorized_request: true, public: true, max_age: Some(5 * S), ..d() }, None, store(5, false)),
            ("authorized request, s-maxage", 200, Directives { authorized_request: true, s_maxage: Some(5 * S), ..d() }, None, store(5, false)),
            ("404 without negative caching", 404, d(), None, Decision::Skip(NotStored::Status)),
            ("404 with negative caching", 404, d(), neg, store(30, false)),
            ("404: its own shorter max-age", 404, Directives { max_age: Some(3 * S), ..d() }, neg, store(3, false)),
            ("404: negative ttl caps a longer max-age", 404, Directives { max_age: Some(300 * S), ..d() }, neg, store(30, false)),
            ("500 is never stored", 500, Directives { max_age: Some(5 * S), ..d() }, None, Decision::Skip(NotStored::Status)),
            ("302 is not stored", 302, d(), None, Decision::Skip(NotStored::Status)),
            ("301 is stored", 301, d(), None, store(60, false)),
            ("204 is stored", 204, d(), None, store(60, false)),
            ("206 partial content is not stored", 206, d(), None, Decision::Skip(NotStored::Status)),
        ];
        for (what, status, directives, negative, expected) in rows {
            assert_eq!(
                decide(status, &directives, &base(), negative),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn an_age_beyond_every_window_is_not_stored() {
        let directives = Directives {
            max_age: Some(5 * S),
            age: 400 * S,
            ..Directives::default()
        };
        assert_eq!(
            decide(200, &directives, &base(), None),
            Decision::Skip(NotStored::NoLifetime)
        );
        let no_windows = Lifetime::new(60 * S, Duration::ZERO, Duration::ZERO);
        let d = Directives {
            max_age: Some(Duration::ZERO),
            ..Directives::default()
        };
        assert_eq!(
            decide(200, &d, &no_windows, None),
            Decision::Skip(NotStored::NoLifetime)
        );
    }

    #[test]
    fn a_huge_max_age_is_a_year() {
        let d = Directives {
            max_age: Some(Duration::from_secs(u64::MAX)),
            ..Directives::default()
        };
        let Decision::Store { lifetime, .. } = decide(200, &d, &base(), None) else {
            panic!("stored")
        };
        assert_eq!(lifetime.fresh, MAX_DURATION);
        let t0 = Instant::now();
        let times = Times::new(t0, Duration::ZERO, &lifetime);
        assert_eq!(times.freshness(t0 + 300 * 86_400 * S), Freshness::Fresh);
    }

    #[test]
    fn failure_statuses() {
        for s in [500, 502, 503, 504] {
            assert!(is_failure_status(s));
        }
        for s in [200, 404, 429, 501] {
            assert!(!is_failure_status(s));
        }
    }
}
