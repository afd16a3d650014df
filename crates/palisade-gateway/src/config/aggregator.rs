//! `[aggregator]`: `GET /api/dashboard/user/{id}`, gathered from the
//! branches of `[[aggregator.branches]]`.
//!
//! The table's own keys are the fan-out crate's
//! [`FanOutSettings`] (`deadline`, `max_in_flight`), each branch's `required`
//! and `timeout` its [`BranchSettings`]; `name`, `upstream` and `path` are
//! the gateway's. Both are checked by the crate's `validate()`; the branch
//! list (at least one, names set and unique) the way the fan-out's builder
//! checks it, without building one.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

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
const BRANCH_KEYS: [&str; 3] = ["name", "upstream", "path"];

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
                    document::crate_dialect(branch)?;
                    document::nest(branch, &BRANCH_KEYS, "settings", span);
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
            branches.push(BranchConfig {
                name: raw.name.into_inner(),
                upstream: raw.upstream.into_inner(),
                path: raw.path.into_inner(),
                settings: raw.settings,
            });
        }
        Ok(AggregatorConfig {
            settings: a.fan_out,
            branches,
        })
    }
}
