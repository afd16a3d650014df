//! Request templates: build each branch's request from the incoming one.

use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use palisade_core::ConfigError;
use palisade_core::path::{UnsafePath, check_path};

use tower_service::Service;

use crate::branch::Branch;
use crate::error::RequestError;

// ===== Route =====

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
    Wildcard(Box<str>),
}

/// The incoming route, as the router declares it: `/api/dashboard/user/{id}`.
///
/// Segments are literals, parameters `{name}`, or a final wildcard `{*name}`
/// capturing the rest of the path (axum 0.8's syntax). A [`Target`] made from
/// the route fills its placeholders from the parameters, so a placeholder
/// that the route does not declare is caught when the fan-out is built, not
/// on a request.
///
/// ```
/// use palisade_fan_out::http::Route;
///
/// let route = Route::new("/api/dashboard/user/{id}").unwrap();
/// assert_eq!(route.params().collect::<Vec<_>>(), ["id"]);
/// assert_eq!(Route::new("/users/{id}/{id}").unwrap_err().field(), "route");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pattern: Arc<str>,
    segments: Arc<[Segment]>,
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Route {
    /// Parses `pattern`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on field `route`: no leading `/`, a malformed or
    /// repeated parameter name, a wildcard that is not last, a stray brace.
    pub fn new(pattern: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| Err(ConfigError::new("route", reason));
        let Some(rest) = pattern.strip_prefix('/') else {
            return bad(format!("`{pattern}` must start with `/`"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = if let Some(inner) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                if let Some(name) = inner.strip_prefix('*') {
                    if i + 1 != parts.len() {
                        return bad(format!(
                            "in `{pattern}`, the wildcard `{{*{name}}}` must be the last segment"
                        ));
                    }
                    Segment::Wildcard(name.into())
                } else {
                    Segment::Param(inner.into())
                }
            } else if part.contains(['{', '}']) {
                return bad(format!(
                    "in `{pattern}`, segment `{part}` mixes text and a parameter; a parameter is a whole segment"
                ));
            } else {
                Segment::Literal((*part).into())
            };
            if let Segment::Param(name) | Segment::Wildcard(name) = &segment {
                if !is_name(name) {
                    return bad(format!(
                        "in `{pattern}`, `{name}` is not a parameter name (letters, digits, `_`)"
                    ));
                }
                let repeated = segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) | Segment::Wildcard(n) if n == name));
                if repeated {
                    return bad(format!("in `{pattern}`, parameter `{name}` appears twice"));
                }
            }
            segments.push(segment);
        }
        Ok(Self {
            pattern: pattern.into(),
            segments: segments.into(),
        })
    }

    /// The pattern as given.
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The parameter names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) | Segment::Wildcard(name) => Some(&**name),
            Segment::Literal(_) => None,
        })
    }

    fn position(&self, name: &str) -> Option<(usize, bool)> {
        self.segments
            .iter()
            .position(|s| matches!(s, Segment::Param(n) | Segment::Wildcard(n) if &**n == name))
            .map(|i| (i, matches!(self.segments[i], Segment::Wildcard(_))))
    }

    /// A branch target on `base` (`http://users.internal:8080`, optionally
    /// with a path prefix) whose path and query come from `template`, whose
    /// `{name}` placeholders are this route's parameters and whose
    /// `{query.name}` placeholders are the incoming query's parameters.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on field `target`: `base` is not an absolute URI
    /// (scheme and authority) or has a query, `template` does not start with
    /// `/`, names a parameter the route does not declare, or is not a valid
    /// URI path once filled.
    pub fn target(&self, base: &str, template: &str) -> Result<Target, ConfigError> {
        Target::new(self.clone(), base, template)
    }

    /// Checks `path` against the route; `Ok` when it matches.
    fn check(&self, path: &str) -> Result<(), RequestError> {
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        for segment in self.segments.iter() {
            match segment {
                Segment::Wildcard(name) => {
                    return match parts.next() {
                        Some(part) if !part.is_empty() => Ok(()),
                        _ => Err(RequestError::MissingPathParam(name.clone())),
                    };
                }
                Segment::Param(name) => match parts.next() {
                    Some(part) if !part.is_empty() => {}
                    _ => return Err(RequestError::MissingPathParam(name.clone())),
                },
                Segment::Literal(text) => {
                    if parts.next() != Some(&**text) {
                        return Err(RequestError::PathMismatch(Arc::clone(&self.pattern)));
                    }
                }
            }
        }
        if parts.next().is_some() {
            return Err(RequestError::PathMismatch(Arc::clone(&self.pattern)));
        }
        Ok(())
    }
}

/// Segment `index` of a path the route matched (the rest of the path from it
/// for a wildcard).
fn capture(path: &str, index: usize, wildcard: bool) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if wildcard {
        rest.splitn(index + 1, '/').nth(index).unwrap_or("")
    } else {
        rest.split('/').nth(index).unwrap_or("")
    }
}

// ===== Target =====

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    Path { index: usize, wildcard: bool },
    Query(Box<str>),
}

/// Where and how to call a branch: base URI, a path and query template, the
/// method and the headers to forward. Made by [`Route::target`]; used as a
/// branch's request mapping with [`Branch::http`](crate::Branch::http).
///
/// Placeholders: `{name}` takes the route's parameter `name` (percent-encoded
/// as it arrived), `{query.name}` the incoming query's parameter `name`. A
/// value put in the path that any reading of it would turn into a climb is
/// refused, decoded and then checked by [`palisade_core::path::check_path`]
/// (`..`, `..;`, `..;jsessionid=x`, `%2e%2e`, `..%2F..%2Fadmin`,
/// `..%5C..%5Cadmin`, backslashes, NUL bytes); a query value put in the path
/// has `/`, `?`, `#` and `` ` `` escaped; any value put in the query has `&`,
/// `=`, `+` and `#` escaped.
///
/// The request has the incoming method (unless [`method`](Self::method) says
/// otherwise), the forwarded and fixed headers, and an empty body
/// (`Default`): a fan-out does not copy the incoming body to its branches.
///
/// ```
/// use http::{header, Method, Request};
/// use palisade_fan_out::http::Route;
///
/// let route = Route::new("/api/dashboard/user/{id}").unwrap();
/// let orders = route
///     .target("http://orders.internal:8080", "/users/{id}/orders?limit={query.limit}")
///     .unwrap()
///     .forward_header(header::AUTHORIZATION);
/// let incoming = Request::get("/api/dashboard/user/12345?limit=5")
///     .header(header::AUTHORIZATION, "Bearer t")
///     .header(header::COOKIE, "not forwarded")
///     .body(())
///     .unwrap();
/// let request: Request<String> = orders.request(&incoming).unwrap();
/// assert_eq!(request.uri(), "http://orders.internal:8080/users/12345/orders?limit=5");
/// assert_eq!(request.method(), Method::GET);
/// assert_eq!(request.headers()[header::AUTHORIZATION], "Bearer t");
/// assert!(request.headers().get(header::COOKIE).is_none());
///
/// let no_limit = Request::get("/api/dashboard/user/12345").body(()).unwrap();
/// let err = orders.request::<(), String>(&no_limit).unwrap_err();
/// assert_eq!(err.to_string(), "missing query parameter `limit`");
/// ```
#[derive(Clone, Debug)]
pub struct Target {
    route: Route,
    scheme: Scheme,
    authority: Authority,
    prefix: Box<str>,
    path: Box<[Piece]>,
    query: Box<[Piece]>,
    has_query: bool,
    method: Option<Method>,
    forward_headers: Vec<HeaderName>,
    headers: HeaderMap,
    forward_query: bool,
}

fn parse_pieces(route: &Route, template: &str) -> Result<Vec<Piece>, ConfigError> {
    let bad = |reason: String| Err(ConfigError::new("target", reason));
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            return bad(format!("in `{template}`, `{{` is not closed"));
        };
        let literal = &rest[..open];
        if literal.contains('}') {
            return bad(format!("in `{template}`, stray `}}`"));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal.into()));
        }
        let name = &rest[open + 1..close];
        if let Some(query) = name.strip_prefix("query.") {
            if !is_name(query) {
                return bad(format!(
                    "in `{template}`, `{query}` is not a parameter name"
                ));
            }
            pieces.push(Piece::Query(query.into()));
        } else {
            let Some((index, wildcard)) = route.position(name) else {
                return bad(format!(
                    "`{template}` uses `{{{name}}}`, which route `{}` does not declare (its parameters: {}); \
                     use `{{query.{name}}}` for a query parameter",
                    route.pattern(),
                    route
                        .params()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            pieces.push(Piece::Path { index, wildcard });
        }
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return bad(format!("in `{template}`, stray `}}`"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.into()));
    }
    Ok(pieces)
}

impl Target {
    fn new(route: Route, base: &str, template: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| Err(ConfigError::new("target", reason));
        let uri: Uri = match base.parse() {
            Ok(uri) => uri,
            Err(e) => return bad(format!("base `{base}` is not a URI: {e}")),
        };
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return bad(format!(
                "base `{base}` must be absolute, with a scheme and an authority (`http://host:port`)"
            ));
        };
        if uri.query().is_some() {
            return bad(format!("base `{base}` must not have a query"));
        }
        let prefix = uri.path().trim_end_matches('/');
        if !template.starts_with('/') {
            return bad(format!("template `{template}` must start with `/`"));
        }
        let (path, query) = match template.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (template, None),
        };
        let path = parse_pieces(&route, path)?;
        let query_pieces = query.map(|q| parse_pieces(&route, q)).transpose()?;
        // The template must make a valid path and query whatever the values:
        // check it with a plain value in each placeholder.
        let mut check = String::from(prefix);
        for piece in &path {
            match piece {
                Piece::Literal(text) => check.push_str(text),
                Piece::Path { .. } | Piece::Query(_) => check.push('x'),
            }
        }
        if let Some(pieces) = &query_pieces {
            check.push('?');
            for piece in pieces {
                match piece {
                    Piece::Literal(text) => check.push_str(text),
                    Piece::Path { .. } | Piece::Query(_) => check.push('x'),
                }
            }
        }
        if let Err(e) = PathAndQuery::try_from(check.as_str()) {
            return bad(format!(
                "template `{template}` does not make a valid URI path: {e}"
            ));
        }
        Ok(Self {
            route,
            scheme,
            authority,
            prefix: prefix.into(),
            path: path.into(),
            has_query: query_pieces.is_some(),
            query: query_pieces.unwrap_or_default().into(),
            method: None,
            forward_headers: Vec::new(),
            headers: HeaderMap::new(),
            forward_query: false,
        })
    }

    /// Calls the branch with `method` whatever the incoming method (default:
    /// the incoming method). A fan-out of anything but safe methods repeats a
    /// side effect on every branch: prefer `GET` for branches.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Copies every value of the incoming header `name` onto the branch's
    /// request (`authorization`, `accept-language`, a request id...). Nothing
    /// is forwarded unless named.
    #[must_use]
    pub fn forward_header(mut self, name: HeaderName) -> Self {
        if !self.forward_headers.contains(&name) {
            self.forward_headers.push(name);
        }
        self
    }

    /// Sets a fixed header on every request to this branch.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Appends the whole incoming query string to the branch's query (after
    /// the template's own query, if any). Default: off.
    #[must_use]
    pub const fn forward_query(mut self, on: bool) -> Self {
        self.forward_query = on;
        self
    }

    /// The route the placeholders come from.
    #[must_use]
    pub const fn route(&self) -> &Route {
        &self.route
    }

    /// The branch URI for an incoming request to `incoming`.
    ///
    /// # Errors
    ///
    /// A [`RequestError`]: the path does not match the route, a parameter is
    /// missing or empty, or a value would climb the path.
    pub fn uri(&self, incoming: &Uri) -> Result<Uri, RequestError> {
        let path = incoming.path();
        if self
            .path
            .iter()
            .chain(self.query.iter())
            .any(|p| matches!(p, Piece::Path { .. }))
        {
            self.route.check(path)?;
        }
        let query = incoming.query();
        let mut uri = String::with_capacity(
            self.scheme.as_str().len() + self.authority.as_str().len() + self.prefix.len() + 64,
        );
        uri.push_str(self.scheme.as_str());
        uri.push_str("://");
        uri.push_str(self.authority.as_str());
        uri.push_str(&self.prefix);
        self.fill(&mut uri, &self.path, path, query, Place::Path)?;
        let forwarded = query.filter(|q| self.forward_query && !q.is_empty());
        if self.has_query || forwarded.is_some() {
            uri.push('?');
            self.fill(&mut uri, &self.query, path, query, Place::Query)?;
            if let Some(forwarded) = forwarded {
                if !uri.ends_with('?') && !uri.ends_with('&') {
                    uri.push('&');
                }
                uri.push_str(forwarded);
            }
        }
        Uri::try_from(uri).map_err(|_| RequestError::InvalidUri)
    }

    fn fill(
        &self,
        out: &mut String,
        pieces: &[Piece],
        path: &str,
        query: Option<&str>,
        place: Place,
    ) -> Result<(), RequestError> {
        for piece in pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Path { index, wildcard } => {
                    let value = capture(path, *index, *wildcard);
                    check_value(value, || self.param_name(*index))?;
                    push_encoded(out, value, place, *wildcard);
                }
                Piece::Query(name) => {
                    let value = query_param(query, name)
                        .ok_or_else(|| RequestError::MissingQueryParam(name.clone()))?;
                    if place == Place::Path {
                        if value.is_empty() {
                            return Err(RequestError::MissingQueryParam(name.clone()));
                        }
                        // Its `/` is escaped below, but a server that decodes
                        // `%2F` before normalising would still climb.
                        check_value(value, || name.clone())?;
                    }
                    push_encoded(out, value, place, false);
                }
            }
        }
        Ok(())
    }

    fn param_name(&self, index: usize) -> Box<str> {
        match &self.route.segments[index] {
            Segment::Param(name) | Segment::Wildcard(name) | Segment::Literal(name) => name.clone(),
        }
    }

    /// The branch request for `incoming`: URI from the template, method,
    /// forwarded and fixed headers, and an empty body.
    ///
    /// # Errors
    ///
    /// As [`uri`](Self::uri).
    pub fn request<B, BB: Default>(
        &self,
        incoming: &Request<B>,
    ) -> Result<Request<BB>, RequestError> {
        let uri = self.uri(incoming.uri())?;
        let mut request = Request::new(BB::default());
        *request.uri_mut() = uri;
        *request.method_mut() = self
            .method
            .clone()
            .unwrap_or_else(|| incoming.method().clone());
        let headers = request.headers_mut();
        for name in &self.forward_headers {
            for value in incoming.headers().get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        // The caller's deadline goes on with the branch's request, so the
        // branch's own stack (its retry, its deadline layer) sees what is
        // left of it.
        if let Some(deadline) = palisade_core::Deadline::of(incoming) {
            deadline.set_on(&mut request);
        }
        Ok(request)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Path,
    Query,
}

/// Refuses a value that some reading of the branch's path would turn into a
/// climb ([`palisade_core::path::check_path`]: `..`, `..;`, `%2e%2e`,
/// `..%2F`, backslashes, ...).
fn check_value(value: &str, name: impl FnOnce() -> Box<str>) -> Result<(), RequestError> {
    match check_path(value) {
        Ok(()) => Ok(()),
        Err(UnsafePath::DotSegment) => Err(RequestError::DotSegment(name())),
        Err(reason) => Err(RequestError::UnsafeValue(name(), reason)),
    }
}

/// Appends `value`, escaping what would change the URI's structure at
/// `place`; `/` is escaped in a path unless `keep_slash` (a wildcard's value).
fn push_encoded(out: &mut String, value: &str, place: Place, keep_slash: bool) {
    for c in value.chars() {
        match (place, c) {
            (Place::Path, '/') if !keep_slash => out.push_str("%2F"),
            (Place::Path, '?') => out.push_str("%3F"),
            // Valid in a query, not in a path (a query value put in one).
            (Place::Path, '`') => out.push_str("%60"),
            (_, '#') => out.push_str("%23"),
            (Place::Query, '&') => out.push_str("%26"),
            (Place::Query, '=') => out.push_str("%3D"),
            (Place::Query, '+') => out.push_str("%2B"),
            _ => out.push(c),
        }
    }
}

/// The raw value of `name` in `query`, if present.
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

// ===== Branch::http =====

impl<S, B, BB> Branch<S, Request<B>, Request<BB>>
where
    S: Service<Request<BB>>,
    B: 'static,
    BB: Default + 'static,
{
    /// A branch whose request is built by `target` (feature `http`): the
    /// incoming path's parameters and query fill the target's template; the
    /// method and chosen headers are forwarded. A request that cannot be
    /// built (a missing parameter) fails the branch with reason `request`.
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(name: impl Into<Arc<str>>, service: S, target: Target) -> Self {
        Self::fallible(name, service, move |request: &Request<B>| {
            target.request::<B, BB>(request)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fills_path_and_query_placeholders() {
        let route = Route::new("/api/{tenant}/user/{id}").unwrap();
        let target = route
            .target(
                "https://users.test:8443/base/",
                "/t/{tenant}/u/{id}?full=1&x={query.x}",
            )
            .unwrap();
        let uri = target
            .uri(&"/api/acme/user/7?x=a%20b&y=2".parse().unwrap())
            .unwrap();
        assert_eq!(
            uri,
            "https://users.test:8443/base/t/acme/u/7?full=1&x=a%20b"
        );
        assert_eq!(
            target
                .uri(&"/api/acme/user/7".parse().unwrap())
                .unwrap_err(),
            RequestError::MissingQueryParam("x".into())
        );
        assert_eq!(
            target.uri(&"/api/acme/7".parse().unwrap()).unwrap_err(),
            RequestError::PathMismatch("/api/{tenant}/user/{id}".into())
        );
        assert_eq!(
            target.uri(&"/api/acme/user".parse().unwrap()).unwrap_err(),
            RequestError::MissingPathParam("id".into())
        );
        assert_eq!(
            target
                .uri(&"/api/acme/user/7/extra".parse().unwrap())
                .unwrap_err(),
            RequestError::PathMismatch("/api/{tenant}/user/{id}".into())
        );
    }

    /// A backquote is valid in a query but not in a path: a query value
    /// holding one fills a valid branch path (found by the `fan_out_target`
    /// fuzz target).
    #[test]
    fn a_query_value_with_a_backquote_fills_a_valid_path() {
        let route = Route::new("/api/{id}").unwrap();
        let target = route
            .target("http://b.test", "/search/{query.q}/results")
            .unwrap();
        assert_eq!(
            target.uri(&"/api/7?q=a`b".parse().unwrap()).unwrap(),
            "http://b.test/search/a%60b/results"
        );
    }

    #[test]
    fn a_template_without_path_placeholders_accepts_any_path() {
        let route = Route::new("/api/{id}").unwrap();
        let target = route
            .target("http://b.test", "/health")
            .unwrap()
            .forward_query(true);
        assert_eq!(
            target.uri(&"/somewhere/else?a=1".parse().unwrap()).unwrap(),
            "http://b.test/health?a=1"
        );
    }

    proptest! {
        /// Whatever the incoming path and query, filling never panics, and
        /// what it builds is a URI on the target's authority.
        #[test]
        fn filling_never_panics_and_stays_on_the_target(
            segments in proptest::collection::vec("[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,8}", 0..5),
            query in "[a-zA-Z0-9._~%!$&'()*+,;=:@/?=-]{0,24}",
        ) {
            let route = Route::new("/api/{a}/{*rest}").unwrap();
            let target = route.target("http://b.test:81", "/x/{a}/{rest}?q={query.q}").unwrap().forward_query(true);
            let path = format!("/api/{}", segments.join("/"));
            let raw = format!("{path}?q={query}");
            if let Ok(incoming) = raw.parse::<Uri>()
                && let Ok(uri) = target.uri(&incoming) {
                    prop_assert_eq!(uri.authority().map(|a| a.as_str()), Some("b.test:81"));
                    prop_assert!(uri.path().starts_with("/x/"));
                    prop_assert!(!uri.path().split('/').any(|s| s == ".." || s == "."));
                }
        }
    }
}
