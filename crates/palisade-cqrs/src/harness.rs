//! The given/when/then harness for aggregates: past events, a command, and
//! the events or the error it must decide. No store, no runtime.
//!
//! ```
//! # use palisade_cqrs::{Aggregate, DomainEvent};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Default, Serialize, Deserialize)]
//! # struct Counter { n: u32 }
//! # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! # struct Added(u32);
//! # impl DomainEvent for Added { fn event_type(&self) -> &'static str { "Added" } }
//! # #[derive(Debug, PartialEq)]
//! # struct TooMany;
//! # impl std::fmt::Display for TooMany {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("too many") }
//! # }
//! # impl std::error::Error for TooMany {}
//! # impl Aggregate for Counter {
//! #     const TYPE: &'static str = "counter";
//! #     type Command = u32;
//! #     type Event = Added;
//! #     type Error = TooMany;
//! #     fn decide(&self, add: &u32) -> Result<Vec<Added>, TooMany> {
//! #         if self.n + add > 10 { Err(TooMany) } else { Ok(vec![Added(*add)]) }
//! #     }
//! #     fn evolve(self, e: &Added) -> Self { Self { n: self.n + e.0 } }
//! # }
//! use palisade_cqrs::harness::given;
//!
//! given::<Counter>([Added(4)]).when(3).then_events([Added(3)]);
//! given::<Counter>([Added(4), Added(5)]).when(3).then_error(TooMany);
//! ```

use std::fmt;

use crate::aggregate::Aggregate;

/// Starts a test from the state `events` fold to.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let state = events.into_iter().fold(A::default(), |s, e| s.evolve(&e));
    Given { state }
}

/// The state a test starts from.
#[must_use]
pub struct Given<A> {
    state: A,
}

impl<A: Aggregate> fmt::Debug for Given<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given").field("type", &A::TYPE).finish()
    }
}

impl<A: Aggregate> Given<A> {
    /// Decides `command` on the state.
    // By value, as a test writes it: `.when(Deposit { cents: 5 })`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn when(self, command: A::Command) -> When<A> {
        let result = self.state.decide(&command);
        When {
            state: self.state,
            result,
        }
    }

    /// The state the given events fold to.
    #[must_use]
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// A decided command, to check.
#[must_use]
pub struct When<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> fmt::Debug for When<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("When")
            .field("type", &A::TYPE)
            .field("result", &self.result)
            .finish()
    }
}

impl<A: Aggregate> When<A> {
    /// Asserts the command decided exactly `expected`, in order; returns
    /// the state after them, for more checks.
    ///
    /// # Panics
    ///
    /// If the command was refused or decided other events (a test failure).
    #[track_caller]
    pub fn then_events(self, expected: impl IntoIterator<Item = A::Event>) -> A
    where
        A::Event: PartialEq,
    {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "the command decided other events");
                events.iter().fold(self.state, |s, e| s.evolve(e))
            }
            Err(e) => panic!("expected events {expected:?}, the command was refused: {e:?}"),
        }
    }

    /// Asserts the command was refused with `expected`.
    ///
    /// # Panics
    ///
    /// If the command decided events or was refused otherwise.
    #[track_caller]
    #[allow(clippy::needless_pass_by_value)]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Ok(events) => panic!("expected the error {expected:?}, the command decided {events:?}"),
            Err(e) => assert_eq!(e, expected, "the command was refused otherwise"),
        }
    }

    /// Asserts the command was refused with an error `check` accepts (for
    /// errors that are not `PartialEq`).
    ///
    /// # Panics
    ///
    /// If the command decided events or `check` returns `false`.
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Ok(events) => panic!("expected an error, the command decided {events:?}"),
            Err(e) => assert!(check(&e), "the command was refused otherwise: {e:?}"),
        }
    }

    /// The decision, as it is.
    ///
    /// # Errors
    ///
    /// The domain error the command was refused with.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}
