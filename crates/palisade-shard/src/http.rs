//! HTTP integration (feature `http`): keys from a header ([`Header`]) or a
//! path parameter ([`PathParam`]), either from the settings ([`HttpKey`]),
//! and [`to_problem`], which answers the router's errors as problem+json.
//!
//! ```
//! use palisade_shard::{Shard, ShardRouter, http::PathParam};
//! use tower::{service_fn, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let shard = |name: &'static str| {
//!     service_fn(move |_: http::Request<()>| async move {
//!         Ok::<_, palisade_core::BoxError>(http::Response::new(name))
//!     })
//! };
//! let router = ShardRouter::builder("users")
//!     .shard(Shard::new("users-0", shard("users-0")))
//!     .shard(Shard::new("users-1", shard("users-1")))
//!     .key(PathParam::new("/users/{id}", "id")?)
//!     .build()?;
//! let owner = router.handle().owner(7u64);
//! let res = router.oneshot(http::Request::get("/users/7").body(())?).await?;
//! assert_eq!(*res.body(), &*owner);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::error::Error;
use std::sync::Arc;

use http::{HeaderName, Request, StatusCode};
use palisade_core::http::Problem;
use palisade_core::{ConfigError, cause_ref};

use crate::builder::{NoKey, ShardRouterBuilder};
use crate::error::{KeyError, ShardNotReady};
use crate::key::{ExtractKey, checked_key};
use crate::settings::{KeyFormat, KeySource};
use crate::state::ShardKey;

// ===== Header =====

/// The key is the value of a request header (`x-user-id: 7`); with several
/// values, the first.
#[derive(Clone, Debug)]
pub struct Header {
    name: HeaderName,
    format: KeyFormat,
    missing: Arc<str>,
}

impl Header {
    /// The header `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on `key` when `name` is not a header name.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        let name = HeaderName::try_from(name)
            .map_err(|_| ConfigError::new("key", format!("`{name}` is not a header name")))?;
        Ok(Self {
            missing: Arc::from(format!("no header `{name}`")),
            name,
            format: KeyFormat::Any,
        })
    }

    /// Refuses values not in `format` as malformed. Default: any bytes.
    #[must_use]
    pub const fn format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }
}

impl<B> ExtractKey<Request<B>> for Header {
    #[inline]
    fn extract(&self, request: &Request<B>) -> Result<ShardKey, KeyError> {
        match request.headers().get(&self.name) {
            Some(value) => checked_key(value.as_bytes(), self.format),
            None => Err(KeyError::missing(Arc::clone(&self.missing))),
        }
    }
}

// ===== PathParam =====

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Other,
    Param,
    Rest,
}

/// The key is a parameter of the request's path: `id` in `/users/{id}`.
///
/// The route is the one the router declares (axum's syntax: `{name}` for a
/// segment, `{*name}` for the rest of the path). The literal segments before
/// the parameter must match; what follows it is not looked at. The value is
/// percent-decoded, so `/users/a%20b` and the header value `a b` give the
/// same key.
#[derive(Clone, Debug)]
pub struct PathParam {
    /// The segments up to and including the parameter.
    segments: Box<[Segment]>,
    format: KeyFormat,
    route: Arc<str>,
}

impl PathParam {
    /// The parameter `param` of `route`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on `key` when `route` does not start with `/` or
    /// has no parameter `{param}` (or `{*param}`, last).
    pub fn new(route: &str, param: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError::new(
                "key",
                format!("route `{route}` has no parameter `{{{param}}}`"),
            )
        };
        let rest = route.strip_prefix('/').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if *part == format!("{{{param}}}") {
                segments.push(Segment::Param);
                break;
            }
            if *part == format!("{{*{param}}}") && i + 1 == parts.len() {
                segments.push(Segment::Rest);
                break;
            }
            if part.starts_with('{') && part.ends_with('}') {
                segments.push(Segment::Other);
            } else {
                segments.push(Segment::Literal((*part).into()));
            }
        }
        if !matches!(segments.last(), Some(Segment::Param | Segment::Rest)) {
            return Err(bad());
        }
        Ok(Self {
            segments: segments.into(),
            format: KeyFormat::Any,
            route: Arc::from(route),
        })
    }

    /// Refuses values not in `format` as malformed. Default: any bytes.
    #[must_use]
    pub const fn format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    fn no_match(&self) -> KeyError {
        KeyError::missing(format!("the path does not match `{}`", self.route))
    }
}

impl<B> ExtractKey<Request<B>> for PathParam {
    fn extract(&self, request: &Request<B>) -> Result<ShardKey, KeyError> {
        let path = request.uri().path();
        let mut rest = path.strip_prefix('/').ok_or_else(|| self.no_match())?;
        // The path ran out of segments before the parameter.
        let mut exhausted = false;
        for segment in &*self.segments {
            if exhausted {
                return Err(self.no_match());
            }
            let (part, after) = rest.split_once('/').unwrap_or_else(|| {
                exhausted = true;
                (rest, "")
            });
            match segment {
                Segment::Literal(literal) if **literal != *part => return Err(self.no_match()),
                Segment::Literal(_) | Segment::Other => rest = after,
                Segment::Param => return decoded_key(part, self.format),
                Segment::Rest => return decoded_key(rest, self.format),
            }
        }
        Err(self.no_match())
    }
}

fn decoded_key(raw: &str, format: KeyFormat) -> Result<ShardKey, KeyError> {
    if !raw.contains('%') {
        return checked_key(raw.as_bytes(), format);
    }
    checked_key(&percent_decode(raw)?, format)
}

fn percent_decode(raw: &str) -> Result<Cow<'_, [u8]>, KeyError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(KeyError::malformed("bad percent-encoding in the path"));
            };
            #[allow(clippy::cast_possible_truncation)]
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

// ===== HttpKey =====

/// A header or a path parameter, as the settings' [`KeySource`] says: what
/// [`ShardRouterBuilder::http_key`] installs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HttpKey {
    /// A header.
    Header(Header),
    /// A path parameter.
    Path(PathParam),
}

impl HttpKey {
    /// The extractor `source` describes, checking keys against `format`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on `key`, as [`Header::new`] and [`PathParam::new`].
    pub fn from_source(source: &KeySource, format: KeyFormat) -> Result<Self, ConfigError> {
        Ok(match source {
            KeySource::Header(name) => Self::Header(Header::new(name)?.format(format)),
            KeySource::Path { route, param } => {
                Self::Path(PathParam::new(route, param)?.format(format))
            }
        })
    }
}

impl<B> ExtractKey<Request<B>> for HttpKey {
    #[inline]
    fn extract(&self, request: &Request<B>) -> Result<ShardKey, KeyError> {
        match self {
            Self::Header(header) => header.extract(request),
            Self::Path(path) => path.extract(request),
        }
    }
}

impl<S, P> ShardRouterBuilder<S, NoKey, P> {
    /// Finds keys where the settings' [`key`](crate::ShardSettings::key)
    /// says, checked against their
    /// [`key_format`](crate::ShardSettings::key_format).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on `key`: no key in the settings, or a bad header
    /// name or route.
    pub fn http_key(self) -> Result<ShardRouterBuilder<S, HttpKey, P>, ConfigError> {
        let settings = self.get_settings();
        let source = settings
            .key
            .as_ref()
            .ok_or_else(|| ConfigError::new("key", "the settings name no key (header or path)"))?;
        let key = HttpKey::from_source(source, settings.key_format)?;
        Ok(self.key(key))
    }
}

// ===== problems =====

/// The problem answering `error` if it is this crate's (anywhere in the
/// chain), for `palisade_core::http::ProblemResponseLayer::map_errors`:
///
/// | error | status | `type` |
/// |---|---|---|
/// | [`KeyError`] (missing or malformed key) | 400 | `urn:palisade:problem:shard-key` |
/// | [`ShardNotReady`] | 503 | `urn:palisade:problem:shard-not-ready` |
///
/// ```
/// use palisade_core::http::ProblemResponseLayer;
/// use palisade_shard::KeyError;
///
/// let layer = ProblemResponseLayer::new().map_errors(palisade_shard::http::to_problem);
/// let problem = layer.problem_for(&KeyError::missing("no header `x-user-id`"));
/// assert_eq!(problem.status(), 400);
/// ```
#[must_use]
pub fn to_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    if let Some(key) = cause_ref::<KeyError>(error) {
        let mut problem = Problem::new(StatusCode::BAD_REQUEST, "no usable shard key")
            .kind("shard-key")
            .detail(key.to_string())
            .extension("reason", key.kind().as_str());
        if let Some(router) = key.router() {
            problem = problem.extension("router", router);
        }
        return Some(problem);
    }
    if let Some(not_ready) = cause_ref::<ShardNotReady>(error) {
        return Some(
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "shard not ready")
                .kind("shard-not-ready")
                .detail(not_ready.to_string())
                .extension("router", not_ready.router())
                .extension("shard", not_ready.shard()),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KeyErrorKind;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn path_params() {
        let p = PathParam::new("/users/{id}/orders", "id").unwrap();
        assert_eq!(
            p.extract(&get("/users/7/orders")).unwrap(),
            ShardKey::from(7u32)
        );
        assert_eq!(p.extract(&get("/users/7")).unwrap(), ShardKey::from(7u32));
        assert_eq!(
            p.extract(&get("/users/a%20b")).unwrap(),
            ShardKey::from("a b")
        );
        assert_eq!(
            p.extract(&get("/users/a%2")).unwrap_err().kind(),
            KeyErrorKind::Malformed
        );
        assert_eq!(
            p.extract(&get("/users/")).unwrap_err().kind(),
            KeyErrorKind::Malformed
        );
        assert_eq!(
            p.extract(&get("/people/7")).unwrap_err().kind(),
            KeyErrorKind::Missing
        );
        assert_eq!(
            p.extract(&get("/users")).unwrap_err().kind(),
            KeyErrorKind::Missing
        );
        let other = PathParam::new("/t/{tenant}/u/{id}", "id").unwrap();
        assert_eq!(
            other.extract(&get("/t/x/u/9")).unwrap(),
            ShardKey::from("9")
        );
        let rest = PathParam::new("/files/{*path}", "path").unwrap();
        assert_eq!(
            rest.extract(&get("/files/a/b")).unwrap(),
            ShardKey::from("a/b")
        );
        let digits = PathParam::new("/users/{id}", "id")
            .unwrap()
            .format(KeyFormat::Digits);
        assert_eq!(
            digits.extract(&get("/users/x1")).unwrap_err().kind(),
            KeyErrorKind::Malformed
        );
        for (route, param) in [
            ("users/{id}", "id"),
            ("/users/{id}", "user"),
            ("/{*p}/x", "p"),
        ] {
            assert_eq!(PathParam::new(route, param).unwrap_err().field(), "key");
        }
    }

    #[test]
    fn headers() {
        let h = Header::new("x-user-id").unwrap();
        let req = Request::get("/").header("x-user-id", "7").body(()).unwrap();
        assert_eq!(h.extract(&req).unwrap(), ShardKey::from(7u8));
        assert_eq!(
            h.extract(&get("/")).unwrap_err().kind(),
            KeyErrorKind::Missing
        );
        let empty = Request::get("/").header("x-user-id", "").body(()).unwrap();
        assert_eq!(
            h.extract(&empty).unwrap_err().kind(),
            KeyErrorKind::Malformed
        );
        assert!(Header::new("x user").is_err());
    }
}
