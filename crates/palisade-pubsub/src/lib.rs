//! Publish-subscribe for tower services.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod consumer;
pub mod error;
mod event;
mod idempotent;
pub mod message;
mod metrics;
pub mod outbox;
pub mod settings;
mod state;
pub mod trace;

pub use backend::{Delivery, Publisher};
pub use consumer::{
    CONSUMER, Consumer, ConsumerBuilder, ConsumerHandle, ConsumerSnapshot, DEAD_LETTER_KIND,
    DEAD_LETTER_REASON, DELIVERIES, ORIGINAL_ID, ORIGINAL_SUBJECT,
};
pub use event::{DeadLetterKind, PubSubEvent};
pub use idempotent::{Idempotent, IdempotentBuilder, IdempotentLayer, ResponseFuture};
pub use message::{Headers, Message, MessageBuilder};
pub use palisade_core::{BulkheadFull, CircuitOpen, RateLimited};
pub use settings::{
    BusSettings, ConsumerSettings, DedupSettings, NatsSettings, RelaySettings, SlowSubscriber,
};
pub use state::subject::{MAX_SUBJECT_LEN, Pattern, validate_pattern, validate_subject};
