//! The response future of [`Fallback`](crate::Fallback).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use palisade_core::stripe::Stripe;
use palisade_core::{BoxError, Classify, Outcome};
use pin_project_lite::pin_project;

use crate::error::FallbackFailed;
use crate::settings::FallbackClass;
use crate::shared::Shared;
use crate::source::{Answer, Cause, Mark};
use crate::state::class_of_error;

pin_project! {
    /// The future of a call through a fallback layer: the call below, then,
    /// if it failed in a class the layer answers, the fallback's answer.
    ///
    /// Dropping it drops whichever is in flight.
    pub struct ResponseFuture<Fut, Req, F, C, K>
    where
        F: Answer<Req, <Fut as ResponseOf>::Response>,
        Fut: ResponseOf,
    {
        shared: Arc<Stripe<Shared<F, C, K>>>,
        #[pin]
        state: State<Fut, F::Future, F::Kept>,
        _req: PhantomData<fn(Req)>,
    }
}

/// The response type of a call's future (`Result<Response, Error>`).
pub trait ResponseOf {
    /// The call's response.
    type Response;
}

impl<Fut, T, E> ResponseOf for Fut
where
    Fut: Future<Output = Result<T, E>>,
{
    type Response = T;
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, A, Kept> {
        // The call below is in flight.
        Primary { #[pin] future: Fut, kept: Option<Kept> },
        // The inner service failed to become ready: answer at the first poll.
        Refused { error: Option<BoxError>, class: FallbackClass, kept: Option<Kept> },
        // The fallback is answering a failure of `class`.
        Answering { #[pin] answer: A, class: FallbackClass, primary: Option<BoxError> },
        Done,
    }
}

impl<Fut, Req, F, C, K> ResponseFuture<Fut, Req, F, C, K>
where
    Fut: ResponseOf,
    F: Answer<Req, Fut::Response>,
{
    pub(crate) const fn new(
        future: Fut,
        shared: Arc<Stripe<Shared<F, C, K>>>,
        kept: F::Kept,
    ) -> Self {
        Self {
            shared,
            state: State::Primary {
                future,
                kept: Some(kept),
            },
            _req: PhantomData,
        }
    }

    pub(crate) const fn answer_now(
        shared: Arc<Stripe<Shared<F, C, K>>>,
        kept: F::Kept,
        error: BoxError,
        class: FallbackClass,
    ) -> Self {
        Self {
            shared,
            state: State::Refused {
                error: Some(error),
                class,
                kept: Some(kept),
            },
            _req: PhantomData,
        }
    }
}

impl<Fut, Req, T, E, F, C, K> Future for ResponseFuture<Fut, Req, F, C, K>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    F: Answer<Req, T>,
    C: Classify<T, E>,
    K: Mark<T>,
{
    type Output = Result<T, BoxError>;

    /// # Panics
    ///
    /// If polled again after it completed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &**this.shared;
        loop {
            let (class, primary, kept) = match this.state.as_mut().project() {
                StateProj::Primary { future, kept } => {
                    let result = ready!(future.poll(cx));
                    let outcome = shared.classifier.classify(&result);
                    let on = shared.stats.settings.on;
                    match result {
                        Ok(res) => {
                            if outcome != Outcome::Failure || !on.contains(FallbackClass::Response)
                            {
                                this.state.set(State::Done);
                                return Poll::Ready(Ok(res));
                            }
                            // The failed response (and its connection) goes now.
                            drop(res);
                            (FallbackClass::Response, None, kept.take())
                        }
                        Err(error) => {
                            let error: BoxError = error.into();
                            match class_of_error(&*error, outcome) {
                                Some(class) if on.contains(class) => {
                                    (class, Some(error), kept.take())
                                }
                                _ => {
                                    this.state.set(State::Done);
                                    return Poll::Ready(Err(error));
                                }
                            }
                        }
                    }
                }
                StateProj::Refused { error, class, kept } => (*class, error.take(), kept.take()),
                StateProj::Answering {
                    answer,
                    class,
                    primary,
                } => {
                    let class = *class;
                    let result = ready!(answer.poll(cx));
                    let primary = primary.take();
                    this.state.set(State::Done);
                    return Poll::Ready(match result {
                        Ok(mut res) => {
                            shared.mark.mark(&mut res, class);
                            shared.stats.served(class);
                            Ok(res)
                        }
                        Err(error) => {
                            shared.stats.failed(class, &*error);
                            let described = primary
                                .map_or_else(|| "a failed response".to_owned(), |e| e.to_string());
                            Err(FallbackFailed::new(
                                Arc::clone(&shared.stats.name),
                                class,
                                described,
                                error,
                            )
                            .into())
                        }
                    });
                }
                StateProj::Done => panic!("fallback ResponseFuture polled after completion"),
            };
            let Some(kept) = kept else {
                // What was kept is taken once, on the way to `Answering`:
                // never missing here. Should it be, the call fails as it came.
                this.state.set(State::Done);
                return Poll::Ready(Err(
                    primary.unwrap_or_else(|| "fallback: the kept request was missing".into())
                ));
            };
            let cause = Cause {
                name: &shared.stats.name,
                class,
                error: primary
                    .as_deref()
                    .map(|e| e as &(dyn std::error::Error + 'static)),
            };
            let answer = shared.answer.answer(kept, cause);
            this.state.set(State::Answering {
                answer,
                class,
                primary,
            });
        }
    }
}

impl<Fut, Req, F, C, K> fmt::Debug for ResponseFuture<Fut, Req, F, C, K>
where
    Fut: ResponseOf,
    F: Answer<Req, Fut::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Primary { .. } => "primary",
            State::Refused { .. } => "refused",
            State::Answering { .. } => "answering",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("name", &self.shared.stats.name)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
