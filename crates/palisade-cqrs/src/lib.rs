//! CQRS on the palisade event store: aggregates as `decide`/`evolve` with a
//! given/when/then harness, command handling as a tower service, and
//! projections whose checkpoint commits with their read model.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod backend;
mod builder;
mod command;
pub mod error;
mod event;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod handle;
pub mod harness;
mod metrics;
mod parked;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod projection;
mod service;
mod settings;

pub use aggregate::{Aggregate, DomainEvent, event_id, stream_name};
pub use builder::CommandHandlerBuilder;
pub use command::{Command, CommandOutcome};
pub use error::{CommandError, WaitTimeout};
pub use event::CqrsEvent;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use handle::{ProjectionHandle, ProjectionSnapshot};
pub use palisade_core::Registry;
pub use parked::ParkedEvent;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use projection::{Projection, ProjectionRunner, ProjectionRunnerBuilder};
pub use service::{CommandFuture, CommandHandler};
pub use settings::{
    CommandSettings, DEFAULT_TABLE_PREFIX, MAX_ATTEMPTS, MAX_CONFLICT_RETRIES, MAX_NAME_LEN,
    MAX_PAGE_SIZE, ProjectionSettings,
};
