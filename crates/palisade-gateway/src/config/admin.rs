//! `[admin]`: the admin API's guard.

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigFileError};

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    token: Option<Spanned<String>>,
    #[serde(default)]
    generate_token: bool,
}

/// `[admin]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// `token`: the bearer token of the admin API (`PALISADE_ADMIN_TOKEN`
    /// overrides it).
    pub token: Option<String>,
    /// `generate_token`: with no token from config or environment, generate
    /// a random one for this run and log it.
    pub generate_token: bool,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("generate_token", &self.generate_token)
            .finish()
    }
}

impl Checker<'_> {
    pub(super) fn admin(&self, raw: RawAdmin) -> Result<AdminConfig, ConfigFileError> {
        let token = match raw.token {
            Some(t) if t.get_ref().trim().is_empty() => {
                return self.err(
                    t.span(),
                    "admin.token",
                    "must not be empty (leave it out to disable the admin API)",
                );
            }
            Some(t) => Some(t.into_inner()),
            None => None,
        };
        Ok(AdminConfig {
            token,
            generate_token: raw.generate_token,
        })
    }
}
