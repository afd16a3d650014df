//! `[[routes]]`: the proxy's route table.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::upstream::UpstreamConfig;
use super::{Checker, ConfigFileError};

/// Paths the gateway serves itself; a route prefix may not shadow them.
pub const RESERVED_PREFIXES: [&str; 8] = [
    "/admin",
    "/dashboard",
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/dashboard",
    "/api/accounts",
    "/api/orders",
];

/// `[[routes]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    prefix: Spanned<String>,
    upstream: Spanned<String>,
}

/// `[[routes]]`: requests under `prefix` go to `upstream`, prefix stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// `prefix`: `/api/user` serves `/api/user/{*path}`, sent upstream as
    /// `/{path}`.
    pub prefix: String,
    /// `upstream`: the name of an upstream.
    pub upstream: String,
}

/// `true` for a route prefix the router can take as it is: `/` followed by
/// non-empty segments of unreserved URI characters (RFC 3986: letters,
/// digits, `-`, `.`, `_`, `~`), none of them `.` or `..`. Anything else
/// (captures like `{x}` or `:x`, wildcards, percent-escapes, spaces) is
/// refused here rather than met by the router at start-up.
fn valid_prefix(prefix: &str) -> bool {
    let Some(rest) = prefix.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        })
}

impl Checker<'_> {
    pub(super) fn routes(
        &self,
        raw: Vec<RawRoute>,
        upstreams: &BTreeMap<String, UpstreamConfig>,
    ) -> Result<Vec<RouteConfig>, ConfigFileError> {
        let mut routes: Vec<RouteConfig> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            let prefix = r.prefix.get_ref();
            if !valid_prefix(prefix) {
                return self.err(
                    r.prefix.span(),
                    format!("{key}.prefix"),
                    format!(
                        "`{prefix}` must look like `/api/name`: `/` then segments of letters, digits, `-`, `.`, `_` or `~`, \
                         separated by single `/`, no trailing `/`, no `.` or `..` segment"
                    ),
                );
            }
            if let Some(reserved) = RESERVED_PREFIXES
                .iter()
                .find(|p| prefix == *p || prefix.starts_with(&format!("{p}/")))
            {
                return self.err(
                    r.prefix.span(),
                    format!("{key}.prefix"),
                    format!("`{prefix}` is under `{reserved}`, which the gateway serves itself"),
                );
            }
            if routes.iter().any(|x| x.prefix == *prefix) {
                return self.err(
                    r.prefix.span(),
                    format!("{key}.prefix"),
                    format!("`{prefix}` is routed twice"),
                );
            }
            self.known_upstream(upstreams, &r.upstream, &format!("{key}.upstream"))?;
            routes.push(RouteConfig {
                prefix: prefix.clone(),
                upstream: r.upstream.into_inner(),
            });
        }

        Ok(routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_prefixes() {
        for ok in ["/api/user", "/a", "/v1.2/x-y_z~", "/API/Users"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in [
            "", "/", "api", "/api/", "//api", "/api//x", "/api/:x", "/api/{x}", "/api/*x", "/a b",
            "/a%20", "/a?b", "/a#b", "/./a", "/a/..", "/ü",
        ] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
