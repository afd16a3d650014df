//! [`Aggregate`]: the write model as two pure functions, `decide` and
//! `evolve`; [`DomainEvent`]: what it decides, with a stored type name and
//! schema version.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event an aggregate decides: serde (JSON in the store), with the type
/// name and schema version stored in its envelope (projections filter on
/// the type; upcasters chain on type and version).
///
/// The payload stored is the whole serde form of the value, so an
/// internally tagged enum (`#[serde(tag = "type")]`) decodes back whatever
/// the variant.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static
{
    /// The type name stored in the envelope (`"Deposited"`).
    fn event_type(&self) -> &'static str;

    /// The payload's schema version (default `1`); raise it when the
    /// payload's shape changes, and register an upcaster for the old one.
    fn schema_version(&self) -> u32 {
        1
    }
}

/// The write model of one kind of entity (a bank account), as two pure
/// functions over its state (`Self`):
///
/// - [`decide`](Self::decide): given the state and a command, the events
///   that happen, or a domain error (an overdraft). No I/O: the same state
///   and command always decide the same.
/// - [`evolve`](Self::evolve): the state after one event. It never fails:
///   an event is a fact that already happened.
///
/// The state of an entity is `evolve` folded over its stream, from
/// [`Default`] (or from a snapshot of `Self`, hence `Serialize` and
/// `DeserializeOwned`). Each entity has one stream, named
/// `"<TYPE>-<id>"` ([`stream_name`]).
///
/// `decide` takes the command by reference: after a
/// [`Conflict`](palisade_event_store::error::Conflict) the command handler
/// reloads the state and decides the same command again.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The entity kind, the prefix of its stream names (`"account"`).
    const TYPE: &'static str;
    /// The shape of `Self` in snapshots: raise it when the state's shape
    /// changes, and older snapshots are ignored (the stream is folded from
    /// the start, and a new snapshot taken).
    const SNAPSHOT_VERSION: u32 = 1;

    /// What callers ask for.
    type Command: Send + Sync + 'static;
    /// What happens.
    type Event: DomainEvent;
    /// Why a command is refused (an overdraft, with the balance).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The events `command` causes in this state, or why it is refused.
    ///
    /// # Errors
    ///
    /// The domain's refusal; nothing is written.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// The state after `event`.
    #[must_use]
    fn evolve(self, event: &Self::Event) -> Self;
}

/// The stream of entity `id` of aggregate `A`: `"<TYPE>-<id>"`.
#[must_use]
pub fn stream_name<A: Aggregate>(id: &str) -> String {
    format!("{}-{id}", A::TYPE)
}

/// The event id of the `index`-th event (from `0`) a command with id
/// `command_id` decided: the command id itself for the first, then
/// `"<command_id>#<n>"` (`n` from `2`). Deterministic, so a retried command
/// writes its events once (the store's append is idempotent by event id).
#[must_use]
pub fn event_id(command_id: &str, index: usize) -> String {
    if index == 0 {
        command_id.to_owned()
    } else {
        format!("{command_id}#{}", index + 1)
    }
}

/// Whether `event_id` was derived from `command_id` by [`event_id`].
pub(crate) fn derived_from(event_id: &str, command_id: &str) -> bool {
    match event_id.strip_prefix(command_id) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('#')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// A fresh event id for a command without one: 128 random bits in hex.
pub(crate) fn random_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_derived_and_recognized() {
        assert_eq!(event_id("req-1", 0), "req-1");
        assert_eq!(event_id("req-1", 2), "req-1#3");
        assert!(derived_from("req-1", "req-1"));
        assert!(derived_from("req-1#3", "req-1"));
        assert!(!derived_from("req-10", "req-1"));
        assert!(!derived_from("req-1#", "req-1"));
        assert!(!derived_from("req-1#x", "req-1"));
        assert_ne!(random_id(), random_id());
    }
}
