//! `/admin/caches`: every upstream's cache, as the cache crate's own
//! snapshot; `POST .../purge` removes entries by key or by prefix through
//! the crate's handle (both tiers).

use palisade::cache::{CacheHandle, CacheSnapshot};

use super::*;

/// The longest key or prefix a purge accepts, in bytes.
pub const MAX_PURGE_KEY_BYTES: usize = 4096;

/// The body of `POST /admin/caches/{name}/purge`: exactly one of `key` and
/// `prefix`, a path as the upstream gets it (`/products/7`; the proxy
/// route's prefix removed).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Removes the entries of this path (every method and variant).
    pub key: Option<String>,
    /// Removes the entries whose paths start with this.
    pub prefix: Option<String>,
}

impl PurgeRequest {
    /// The key or prefix, and which, or why the request is refused.
    ///
    /// # Errors
    ///
    /// Neither or both given, an empty one, one that is not a path (does
    /// not start with `/`), one with control characters, or one over
    /// [`MAX_PURGE_KEY_BYTES`].
    pub fn target(&self) -> Result<(&str, bool), String> {
        let (value, prefix, field) = match (&self.key, &self.prefix) {
            (Some(key), None) => (key.as_str(), false, "key"),
            (None, Some(prefix)) => (prefix.as_str(), true, "prefix"),
            _ => return Err("give exactly one of `key` and `prefix`".to_owned()),
        };
        if !value.starts_with('/') {
            return Err(format!(
                "`{field}` must be a path as the upstream gets it, starting with `/` (`/products/7`), got {value:?}"
            ));
        }
        if value.len() > MAX_PURGE_KEY_BYTES {
            return Err(format!(
                "`{field}` is {} bytes long, over the limit of {MAX_PURGE_KEY_BYTES}",
                value.len()
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("`{field}` must not hold control characters"));
        }
        Ok((value, prefix))
    }
}

/// What a purge removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PurgeView {
    /// The cache (its upstream's name).
    pub cache: String,
    /// The key purged, if by key.
    pub key: Option<String>,
    /// The prefix purged, if by prefix.
    pub prefix: Option<String>,
    /// Entries removed from the process tier.
    pub local: u64,
    /// Keys removed from the Redis tier (`null`: the cache has none).
    pub shared: Option<u64>,
}

fn cache(state: &AppState, name: &str) -> Result<CacheHandle, Box<Response>> {
    let registry = state.caches();
    registry.get(name).ok_or_else(|| {
        let known = registry.names();
        Box::new(problem(
            StatusCode::NOT_FOUND,
            "no such cache",
            format!(
                "no cache named `{name}` (known: {}); an upstream has one when its config has `[upstreams.<name>.cache]`",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ))
    })
}

async fn list_caches(State(state): State<AppState>) -> Response {
    // `CacheHandle` has no `palisade::Handle` impl, so no `snapshots()`.
    let snapshots: Vec<CacheSnapshot> = state
        .caches()
        .handles()
        .iter()
        .map(CacheHandle::snapshot)
        .collect();
    axum::Json(serde_json::json!({ "caches": snapshots })).into_response()
}

async fn show_cache(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match cache(&state, &name) {
        Ok(h) => axum::Json(h.snapshot()).into_response(),
        Err(res) => *res,
    }
}

async fn purge_cache(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<axum::Json<PurgeRequest>, JsonRejection>,
) -> Response {
    let handle = match cache(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    let request = match body {
        Ok(axum::Json(r)) => r,
        Err(rejection) => {
            return problem(
                rejection.status(),
                "bad purge request",
                rejection.body_text(),
            );
        }
    };
    let (target, by_prefix) = match request.target() {
        Ok(t) => t,
        Err(reason) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad purge request",
                reason,
            );
        }
    };
    // The key as the proxy route has it, and as the aggregator's branches.
    let forms = match state.upstream(&name) {
        Some(up) => crate::cache::key_forms(up.base(), target).to_vec(),
        None => vec![target.to_owned()],
    };
    let mut local = 0;
    let mut shared: Option<u64> = None;
    for form in &forms {
        match handle.purge(form, by_prefix).await {
            Ok(purged) => {
                local += purged.local;
                if let Some(n) = purged.shared {
                    shared = Some(shared.unwrap_or(0) + n);
                }
            }
            Err(err) => {
                tracing::warn!(cache = %name, %err, "a purge failed in the Redis tier");
                return problem(
                    StatusCode::BAD_GATEWAY,
                    "purge incomplete",
                    format!(
                        "the process tier was purged, the Redis tier was not: {err}; entries there expire with their lifetime"
                    ),
                );
            }
        }
    }
    tracing::info!(cache = %name, target, by_prefix, local, ?shared, "cache purged through the admin API");
    axum::Json(PurgeView {
        cache: name,
        key: (!by_prefix).then(|| target.to_owned()),
        prefix: by_prefix.then(|| target.to_owned()),
        local,
        shared,
    })
    .into_response()
}

/// `/admin/caches...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/caches", get(list_caches))
        .route("/caches/{name}", get(show_cache))
        .route("/caches/{name}/purge", post(purge_cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: Option<&str>, prefix: Option<&str>) -> PurgeRequest {
        PurgeRequest {
            key: key.map(str::to_owned),
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn a_purge_names_one_path_or_prefix() {
        assert_eq!(
            req(Some("/products/7"), None).target(),
            Ok(("/products/7", false))
        );
        assert_eq!(
            req(None, Some("/products/")).target(),
            Ok(("/products/", true))
        );
        for bad in [
            req(None, None),
            req(Some("/a"), Some("/b")),
            req(Some(""), None),
            req(None, Some("products")),
            req(Some("/a\nb"), None),
            req(Some(&format!("/{}", "a".repeat(MAX_PURGE_KEY_BYTES))), None),
        ] {
            assert!(bad.target().is_err(), "{bad:?}");
        }
    }
}
