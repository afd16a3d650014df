//! LEAF. [`State`]: the names of a breaker's states, shared by the settings
//! (`initial_state`) and the state machine, so neither imports the other.

/// The state of a circuit breaker.
///
/// `Closed`, `Open` and `HalfOpen` are the automatic states; `Disabled`,
/// `MetricsOnly` and `ForcedOpen` are set by hand through a
/// [`CircuitBreakerHandle`](crate::CircuitBreakerHandle) and kept until changed
/// by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum State {
    /// Calls pass and are recorded; the breaker opens when a threshold is
    /// reached.
    Closed,
    /// Calls are rejected until the wait in the open state has elapsed.
    Open,
    /// A fixed number of probe calls pass; their outcome closes or re-opens
    /// the breaker.
    HalfOpen,
    /// Manual: every call passes, nothing is recorded.
    Disabled,
    /// Manual: every call passes and is recorded and reported, but the breaker
    /// never opens (a shadow mode to tune thresholds on live traffic).
    MetricsOnly,
    /// Manual: every call is rejected.
    ForcedOpen,
}

impl State {
    /// Every state, in the order of their numeric codes.
    pub const ALL: [Self; 6] = [
        Self::Closed,
        Self::Open,
        Self::HalfOpen,
        Self::Disabled,
        Self::MetricsOnly,
        Self::ForcedOpen,
    ];

    /// A snake_case label for metrics, logs and JSON: `closed`, `open`,
    /// `half_open`, `disabled`, `metrics_only`, `forced_open`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
            Self::ForcedOpen => "forced_open",
        }
    }

    /// `true` for the states that reject calls: `Open` and `ForcedOpen`
    /// (`HalfOpen` rejects only once its probes are taken).
    #[must_use]
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Open | Self::ForcedOpen)
    }

    /// `true` for the states set by hand.
    #[must_use]
    pub const fn is_manual(self) -> bool {
        matches!(self, Self::Disabled | Self::MetricsOnly | Self::ForcedOpen)
    }

    /// The numeric code (0 to 5), the index in [`State::ALL`].
    #[must_use]
    pub const fn code(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
