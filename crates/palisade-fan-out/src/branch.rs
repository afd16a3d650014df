//! One branch of a fan-out: a name, a service with its own stack, how to
//! build its request from the incoming one, and what to do when it fails.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;
use tower_service::Service;

use crate::error::BranchError;
use crate::settings::BranchSettings;

type MapFn<Req, BReq> = Arc<dyn Fn(&Req) -> Result<BReq, BoxError> + Send + Sync>;
type FallbackFn<T> = Arc<dyn Fn(&BranchError) -> Option<T> + Send + Sync>;

/// One branch of a [`FanOut`](crate::FanOut).
///
/// Every branch of a fan-out has the same service type `S` (in a gateway,
/// the same stack over the same HTTP client, configured per downstream), so
/// the gather keeps its calls side by side without boxing each one. Each
/// branch's service is its own instance with its own state: its own breaker,
/// retry budget and bulkhead. Services of different types can share a fan-out
/// once boxed at the edge with `tower::util::BoxCloneSyncService`, at the
/// cost of one boxed future per branch call.
///
/// A branch is optional unless made [`required`](Self::required), has no
/// timeout of its own unless given one, and no fallback.
///
/// ```
/// use palisade_fan_out::Branch;
/// use serde_json::json;
/// use std::time::Duration;
/// use tower::service_fn;
/// # use palisade_core::BoxError;
///
/// let reviews = service_fn(|user: u64| async move {
///     Ok::<_, BoxError>(json!({ "user": user, "written": 8 }))
/// });
/// let branch = Branch::new("review", reviews, |user: &u64| *user)
///     .timeout(Duration::from_millis(100))
///     .fallback(json!({ "written": 0 }));
/// assert_eq!(branch.name(), "review");
/// assert!(!branch.is_required());
/// ```
pub struct Branch<S, Req, BReq>
where
    S: Service<BReq>,
{
    pub(crate) name: Arc<str>,
    pub(crate) service: S,
    map: MapFn<Req, BReq>,
    pub(crate) settings: BranchSettings,
    fallback: Option<FallbackFn<S::Response>>,
}

impl<S, Req, BReq> Branch<S, Req, BReq>
where
    S: Service<BReq>,
{
    /// A branch called `name` that calls `service` with `map(&incoming)`.
    pub fn new<F>(name: impl Into<Arc<str>>, service: S, map: F) -> Self
    where
        F: Fn(&Req) -> BReq + Send + Sync + 'static,
    {
        Self::with_map(
            name.into(),
            service,
            Arc::new(move |req: &Req| Ok(map(req))),
        )
    }

    /// A branch whose request may fail to build (a missing parameter, a value
    /// that does not parse): `map` returns an error and the branch fails with
    /// [`BranchErrorKind::Request`](crate::BranchErrorKind::Request) without
    /// calling `service`.
    pub fn fallible<F, E>(name: impl Into<Arc<str>>, service: S, map: F) -> Self
    where
        F: Fn(&Req) -> Result<BReq, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Self::with_map(
            name.into(),
            service,
            Arc::new(move |req: &Req| map(req).map_err(Into::into)),
        )
    }

    fn with_map(name: Arc<str>, service: S, map: MapFn<Req, BReq>) -> Self {
        Self {
            name,
            service,
            map,
            settings: BranchSettings {
                required: false,
                timeout: None,
            },
            fallback: None,
        }
    }

    /// The gather fails without this branch: if it fails (and has no
    /// fallback), the gather fails at once and the other calls are cancelled.
    #[must_use]
    pub const fn required(mut self) -> Self {
        self.settings.required = true;
        self
    }

    /// The gather answers without this branch (the default): if it fails, the
    /// answer is partial and says why.
    #[must_use]
    pub const fn optional(mut self) -> Self {
        self.settings.required = false;
        self
    }

    /// The branch's own timeout, from its start (readiness included) to its
    /// answer. Must be more than zero. Default: none (only the fan-out's
    /// deadline, if any, bounds it).
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = Some(timeout);
        self
    }

    /// Replaces every setting that is plain data (whether it is required,
    /// its timeout) with `settings`; see [`BranchSettings`].
    #[must_use]
    pub const fn settings(mut self, settings: BranchSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The value to use when the branch fails, whatever the reason. The
    /// answer is marked incomplete and the account names the branch with
    /// `"fallback": true`. A required branch with a fallback never fails the
    /// gather.
    #[must_use]
    pub fn fallback(self, value: S::Response) -> Self
    where
        S::Response: Clone + Send + Sync + 'static,
    {
        self.fallback_with(move |_: &BranchError| Some(value.clone()))
    }

    /// Like [`fallback`](Self::fallback), choosing by the failure: return
    /// `None` to leave the branch failed (for example, fall back on a timeout
    /// but not on a `404`).
    #[must_use]
    pub fn fallback_with<F>(mut self, fallback: F) -> Self
    where
        F: Fn(&BranchError) -> Option<S::Response> + Send + Sync + 'static,
    {
        self.fallback = Some(Arc::new(fallback));
        self
    }

    /// The branch's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `true` when the branch is required.
    #[must_use]
    pub const fn is_required(&self) -> bool {
        self.settings.required
    }

    /// The branch's own timeout, if any.
    #[must_use]
    pub const fn get_timeout(&self) -> Option<Duration> {
        self.settings.timeout
    }

    /// The branch's settings.
    #[must_use]
    pub const fn get_settings(&self) -> BranchSettings {
        self.settings
    }

    /// `true` when the branch has a fallback.
    #[must_use]
    pub const fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }

    /// A reference to the branch's service.
    pub const fn get_ref(&self) -> &S {
        &self.service
    }

    pub(crate) fn map_request(&self, request: &Req) -> Result<BReq, BranchError> {
        (self.map)(request).map_err(BranchError::request)
    }

    pub(crate) fn fallback_for(&self, error: &BranchError) -> Option<S::Response> {
        self.fallback.as_ref().and_then(|f| f(error))
    }
}

impl<S, Req, BReq> Clone for Branch<S, Req, BReq>
where
    S: Service<BReq> + Clone,
{
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            service: self.service.clone(),
            map: Arc::clone(&self.map),
            settings: self.settings,
            fallback: self.fallback.clone(),
        }
    }
}

impl<S, Req, BReq> fmt::Debug for Branch<S, Req, BReq>
where
    S: Service<BReq> + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Branch")
            .field("name", &self.name)
            .field("service", &self.service)
            .field("timeout", &self.settings.timeout)
            .field("required", &self.settings.required)
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}
