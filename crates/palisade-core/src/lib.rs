//! The shared vocabulary of Palisade's middleware.
//!
//! Every pattern crate (circuit breaker, retry, bulkhead, fan-out, ...) speaks
//! these few types, so that one layer can understand what another did:
//!
//! - [`BoxError`], [`is_caused_by`] and [`cause_ref`]: one error type for
//!   layers that fail, and a way to find a cause however deeply other layers
//!   wrapped it.
//! - [`Classify`] and [`Outcome`]: whether a call succeeded, failed, or says
//!   nothing ([`ErrorsAsFailures`] for plain results; `http::StatusClassifier`
//!   for responses, feature `http`); [`IgnoreRejections`] for a breaker above
//!   a bulkhead.
//! - [`CircuitOpen`], [`BulkheadFull`], [`RateLimited`] and [`is_rejection`]: the errors that
//!   mean "refused to add load", which no layer retries.
//! - [`Deadline`] and [`DeadlineExpired`]: the instant by which the caller
//!   stops waiting, carried with a request so every layer below sees what is
//!   left, and the error when it passes.
//! - [`Listeners`]: event hooks that cost nothing when nobody listens.
//! - [`Registry`] and [`Handle`]: named instances for admin APIs and
//!   dashboards, the one registry every pattern crate's builder takes
//!   (`.registry(&registry)`).
//! - [`inner_service!`]: a middleware service's accessors and `Clone`,
//!   written once.
//! - [`ConfigError`]: what every builder returns for bad settings.
//! - [`stripe::Striped`]: a layer's shared state behind per-thread counted
//!   references, so calls on different cores do not bounce one counter.
//! - [`path::check_path`]: one decode-then-check refusal of request paths
//!   that could climb (`..`, `..;`, `%2e%2e`, `..%2F`, backslashes), for
//!   every layer that forwards a path.
//! - `http` (feature `http`): `Retry-After`, problem+json responses for
//!   rejections, status classification.
//! - `grpc` (feature `grpc`): gRPC status codes, a classifier that reads
//!   `grpc-status`, and a layer answering errors with gRPC statuses.
//!
//! # Example
//!
//! ```
//! use palisade_core::{is_rejection, BoxError, Classify, CircuitOpen, ErrorsAsFailures, Outcome};
//!
//! let result: Result<(), BoxError> = Err(CircuitOpen::new("orders", None).into());
//! assert_eq!(ErrorsAsFailures.classify(&result), Outcome::Failure);
//! assert!(is_rejection(&**result.as_ref().unwrap_err()));
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classify;
pub mod config;
pub mod deadline;
pub mod error;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod listener;
pub mod path;
pub mod registry;
pub mod reject;
mod service;
pub mod stripe;

pub use classify::{Classify, ErrorsAsFailures, IgnoreRejections, Outcome};
pub use config::ConfigError;
pub use deadline::{Deadline, DeadlineExpired, is_deadline_expired};
pub use error::{BoxError, cause_ref, is_caused_by};
pub use listener::Listeners;
pub use registry::{Handle, Registry};
pub use reject::{BulkheadFull, CircuitOpen, RateLimited, Rejection, is_rejection, rejection};
