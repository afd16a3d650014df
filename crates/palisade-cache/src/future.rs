//! The [`Cache`](crate::Cache)'s response future: the engine of every
//! request that is not a fresh hit.
//!
//! A hit is answered in `call` and its future is ready at once. Otherwise
//! the future walks these states, driving a clone of the inner service
//! itself (`poll_ready`, then `call`) so that the cache's own `poll_ready`
//! never has to reserve the backend's capacity for a call that a hit makes
//! unnecessary:
//!
//! ```text
//! (lead) ─▶ [Tier: shared-tier lookup] ─▶ Readying ─▶ Calling ─▶ Admit ─▶ Ready
//! (wait) ─▶ Wait ─┬─▶ Ready            (the leader's outcome)
//!                 ├─▶ (lead)           (the leader went away: take over)
//!                 └─▶ Readying ...     (coalesce timeout, or an outcome it cannot use)
//! ```

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use palisade_core::{BoxError, is_caused_by, is_rejection};
use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::error::Coalesced;
use crate::event::{CacheEvent, Served, StaleReason};
use crate::metrics::TierResult;
use crate::policy::{Admitted, CacheKey, Lookup, Policy, Storage, Variant};
use crate::shared::flight::{Joined, Leader, Look, Outcome, Waiter};
use crate::shared::store::Entry;
use crate::shared::{Shared, TierEntry, TierError, TierFuture};
use crate::state::{Freshness, NotStored};

type TierLookup = TierFuture<Result<Option<TierEntry>, TierError>>;

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F, R, A, W> {
        // The answer is known.
        Ready { response: Option<R> },
        // The call failed and no stale entry may answer.
        Failed { error: Option<BoxError> },
        // Waiting for the inner service's readiness.
        Readying { service: S, request: Option<Req> },
        // The backend call.
        Calling { #[pin] future: F },
        // The shared tier is asked first.
        Tier { lookup: TierLookup, service: Option<S>, request: Option<Req> },
        // The policy reads the response (HTTP: its body).
        Admit { #[pin] admit: A },
        // Waiting for another request's call.
        Wait {
            #[pin]
            notified: OwnedNotified,
            waiter: W,
            service: Option<S>,
            request: Option<Req>,
            deadline: Option<Pin<Box<Sleep>>>,
        },
        // Between states, and after completion.
        Empty,
    }
}

/// What a request that looked up a key keeps.
struct Fetch<K: Hash + Eq + Clone, V, M, Pd> {
    /// The key the request was looked up under.
    primary: K,
    /// The key of its flight: `primary`, or the key of its `Vary` variant.
    key: K,
    meta: M,
    pending: Option<Pd>,
    /// The entry that may answer if the backend fails, or lends its
    /// validator.
    stale: Option<Arc<Entry<V>>>,
    /// Set while this request leads the key's flight.
    leader: Option<Leader<K, V>>,
    /// The invalidation generation when the request started.
    generation: u64,
    /// A background refresh: nobody waits for its answer.
    background: bool,
}

enum Job<K: Hash + Eq + Clone, V, M, Pd> {
    Bypass { invalidate: Option<K> },
    Fetch(Fetch<K, V, M, Pd>),
}

type JobOf<Req, Res, P> = Job<
    <P as Storage>::Key,
    <P as Storage>::Value,
    <P as Policy<Req, Res>>::Meta,
    <P as Policy<Req, Res>>::Pending,
>;

type StateOf<S, Req, P> = State<
    S,
    Req,
    <S as Service<Req>>::Future,
    <P as Policy<Req, <S as Service<Req>>::Response>>::Response,
    <P as Policy<Req, <S as Service<Req>>::Response>>::Admit,
    Waiter<<P as Storage>::Key, <P as Storage>::Value>,
>;

pin_project! {
    /// The engine of a request that is not answered at once: a miss, a
    /// revalidation, a coalesced wait, a background refresh.
    pub(crate) struct Engine<S, Req, P>
    where
        S: Service<Req>,
        P: Policy<Req, S::Response>,
    {
        #[pin]
        state: StateOf<S, Req, P>,
        ctx: Option<(Arc<Shared<P>>, JobOf<Req, S::Response, P>)>,
    }
}

impl<S, Req, P> fmt::Debug for Engine<S, Req, P>
where
    S: Service<Req>,
    P: Policy<Req, S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready { .. } => "ready",
            State::Failed { .. } => "failed",
            State::Readying { .. } => "readying",
            State::Calling { .. } => "calling",
            State::Tier { .. } => "tier",
            State::Admit { .. } => "admit",
            State::Wait { .. } => "wait",
            State::Empty => "empty",
        };
        f.debug_struct("Engine")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// How a request starts: answered at once, or an engine to run.
pub(crate) enum Begin<E, R> {
    Ready(R),
    Engine(E),
}

pin_project! {
    /// Response future of [`Cache`](crate::Cache).
    ///
    /// Ready at once for a hit, and then two words: a hit allocates
    /// nothing. Any other request (a miss, a revalidation, a coalesced wait)
    /// runs in an engine that carries a clone of the inner service, the
    /// request and the key's flight: it makes the backend call (after the
    /// shared tier, if any), or waits for the call of the request it was
    /// coalesced with and takes over if that one is dropped. The engine is
    /// boxed, once per such request, so that hits do not carry its size
    /// around; a shared-tier lookup is one more boxed future (network I/O).
    /// Dropping the future leaves the flight (its waiters take over) and
    /// releases everything it holds.
    pub struct ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
        P: Policy<Req, S::Response>,
    {
        #[pin]
        kind: Kind<P::Response, Pin<Box<Engine<S, Req, P>>>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<R, E> {
        Ready { response: Option<R> },
        Engine { #[pin] engine: E },
    }
}

impl<S, Req, P> fmt::Debug for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
    P: Policy<Req, S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Ready { .. } => f
                .debug_struct("ResponseFuture")
                .field("state", &"ready")
                .finish(),
            Kind::Engine { engine } => f
                .debug_struct("ResponseFuture")
                .field("engine", engine)
                .finish(),
        }
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    P: Policy<Req, S::Response>,
    P::Response: Send + 'static,
    Req: Send + 'static,
{
    #[inline]
    pub(crate) fn start(
        shared: &Arc<Shared<P>>,
        service: impl FnOnce() -> S,
        request: Req,
    ) -> Self {
        let kind = match Engine::begin(shared, service, request) {
            Begin::Ready(response) => Kind::Ready {
                response: Some(response),
            },
            Begin::Engine(engine) => Kind::Engine {
                engine: Box::pin(engine),
            },
        };
        Self { kind }
    }
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    P: Policy<Req, S::Response>,
    P::Response: Send + 'static,
    Req: Send + 'static,
{
    type Output = Result<P::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Engine { engine } => engine.get_mut().as_mut().poll(cx),
        }
    }
}

/// Why a stale entry answers a failed call.
fn stale_reason(error: &(dyn std::error::Error + 'static)) -> StaleReason {
    if is_rejection(error) {
        StaleReason::Rejected
    } else if is_caused_by::<tokio::time::error::Elapsed>(error)
        || is_caused_by::<tower::timeout::error::Elapsed>(error)
        || palisade_core::deadline::is_deadline_expired(error)
    {
        StaleReason::Timeout
    } else {
        StaleReason::Error
    }
}

/// The stale entry, if it may answer a failed call now.
fn usable<V>(stale: Option<&Arc<Entry<V>>>, now: Instant) -> Option<&Arc<Entry<V>>> {
    stale.filter(|e| e.times.serves_on_error(now))
}

impl<S, Req, P> Engine<S, Req, P>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    P: Policy<Req, S::Response>,
    P::Response: Send + 'static,
    Req: Send + 'static,
{
    /// Starts a request: answers it from a fresh entry, or sets out to
    /// fetch it. `service` gives the inner service to call if needed.
    #[inline]
    pub(crate) fn begin(
        shared: &Arc<Shared<P>>,
        service: impl FnOnce() -> S,
        request: Req,
    ) -> Begin<Self, P::Response> {
        let policy = &shared.policy;
        let telemetry = &shared.telemetry;
        let primary = match policy.lookup(&request) {
            Lookup::Key(key) => key,
            Lookup::Bypass => return Begin::Engine(Self::bypass(shared, service(), request, None)),
            Lookup::Invalidate(key) => {
                return Begin::Engine(Self::bypass(shared, service(), request, Some(key)));
            }
        };
        let now = shared.clock.now();
        let (variant, entry) = match shared.store.get(&primary) {
            None => (None, None),
            Some(found) => match policy.variant(&request, &primary, &found.value) {
                Variant::Itself => (None, Some(found)),
                Variant::At(key) => {
                    if found.times.freshness(now) == Freshness::Expired {
                        shared.store.remove_if_same(&primary, &found);
                        (None, None)
                    } else {
                        let entry = shared.store.get(&key);
                        (Some(key), entry)
                    }
                }
            },
        };
        let meta = policy.meta(&request);
        let Some(entry) = entry else {
            let key = variant.unwrap_or_else(|| primary.clone());
            return Begin::Engine(Self::fetch(
                shared, service, request, primary, key, meta, None,
            ));
        };
        let age = if P::USES_AGE {
            entry.times.age(now)
        } else {
            std::time::Duration::ZERO
        };
        match entry.times.freshness(now) {
            Freshness::Fresh => {
                telemetry.hits.add(1);
                telemetry.listeners.emit_with(|| CacheEvent::Hit {
                    name: Arc::clone(shared.name()),
                    key: variant.as_ref().unwrap_or(&primary).text().into_owned(),
                });
                Begin::Ready(policy.respond(&meta, &entry.value, Served::Hit, age))
            }
            Freshness::StaleWhileRevalidate => {
                let reason = StaleReason::Revalidating;
                let response = policy.respond(&meta, &entry.value, Served::Stale(reason), age);
                let key = variant.unwrap_or_else(|| primary.clone());
                telemetry.stale(reason, || key.text().into_owned());
                if let Some(leader) = shared.flights.try_lead(&key) {
                    Self::refresh(
                        shared,
                        service(),
                        request,
                        primary,
                        key,
                        meta,
                        entry,
                        leader,
                    );
                }
                Begin::Ready(response)
            }
            Freshness::StaleIfError | Freshness::MustRevalidate => {
                let key = variant.unwrap_or_else(|| primary.clone());
                Begin::Engine(Self::fetch(
                    shared,
                    service,
                    request,
                    primary,
                    key,
                    meta,
                    Some(entry),
                ))
            }
            Freshness::Expired => {
                let key = variant.unwrap_or_else(|| primary.clone());
                shared.store.remove_if_same(&key, &entry);
                Begin::Engine(Self::fetch(
                    shared, service, request, primary, key, meta, None,
                ))
            }
        }
    }

    fn bypass(
        shared: &Arc<Shared<P>>,
        service: S,
        request: Req,
        invalidate: Option<P::Key>,
    ) -> Self {
        shared.telemetry.bypassed.add(1);
        Self {
            state: State::Readying {
                service,
                request: Some(request),
            },
            ctx: Some((Arc::clone(shared), Job::Bypass { invalidate })),
        }
    }

    #[allow(clippy::too_many_arguments, reason = "the parts of one request")]
    fn fetch(
        shared: &Arc<Shared<P>>,
        service: impl FnOnce() -> S,
        request: Req,
        primary: P::Key,
        key: P::Key,
        meta: P::Meta,
        stale: Option<Arc<Entry<P::Value>>>,
    ) -> Self {
        let telemetry = &shared.telemetry;
        telemetry.misses.add(1);
        telemetry.listeners.emit_with(|| CacheEvent::Miss {
            name: Arc::clone(shared.name()),
            key: key.text().into_owned(),
        });
        let mut fetch = Fetch {
            generation: shared.generation(),
            primary,
            key,
            meta,
            pending: None,
            stale,
            leader: None,
            background: false,
        };
        if shared.settings.coalesce {
            match shared.flights.join(&fetch.key) {
                Joined::Leader(leader) => fetch.leader = Some(leader),
                Joined::Waiter(waiter) => {
                    telemetry.coalesced.add(1);
                    telemetry.listeners.emit_with(|| CacheEvent::Coalesced {
                        name: Arc::clone(shared.name()),
                        key: fetch.key.text().into_owned(),
                    });
                    let deadline = shared
                        .settings
                        .coalesce_timeout
                        .map(|wait| Box::pin(tokio::time::sleep(wait)));
                    return Self {
                        state: State::Wait {
                            notified: waiter.notified(),
                            waiter,
                            service: Some(service()),
                            request: Some(request),
                            deadline,
                        },
                        ctx: Some((Arc::clone(shared), Job::Fetch(fetch))),
                    };
                }
            }
        }
        let state = Self::lead(shared, service(), request, &mut fetch);
        Self {
            state,
            ctx: Some((Arc::clone(shared), Job::Fetch(fetch))),
        }
    }

    /// Sets out to refresh a stale entry in the background: the request
    /// goes to the backend in a task of its own, bounded by
    /// `refresh_timeout`, while the caller already has the stale answer.
    #[allow(clippy::too_many_arguments, reason = "the parts of one request")]
    fn refresh(
        shared: &Arc<Shared<P>>,
        service: S,
        request: Req,
        primary: P::Key,
        key: P::Key,
        meta: P::Meta,
        stale: Arc<Entry<P::Value>>,
        leader: Leader<P::Key, P::Value>,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to run it in: the next request past the window
            // will fetch in the foreground.
            return;
        };
        let key_text = key.text().into_owned();
        let mut fetch = Fetch {
            generation: shared.generation(),
            primary,
            key,
            meta,
            pending: None,
            stale: Some(stale),
            leader: Some(leader),
            background: true,
        };
        let state = Self::send(shared, service, request, &mut fetch);
        let future = Self {
            state,
            ctx: Some((Arc::clone(shared), Job::Fetch(fetch))),
        };
        let guard = RefreshGuard::new(Arc::clone(shared));
        let timeout = shared.settings.refresh_timeout;
        let key = key_text;
        runtime.spawn(async move {
            let guard = guard;
            if tokio::time::timeout(timeout, future).await.is_err() {
                tracing::debug!(name = %guard.shared.name(), "cache background refresh timed out");
                guard.shared.telemetry.refreshed(false, || key);
            }
        });
    }

    /// The leader's first step: the shared tier, then the backend.
    fn lead(
        shared: &Arc<Shared<P>>,
        service: S,
        request: Req,
        fetch: &mut JobFetch<Req, S::Response, P>,
    ) -> StateOf<S, Req, P> {
        if fetch.stale.is_none()
            && !fetch.background
            && let Some(tier) = &shared.tier
        {
            return State::Tier {
                lookup: tier.get(fetch.key.text().into_owned()),
                service: Some(service),
                request: Some(request),
            };
        }
        Self::send(shared, service, request, fetch)
    }

    /// Readies the request and sets out to call the backend.
    fn send(
        shared: &Arc<Shared<P>>,
        service: S,
        mut request: Req,
        fetch: &mut JobFetch<Req, S::Response, P>,
    ) -> StateOf<S, Req, P> {
        let stale = fetch.stale.as_ref().map(|e| &e.value);
        fetch.pending = Some(shared.policy.prepare(&mut request, stale));
        State::Readying {
            service,
            request: Some(request),
        }
    }
}

type JobFetch<Req, Res, P> = Fetch<
    <P as Storage>::Key,
    <P as Storage>::Value,
    <P as Policy<Req, Res>>::Meta,
    <P as Policy<Req, Res>>::Pending,
>;

/// Counts a background refresh while it runs.
struct RefreshGuard<P: Storage> {
    shared: Arc<Shared<P>>,
}

impl<P: Storage> RefreshGuard<P> {
    fn new(shared: Arc<Shared<P>>) -> Self {
        shared.refreshing.fetch_add(1, Ordering::Relaxed);
        Self { shared }
    }
}

impl<P: Storage> Drop for RefreshGuard<P> {
    fn drop(&mut self) {
        self.shared.refreshing.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one step of the engine leads to.
enum Step<St, R, S, Req> {
    /// Go on in this state.
    Next(St),
    /// Start over with the request (an outcome for another variant).
    Restart(S, Req),
    /// Done.
    Output(Result<R, BoxError>),
}

impl<S, Req, P> Future for Engine<S, Req, P>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    P: Policy<Req, S::Response>,
    P::Response: Send + 'static,
    Req: Send + 'static,
{
    type Output = Result<P::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let step = match this.state.as_mut().project() {
                StateProj::Ready { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error));
                }
                StateProj::Empty => panic!("polled after completion"),
                StateProj::Readying { service, request } => {
                    let ctx = this.ctx.as_mut().expect("a call has a context");
                    match ready!(service.poll_ready(cx)) {
                        Ok(()) => {
                            let request = request.take().expect("a request to send");
                            Step::Next(State::Calling {
                                future: service.call(request),
                            })
                        }
                        Err(error) => on_error::<S, Req, P>(ctx, error.into()),
                    }
                }
                StateProj::Calling { future } => {
                    let ctx = this.ctx.as_mut().expect("a call has a context");
                    match ready!(future.poll(cx)) {
                        Ok(response) => on_response::<S, Req, P>(ctx, response),
                        Err(error) => on_error::<S, Req, P>(ctx, error.into()),
                    }
                }
                StateProj::Admit { admit } => {
                    let admitted = ready!(admit.poll(cx));
                    let ctx = this.ctx.as_mut().expect("a call has a context");
                    on_admitted::<S, Req, P>(ctx, admitted)
                }
                StateProj::Tier {
                    lookup,
                    service,
                    request,
                } => {
                    let found = ready!(lookup.as_mut().poll(cx));
                    let ctx = this.ctx.as_mut().expect("a call has a context");
                    let service = service.take().expect("a service to call");
                    let request = request.take().expect("a request to send");
                    on_tier::<S, Req, P>(ctx, found, service, request)
                }
                StateProj::Wait {
                    mut notified,
                    waiter,
                    service,
                    request,
                    deadline,
                } => {
                    let ctx = this.ctx.as_mut().expect("a call has a context");
                    loop {
                        match waiter.look() {
                            Look::Done(outcome) => {
                                let service = service.take().expect("a service to call");
                                let request = request.take().expect("a request to send");
                                break on_outcome::<S, Req, P>(ctx, outcome, service, request);
                            }
                            Look::Lead(leader) => {
                                let service = service.take().expect("a service to call");
                                let request = request.take().expect("a request to send");
                                let (shared, Job::Fetch(fetch)) = ctx else {
                                    unreachable!("only fetches wait")
                                };
                                fetch.leader = Some(leader);
                                break Step::Next(Self::lead(shared, service, request, fetch));
                            }
                            Look::Wait => {}
                        }
                        if let Some(deadline) = deadline
                            && deadline.as_mut().poll(cx).is_ready()
                        {
                            // Waited long enough: call the backend on
                            // its own (nginx's proxy_cache_lock_timeout).
                            let service = service.take().expect("a service to call");
                            let request = request.take().expect("a request to send");
                            let (shared, Job::Fetch(fetch)) = ctx else {
                                unreachable!("only fetches wait")
                            };
                            break Step::Next(Self::send(shared, service, request, fetch));
                        }
                        ready!(notified.as_mut().poll(cx));
                        notified.set(waiter.notified());
                    }
                }
            };
            match step {
                Step::Next(state) => this.state.set(state),
                Step::Output(Ok(response)) => {
                    this.state.set(State::Empty);
                    *this.ctx = None;
                    return Poll::Ready(Ok(response));
                }
                Step::Output(Err(error)) => {
                    this.state.set(State::Empty);
                    *this.ctx = None;
                    return Poll::Ready(Err(error));
                }
                Step::Restart(service, request) => {
                    this.state.set(State::Empty);
                    let (shared, _) = this.ctx.take().expect("a call has a context");
                    match Self::begin(&shared, move || service, request) {
                        Begin::Ready(response) => return Poll::Ready(Ok(response)),
                        Begin::Engine(Self { state, ctx }) => {
                            *this.ctx = ctx;
                            this.state.set(state);
                        }
                    }
                }
            }
        }
    }
}

type StepOf<S, Req, P> =
    Step<StateOf<S, Req, P>, <P as Policy<Req, <S as Service<Req>>::Response>>::Response, S, Req>;
type CtxOf<S, Req, P> = (Arc<Shared<P>>, JobOf<Req, <S as Service<Req>>::Response, P>);

/// The backend answered.
fn on_response<S, Req, P>(ctx: &mut CtxOf<S, Req, P>, response: S::Response) -> StepOf<S, Req, P>
where
    S: Service<Req>,
    P: Policy<Req, S::Response>,
{
    let (shared, job) = &mut *ctx;
    match job {
        Job::Bypass { invalidate } => {
            let (response, success) = shared.policy.pass(response);
            if success && let Some(key) = invalidate.take() {
                let base = key.base();
                shared.invalidate_local(&base, false);
                if let Some(delete) = shared.invalidate_tier(&base, false)
                    && let Ok(runtime) = tokio::runtime::Handle::try_current()
                {
                    runtime.spawn(delete);
                }
            }
            Step::Output(Ok(response))
        }
        Job::Fetch(fetch) => {
            let pending = fetch
                .pending
                .take()
                .expect("a sent request has its pending part");
            let stale = fetch.stale.as_ref().map(|e| &e.value);
            Step::Next(State::Admit {
                admit: shared
                    .policy
                    .admit(response, &fetch.primary, pending, stale, &shared.admit),
            })
        }
    }
}

/// Answers with the stale entry if it may answer a failure now.
fn serve_stale<S, Req, P>(
    shared: &Shared<P>,
    fetch: &JobFetch<Req, S::Response, P>,
    reason: StaleReason,
    now: Instant,
) -> Option<P::Response>
where
    S: Service<Req>,
    P: Policy<Req, S::Response>,
{
    if fetch.background {
        return None;
    }
    let stale = usable(fetch.stale.as_ref(), now)?;
    shared
        .telemetry
        .stale(reason, || fetch.key.text().into_owned());
    Some(shared.policy.respond(
        &fetch.meta,
        &stale.value,
        Served::Stale(reason),
        stale.times.age(now),
    ))
}

/// The backend (or reading its response) failed.
fn on_error<S, Req, P>(ctx: &mut CtxOf<S, Req, P>, error: BoxError) -> StepOf<S, Req, P>
where
    S: Service<Req>,
    P: Policy<Req, S::Response>,
{
    let (shared, job) = &mut *ctx;
    let Job::Fetch(fetch) = job else {
        return Step::Output(Err(error));
    };
    let now = shared.clock.now();
    let reason = stale_reason(&*error);
    let error = match fetch.leader.take() {
        Some(leader) => leader.fail(error),
        None => error,
    };
    if fetch.background {
        shared
            .telemetry
            .refreshed(false, || fetch.key.text().into_owned());
        return Step::Output(Err(error));
    }
    match serve_stale::<S, Req, P>(shared, fetch, reason, now) {
        Some(response) => Step::Output(Ok(response)),
        None => Step::Output(Err(error)),
    }
}

/// The policy read the backend's response.
fn on_admitted<S, Req, P>(
    ctx: &mut CtxOf<S, Req, P>,
    admitted: Admitted<P::Key, P::Value, P::Response>,
) -> StepOf<S, Req, P>
where
    S: Service<Req>,
    P: Policy<Req, S::Response>,
{
    let (shared, job) = &mut *ctx;
    let Job::Fetch(fetch) = job else {
        unreachable!("only fetches admit")
    };
    let now = shared.clock.now();
    let telemetry = &shared.telemetry;
    match admitted {
        Admitted::Store {
            value,
            lifetime,
            age,
            vary,
            revalidated,
        } => {
            let (entry, exact) = match vary {
                None => {
                    let entry = shared.entry(&fetch.key, value, &lifetime, age, now);
                    shared.insert(fetch.key.clone(), &entry, fetch.generation, true);
                    (entry, true)
                }
                Some((key, marker)) => {
                    let marker = shared.entry(&fetch.primary, marker, &lifetime, age, now);
                    shared.insert(fetch.primary.clone(), &marker, fetch.generation, true);
                    let entry = shared.entry(&key, value, &lifetime, age, now);
                    let exact = key == fetch.key;
                    shared.insert(key, &entry, fetch.generation, true);
                    (entry, exact)
                }
            };
            if let Some(leader) = fetch.leader.take() {
                leader.complete(Outcome::Value {
                    entry: Arc::clone(&entry),
                    exact,
                    failure: false,
                });
            }
            if fetch.background {
                telemetry.refreshed(true, || fetch.key.text().into_owned());
            }
            let served = if revalidated {
                Served::Revalidated
            } else {
                Served::Miss
            };
            let response =
                shared
                    .policy
                    .respond(&fetch.meta, &entry.value, served, entry.times.age(now));
            Step::Output(Ok(response))
        }
        Admitted::Share {
            value,
            reason,
            failure,
        } => {
            telemetry.not_stored(reason, || fetch.key.text().into_owned());
            let lifetime = shared.admit.base;
            let entry = shared.entry(&fetch.key, value, &lifetime, std::time::Duration::ZERO, now);
            if let Some(leader) = fetch.leader.take() {
                leader.complete(Outcome::Value {
                    entry: Arc::clone(&entry),
                    exact: true,
                    failure,
                });
            }
            if fetch.background {
                telemetry.refreshed(false, || fetch.key.text().into_owned());
            }
            if failure
                && let Some(response) =
                    serve_stale::<S, Req, P>(shared, fetch, StaleReason::Error, now)
            {
                return Step::Output(Ok(response));
            }
            let response = shared.policy.respond(
                &fetch.meta,
                &entry.value,
                Served::Miss,
                std::time::Duration::ZERO,
            );
            Step::Output(Ok(response))
        }
        Admitted::Pass {
            response,
            reason,
            failure,
        } => {
            telemetry.not_stored(reason, || fetch.key.text().into_owned());
            if let Some(leader) = fetch.leader.take() {
                leader.complete(Outcome::Passed { failure });
            }
            if fetch.background {
                telemetry.refreshed(false, || fetch.key.text().into_owned());
            }
            if failure
                && let Some(stale) =
                    serve_stale::<S, Req, P>(shared, fetch, StaleReason::Error, now)
            {
                return Step::Output(Ok(stale));
            }
            Step::Output(Ok(response))
        }
        Admitted::Failed(error) => {
            telemetry.not_stored(NotStored::Failure, || fetch.key.text().into_owned());
            on_error::<S, Req, P>(ctx, error)
        }
    }
}

/// The shared tier answered the leader's lookup.
fn on_tier<S, Req, P>(
    ctx: &mut CtxOf<S, Req, P>,
    found: Result<Option<TierEntry>, TierError>,
    service: S,
    request: Req,
) -> StepOf<S, Req, P>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    P: Policy<Req, S::Response>,
    P::Response: Send + 'static,
    Req: Send + 'static,
{
    let (shared, job) = &mut *ctx;
    let Job::Fetch(fetch) = job else {
        unreachable!("only fetches ask the tier")
    };
    let telemetry = &shared.telemetry;
    let found = match found {
        Ok(Some(found)) => Some(found),
        Ok(None) => {
            telemetry.tier(TierResult::Miss);
            None
        }
        Err(TierError::Skipped(e)) => {
            telemetry.tier_unavailable(true, &e);
            None
        }
        Err(TierError::Failed(e)) => {
            telemetry.tier_unavailable(false, &e);
            None
        }
    };
    let decoded = found.and_then(|found| {
        let value = shared.policy.decode(&found.value);
        if value.is_none() {
            telemetry.tier(TierResult::Miss);
        }
        value.map(|value| (value, found))
    });
    let Some((value, found)) = decoded else {
        return Step::Next(Engine::<S, Req, P>::send(shared, service, request, fetch));
    };
    telemetry.tier(TierResult::Hit);
    let now = shared.clock.now();
    let lifetime = match shared.tier.as_ref().and_then(|t| t.max_local_ttl()) {
        Some(cap) => found.lifetime.capped(cap),
        None => found.lifetime,
    };
    let entry = shared.entry(&fetch.key, value, &lifetime, found.age, now);
    match shared.policy.variant(&request, &fetch.key, &entry.value) {
        Variant::At(_) => {
            // A `Vary` marker: keep it, and look the variant up afresh.
            shared.insert(fetch.key.clone(), &entry, fetch.generation, false);
            if let Some(leader) = fetch.leader.take() {
                leader.complete(Outcome::Value {
                    entry,
                    exact: false,
                    failure: false,
                });
            }
            let shared = Arc::clone(shared);
            match Engine::<S, Req, P>::begin(&shared, move || service, request) {
                Begin::Ready(response) => Step::Output(Ok(response)),
                Begin::Engine(Engine {
                    state,
                    ctx: fresh_ctx,
                }) => {
                    *ctx = fresh_ctx.expect("an engine has a context");
                    Step::Next(state)
                }
            }
        }
        Variant::Itself => match entry.times.freshness(now) {
            Freshness::Fresh => {
                shared.insert(fetch.key.clone(), &entry, fetch.generation, false);
                if let Some(leader) = fetch.leader.take() {
                    leader.complete(Outcome::Value {
                        entry: Arc::clone(&entry),
                        exact: true,
                        failure: false,
                    });
                }
                let response = shared.policy.respond(
                    &fetch.meta,
                    &entry.value,
                    Served::Hit,
                    entry.times.age(now),
                );
                Step::Output(Ok(response))
            }
            Freshness::Expired => {
                Step::Next(Engine::<S, Req, P>::send(shared, service, request, fetch))
            }
            // Stale in the tier: ask the backend, with it as the stale entry.
            Freshness::StaleWhileRevalidate
            | Freshness::StaleIfError
            | Freshness::MustRevalidate => {
                fetch.stale = Some(entry);
                Step::Next(Engine::<S, Req, P>::send(shared, service, request, fetch))
            }
        },
    }
}

/// A waiter's flight ended.
fn on_outcome<S, Req, P>(
    ctx: &mut CtxOf<S, Req, P>,
    outcome: Outcome<P::Value>,
    service: S,
    request: Req,
) -> StepOf<S, Req, P>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    P: Policy<Req, S::Response>,
    P::Response: Send + 'static,
    Req: Send + 'static,
{
    let (shared, job) = &mut *ctx;
    let Job::Fetch(fetch) = job else {
        unreachable!("only fetches wait")
    };
    let now = shared.clock.now();
    match outcome {
        Outcome::Value { exact: false, .. } => {
            // Stored for another variant: look the request's own up.
            Step::Restart(service, request)
        }
        Outcome::Value { entry, failure, .. } => {
            if failure
                && let Some(response) =
                    serve_stale::<S, Req, P>(shared, fetch, StaleReason::Error, now)
            {
                return Step::Output(Ok(response));
            }
            let response = shared.policy.respond(
                &fetch.meta,
                &entry.value,
                Served::Coalesced,
                entry.times.age(now),
            );
            Step::Output(Ok(response))
        }
        Outcome::Failed(error) => {
            let reason = stale_reason(&**error);
            match serve_stale::<S, Req, P>(shared, fetch, reason, now) {
                Some(response) => Step::Output(Ok(response)),
                None => Step::Output(Err(Coalesced::new(error).into())),
            }
        }
        Outcome::Passed { failure } => {
            if failure
                && let Some(response) =
                    serve_stale::<S, Req, P>(shared, fetch, StaleReason::Error, now)
            {
                return Step::Output(Ok(response));
            }
            Step::Next(Engine::<S, Req, P>::send(shared, service, request, fetch))
        }
    }
}
