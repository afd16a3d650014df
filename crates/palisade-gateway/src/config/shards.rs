//! `[upstreams.<name>.shards]`: an upstream served by several shards, each
//! request sent to the shard that owns its key (a user id in the path).
//!
//! The table's own keys are the shard crate's
//! [`ShardSettings`] (`scheme`, `virtual_nodes`, `ready_timeout` or
//! `ready_timeout_ms`, `default_shard`, `key`, `key_format`,
//! `record_latency`, `ewma_decay`), checked by its `validate()`;
//! `[[upstreams.<name>.shards.members]]` (`name`, `url`, `weight`) are the
//! gateway's: the shards the upstream starts with. Each member becomes an
//! upstream of its own, named after it, with the stack of
//! `[upstreams.<name>]` (timeouts, retry, circuit breaker, bulkhead): one
//! failing shard trips only its own breaker.
//!
//! A sharded upstream has no `url` of its own. The gateway needs a `key`
//! (where the shard key is) and forwards every request to the key's owner
//! in the newest map (`during_move = "forward"`, the default): its requests
//! are streamed, so they cannot be copied to ask a previous owner.

use std::collections::{BTreeMap, HashSet};

use palisade::ConfigError;
use palisade::shard::{MAX_WEIGHT, MovePolicy, ShardSettings};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::document::{self, DialectError, Seg};
use super::target::{UpstreamTarget, parse_target};
use super::{Checker, ConfigFileError};

/// The gateway's own keys of `[upstreams.<name>.shards]`; the rest are
/// [`ShardSettings`].
const OWN_KEYS: [&str; 1] = ["members"];

/// The longest shard name: it names an upstream, a breaker, a bulkhead and
/// metric labels.
pub const MAX_SHARD_NAME_LEN: usize = 64;

/// The most shards one sharded upstream may have (the crate allows more;
/// each shard is an upstream with its own layers and metric series).
pub const MAX_SHARDS_PER_UPSTREAM: usize = 64;

/// `[upstreams.<name>.shards]` as written (in the crate's form: the
/// settings nested under `settings` by [`in_crate_form`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShards {
    #[serde(default)]
    settings: ShardSettings,
    #[serde(default)]
    members: Vec<Spanned<RawMember>>,
}

/// `[[upstreams.<name>.shards.members]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: Spanned<String>,
    url: Spanned<String>,
    weight: Option<Spanned<f64>>,
}

/// Rewrites the `shards` table of one `[upstreams.<name>]` (if any) into
/// the crate's form: `_ms` keys as durations, the settings under
/// `settings`.
pub(super) fn in_crate_form(upstream: &mut DeTable<'_>) -> Result<(), DialectError> {
    for (key, value) in upstream.iter_mut() {
        if key.get_ref() != "shards" {
            continue;
        }
        let span = value.span();
        if let DeValue::Table(table) = value.get_mut() {
            document::crate_dialect(table)?;
            document::nest(table, &OWN_KEYS, "settings", span);
        }
    }
    Ok(())
}

/// `[upstreams.<name>.shards]`: the shard router's settings and the shards
/// the upstream starts with.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardsConfig {
    /// The shard crate's settings (`scheme`, `key`, `key_format`,
    /// `ready_timeout`, `default_shard`, ...).
    pub settings: ShardSettings,
    /// `[[upstreams.<name>.shards.members]]`, in the order written (jump
    /// hash numbers them in this order).
    pub members: Vec<MemberConfig>,
}

/// `[[upstreams.<name>.shards.members]]`: one shard.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberConfig {
    /// `name`: the shard's name in the map (what keys hash against: keep it
    /// stable), and the name of its upstream, breaker and bulkhead.
    pub name: String,
    /// `url`, as written (`demo://user-0`, `http://10.0.0.5:9000`).
    pub url: String,
    /// Where the shard is.
    pub target: UpstreamTarget,
    /// `weight`: its share of the keys relative to the others (default 1).
    pub weight: f64,
}

/// `true` for a usable shard name: 1 to [`MAX_SHARD_NAME_LEN`] letters,
/// digits, `-`, `_` or `.`.
#[must_use]
pub fn valid_shard_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SHARD_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `true` for a usable weight: a number in (0, [`MAX_WEIGHT`]].
#[must_use]
pub fn valid_weight(weight: f64) -> bool {
    weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT
}

impl Checker<'_> {
    /// Checks `[upstreams.<upstream>.shards]`: the crate's `validate()`, a
    /// key, no `fall_back_to_previous`, and the members (at least one,
    /// names valid and unique, weights in range, URLs usable, the default
    /// shard among them).
    pub(super) fn shards(
        &self,
        upstream: &str,
        raw: RawShards,
        is_backend: impl Fn(&str) -> bool,
    ) -> Result<ShardsConfig, ConfigFileError> {
        let dotted = format!("upstreams.{upstream}.shards");
        let path = [
            Seg::Key("upstreams"),
            Seg::Key(upstream),
            Seg::Key("shards"),
        ];
        let fail = |e: &ConfigError| self.settings_err(&path, &dotted, e);
        raw.settings.validate().map_err(|e| fail(&e))?;
        if raw.settings.key.is_none() {
            return Err(fail(&ConfigError::new(
                "key",
                "a sharded upstream needs a key: `key = { path = { route = \"/users/{id}\", param = \"id\" } }` \
                 (the route as the upstream sees it) or `key = { header = \"x-user-id\" }`",
            )));
        }
        if raw.settings.during_move == MovePolicy::FallBackToPrevious {
            return Err(fail(&ConfigError::new(
                "during_move",
                "the gateway streams requests and cannot copy them for a previous owner: use \"forward\"",
            )));
        }
        let Some((span, _)) = document::get(self.root, &path) else {
            return self.err(0..0, dotted, "the table is missing");
        };
        if raw.members.is_empty() {
            return self.err(
                span,
                format!("{dotted}.members"),
                "a sharded upstream needs at least one `[[...shards.members]]`",
            );
        }
        if raw.members.len() > MAX_SHARDS_PER_UPSTREAM {
            return self.err(
                span,
                format!("{dotted}.members"),
                format!("at most {MAX_SHARDS_PER_UPSTREAM} shards"),
            );
        }
        let mut seen = HashSet::new();
        let mut members = Vec::with_capacity(raw.members.len());
        for (i, member) in raw.members.into_iter().enumerate() {
            let key = format!("{dotted}.members[{i}]");
            let m = member.into_inner();
            let name = m.name.get_ref();
            if !valid_shard_name(name) {
                return self.err(
                    m.name.span(),
                    format!("{key}.name"),
                    format!(
                        "`{name}` is not a shard name: 1 to {MAX_SHARD_NAME_LEN} letters, digits, `-`, `_` or `.`"
                    ),
                );
            }
            if name == upstream || !seen.insert(name.clone()) {
                return self.err(
                    m.name.span(),
                    format!("{key}.name"),
                    format!("shard name `{name}` is used twice"),
                );
            }
            let weight = match &m.weight {
                Some(w) if !valid_weight(*w.get_ref()) => {
                    return self.err(
                        w.span(),
                        format!("{key}.weight"),
                        format!("must be in (0, {MAX_WEIGHT}], got {}", w.get_ref()),
                    );
                }
                Some(w) => *w.get_ref(),
                None => 1.0,
            };
            let target = parse_target(m.url.get_ref(), &is_backend)
                .or_else(|reason| self.err(m.url.span(), format!("{key}.url"), reason))?;
            members.push(MemberConfig {
                name: m.name.into_inner(),
                url: m.url.into_inner(),
                target,
                weight,
            });
        }
        if let Some(default) = &raw.settings.default_shard
            && !members.iter().any(|m| m.name == *default)
        {
            return Err(fail(&ConfigError::new(
                "default_shard",
                format!("`{default}` is not one of the members"),
            )));
        }
        Ok(ShardsConfig {
            settings: raw.settings,
            members,
        })
    }

    /// Refuses a shard named like an upstream, or like a shard of another
    /// sharded upstream: each shard is an upstream of its own, with its
    /// breaker and bulkhead registered under its name.
    pub(super) fn shard_names<'a>(
        &self,
        sharded: impl Iterator<Item = (&'a str, &'a ShardsConfig)>,
        is_upstream: impl Fn(&str) -> bool,
    ) -> Result<(), ConfigFileError> {
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for (upstream, shards) in sharded {
            for (i, member) in shards.members.iter().enumerate() {
                let clash = if is_upstream(&member.name) {
                    Some(format!("an upstream is named `{}`", member.name))
                } else {
                    owners
                        .insert(&member.name, upstream)
                        .map(|other| format!("`{}` is a shard of `{other}` too", member.name))
                };
                if let Some(reason) = clash {
                    let path = [
                        Seg::Key("upstreams"),
                        Seg::Key(upstream),
                        Seg::Key("shards"),
                        Seg::Key("members"),
                        Seg::Index(i),
                        Seg::Key("name"),
                    ];
                    let span = document::get(self.root, &path).map_or(0..0, |(s, _)| s);
                    return self.err(
                        span,
                        format!("upstreams.{upstream}.shards.members[{i}].name"),
                        format!("{reason}: a shard is an upstream of its own and needs a name of its own"),
                    );
                }
            }
        }
        Ok(())
    }
}
