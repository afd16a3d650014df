//! Fan-out request templates: `Route::new`, `Route::target` and
//! `Target::uri`, with hostile incoming paths and queries.
//!
//! The first byte picks the mode. Even: the rest is an incoming URI, sent
//! to three fixed targets (path parameters, a query value put in the path,
//! a wildcard). Properties: a branch URI stays on the target's scheme,
//! authority and base path; its path passes `check_path` (no reading of it
//! climbs); a value adds no path segment (a wildcard aside) and no query
//! parameter; and a valid incoming URI never fills into an invalid one.
//! Odd: the rest is `pattern\nbase\ntemplate\nincoming`, all four hostile;
//! nothing panics and a branch URI stays on the base's scheme and
//! authority.
#![no_main]

use std::sync::LazyLock;

use http::Uri;
use libfuzzer_sys::fuzz_target;
use palisade_core::path::check_path;
use palisade_fan_out::http::{RequestError, Route, Target};

const BASE: &str = "http://users.internal:8080/base/";

struct Fixed {
    target: Target,
    /// Segments of a branch path (`/base/...` split at `/`), `None` for a
    /// wildcard's (at least this many).
    segments: Option<usize>,
    min_segments: usize,
    /// Query parameters of a branch URI.
    query_pairs: Option<usize>,
}

static FIXED: LazyLock<Vec<Fixed>> = LazyLock::new(|| {
    let params = Route::new("/api/{tenant}/user/{id}").expect("a valid route");
    let files = Route::new("/files/{*rest}").expect("a valid route");
    let target =
        |route: &Route, template: &str| route.target(BASE, template).expect("a valid target");
    vec![
        Fixed {
            target: target(&params, "/t/{tenant}/u/{id}?full=1&x={query.x}"),
            segments: Some(6),
            min_segments: 6,
            query_pairs: Some(2),
        },
        Fixed {
            target: target(&params, "/search/{query.q}/results"),
            segments: Some(5),
            min_segments: 5,
            query_pairs: None,
        },
        Fixed {
            target: target(&files, "/static/{rest}").forward_query(true),
            segments: None,
            min_segments: 4,
            query_pairs: None,
        },
    ]
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        fixed(rest);
    } else {
        free(rest);
    }
});

fn fixed(data: &[u8]) {
    let Ok(incoming) = Uri::try_from(data) else {
        return;
    };
    for (i, fixed) in FIXED.iter().enumerate() {
        let out = match fixed.target.uri(&incoming) {
            Ok(out) => out,
            Err(RequestError::InvalidUri) => {
                panic!("target {i}: the valid URI {incoming} filled into an invalid one")
            }
            Err(_) => continue,
        };
        assert_eq!(
            out.scheme_str(),
            Some("http"),
            "target {i}: {incoming} -> {out}"
        );
        assert_eq!(
            out.authority().map(http::uri::Authority::as_str),
            Some("users.internal:8080"),
            "target {i}: {incoming} -> {out}"
        );
        let path = out.path();
        assert!(
            path.starts_with("/base/"),
            "target {i}: {incoming} -> {out}"
        );
        assert_eq!(check_path(path), Ok(()), "target {i}: {incoming} -> {out}");
        let segments = path.split('/').count();
        match fixed.segments {
            Some(n) => assert_eq!(segments, n, "target {i}: {incoming} -> {out}"),
            None => assert!(
                segments >= fixed.min_segments,
                "target {i}: {incoming} -> {out}"
            ),
        }
        if let Some(pairs) = fixed.query_pairs {
            let query = out.query().unwrap_or_default();
            assert_eq!(
                query.split('&').count(),
                pairs,
                "target {i}: {incoming} -> {out}"
            );
        }
    }
}

fn free(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (Some(pattern), Some(base), Some(template), Some(incoming)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Ok(route) = Route::new(pattern) else {
        return;
    };
    assert_eq!(route.pattern(), pattern);
    let Ok(target) = route.target(base, template) else {
        return;
    };
    let Ok(incoming) = incoming.parse::<Uri>() else {
        return;
    };
    let base: Uri = base.parse().expect("a target's base is a URI");
    if let Ok(out) = target.uri(&incoming) {
        assert_eq!(out.scheme(), base.scheme(), "{incoming} -> {out}");
        assert_eq!(out.authority(), base.authority(), "{incoming} -> {out}");
    }
}
