//! The parsed TOML document, every key with its span: where an error
//! belongs, and the gateway's `_ms` keys turned into the pattern crates'
//! duration strings.
//!
//! The document is parsed once into toml's spanned tree
//! ([`DeTable`]); the sections are then deserialized from a copy of that
//! tree, so every serde error carries the span of the value (or key) at
//! fault, and [`key_at`] names the key written there. No line of the text is
//! scanned by hand.
//!
//! The tables a pattern crate owns (`[upstreams.<name>.retry]`,
//! `.circuit_breaker`, `.bulkhead`, `[aggregator]` and its branches)
//! deserialize straight into the crate's settings struct (`RetrySettings`,
//! `CircuitBreakerSettings`, `BulkheadSettings`, `FanOutSettings`,
//! `BranchSettings`). Their keys are the struct's fields,
//! with one convenience of the gateway's: a duration may also be written as
//! an integer of milliseconds under the field's name plus `_ms`
//! (`deadline_ms = 500` is `deadline = "500ms"`); [`crate_dialect`] rewrites
//! those before deserializing. A crate's `validate()` error names a field;
//! [`place`] finds the key written for it.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a path into the document.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seg<'a> {
    /// A key of a table.
    Key(&'a str),
    /// An element of an array (of tables).
    Index(usize),
}

/// The dotted key (`upstreams.user.timeout_ms`) whose key or value is
/// nearest before byte `offset`: the key an error at `offset` is about.
/// Elements of an array of tables are named as their header is written
/// (`aggregator.branches.name`).
pub(crate) fn key_at(root: &DeTable<'_>, offset: usize) -> String {
    let mut best: Option<(usize, usize, String)> = None;
    visit(root, "", 0, &mut |path, depth, key_start| {
        if key_start <= offset
            && best
                .as_ref()
                .is_none_or(|(s, d, _)| key_start > *s || (key_start == *s && depth > *d))
        {
            best = Some((key_start, depth, path.to_owned()));
        }
    });
    best.map(|(_, _, k)| k).unwrap_or_default()
}

fn visit(table: &DeTable<'_>, prefix: &str, depth: usize, f: &mut impl FnMut(&str, usize, usize)) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        f(&path, depth, k.span().start);
        match v.get_ref() {
            DeValue::Table(t) => visit(t, &path, depth + 1, f),
            DeValue::Array(items) => {
                for item in items.iter() {
                    if let DeValue::Table(t) = item.get_ref() {
                        visit(t, &path, depth + 1, f);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The value at `path`, if written, with its span.
pub(crate) fn get<'t, 'i>(
    root: &'t Spanned<DeTable<'i>>,
    path: &[Seg<'_>],
) -> Option<(Range<usize>, &'t DeValue<'i>)> {
    fn find<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }
    let mut span = root.span();
    let mut here: Option<&'t DeValue<'i>> = None;
    for seg in path {
        let next = match (seg, here) {
            (Seg::Key(key), None) => find(root.get_ref(), key)?,
            (Seg::Key(key), Some(DeValue::Table(t))) => find(t, key)?,
            (Seg::Index(n), Some(DeValue::Array(items))) => items.get(*n)?,
            _ => return None,
        };
        span = next.span();
        here = Some(next.get_ref());
    }
    here.map(|v| (span, v))
}

/// The value whose span is `span`, if one is (the value a serde error is
/// about).
pub(crate) fn value_at<'t, 'i>(
    table: &'t DeTable<'i>,
    span: &Range<usize>,
) -> Option<&'t DeValue<'i>> {
    for v in table.values() {
        if v.span() == *span {
            return Some(v.get_ref());
        }
        let found = match v.get_ref() {
            DeValue::Table(t) => value_at(t, span),
            DeValue::Array(items) => items.iter().find_map(|item| match item.get_ref() {
                DeValue::Table(t) => value_at(t, span),
                _ => None,
            }),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The key written for a crate setting `field` in the table at `path`
/// (`field` itself, or `field_ms`), with the span of its value; if neither
/// is written, the table's span and the key `field` (the one to set).
pub(crate) fn place(
    root: &Spanned<DeTable<'_>>,
    path: &[Seg<'_>],
    dotted: &str,
    field: &str,
) -> (Range<usize>, String) {
    let Some((span, DeValue::Table(table))) = get(root, path) else {
        return (root.span(), format!("{dotted}.{field}"));
    };
    let ms = format!("{field}_ms");
    table
        .iter()
        .find(|(k, _)| *k.get_ref() == field || *k.get_ref() == ms.as_str())
        .map_or_else(
            || (span.clone(), format!("{dotted}.{field}")),
            |(k, v)| (v.span(), format!("{dotted}.{}", k.get_ref())),
        )
}

/// A rewrite of a crate-owned table refused: where and why.
pub(crate) struct DialectError {
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
}

/// Rewrites a table a pattern crate owns into the crate's own form, in
/// place (and every table nested in it): `foo_ms = 250` becomes
/// `foo = "250ms"`, each keeping the spans of what was written. A negative
/// integer is refused here (no crate setting takes one, and a duration
/// cannot hold it), as is a setting written both ways.
pub(crate) fn crate_dialect(table: &mut DeTable<'_>) -> Result<(), DialectError> {
    let written: Vec<String> = table.keys().map(|k| k.get_ref().to_string()).collect();
    let entries: Vec<_> = std::mem::take(table).into_iter().collect();
    for (key, mut value) in entries {
        let name = key.get_ref().to_string();
        let field = name.strip_suffix("_ms").filter(|f| !f.is_empty());
        if let DeValue::Integer(i) = value.get_ref() {
            let n = i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| DialectError {
                span: value.span(),
                message: format!("`{i}` does not fit a 64-bit integer"),
            })?;
            if n < 0 {
                let message = if field.is_some() {
                    format!("must be ≥ 0 milliseconds, got {n}")
                } else {
                    format!("must be a whole number ≥ 0, got {n}")
                };
                return Err(DialectError {
                    span: value.span(),
                    message,
                });
            }
        }
        if let DeValue::Table(inner) = value.get_mut() {
            crate_dialect(inner)?;
        }
        let Some(field) = field else {
            table.insert(key, value);
            continue;
        };
        if written.iter().any(|w| w == field) {
            return Err(DialectError {
                span: key.span(),
                message: format!("give either `{field}` or `{name}`, not both"),
            });
        }
        let DeValue::Integer(i) = value.get_ref() else {
            return Err(DialectError {
                span: value.span(),
                message: format!(
                    "invalid type: expected an integer of milliseconds (or `{field}` as a duration string like \"250ms\")"
                ),
            });
        };
        let millis = format!("{}ms", i.as_str());
        table.insert(
            Spanned::new(key.span(), Cow::Owned(field.to_owned())),
            Spanned::new(value.span(), DeValue::String(Cow::Owned(millis))),
        );
    }
    Ok(())
}

/// Moves every key of `table` except `keep` into a new table under `into`
/// (spanned as `span`): a section that holds a crate's settings next to the
/// gateway's own keys becomes one the two deserialize from side by side.
pub(crate) fn nest(table: &mut DeTable<'_>, keep: &[&str], into: &'static str, span: Range<usize>) {
    let mut nested = DeTable::new();
    let entries: Vec<_> = std::mem::take(table).into_iter().collect();
    for (key, value) in entries {
        if keep.contains(&key.get_ref().as_ref()) {
            table.insert(key, value);
        } else {
            nested.insert(key, value);
        }
    }
    table.insert(
        Spanned::new(span.clone(), Cow::Borrowed(into)),
        Spanned::new(span, DeValue::Table(nested)),
    );
}

/// Makes a serde error of a crate's settings read as the gateway's TOML:
/// the unknown field or variant named as written, at the key written.
/// `key` is where [`key_at`] placed the error, `value` what is written there.
pub(crate) fn explain(key: &mut String, value: Option<&DeValue<'_>>, message: &str) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key.as_str()).to_owned();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(variant) = quoted("unknown variant `") {
        let expected = message
            .split_once("expected ")
            .map(|(_, e)| e.replace('`', ""))
            .unwrap_or_default()
            .replace("one of ", "");
        let expected = match expected.rsplit_once(", ") {
            Some((init, last)) => format!("{init} or {last}"),
            None => expected,
        };
        if matches!(value, Some(DeValue::Table(_))) {
            key.push_str(".kind");
        }
        // A tagged table's `kind`: name what it is the kind of.
        let noun = match key.rsplit('.').collect::<Vec<_>>().as_slice() {
            ["kind", parent, ..] => (*parent).to_owned(),
            _ => leaf,
        };
        return format!("unknown {noun} `{variant}` (expected {expected})");
    }
    if let Some(field) = quoted("unknown field `")
        && let Some(DeValue::Table(table)) = value
    {
        // An unknown field inside a nested table (a backoff's): name the key
        // written, and the variant that does not take it.
        let ms = format!("{field}_ms");
        let written = table
            .keys()
            .map(|k| k.get_ref().to_string())
            .find(|k| *k == field || *k == ms)
            .unwrap_or(field);
        key.push('.');
        key.push_str(&written);
        let kind = table.iter().find_map(|(k, v)| match v.get_ref() {
            DeValue::String(s) if k.get_ref() == "kind" => Some(s.to_string()),
            _ => None,
        });
        return match kind {
            Some(kind) => format!("a `{kind}` {leaf} does not take `{written}`"),
            None => format!("unknown field `{written}`"),
        };
    }
    if let Some(field) = quoted("unknown field `")
        && field != leaf
    {
        // `foo_ms` written, `foo` unknown to the crate.
        return message.replacen(&format!("`{field}`"), &format!("`{leaf}`"), 1);
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_at_finds_table_and_key() {
        let text = "[server]\nlisten = 1\n[upstreams.user]\n  timeout_ms = \"x\"\n";
        let (root, _) = DeTable::parse_recoverable(text);
        assert_eq!(
            key_at(root.get_ref(), text.find('1').unwrap()),
            "server.listen"
        );
        assert_eq!(
            key_at(root.get_ref(), text.find("\"x\"").unwrap()),
            "upstreams.user.timeout_ms"
        );
        assert_eq!(
            key_at(root.get_ref(), text.find("user]").unwrap()),
            "upstreams.user"
        );
    }

    #[test]
    fn millis_become_duration_strings_and_negatives_are_refused() {
        let text = "[t]\ndeadline_ms = 500\nb = { kind = \"fixed\", delay_ms = 10 }\nn = 3\n";
        let mut root = DeTable::parse(text).unwrap();
        let (_, t) = root.get_mut().iter_mut().next().unwrap();
        let DeValue::Table(t) = t.get_mut() else {
            panic!()
        };
        crate_dialect(t).ok().unwrap();
        let keys: Vec<String> = t.keys().map(|k| k.get_ref().to_string()).collect();
        assert_eq!(keys, ["b", "deadline", "n"]);
        let bad = "[t]\nx_ms = -1\n";
        let mut root = DeTable::parse(bad).unwrap();
        let DeValue::Table(t) = root.get_mut().iter_mut().next().unwrap().1.get_mut() else {
            panic!()
        };
        let err = crate_dialect(t).err().unwrap();
        assert_eq!(&bad[err.span], "-1");
        assert!(err.message.contains("got -1"));
    }
}
