//! How a response future finds its layer's shared state without holding a
//! reference count.
//!
//! A future needs the layer's state (budget, metrics, backoff, listeners) only
//! when an attempt fails. Cloning an `Arc` into every future would cost two
//! atomic read-modify-writes on one cache line shared by every caller of the
//! layer, on every call. Instead each layer's state registers a weak pointer
//! here when it is built and gets a small copyable [`Key`]; a future carries
//! the key, and looks the state up (upgrading the weak pointer) only on the
//! failure path. When the state is gone (every layer and service dropped),
//! the lookup fails and the call returns its outcome without retrying.

use std::any::Any;
use std::sync::{Arc, PoisonError, RwLock, Weak};

type Entry = Weak<dyn Any + Send + Sync>;

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

static SLOTS: RwLock<Vec<Slot>> = RwLock::new(Vec::new());

/// Names one registered state: its slot and the slot's generation, so a key
/// never finds a later occupant of the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    index: u32,
    generation: u32,
}

/// Unregisters its state when dropped: a field of the registered state.
#[derive(Debug)]
pub(crate) struct Registration {
    key: Key,
}

impl Registration {
    pub(crate) const fn key(&self) -> Key {
        self.key
    }
}

/// Registers `weak` (the state under construction, from `Arc::new_cyclic`).
pub(crate) fn register(weak: Entry) -> Registration {
    let mut slots = SLOTS.write().unwrap_or_else(PoisonError::into_inner);
    let free = slots.iter().position(|slot| slot.entry.is_none());
    let index = free.unwrap_or_else(|| {
        slots.push(Slot {
            generation: 0,
            entry: None,
        });
        slots.len() - 1
    });
    let slot = &mut slots[index];
    slot.generation = slot.generation.wrapping_add(1);
    slot.entry = Some(weak);
    Registration {
        key: Key {
            // More than 4 billion live layers is not a configuration.
            index: u32::try_from(index).unwrap_or(u32::MAX),
            generation: slot.generation,
        },
    }
}

/// The state registered under `key`, if it is still alive.
pub(crate) fn find<T: Any + Send + Sync>(key: Key) -> Option<Arc<T>> {
    let slots = SLOTS.read().unwrap_or_else(PoisonError::into_inner);
    let slot = slots.get(usize::try_from(key.index).ok()?)?;
    if slot.generation != key.generation {
        return None;
    }
    let strong = slot.entry.as_ref()?.upgrade()?;
    drop(slots);
    strong.downcast::<T>().ok()
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut slots = SLOTS.write().unwrap_or_else(PoisonError::into_inner);
        if let Ok(index) = usize::try_from(self.key.index) {
            if let Some(slot) = slots.get_mut(index) {
                if slot.generation == self.key.generation {
                    // Dropping the weak pointer here lets the state's memory
                    // be freed as soon as its `Arc` finishes dropping.
                    slot.entry = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct State {
        value: u32,
        registration: Registration,
    }

    fn make(value: u32) -> Arc<State> {
        Arc::new_cyclic(|weak: &Weak<State>| {
            let weak: Entry = weak.clone();
            State {
                value,
                registration: register(weak),
            }
        })
    }

    #[test]
    fn finds_live_state_and_forgets_dropped_state() {
        let a = make(1);
        let key = a.registration.key();
        assert_eq!(find::<State>(key).map(|s| s.value), Some(1));
        assert!(find::<u64>(key).is_none(), "wrong type");
        drop(a);
        assert!(find::<State>(key).is_none());
        // The slot is reused under a new generation; the old key stays dead.
        let b = make(2);
        assert!(find::<State>(key).is_none());
        assert_eq!(find::<State>(b.registration.key()).map(|s| s.value), Some(2));
    }
}
