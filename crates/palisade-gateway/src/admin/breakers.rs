//! `/admin/circuit-breakers`: every breaker's state, window figures and
//! settings; actions that switch its state.

use super::*;

/// A circuit breaker as the admin API shows it: the crate's
/// [`CircuitBreakerSnapshot`] as it is (`name`, `state`, `failure_rate`,
/// `calls`, `failed_calls`, `not_permitted_calls`, `next_probe_in`,
/// `half_open`, ...), with durations also in milliseconds and rates under
/// the `_pct` names the dashboard uses.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerView {
    /// The breaker's own snapshot, but for its `config`, shown as
    /// [`config`](Self::config).
    #[serde(flatten, serialize_with = "snapshot_but_config")]
    pub snapshot: CircuitBreakerSnapshot,
    /// Failure rate over the window's calls, percent (the snapshot's
    /// `failure_rate`).
    pub failure_rate_pct: f64,
    /// Slow-call rate over the window's calls, percent (the snapshot's
    /// `slow_call_rate`).
    pub slow_call_rate_pct: f64,
    /// Open: milliseconds until the next probe is admitted.
    pub next_probe_in_ms: Option<u64>,
    /// The effective settings.
    pub config: BreakerConfigView,
}

/// A breaker's effective settings: the crate's [`ConfigSummary`] as it is
/// (`sliding_window`, `minimum_calls`, `wait_in_open`, ...), with the window
/// and the durations also in the gateway's flat form.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerConfigView {
    /// The breaker's own effective settings.
    #[serde(flatten)]
    pub summary: ConfigSummary,
    /// `count` or `time`.
    pub window: &'static str,
    /// Calls (count window) or seconds (time window).
    pub window_size: u64,
    /// Calls this long or longer are slow; `null`: no slow-call detection.
    pub slow_call_duration_ms: Option<u64>,
    /// The wait in the open state after the first trip.
    pub wait_in_open_ms: u64,
    /// The longest wait in the open state.
    pub max_wait_in_open_ms: u64,
    /// How long probes may take to decide.
    pub max_wait_in_half_open_ms: u64,
}

/// Serializes a snapshot's fields but its `config`, which the view shows
/// as a [`BreakerConfigView`].
fn snapshot_but_config<S: serde::Serializer>(
    snapshot: &CircuitBreakerSnapshot,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut fields = serde_json::to_value(snapshot).map_err(serde::ser::Error::custom)?;
    if let Some(map) = fields.as_object_mut() {
        map.remove("config");
    }
    fields.serialize(serializer)
}

impl BreakerView {
    /// The view of `snapshot`.
    #[must_use]
    pub fn of(snapshot: CircuitBreakerSnapshot) -> Self {
        let c = &snapshot.config;
        let (window, window_size) = match c.sliding_window {
            SlidingWindow::Count(n) => ("count", u64::from(n)),
            SlidingWindow::Time(d) => ("time", d.as_secs()),
        };
        Self {
            failure_rate_pct: snapshot.failure_rate,
            slow_call_rate_pct: snapshot.slow_call_rate,
            next_probe_in_ms: snapshot.next_probe_in.map(millis),
            config: BreakerConfigView {
                window,
                window_size,
                slow_call_duration_ms: c.slow_call_duration.map(millis),
                wait_in_open_ms: millis(c.wait_in_open),
                max_wait_in_open_ms: millis(c.max_wait_in_open),
                max_wait_in_half_open_ms: millis(c.max_wait_in_half_open),
                summary: c.clone(),
            },
            snapshot,
        }
    }
}

/// The actions of `POST /admin/circuit-breakers/{name}/{action}`.
const BREAKER_ACTIONS: [&str; 7] = [
    "force-open",
    "open",
    "half-open",
    "close",
    "reset",
    "disable",
    "metrics-only",
];

fn apply_breaker_action(handle: &CircuitBreakerHandle, action: &str) -> bool {
    match action {
        "force-open" => handle.force_open(),
        "open" => handle.transition_to(BreakerState::Open),
        "half-open" => handle.half_open(),
        "close" | "reset" => handle.reset(),
        "disable" => handle.disable(),
        "metrics-only" => handle.metrics_only(),
        _ => return false,
    }
    true
}

fn breaker(state: &AppState, name: &str) -> Result<CircuitBreakerHandle, Box<Response>> {
    let registry = state.circuit_breakers();
    registry
        .get(name)
        .ok_or_else(|| Box::new(no_such("circuit breaker", name, &registry.names())))
}

async fn list_breakers(State(state): State<AppState>) -> Response {
    let views: Vec<BreakerView> = state
        .circuit_breakers()
        .snapshots()
        .into_iter()
        .map(BreakerView::of)
        .collect();
    axum::Json(serde_json::json!({ "circuit_breakers": views })).into_response()
}

async fn show_breaker(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match breaker(&state, &name) {
        Ok(h) => axum::Json(BreakerView::of(h.snapshot())).into_response(),
        Err(res) => *res,
    }
}

async fn breaker_action(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let handle = match breaker(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    if !apply_breaker_action(&handle, &action) {
        return problem(
            StatusCode::NOT_FOUND,
            "no such action",
            format!(
                "`{action}` is not a circuit breaker action (known: {})",
                BREAKER_ACTIONS.join(", ")
            ),
        );
    }
    tracing::info!(breaker = %name, %action, state = handle.state().as_str(), "circuit breaker changed through the admin API");
    axum::Json(BreakerView::of(handle.snapshot())).into_response()
}

/// `/admin/circuit-breakers...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/circuit-breakers", get(list_breakers))
        .route("/circuit-breakers/{name}", get(show_breaker))
        .route("/circuit-breakers/{name}/{action}", post(breaker_action))
}
