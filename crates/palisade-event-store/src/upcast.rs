//! Upcasters: functions that turn a stored event of an old shape into the
//! current one when it is read, chained by (event type, schema version).
//!
//! LEAF: imports the envelope and palisade-core only.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use palisade_core::{BoxError, ConfigError};

use crate::envelope::{RecordedEvent, UpcastFailure};

/// The most upcasters one event goes through; a longer chain is refused when
/// the store is built.
pub const MAX_UPCAST_CHAIN: usize = 64;

type UpcastFn = dyn Fn(serde_json::Value) -> Result<serde_json::Value, BoxError> + Send + Sync;

/// One step: an event of `from` becomes one of `to` with `f`'s payload.
#[derive(Clone)]
struct Step {
    to_type: Arc<str>,
    to_version: u32,
    f: Arc<UpcastFn>,
}

/// The upcasters a store applies on every read, keyed by the (type, schema
/// version) they take.
#[derive(Clone, Default)]
pub(crate) struct Upcasters {
    steps: HashMap<(Arc<str>, u32), Step>,
    /// The first registration error, reported when the store is built.
    error: Option<ConfigError>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<String> = self
            .steps
            .iter()
            .map(|((t, v), s)| format!("{t} v{v} -> {} v{}", s.to_type, s.to_version))
            .collect();
        keys.sort();
        f.debug_list().entries(keys).finish()
    }
}

impl Upcasters {
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Registers a step; a second step from the same (type, version), an
    /// empty type, or a step to itself is kept as the error
    /// [`check`](Self::check) reports.
    pub(crate) fn add(&mut self, from: (&str, u32), to: (&str, u32), f: Arc<UpcastFn>) {
        if self.error.is_some() {
            return;
        }
        let bad = |message: String| Some(ConfigError::new("upcaster", message));
        if from.0.is_empty() || to.0.is_empty() {
            self.error = bad("event types must not be empty".to_owned());
            return;
        }
        if from == to {
            self.error = bad(format!("{:?} v{} upcasts to itself", from.0, from.1));
            return;
        }
        let key = (Arc::<str>::from(from.0), from.1);
        if self.steps.contains_key(&key) {
            self.error = bad(format!("two upcasters from {:?} v{}", from.0, from.1));
            return;
        }
        self.steps.insert(
            key,
            Step {
                to_type: to.0.into(),
                to_version: to.1,
                f,
            },
        );
    }

    /// The registration error, or a chain that loops or is longer than
    /// [`MAX_UPCAST_CHAIN`].
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        for (t, v) in self.steps.keys() {
            let mut at = (Arc::clone(t), *v);
            let mut steps = 0;
            while let Some(step) = self.steps.get(&at) {
                steps += 1;
                if steps > MAX_UPCAST_CHAIN {
                    return Err(ConfigError::new(
                        "upcaster",
                        format!(
                            "the chain from {t:?} v{v} loops or is longer than {MAX_UPCAST_CHAIN} steps"
                        ),
                    ));
                }
                at = (Arc::clone(&step.to_type), step.to_version);
            }
        }
        Ok(())
    }

    /// Runs every step that applies to `event`, in chain order. If a step
    /// fails, the event is left as stored and carries the failure, which its
    /// `decode` reports; `false` then.
    pub(crate) fn apply(&self, event: &mut RecordedEvent) -> bool {
        let Some(first) = self
            .steps
            .get(&(Arc::clone(&event.event_type), event.schema_version))
        else {
            return true;
        };
        let mut payload = (*event.payload).clone();
        let mut step = first;
        let mut from = (Arc::clone(&event.event_type), event.schema_version);
        loop {
            match (step.f)(payload) {
                Ok(next) => payload = next,
                Err(source) => {
                    event.upcast_failure = Some(Arc::new(UpcastFailure {
                        from_type: from.0,
                        from_version: from.1,
                        source,
                    }));
                    return false;
                }
            }
            from = (Arc::clone(&step.to_type), step.to_version);
            match self.steps.get(&from) {
                Some(next) => step = next,
                None => break,
            }
        }
        event.event_type = from.0;
        event.schema_version = from.1;
        event.payload = Arc::new(payload);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Arc<UpcastFn> {
        Arc::new(Ok)
    }

    #[test]
    fn loops_and_duplicates_are_refused() {
        let mut u = Upcasters::default();
        u.add(("A", 1), ("A", 2), noop());
        u.add(("A", 2), ("B", 1), noop());
        assert!(u.check().is_ok());
        u.add(("B", 1), ("A", 1), noop());
        let err = u.check().unwrap_err();
        assert_eq!(err.field(), "upcaster");
        assert!(err.to_string().contains("loops"), "{err}");

        let mut u = Upcasters::default();
        u.add(("A", 1), ("A", 2), noop());
        u.add(("A", 1), ("A", 3), noop());
        assert!(u.check().unwrap_err().to_string().contains("two upcasters"));

        let mut u = Upcasters::default();
        u.add(("A", 1), ("A", 1), noop());
        assert!(u.check().unwrap_err().to_string().contains("itself"));

        let mut u = Upcasters::default();
        u.add(("", 1), ("A", 1), noop());
        assert!(u.check().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn a_chain_longer_than_the_bound_is_refused() {
        let mut u = Upcasters::default();
        for v in 0..=u32::try_from(MAX_UPCAST_CHAIN).unwrap() {
            u.add(("A", v), ("A", v + 1), noop());
        }
        assert!(u.check().unwrap_err().to_string().contains("longer"));
    }
}
