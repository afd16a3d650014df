//! `[aggregator]`: `GET /api/dashboard/user/{id}`, gathered from the
//! branches of `[[aggregator.branches]]`.
//!
//! The table's own keys are the fan-out crate's
//! [`FanOutSettings`] (`deadline`, `max_in_flight`), each branch's `required`
//! and `timeout` its [`BranchSettings`]; `name`, `upstream` and `path` are
//! the gateway's. Both are checked by the crate's `validate()`; the branch
//! list (at least one, names set and unique) the way the fan-out's builder
//! checks it, without building one.
//!
//! A branch may have a fallback, `[aggregator.branches.fallback]`: `value`
//! (any JSON, written in TOML) is the gateway's, what the branch answers
//! when it fails; `on` (the failure classes it answers) is the fallback
//! crate's [`FallbackSettings`], checked by its `validate()`. The value is
//! taken as written: no `_ms` rewrite inside it.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use palisade::fallback::FallbackSettings;
use palisade::fan_out::http::Route;
use palisade::fan_out::{BranchSettings, FanOutSettings};
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::document::{self, DialectError, Seg};
use super::upstream::UpstreamConfig;
use super::{Checker, ConfigFileError};

/// The aggregator's route: one user's dashboard, gathered from the branches
/// of `[aggregator]`.
pub const AGGREGATOR_ROUTE: &str = "/api/dashboard/user/{id}";

/// The gateway's own keys of a branch; the rest are [`BranchSettings`].
const BRANCH_KEYS: [&str; 4] = ["name", "upstream", "path", "fallback"];

/// `[aggregator]` as written: the fan-out's settings (nested under
/// `fan_out` by [`in_crate_form`]) and the branches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAggregator {
    #[serde(default)]
    fan_out: FanOutSettings,
    #[serde(default)]
    branches: Vec<Spanned<RawBranch>>,
}

/// `[[aggregator.branches]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    name: Spanned<String>,
    upstream: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    settings: BranchSettings,
    #[serde(default)]
    fallback: Option<RawFallback>,
}

/// `[aggregator.branches.fallback]` as written: the value, and the fallback
/// crate's settings (nested under `settings` by [`in_crate_form`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    value: serde_json::Value,
    #[serde(default)]
    settings: FallbackSettings,
}

/// `[aggregator]` in the fan-out crate's form: `_ms` keys as durations,
/// the fan-out's settings under `fan_out`, each branch's under `settings`.
pub(super) fn in_crate_form(aggregator: &mut Spanned<DeValue<'_>>) -> Result<(), DialectError> {
    let span = aggregator.span();
    let DeValue::Table(table) = aggregator.get_mut() else {
        return Ok(());
    };
    document::crate_dialect(table)?;
    for (key, value) in table.iter_mut() {
        if key.get_ref() != "branches" {
            continue;
        }
        if let DeValue::Array(branches) = value.get_mut() {
            for branch in branches.iter_mut() {
                let span = branch.span();
                if let DeValue::Table(branch) = branch.get_mut() {
                    // The fallback's value is JSON as written: kept out of
                    // the `_ms` rewrite.
                    let entries: Vec<_> = std::mem::take(branch).into_iter().collect();
                    let mut fallback = None;
                    for (key, value) in entries {
                        if key.get_ref() == "fallback" {
                            fallback = Some((key, value));
                        } else {
                            branch.insert(key, value);
                        }
                    }
                    document::crate_dialect(branch)?;
                    document::nest(branch, &BRANCH_KEYS, "settings", span);
                    if let Some((key, mut value)) = fallback {
                        let span = value.span();
                        if let DeValue::Table(table) = value.get_mut() {
                            document::nest(table, &["value"], "settings", span);
                        }
                        branch.insert(key, value);
                    }
                }
            }
        }
    }
    document::nest(table, &["branches"], "fan_out", span);
    Ok(())
}

/// `[aggregator]`: `GET /api/dashboard/user/{id}` gathered from its branches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatorConfig {
    /// `deadline` (or `deadline_ms`), `max_in_flight`: the fan-out crate's
    /// settings.
    pub settings: FanOutSettings,
    /// `[[aggregator.branches]]`, in the order written.
    pub branches: Vec<BranchConfig>,
}

/// `[[aggregator.branches]]`: one branch of the aggregator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchConfig {
    /// `name`: the branch's key in the answer.
    pub name: String,
    /// `upstream`: the upstream whose stack the branch calls.
    pub upstream: String,
    /// `path`: the request path under the upstream's base, a template filled
    /// from the route (`/users/{id}/orders`; `{query.x}` for a query
    /// parameter).
    pub path: String,
    /// `required` (default `false`), `timeout` (or `timeout_ms`): the
    /// fan-out crate's branch settings.
    pub settings: BranchSettings,
    /// `[aggregator.branches.fallback]`: what the branch answers when it
    /// fails, if anything.
    pub fallback: Option<BranchFallback>,
}

/// `[aggregator.branches.fallback]`: a branch's fallback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchFallback {
    /// `value`: the JSON the branch answers instead of a failure.
    pub value: serde_json::Value,
    /// `on`: which failures it answers (the fallback crate's settings;
    /// default every class: errors, 5xx answers, an open breaker, a full
    /// bulkhead, a rate limit, an expired deadline).
    pub settings: FallbackSettings,
}

impl Checker<'_> {
    pub(super) fn aggregator(
        &self,
        raw: Spanned<RawAggregator>,
        upstreams: &BTreeMap<String, UpstreamConfig>,
    ) -> Result<AggregatorConfig, ConfigFileError> {
        let span: Range<usize> = raw.span();
        let a = raw.into_inner();
        let route = Route::new(AGGREGATOR_ROUTE).map_err(|e| {
            ConfigFileError::at(self.source, span.clone(), "aggregator", e.to_string())
        })?;
        a.fan_out
            .validate()
            .map_err(|e| self.settings_err(&[Seg::Key("aggregator")], "aggregator", &e))?;
        if a.branches.is_empty() {
            return self.err(
                span,
                "aggregator.branches",
                "a fan-out needs at least one branch",
            );
        }
        let mut seen = HashSet::new();
        let mut branches = Vec::with_capacity(a.branches.len());
        for (i, b) in a.branches.into_iter().enumerate() {
            let key = format!("aggregator.branches[{i}]");
            let raw = b.into_inner();
            self.known_upstream(upstreams, &raw.upstream, &format!("{key}.upstream"))?;
            if let Err(e) = route.target("http://upstream.invalid", raw.path.get_ref()) {
                return self.err(
                    raw.path.span(),
                    format!("{key}.path"),
                    e.reason().to_owned(),
                );
            }
            let path = [Seg::Key("aggregator"), Seg::Key("branches"), Seg::Index(i)];
            raw.settings
                .validate()
                .map_err(|e| self.settings_err(&path, &key, &e))?;
            let name = raw.name.get_ref();
            if name.is_empty() {
                return self.err(
                    raw.name.span(),
                    format!("{key}.name"),
                    "branch names must not be empty",
                );
            }
            if !seen.insert(name.clone()) {
                return self.err(
                    raw.name.span(),
                    format!("{key}.name"),
                    format!("branch name `{name}` is used twice"),
                );
            }
            let fallback = match raw.fallback {
                Some(fallback) => {
                    let path = [path[0], path[1], path[2], Seg::Key("fallback")];
                    fallback
                        .settings
                        .validate()
                        .map_err(|e| self.settings_err(&path, &format!("{key}.fallback"), &e))?;
                    Some(BranchFallback {
                        value: fallback.value,
                        settings: fallback.settings,
                    })
                }
                None => None,
            };
            branches.push(BranchConfig {
                name: raw.name.into_inner(),
                upstream: raw.upstream.into_inner(),
                path: raw.path.into_inner(),
                settings: raw.settings,
                fallback,
            });
        }
        Ok(AggregatorConfig {
            settings: a.fan_out,
            branches,
        })
    }
}
