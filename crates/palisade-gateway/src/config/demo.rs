//! `[demo]`: the in-process demo backends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigFileError};

/// The demo services the gateway can start in-process.
pub const DEMO_SERVICES: [&str; 6] = [
    "user",
    "order",
    "product",
    "review",
    "reward",
    "notification",
];

/// `[demo]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDemo {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    seed: Option<u64>,
    #[serde(default)]
    backends: BTreeMap<Spanned<String>, RawBackend>,
}

const fn yes() -> bool {
    true
}

/// `[demo.backends.<name>]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    listen: Option<Spanned<String>>,
    latency_ms: Option<Spanned<i64>>,
    service: Option<Spanned<String>>,
}

/// `[demo]`: the in-process demo backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// `seed`: seeds every backend's chaos layer (default 42).
    pub seed: u64,
    /// `[demo.backends.<name>]`, by service name.
    pub backends: BTreeMap<String, BackendConfig>,
}

/// `[demo.backends.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// `listen`: the backend's address (default `127.0.0.1:0`, any free port).
    pub listen: SocketAddr,
    /// `latency_ms`: simulated work per request (default 0).
    pub latency: Duration,
    /// `service`: the demo service it runs (one of [`DEMO_SERVICES`];
    /// default: the backend's name). Several backends may run one service:
    /// `[demo.backends.user-0]` with `service = "user"` is one shard of the
    /// user service.
    pub service: String,
}

impl Checker<'_> {
    pub(super) fn demo(&self, d: RawDemo) -> Result<DemoConfig, ConfigFileError> {
        let mut backends = BTreeMap::new();
        for (name, b) in d.backends {
            let key = format!("demo.backends.{}", name.get_ref());
            if let Some(service) = &b.service {
                if !DEMO_SERVICES.contains(&service.get_ref().as_str()) {
                    return self.err(
                        service.span(),
                        format!("{key}.service"),
                        format!(
                            "unknown demo service `{}` (known: {})",
                            service.get_ref(),
                            DEMO_SERVICES.join(", ")
                        ),
                    );
                }
                if !super::shards::valid_shard_name(name.get_ref()) {
                    return self.err(
                        name.span(),
                        key,
                        "a backend name is 1 to 64 letters, digits, `-`, `_` or `.`",
                    );
                }
            } else if !DEMO_SERVICES.contains(&name.get_ref().as_str()) {
                return self.err(
                    name.span(),
                    key,
                    format!(
                        "unknown demo service `{}` (known: {}; a backend of another name says which \
                         it runs with `service = \"user\"`)",
                        name.get_ref(),
                        DEMO_SERVICES.join(", ")
                    ),
                );
            }
            let listen = match &b.listen {
                Some(v) => self.addr(v, &format!("{key}.listen"))?,
                None => SocketAddr::from(([127, 0, 0, 1], 0)),
            };
            let latency =
                self.millis(b.latency_ms.as_ref(), &format!("{key}.latency_ms"), 0, true)?;
            let service = b
                .service
                .map_or_else(|| name.get_ref().clone(), Spanned::into_inner);
            backends.insert(
                name.into_inner(),
                BackendConfig {
                    listen,
                    latency,
                    service,
                },
            );
        }
        Ok(DemoConfig {
            seed: d.seed.unwrap_or(42),
            backends,
        })
    }
}
