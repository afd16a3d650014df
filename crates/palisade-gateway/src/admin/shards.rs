//! `/admin/shards`: every sharded upstream's router, as the shard crate's
//! own snapshot (map version, shards, the share of keys the last change
//! moved); `POST`, `DELETE` and `PATCH` change its map at runtime.

use palisade::shard::{MapChange, ShardSnapshot};

use super::*;
use crate::sharding::{ChangeError, ChangeErrorKind, NewShard, ShardedUpstream};

/// A sharded upstream as the admin API shows it: the crate's
/// [`ShardSnapshot`] as it is, and each shard's URL.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShardsView {
    /// The router's own snapshot (`name`, `scheme`, `epoch`: the map's
    /// version, `shards`: each one's weight, share of the keys, requests
    /// and replicas, `last_change`: its kind, shard and `moved_share`,
    /// `key_missing`, `key_malformed`, `settings`, ...).
    #[serde(flatten)]
    pub snapshot: ShardSnapshot,
    /// Each shard's URL, by name.
    pub urls: BTreeMap<String, String>,
}

impl ShardsView {
    /// The view of `upstream` now.
    #[must_use]
    pub fn of(upstream: &ShardedUpstream) -> Self {
        Self {
            snapshot: upstream.snapshot(),
            urls: upstream.urls(),
        }
    }
}

/// The answer to a change: the change made and the view after it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShardChangeView {
    /// The change (`epoch`, `kind`, `shard`, `moved_share`).
    pub change: MapChange,
    /// The sharded upstream after it.
    pub upstream: ShardsView,
}

/// The body of `POST /admin/shards/{upstream}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddShard {
    /// The shard's name (1 to 64 letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// `demo://<backend>` or `http://host:port[/base]`.
    pub url: String,
    /// Its weight (default 1).
    pub weight: Option<f64>,
}

/// The body of `PATCH /admin/shards/{upstream}/{shard}`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReweightShard {
    /// The shard's new weight.
    pub weight: f64,
}

use std::collections::BTreeMap;

fn sharded(state: &AppState, name: &str) -> Result<ShardedUpstream, Box<Response>> {
    state.sharded_upstream(name).cloned().ok_or_else(|| {
        let known: Vec<String> = state
            .sharded_upstreams()
            .map(|u| u.name().to_owned())
            .collect();
        Box::new(problem(
            StatusCode::NOT_FOUND,
            "no such sharded upstream",
            format!(
                "no sharded upstream named `{name}` (known: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ))
    })
}

fn refused(err: &ChangeError) -> Response {
    let status = match err.kind() {
        ChangeErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ChangeErrorKind::Conflict => StatusCode::CONFLICT,
        ChangeErrorKind::UnknownShard => StatusCode::NOT_FOUND,
    };
    Problem::new(status, "shard map unchanged")
        .kind("shard-change")
        .detail(err.to_string())
        .extension("reason", err.reason())
        .into_response::<Body>()
}

fn changed(upstream: &ShardedUpstream, change: MapChange, status: StatusCode) -> Response {
    tracing::info!(
        upstream = %upstream.name(),
        shard = %change.shard,
        kind = change.kind.as_str(),
        epoch = change.epoch,
        moved_share = change.moved_share,
        "shard map changed through the admin API"
    );
    let view = ShardChangeView {
        change,
        upstream: ShardsView::of(upstream),
    };
    (status, axum::Json(view)).into_response()
}

fn bad_body(rejection: &JsonRejection) -> Response {
    problem(
        rejection.status(),
        "bad shard change",
        rejection.body_text(),
    )
}

async fn list_shards(State(state): State<AppState>) -> Response {
    let views: Vec<ShardsView> = state.sharded_upstreams().map(ShardsView::of).collect();
    axum::Json(serde_json::json!({ "shards": views })).into_response()
}

async fn show_shards(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match sharded(&state, &name) {
        Ok(up) => axum::Json(ShardsView::of(&up)).into_response(),
        Err(res) => *res,
    }
}

async fn add_shard(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<axum::Json<AddShard>, JsonRejection>,
) -> Response {
    let up = match sharded(&state, &name) {
        Ok(up) => up,
        Err(res) => return *res,
    };
    let add = match body {
        Ok(axum::Json(add)) => add,
        Err(rejection) => return bad_body(&rejection),
    };
    let shard = NewShard {
        name: add.name,
        url: add.url,
        weight: add.weight.unwrap_or(1.0),
    };
    // A name is taken by any upstream the gateway has (a plain one, another
    // sharded upstream's shard) and by the shards of the other routers.
    let taken = |candidate: &str| {
        state.upstream(candidate).is_some()
            || state.sharded_upstream(candidate).is_some()
            || state
                .sharded_upstreams()
                .filter(|other| other.name() != up.name())
                .any(|other| other.handle().map().index_of(candidate).is_some())
    };
    let backend_addr = |backend: &str| state.backend_addr(backend);
    match up.add(&shard, &taken, &backend_addr, state.shard_registries()) {
        Ok(change) => changed(&up, change, StatusCode::CREATED),
        Err(err) => refused(&err),
    }
}

async fn remove_shard(
    State(state): State<AppState>,
    Path((name, shard)): Path<(String, String)>,
) -> Response {
    let up = match sharded(&state, &name) {
        Ok(up) => up,
        Err(res) => return *res,
    };
    match up.remove(&shard) {
        Ok(change) => changed(&up, change, StatusCode::OK),
        Err(err) => refused(&err),
    }
}

async fn reweight_shard(
    State(state): State<AppState>,
    Path((name, shard)): Path<(String, String)>,
    body: Result<axum::Json<ReweightShard>, JsonRejection>,
) -> Response {
    let up = match sharded(&state, &name) {
        Ok(up) => up,
        Err(res) => return *res,
    };
    let weight = match body {
        Ok(axum::Json(w)) => w.weight,
        Err(rejection) => return bad_body(&rejection),
    };
    match up.set_weight(&shard, weight) {
        Ok(change) => changed(&up, change, StatusCode::OK),
        Err(err) => refused(&err),
    }
}

/// `/admin/shards...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/shards", get(list_shards))
        .route("/shards/{upstream}", get(show_shards).post(add_shard))
        .route(
            "/shards/{upstream}/{shard}",
            axum::routing::delete(remove_shard).patch(reweight_shard),
        )
}
