//! `[pubsub]`: the demo's events. Orders placed through `POST /api/orders`
//! are published as `orders.placed`; a notification consumer and an
//! analytics queue group consume them (`crate::pubsub`).
//!
//! The gateway's own keys are `enabled`, `backend` (`"memory"`, the
//! default, or `"nats"`), `url` (NATS only), `stream` (the JetStream stream
//! that captures every subject under the prefix), `subject_prefix`,
//! `analytics_members` and `handler_timeout_ms`. The sub-tables are the
//! pubsub crate's settings structs, read as they are and checked by their
//! `validate()`: `[pubsub.bus]` a
//! [`BusSettings`] (the in-process bus),
//! `[pubsub.nats]` a [`NatsSettings`],
//! `[pubsub.notification]` and `[pubsub.analytics]` each a
//! [`ConsumerSettings`]. Durations in
//! them are strings (`"250ms"`) or integers of milliseconds under the
//! field's name plus `_ms`.

use std::time::Duration;

use palisade::pubsub::settings::validate_name;
use palisade::pubsub::{
    BusSettings, ConsumerSettings, NatsSettings, validate_pattern, validate_subject,
};
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::document::{self, DialectError, Seg};
use super::{Checker, ConfigFileError};

/// The sub-tables of `[pubsub]` that are the crate's settings structs.
const CRATE_TABLES: [&str; 4] = ["bus", "nats", "notification", "analytics"];

/// The most members the analytics queue group may have.
pub const MAX_ANALYTICS_MEMBERS: usize = 16;

/// `[pubsub]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPubSub {
    #[serde(default = "yes")]
    enabled: bool,
    backend: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    stream: Option<Spanned<String>>,
    subject_prefix: Option<Spanned<String>>,
    analytics_members: Option<Spanned<i64>>,
    handler_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    bus: BusSettings,
    #[serde(default)]
    nats: NatsSettings,
    #[serde(default)]
    notification: ConsumerSettings,
    #[serde(default)]
    analytics: ConsumerSettings,
}

const fn yes() -> bool {
    true
}

/// `[pubsub]` in the crate's form: the `_ms` keys of its sub-tables as
/// duration strings.
pub(super) fn in_crate_form(pubsub: &mut Spanned<DeValue<'_>>) -> Result<(), DialectError> {
    let DeValue::Table(table) = pubsub.get_mut() else {
        return Ok(());
    };
    for (key, value) in table.iter_mut() {
        if CRATE_TABLES.contains(&key.get_ref().as_ref())
            && let DeValue::Table(inner) = value.get_mut()
        {
            document::crate_dialect(inner)?;
        }
    }
    Ok(())
}

/// Where events go: the in-process bus or a NATS JetStream server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubBackend {
    /// `backend = "memory"` (the default): the in-process bus, with
    /// `[pubsub.bus]`'s settings. At most once, lost with the process.
    Memory(BusSettings),
    /// `backend = "nats"`: JetStream at `url`, every subject under the
    /// prefix captured by `stream` (created if missing), with
    /// `[pubsub.nats]`'s settings. At least once, durable.
    Nats {
        /// `url`: the server (`nats://127.0.0.1:4222`).
        url: String,
        /// `stream`: the stream's name (default `PALISADE`).
        stream: String,
        /// `[pubsub.nats]`.
        settings: NatsSettings,
    },
}

/// `[pubsub]`: order events, the notification consumer and the analytics
/// queue group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubSubConfig {
    /// `backend`, `url`, `stream`, `[pubsub.bus]`, `[pubsub.nats]`.
    pub backend: PubSubBackend,
    /// `subject_prefix`: every subject the gateway publishes or subscribes
    /// to is under it (`palisade.orders.placed`); default `palisade`.
    pub subject_prefix: String,
    /// `analytics_members`: consumers in the analytics queue group, each
    /// message going to one of them (default 2, at most
    /// [`MAX_ANALYTICS_MEMBERS`]).
    pub analytics_members: usize,
    /// `handler_timeout_ms`: the notification handler's timeout per call
    /// (default 2000; keep it below `[pubsub.nats] ack_wait`).
    pub handler_timeout: Duration,
    /// `[pubsub.notification]`: the notification consumer's settings.
    pub notification: ConsumerSettings,
    /// `[pubsub.analytics]`: each analytics member's settings.
    pub analytics: ConsumerSettings,
}

impl Checker<'_> {
    pub(super) fn pubsub(&self, raw: RawPubSub) -> Result<Option<PubSubConfig>, ConfigFileError> {
        if !raw.enabled {
            return Ok(None);
        }
        let at = |table: &'static str| [Seg::Key("pubsub"), Seg::Key(table)];
        let check = |table: &'static str, result: Result<(), palisade::ConfigError>| {
            result.map_err(|e| self.settings_err(&at(table), &format!("pubsub.{table}"), &e))
        };
        check("bus", raw.bus.validate())?;
        check("nats", raw.nats.validate())?;
        check("notification", raw.notification.validate())?;
        check("analytics", raw.analytics.validate())?;
        let subject_prefix = match raw.subject_prefix {
            Some(p) => {
                validate_subject(p.get_ref())
                    .and_then(|()| validate_pattern(&format!("{}.>", p.get_ref())))
                    .or_else(|e| self.err(p.span(), "pubsub.subject_prefix", e.to_string()))?;
                p.into_inner()
            }
            None => "palisade".to_owned(),
        };
        let analytics_members = self
            .whole::<usize>(
                raw.analytics_members.as_ref(),
                "pubsub.analytics_members",
                1,
            )?
            .unwrap_or(2);
        if let Some(v) = raw
            .analytics_members
            .as_ref()
            .filter(|_| analytics_members > MAX_ANALYTICS_MEMBERS)
        {
            return self.err(
                v.span(),
                "pubsub.analytics_members",
                format!("must be at most {MAX_ANALYTICS_MEMBERS}, got {analytics_members}"),
            );
        }
        let handler_timeout = self.millis(
            raw.handler_timeout_ms.as_ref(),
            "pubsub.handler_timeout_ms",
            2000,
            false,
        )?;
        let backend = match raw.backend.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("memory") => {
                if let Some(url) = &raw.url {
                    return self.err(
                        url.span(),
                        "pubsub.url",
                        "a url is for backend = \"nats\"; the in-process bus has none",
                    );
                }
                PubSubBackend::Memory(raw.bus)
            }
            Some("nats") => {
                let Some(url) = raw.url else {
                    let span = raw.backend.as_ref().map_or(0..0, Spanned::span);
                    return self.err(
                        span,
                        "pubsub.url",
                        "backend = \"nats\" needs a url (`url = \"nats://127.0.0.1:4222\"`)",
                    );
                };
                let stream = match raw.stream {
                    Some(s) => {
                        validate_name(s.get_ref())
                            .or_else(|e| self.err(s.span(), "pubsub.stream", e.reason()))?;
                        s.into_inner()
                    }
                    None => "PALISADE".to_owned(),
                };
                PubSubBackend::Nats {
                    url: url.into_inner(),
                    stream,
                    settings: raw.nats,
                }
            }
            Some(other) => {
                let span = raw.backend.as_ref().map_or(0..0, Spanned::span);
                return self.err(
                    span,
                    "pubsub.backend",
                    format!("must be \"memory\" or \"nats\", got {other:?}"),
                );
            }
        };
        Ok(Some(PubSubConfig {
            backend,
            subject_prefix,
            analytics_members,
            handler_timeout,
            notification: raw.notification,
            analytics: raw.analytics,
        }))
    }
}
