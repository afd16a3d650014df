//! [`FallbackBuilder`]: the answer, the classes it covers, the classifier.

use std::fmt;
use std::sync::Arc;

use palisade_core::{ConfigError, ErrorsAsFailures, Listeners, Registry};
use tower_service::Service;

use crate::event::FallbackEvent;
use crate::handle::FallbackHandle;
use crate::layer::FallbackLayer;
use crate::settings::{FallbackClasses, FallbackSettings};
use crate::shared::{Shared, Stats};
use crate::source::{Custom, FromFn, FromService, NoFallback, Plain, Source, Value};

/// What [`FallbackBuilder::service`] keeps of each request: a clone.
pub type CloneRequest<Req> = fn(&Req) -> Req;

/// Builds a [`FallbackLayer`]: choose the answer (one of
/// [`value`](Self::value), [`with`](Self::with), [`service`](Self::service),
/// [`service_with`](Self::service_with), [`custom`](Self::custom); over HTTP
/// also `response`), then what it answers.
///
/// | setting | default |
/// |---|---|
/// | [`on`](Self::on) | every class: rejections, expired deadlines, failed errors and responses |
/// | [`classifier`](Self::classifier) | `Err` fails ([`ErrorsAsFailures`]); over HTTP, 5xx and `Err` |
#[must_use]
pub struct FallbackBuilder<F = NoFallback, C = ErrorsAsFailures, K = Plain> {
    name: Arc<str>,
    settings: FallbackSettings,
    answer: F,
    classifier: C,
    pub(crate) mark: K,
    listeners: Listeners<FallbackEvent>,
    registry: Option<Registry<FallbackHandle>>,
}

impl FallbackLayer<NoFallback> {
    /// A builder for a layer called `name` over any request and response;
    /// choose its answer with `value`, `with`, `service` or `custom`.
    pub fn builder(name: impl Into<Arc<str>>) -> FallbackBuilder {
        FallbackBuilder::new(name.into(), ErrorsAsFailures, Plain)
    }
}

impl<F, C, K: fmt::Debug> fmt::Debug for FallbackBuilder<F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("mark", &self.mark)
            .finish_non_exhaustive()
    }
}

impl<C, K> FallbackBuilder<NoFallback, C, K> {
    pub(crate) fn new(name: Arc<str>, classifier: C, mark: K) -> Self {
        Self {
            name,
            settings: FallbackSettings::default(),
            answer: NoFallback,
            classifier,
            mark,
            listeners: Listeners::new(),
            registry: None,
        }
    }
}

impl<F, C, K> FallbackBuilder<F, C, K> {
    pub(crate) fn set_answer<F2>(self, answer: F2) -> FallbackBuilder<F2, C, K> {
        FallbackBuilder {
            name: self.name,
            settings: self.settings,
            answer,
            classifier: self.classifier,
            mark: self.mark,
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// Answers with a clone of `value`.
    pub fn value<T: Clone>(self, value: T) -> FallbackBuilder<Value<T>, C, K> {
        self.set_answer(Value(value))
    }

    /// Answers with what `f` returns for the [`Cause`](crate::Cause).
    pub fn with<Res, G>(self, f: G) -> FallbackBuilder<FromFn<G>, C, K>
    where
        G: Fn(crate::Cause<'_>) -> Res,
    {
        self.set_answer(FromFn(f))
    }

    /// Answers by calling `service` with a clone of the request (kept on
    /// every call: one clone of the request per call, used only on failure).
    pub fn service<S, Req>(
        self,
        service: S,
    ) -> FallbackBuilder<FromService<S, CloneRequest<Req>>, C, K>
    where
        S: Service<Req> + Clone,
        Req: Clone,
    {
        self.set_answer(FromService {
            service,
            keep: <Req as Clone>::clone as CloneRequest<Req>,
        })
    }

    /// Answers by calling `service` with the request `keep` makes from the
    /// original (kept on every call: keep it cheap; over HTTP, the head
    /// without the body).
    pub fn service_with<S, Req, FReq, G>(
        self,
        service: S,
        keep: G,
    ) -> FallbackBuilder<FromService<S, G>, C, K>
    where
        S: Service<FReq> + Clone,
        G: Fn(&Req) -> FReq,
    {
        self.set_answer(FromService { service, keep })
    }

    /// Answers with your own [`Answer`](crate::Answer).
    pub fn custom<A>(self, answer: A) -> FallbackBuilder<Custom<A>, C, K> {
        self.set_answer(Custom(answer))
    }

    /// Replaces every setting with `settings` (from a config file).
    pub fn settings(mut self, settings: FallbackSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The classes of failure the fallback answers (default: every class).
    /// Anything else is returned as it came.
    pub fn on(mut self, classes: impl Into<FallbackClasses>) -> Self {
        self.settings.on = classes.into();
        self
    }

    /// Decides which results are failures (the `error` and `response`
    /// classes): any [`Classify`](palisade_core::Classify) of the inner
    /// service's `Result<Response, Error>`, including a closure. Rejections
    /// and expired deadlines are recognised whatever it says.
    pub fn classifier<C2>(self, classifier: C2) -> FallbackBuilder<F, C2, K> {
        FallbackBuilder {
            name: self.name,
            settings: self.settings,
            answer: self.answer,
            classifier,
            mark: self.mark,
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// Calls `listener` with every [`FallbackEvent`]. A listener that panics
    /// is caught and logged.
    pub fn on_event<G>(mut self, listener: G) -> Self
    where
        G: Fn(&FallbackEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the layer's figures in `registry` under its name. A layer
    /// built under a registered name shares that name's counters, settings
    /// and listeners (the answer and classifier are this builder's).
    pub fn registry(mut self, registry: &Registry<FallbackHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` (empty) or `on` (no class).
    pub fn build(self) -> Result<FallbackLayer<F, C, K>, ConfigError>
    where
        F: Source,
    {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        let Self {
            name,
            settings,
            answer,
            classifier,
            mark,
            listeners,
            registry,
        } = self;
        let make = || FallbackHandle {
            stats: Arc::new(Stats::new(Arc::clone(&name), settings, listeners)),
        };
        let handle = match registry {
            Some(registry) => registry.get_or_insert_with(&name, make),
            None => make(),
        };
        Ok(FallbackLayer {
            shared: Arc::new(palisade_core::stripe::Striped::new(Shared {
                stats: handle.stats,
                answer,
                classifier,
                mark,
            })),
        })
    }
}
