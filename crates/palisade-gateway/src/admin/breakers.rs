//! `/admin/circuit-breakers`: every breaker's state, window figures and
//! settings; actions that switch its state.

use super::*;

/// A circuit breaker as the admin API shows it: its
/// [`CircuitBreakerSnapshot`], durations in milliseconds, rates in percent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerView {
    /// The breaker's name (its upstream's).
    pub name: String,
    /// `closed`, `open`, `half_open`, `disabled`, `metrics_only`, `forced_open`.
    pub state: &'static str,
    /// Failure rate over the window's calls, percent.
    pub failure_rate_pct: f64,
    /// Slow-call rate over the window's calls, percent.
    pub slow_call_rate_pct: f64,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `true` once the window holds enough calls for its rates to count.
    pub minimum_calls_reached: bool,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Calls refused since the breaker was built.
    pub not_permitted_calls: u64,
    /// Open: milliseconds until the next probe is admitted.
    pub next_probe_in_ms: Option<u64>,
    /// Half-open: the probes' figures.
    pub half_open: Option<ProbesView>,
    /// The effective settings.
    pub config: BreakerConfigView,
}

/// A half-open breaker's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProbesView {
    /// Probes admitted in this half-open period, at most.
    pub permitted: u32,
    /// Probes in flight.
    pub in_flight: u32,
    /// Probes completed and recorded.
    pub completed: u32,
    /// Of those, failed.
    pub failed: u32,
    /// Of those, slow.
    pub slow: u32,
}

/// A breaker's effective settings (the builder's, defaults filled in).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerConfigView {
    /// `count` or `time`.
    pub window: &'static str,
    /// Calls (count window) or seconds (time window).
    pub window_size: u64,
    /// Percent; `null` when failure-rate trips are off.
    pub failure_rate_threshold: Option<f64>,
    /// Calls this long or longer are slow; `null`: no slow-call detection.
    pub slow_call_duration_ms: Option<u64>,
    /// Percent.
    pub slow_call_rate_threshold: Option<f64>,
    /// Failures in a row that open the breaker.
    pub consecutive_failures: Option<u32>,
    /// Calls the window must hold before its rates are judged.
    pub minimum_calls: u32,
    /// The wait in the open state after the first trip.
    pub wait_in_open_ms: u64,
    /// The factor the wait grows by on each further trip.
    pub wait_in_open_multiplier: f64,
    /// The longest wait in the open state.
    pub max_wait_in_open_ms: u64,
    /// The random spread of each wait, a fraction.
    pub wait_in_open_jitter: f64,
    /// Probes admitted in the half-open state.
    pub permitted_calls_in_half_open: u32,
    /// How long probes may take to decide.
    pub max_wait_in_half_open_ms: u64,
}

impl BreakerView {
    /// The view of `snapshot`.
    #[must_use]
    pub fn of(snapshot: &CircuitBreakerSnapshot) -> Self {
        let c = &snapshot.config;
        let (window, window_size) = match c.sliding_window {
            SlidingWindow::Count(n) => ("count", u64::from(n)),
            SlidingWindow::Time(d) => ("time", d.as_secs()),
        };
        Self {
            name: snapshot.name.to_string(),
            state: snapshot.state.as_str(),
            failure_rate_pct: snapshot.failure_rate,
            slow_call_rate_pct: snapshot.slow_call_rate,
            calls: snapshot.calls,
            failed_calls: snapshot.failed_calls,
            slow_calls: snapshot.slow_calls,
            minimum_calls_reached: snapshot.minimum_calls_reached,
            consecutive_failures: snapshot.consecutive_failures,
            not_permitted_calls: snapshot.not_permitted_calls,
            next_probe_in_ms: snapshot.next_probe_in.map(millis),
            half_open: snapshot.half_open.map(|p| ProbesView {
                permitted: p.permitted,
                in_flight: p.in_flight,
                completed: p.completed,
                failed: p.failed,
                slow: p.slow,
            }),
            config: BreakerConfigView {
                window,
                window_size,
                failure_rate_threshold: c.failure_rate_threshold,
                slow_call_duration_ms: c.slow_call_duration.map(millis),
                slow_call_rate_threshold: c.slow_call_rate_threshold,
                consecutive_failures: c.consecutive_failures,
                minimum_calls: c.minimum_calls,
                wait_in_open_ms: millis(c.wait_in_open),
                wait_in_open_multiplier: c.wait_in_open_multiplier,
                max_wait_in_open_ms: millis(c.max_wait_in_open),
                wait_in_open_jitter: c.wait_in_open_jitter,
                permitted_calls_in_half_open: c.permitted_calls_in_half_open,
                max_wait_in_half_open_ms: millis(c.max_wait_in_half_open),
            },
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
        .iter()
        .map(BreakerView::of)
        .collect();
    axum::Json(serde_json::json!({ "circuit_breakers": views })).into_response()
}

async fn show_breaker(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match breaker(&state, &name) {
        Ok(h) => axum::Json(BreakerView::of(&h.snapshot())).into_response(),
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
    axum::Json(BreakerView::of(&handle.snapshot())).into_response()
}

/// `/admin/circuit-breakers...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/circuit-breakers", get(list_breakers))
        .route("/circuit-breakers/{name}", get(show_breaker))
        .route("/circuit-breakers/{name}/{action}", post(breaker_action))
}
