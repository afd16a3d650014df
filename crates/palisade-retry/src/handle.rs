//! [`RetryHandle`]: a retry layer's name, settings and budget at runtime, and
//! [`RetrySnapshot`], what the admin API and the dashboard show.

use std::fmt;
use std::sync::Arc;

use crate::settings::RetrySettings;
use crate::shared::Core;
use crate::state::budget::{BudgetSnapshot, RetryBudget};

/// A retry layer's runtime view: its name, its settings in effect and its
/// budget's figures. What a `Registry<RetryHandle>` holds.
///
/// Cheap to clone (an `Arc`); from [`RetryLayer::handle`](crate::RetryLayer::handle)
/// or [`Retry::handle`](crate::Retry::handle). Every layer built under one
/// name through one registry has the same handle.
///
/// ```
/// use palisade_retry::{Registry, RetryHandle, RetryLayer};
///
/// let registry = Registry::<RetryHandle>::new();
/// let layer = RetryLayer::builder("inventory").max_attempts(4).registry(&registry).build()?;
/// let snapshot = registry.get("inventory").unwrap().snapshot();
/// assert_eq!(&*snapshot.name, "inventory");
/// assert_eq!(snapshot.settings.max_attempts, 4);
/// assert_eq!(snapshot.budget.unwrap().requests, 0);
/// assert!(layer.handle().same_as(&registry.get("inventory").unwrap()));
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryHandle {
    core: Arc<Core>,
}

/// A retry layer at one instant: plain data, `Serialize` with the `serde`
/// feature.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RetrySnapshot {
    /// The layer's name.
    pub name: Arc<str>,
    /// Its settings in effect. With a budget shared through
    /// [`RetryBuilder::budget`](crate::RetryBuilder::budget), `retry_ratio`,
    /// `min_retries_per_sec` and `budget_ttl` are that budget's.
    pub settings: RetrySettings,
    /// What its budget holds now (`None`: retries without a budget).
    pub budget: Option<BudgetSnapshot>,
}

impl RetryHandle {
    pub(crate) const fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The layer's name: the `name` label of its metrics.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The settings in effect.
    #[must_use]
    pub fn settings(&self) -> &RetrySettings {
        &self.core.settings
    }

    /// The budget retries draw from, if any.
    #[must_use]
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.core.budget.as_ref()
    }

    /// The name, the settings in effect and the budget's figures now.
    #[must_use]
    pub fn snapshot(&self) -> RetrySnapshot {
        RetrySnapshot {
            name: Arc::clone(&self.core.name),
            settings: self.core.settings.clone(),
            budget: self.core.budget.as_ref().map(|b| b.snapshot()),
        }
    }

    /// `true` if both handles are of the same instance (the same budget,
    /// settings and listeners).
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

impl palisade_core::Handle for RetryHandle {
    type Snapshot = RetrySnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> RetrySnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}

impl fmt::Debug for RetryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryHandle")
            .field("name", &self.core.name)
            .field("settings", &self.core.settings)
            .field("budget", &self.core.budget)
            .finish()
    }
}
