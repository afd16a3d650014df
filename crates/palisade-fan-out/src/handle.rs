//! [`FanOutHandle`]: a fan-out's name and settings, and [`FanOutSnapshot`],
//! what an admin API shows of it.
//!
//! A fan-out keeps no figures of its own (a gather pays for no counter
//! beyond its metrics, `palisade_fan_out_*`) and nothing to change at
//! runtime: its snapshot is its configuration. What it does is in the
//! metrics.

use std::fmt;
use std::sync::Arc;

use palisade_core::Handle;

use crate::settings::{BranchSettings, FanOutSettings};
use crate::shared::Summary;

/// One branch as a [`FanOutSnapshot`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BranchSnapshot {
    /// The branch's name: its key in a keyed answer and its `branch` metric
    /// label.
    pub name: Arc<str>,
    /// Whether it is required, its timeout.
    pub settings: BranchSettings,
    /// Whether a fallback value stands in when it fails.
    pub fallback: bool,
}

/// A fan-out's name and settings, and its branches', in declaration order.
/// Plain data, `Serialize` with the `serde` feature (durations as strings:
/// `"250ms"`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FanOutSnapshot {
    /// The fan-out's name.
    pub name: Arc<str>,
    /// Its settings.
    pub settings: FanOutSettings,
    /// Its branches, in declaration order.
    pub branches: Vec<BranchSnapshot>,
}

/// Reads a fan-out's name and settings; what a
/// [`Registry<FanOutHandle>`](palisade_core::Registry) holds for an admin
/// API. Cheap to clone (an `Arc`); from
/// [`FanOut::handle`](crate::FanOut::handle). It has no type parameters, so
/// one registry lists fan-outs over any services.
///
/// ```
/// use palisade_fan_out::{Branch, FanOut, FanOutHandle};
/// use palisade_core::{BoxError, Registry};
/// use std::time::Duration;
/// use tower::service_fn;
///
/// let echo = service_fn(|n: u64| async move { Ok::<_, BoxError>(serde_json::json!(n)) });
/// let fan_out = FanOut::builder("dashboard")
///     .deadline(Duration::from_millis(300))
///     .branch(Branch::new("user", echo, |n: &u64| *n).required())
///     .build()?;
/// let registry = Registry::<FanOutHandle>::new();
/// registry.register(fan_out.handle());
/// let snapshot = &registry.snapshots()[0];
/// assert_eq!(&*snapshot.name, "dashboard");
/// assert_eq!(snapshot.settings.deadline, Some(Duration::from_millis(300)));
/// assert!(snapshot.branches[0].settings.required);
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct FanOutHandle {
    summary: Arc<Summary>,
}

impl fmt::Debug for FanOutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOutHandle")
            .field("name", &self.summary.name)
            .finish_non_exhaustive()
    }
}

impl FanOutHandle {
    pub(crate) const fn new(summary: Arc<Summary>) -> Self {
        Self { summary }
    }

    /// The fan-out's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.summary.name
    }

    /// `true` if both handles belong to the same fan-out (one build and its
    /// clones).
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.summary, &other.summary)
    }

    /// The fan-out's settings.
    #[must_use]
    pub fn settings(&self) -> &FanOutSettings {
        &self.summary.settings
    }

    /// The name and settings of the fan-out and of its branches.
    #[must_use]
    pub fn snapshot(&self) -> FanOutSnapshot {
        let summary = &*self.summary;
        FanOutSnapshot {
            name: Arc::clone(&summary.name),
            settings: summary.settings.clone(),
            branches: summary
                .branches
                .iter()
                .map(|(name, settings, fallback)| BranchSnapshot {
                    name: Arc::clone(name),
                    settings: *settings,
                    fallback: *fallback,
                })
                .collect(),
        }
    }
}

impl Handle for FanOutHandle {
    type Snapshot = FanOutSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> FanOutSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
