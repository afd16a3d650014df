//! `/admin/chaos`: every demo backend's chaos layer; `PATCH` switches one,
//! `reset` puts it back.

use super::*;

/// A demo backend's chaos layer as the admin API shows it: the crate's
/// [`ChaosSnapshot`] as it is (`name`, `seed`, `settings`, `injected`),
/// with the backend's address and, at the top level, the settings the
/// `PATCH` body takes (durations in milliseconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChaosView {
    /// The demo backend.
    pub backend: String,
    /// Its address.
    pub addr: String,
    /// The chaos layer's own snapshot.
    #[serde(flatten)]
    pub snapshot: ChaosSnapshot,
    /// Injection on or off.
    pub enabled: bool,
    /// Outage on (every call fails with 503).
    pub outage: bool,
    /// Fraction of calls failed with 500.
    pub error_rate: f64,
    /// Fraction of calls never answered.
    pub abort_rate: f64,
    /// Fraction of calls delayed.
    pub latency_rate: f64,
    /// Least added latency, ms.
    pub latency_min_ms: u64,
    /// Most added latency, ms.
    pub latency_max_ms: u64,
}

impl ChaosView {
    /// The view of `handle`, the chaos layer of `backend` at `addr`.
    #[must_use]
    pub fn of(backend: &str, addr: &str, handle: &ChaosHandle) -> Self {
        let snapshot = handle.snapshot();
        let s = &snapshot.settings;
        Self {
            backend: backend.to_owned(),
            addr: addr.to_owned(),
            enabled: s.enabled,
            outage: s.outage,
            error_rate: s.error_rate,
            abort_rate: s.abort_rate,
            latency_rate: s.latency_rate,
            latency_min_ms: millis(s.latency_min),
            latency_max_ms: millis(s.latency_max),
            snapshot,
        }
    }
}

/// The largest added latency the chaos API accepts, in milliseconds (one
/// minute): past every sensible timeout, a longer delay only looks like a
/// call that never answers, which `abort_rate` already injects.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// A refused chaos change: the `PATCH` field at fault and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChaosPatchError {
    /// The field, as written in the `PATCH` body.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: String,
}

impl ChaosPatchError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ChaosPatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

impl std::error::Error for ChaosPatchError {}

/// The body of `PATCH /admin/chaos/{backend}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosPatch {
    /// Injection on or off.
    pub enabled: Option<bool>,
    /// Outage on or off.
    pub outage: Option<bool>,
    /// Fraction of calls failed with 500.
    pub error_rate: Option<f64>,
    /// Fraction of calls never answered.
    pub abort_rate: Option<f64>,
    /// Fraction of calls delayed.
    pub latency_rate: Option<f64>,
    /// Exact added latency, ms.
    pub latency_ms: Option<u64>,
    /// Least added latency, ms.
    pub latency_min_ms: Option<u64>,
    /// Most added latency, ms.
    pub latency_max_ms: Option<u64>,
}

impl ChaosPatch {
    /// `current` with this patch applied. A latency given without a rate
    /// applies to every call (`latency_rate` 1), or, when the resulting
    /// latency is zero, turns latency injection off (`latency_rate` 0).
    ///
    /// # Errors
    ///
    /// The first field at fault: `latency_ms` given with
    /// `latency_min_ms`/`latency_max_ms`; a latency above
    /// [`MAX_LATENCY_MS`]; a rate outside `[0, 1]`; `latency_min_ms` above
    /// `latency_max_ms` (after the patch).
    pub fn apply_to(&self, mut s: ChaosSettings) -> Result<ChaosSettings, ChaosPatchError> {
        if self.latency_ms.is_some()
            && (self.latency_min_ms.is_some() || self.latency_max_ms.is_some())
        {
            return Err(ChaosPatchError::new(
                "latency_ms",
                "is given with `latency_min_ms`/`latency_max_ms`: give one or the other",
            ));
        }
        for (field, ms) in [
            ("latency_ms", self.latency_ms),
            ("latency_min_ms", self.latency_min_ms),
            ("latency_max_ms", self.latency_max_ms),
        ] {
            if let Some(ms) = ms.filter(|ms| *ms > MAX_LATENCY_MS) {
                return Err(ChaosPatchError::new(
                    field,
                    format!("must be at most {MAX_LATENCY_MS} (one minute), got {ms}"),
                ));
            }
        }
        for (field, rate) in [
            ("error_rate", self.error_rate),
            ("abort_rate", self.abort_rate),
            ("latency_rate", self.latency_rate),
        ] {
            if let Some(rate) = rate.filter(|r| !(0.0..=1.0).contains(r)) {
                return Err(ChaosPatchError::new(
                    field,
                    format!("must be a fraction in [0, 1], got {rate}"),
                ));
            }
        }
        if let Some(v) = self.enabled {
            s.enabled = v;
        }
        if let Some(v) = self.outage {
            s.outage = v;
        }
        if let Some(v) = self.error_rate {
            s.error_rate = v;
        }
        if let Some(v) = self.abort_rate {
            s.abort_rate = v;
        }
        let latency_given = self.latency_ms.is_some()
            || self.latency_min_ms.is_some()
            || self.latency_max_ms.is_some();
        if let Some(ms) = self.latency_ms {
            s.latency_min = Duration::from_millis(ms);
            s.latency_max = Duration::from_millis(ms);
        }
        if let Some(ms) = self.latency_min_ms {
            s.latency_min = Duration::from_millis(ms);
        }
        if let Some(ms) = self.latency_max_ms {
            s.latency_max = Duration::from_millis(ms);
        }
        if s.latency_min > s.latency_max {
            let field = if self.latency_min_ms.is_some() {
                "latency_min_ms"
            } else {
                "latency_max_ms"
            };
            return Err(ChaosPatchError::new(
                field,
                format!(
                    "would put the least latency ({} ms) above the most ({} ms)",
                    s.latency_min.as_millis(),
                    s.latency_max.as_millis()
                ),
            ));
        }
        match self.latency_rate {
            Some(rate) => s.latency_rate = rate,
            // No latency to add: injection off, rather than "every call
            // delayed by nothing".
            None if latency_given && s.latency_max.is_zero() => s.latency_rate = 0.0,
            None if latency_given && s.latency_rate == 0.0 => s.latency_rate = 1.0,
            None => {}
        }
        Ok(s)
    }
}

fn backend_view(state: &AppState, name: &str) -> Result<ChaosView, Box<Response>> {
    match state.inner.backends.get(name) {
        Some(b) => Ok(ChaosView::of(name, &b.addr.to_string(), &b.chaos)),
        None => Err(Box::new(problem(
            StatusCode::NOT_FOUND,
            "no such backend",
            format!(
                "no demo backend named `{name}` (known: {})",
                state
                    .inner
                    .backends
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))),
    }
}

async fn list(State(state): State<AppState>) -> Response {
    let views: Vec<ChaosView> = state
        .inner
        .backends
        .iter()
        .map(|(name, b)| ChaosView::of(name, &b.addr.to_string(), &b.chaos))
        .collect();
    axum::Json(serde_json::json!({ "backends": views })).into_response()
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match backend_view(&state, &name) {
        Ok(v) => axum::Json(v).into_response(),
        Err(res) => *res,
    }
}

async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<axum::Json<ChaosPatch>, JsonRejection>,
) -> Response {
    let Some(backend) = state.inner.backends.get(&name) else {
        return backend_view(&state, &name)
            .err()
            .map_or_else(|| StatusCode::NOT_FOUND.into_response(), |res| *res);
    };
    let patch = match body {
        Ok(axum::Json(p)) => p,
        Err(rejection) => {
            return problem(
                rejection.status(),
                "bad chaos settings",
                rejection.body_text(),
            );
        }
    };
    let settings = match patch.apply_to(backend.chaos.settings()) {
        Ok(s) => s,
        Err(err) => return bad_chaos_settings(err.field, err.to_string()),
    };
    if let Err(err) = backend.chaos.apply(settings) {
        return bad_chaos_settings(err.field(), err.to_string());
    }
    tracing::info!(backend = %name, ?settings, "chaos settings changed through the admin API");
    axum::Json(ChaosView::of(
        &name,
        &backend.addr.to_string(),
        &backend.chaos,
    ))
    .into_response()
}

/// `422` for a chaos change refused because of `field`.
pub(super) fn bad_chaos_settings(field: &str, detail: String) -> Response {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "bad chaos settings")
        .detail(detail)
        .extension("field", field)
        .into_response()
}

async fn reset(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.inner.backends.get(&name) {
        Some(b) => {
            b.chaos.reset();
            axum::Json(ChaosView::of(&name, &b.addr.to_string(), &b.chaos)).into_response()
        }
        None => backend_view(&state, &name)
            .err()
            .map_or_else(|| StatusCode::NOT_FOUND.into_response(), |res| *res),
    }
}

/// `/admin/chaos...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/chaos", get(list))
        .route("/chaos/{backend}", get(show).patch(patch))
        .route("/chaos/{backend}/reset", post(reset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_without_a_rate_applies_to_every_call() {
        let patch = ChaosPatch {
            latency_ms: Some(200),
            ..ChaosPatch::default()
        };
        let s = patch.apply_to(ChaosSettings::default()).unwrap();
        assert_eq!(s.latency_min, Duration::from_millis(200));
        assert_eq!(s.latency_max, Duration::from_millis(200));
        assert_eq!(s.latency_rate, 1.0);
        let both = ChaosPatch {
            latency_ms: Some(1),
            latency_max_ms: Some(2),
            ..ChaosPatch::default()
        };
        assert!(both.apply_to(ChaosSettings::default()).is_err());
    }

    #[test]
    fn a_zero_latency_turns_latency_injection_off() {
        let zero = ChaosPatch {
            latency_ms: Some(0),
            ..ChaosPatch::default()
        };
        let s = zero.apply_to(ChaosSettings::default()).unwrap();
        assert_eq!(s.latency_max, Duration::ZERO);
        assert_eq!(s.latency_rate, 0.0, "no latency, no injection");
        // From a latency in force: back to none.
        let delayed = ChaosSettings {
            latency_min: Duration::from_millis(100),
            latency_max: Duration::from_millis(100),
            latency_rate: 0.5,
            ..ChaosSettings::default()
        };
        let s = zero.apply_to(delayed).unwrap();
        assert_eq!((s.latency_max, s.latency_rate), (Duration::ZERO, 0.0));
        // A rate given with it is kept (it applies to a later latency).
        let with_rate = ChaosPatch {
            latency_ms: Some(0),
            latency_rate: Some(0.25),
            ..ChaosPatch::default()
        };
        assert_eq!(
            with_rate
                .apply_to(ChaosSettings::default())
                .unwrap()
                .latency_rate,
            0.25
        );
        // Other knobs leave the latency rate alone.
        let errors = ChaosPatch {
            error_rate: Some(0.5),
            ..ChaosPatch::default()
        };
        assert_eq!(errors.apply_to(delayed).unwrap().latency_rate, 0.5);
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_field() {
        let refused = |patch: ChaosPatch| patch.apply_to(ChaosSettings::default()).unwrap_err();
        let at_most = ChaosPatch {
            latency_ms: Some(MAX_LATENCY_MS),
            ..ChaosPatch::default()
        };
        assert!(at_most.apply_to(ChaosSettings::default()).is_ok());
        for (patch, field) in [
            (
                ChaosPatch {
                    latency_ms: Some(MAX_LATENCY_MS + 1),
                    ..ChaosPatch::default()
                },
                "latency_ms",
            ),
            (
                ChaosPatch {
                    latency_ms: Some(u64::MAX),
                    ..ChaosPatch::default()
                },
                "latency_ms",
            ),
            (
                ChaosPatch {
                    latency_min_ms: Some(1),
                    latency_max_ms: Some(u64::MAX),
                    ..ChaosPatch::default()
                },
                "latency_max_ms",
            ),
            (
                ChaosPatch {
                    latency_min_ms: Some(70_000),
                    ..ChaosPatch::default()
                },
                "latency_min_ms",
            ),
            (
                ChaosPatch {
                    latency_min_ms: Some(500),
                    latency_max_ms: Some(100),
                    ..ChaosPatch::default()
                },
                "latency_min_ms",
            ),
            (
                ChaosPatch {
                    error_rate: Some(1.5),
                    ..ChaosPatch::default()
                },
                "error_rate",
            ),
            (
                ChaosPatch {
                    abort_rate: Some(-0.1),
                    ..ChaosPatch::default()
                },
                "abort_rate",
            ),
            (
                ChaosPatch {
                    latency_rate: Some(2.0),
                    ..ChaosPatch::default()
                },
                "latency_rate",
            ),
        ] {
            let err = refused(patch);
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().starts_with(&format!("`{field}` ")), "{err}");
        }
    }
}
