//! The errors this crate adds: a request without a usable key, a shard that
//! did not become ready in time, and a refused change to the shard map.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

// ===== KeyError =====

/// Why a request has no usable key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The request carries no key (no header, no such path segment).
    Missing,
    /// The key is there but unusable: empty, too long, not in the expected
    /// format, badly percent-encoded.
    Malformed,
}

impl KeyErrorKind {
    /// `missing` or `malformed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
        }
    }
}

/// A request has no usable shard key, and no default shard is configured.
/// The caller's fault: `400 Bad Request` over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    kind: KeyErrorKind,
    reason: Arc<str>,
    router: Option<Arc<str>>,
}

impl KeyError {
    /// No key in the request; `reason` says where it was looked for
    /// (`"no header x-user-id"`).
    pub fn missing(reason: impl Into<Arc<str>>) -> Self {
        Self {
            kind: KeyErrorKind::Missing,
            reason: reason.into(),
            router: None,
        }
    }

    /// An unusable key; `reason` says why (`"not a number"`).
    pub fn malformed(reason: impl Into<Arc<str>>) -> Self {
        Self {
            kind: KeyErrorKind::Malformed,
            reason: reason.into(),
            router: None,
        }
    }

    pub(crate) fn in_router(mut self, router: &Arc<str>) -> Self {
        self.router = Some(Arc::clone(router));
        self
    }

    /// Missing or malformed.
    #[must_use]
    pub const fn kind(&self) -> KeyErrorKind {
        self.kind
    }

    /// Why.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The router that refused the request, once it has.
    #[must_use]
    pub fn router(&self) -> Option<&str> {
        self.router.as_deref()
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.router {
            Some(router) => write!(
                f,
                "shard key {} for `{router}`: {}",
                self.kind.as_str(),
                self.reason
            ),
            None => write!(f, "shard key {}: {}", self.kind.as_str(), self.reason),
        }
    }
}

impl Error for KeyError {}

// ===== ShardNotReady =====

/// The key's shard did not become ready within the router's
/// `ready_timeout`: the request was not sent. `503` over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardNotReady {
    router: Arc<str>,
    shard: Arc<str>,
    waited: Duration,
}

impl ShardNotReady {
    pub(crate) const fn new(router: Arc<str>, shard: Arc<str>, waited: Duration) -> Self {
        Self {
            router,
            shard,
            waited,
        }
    }

    /// The router's name.
    #[must_use]
    pub fn router(&self) -> &str {
        &self.router
    }

    /// The shard that was not ready.
    #[must_use]
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// How long the request waited.
    #[must_use]
    pub const fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for ShardNotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard `{}` of `{}` was not ready within {:?}",
            self.shard, self.router, self.waited
        )
    }
}

impl Error for ShardNotReady {}

// ===== MapError =====

/// Why a change to the shard map was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MapErrorKind {
    /// The map would have no shard.
    Empty,
    /// A shard name is empty.
    InvalidName,
    /// A shard of that name is already in the map.
    DuplicateShard,
    /// No shard of that name.
    UnknownShard,
    /// A weight outside (0, `MAX_WEIGHT`] or not a number.
    InvalidWeight,
    /// Too many shards or ring points.
    TooLarge,
    /// The scheme cannot do it (jump: weights, removing a shard other than
    /// the last).
    Unsupported,
    /// A shard has no replica, or two replicas share a name.
    InvalidReplicas,
}

impl MapErrorKind {
    /// A snake_case label: `empty`, `invalid_name`, `duplicate_shard`,
    /// `unknown_shard`, `invalid_weight`, `too_large`, `unsupported`,
    /// `invalid_replicas`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::InvalidName => "invalid_name",
            Self::DuplicateShard => "duplicate_shard",
            Self::UnknownShard => "unknown_shard",
            Self::InvalidWeight => "invalid_weight",
            Self::TooLarge => "too_large",
            Self::Unsupported => "unsupported",
            Self::InvalidReplicas => "invalid_replicas",
        }
    }
}

/// A change to the shard map (or the shards given to the builder) was
/// refused; the map in force is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapError {
    kind: MapErrorKind,
    shard: Option<Arc<str>>,
    detail: String,
}

impl MapError {
    pub(crate) fn new(kind: MapErrorKind, shard: Option<&str>, detail: String) -> Self {
        Self {
            kind,
            shard: shard.map(Arc::from),
            detail,
        }
    }

    /// Why.
    #[must_use]
    pub const fn kind(&self) -> MapErrorKind {
        self.kind
    }

    /// The shard concerned, if one is.
    #[must_use]
    pub fn shard(&self) -> Option<&str> {
        self.shard.as_deref()
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shard {
            Some(shard) => write!(f, "shard map change refused for `{shard}`: {}", self.detail),
            None => write!(f, "shard map change refused: {}", self.detail),
        }
    }
}

impl Error for MapError {}
