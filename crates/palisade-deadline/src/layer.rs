//! [`DeadlineLayer`].

use std::fmt;
use std::sync::Arc;

use palisade_core::stripe::Striped;
use tower_layer::Layer;

use crate::handle::DeadlineHandle;
use crate::service::DeadlineService;
use crate::shared::Shared;

/// Gives every request a [`Deadline`](palisade_core::Deadline), carries it
/// and writes it on, and fails the call when it passes. See the
/// [crate docs](crate).
///
/// Cloning the layer, or a service it built, does not create new state.
#[derive(Clone)]
pub struct DeadlineLayer {
    /// The state, behind per-thread references: a call that needs the state
    /// after `call` (to report an expiry) takes its thread's.
    pub(crate) shared: Arc<Striped<Shared>>,
}

impl DeadlineLayer {
    /// A handle to the layer's figures.
    #[must_use]
    pub fn handle(&self) -> DeadlineHandle {
        DeadlineHandle {
            shared: Arc::clone(self.shared.shared()),
        }
    }

    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl fmt::Debug for DeadlineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeadlineLayer")
            .field(self.shared.get())
            .finish()
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService::new(inner, Arc::clone(&self.shared))
    }
}
