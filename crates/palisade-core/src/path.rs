//! Refusing request paths that could climb out of where they were sent.
//!
//! A proxy or a fan-out forwards a path (or a value it puts into one) to a
//! server it does not control. Whatever that server, or anything between,
//! does to the path (decodes `%2F` into `/`, reads `\` as `/`, drops
//! `;jsessionid=...` path parameters as Tomcat and Spring do, decodes twice,
//! stops at a NUL byte, accepts an overlong UTF-8 `.`), the path must not
//! turn into one with a `.` or `..` segment, which would resolve to a path
//! the route never meant to expose. [`check_path`] decides by decoding, then
//! checking: it reads the path as each such server could and refuses it if
//! any reading climbs.
//!
//! ```
//! use palisade_core::path::{check_path, UnsafePath};
//!
//! assert_eq!(check_path("/users/7/orders"), Ok(()));
//! assert_eq!(check_path("/files/a%2Fb.txt"), Ok(())); // an encoded slash that climbs nowhere
//! for climbing in ["/a/../admin", "/a/..;/admin", "/a/%2e%2e/admin", "/a/..%2F..%2Fadmin"] {
//!     assert_eq!(check_path(climbing), Err(UnsafePath::DotSegment), "{climbing}");
//! }
//! assert_eq!(check_path("/a/..%5C..%5Cadmin"), Err(UnsafePath::DotSegment));
//! assert_eq!(check_path("/a/b%5Cc"), Err(UnsafePath::Backslash));
//! ```
//!
//! Both users in this workspace call it: the gateway's proxy route refuses
//! such a request path with `400`, and the fan-out's HTTP targets refuse a
//! path parameter or query value that would put one into a branch's path.

use std::error::Error;
use std::fmt;

use percent_encoding::percent_decode;

/// How many times a path is decoded, at most, each reading checked: a server
/// that decodes twice reads `%252e` as `.`. A path still holding escapes
/// after this many decodings is refused.
const MAX_DECODINGS: usize = 3;

/// Why [`check_path`] refused a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnsafePath {
    /// A segment is `.` or `..` in some reading of the path: raw,
    /// percent-encoded (`%2e%2e`, once or more), with path parameters
    /// (`..;`, `..;jsessionid=x`), made by an encoded separator (`..%2F`,
    /// `..%5C`), or followed by spaces only (`.. `, which Windows reads as
    /// `..`).
    DotSegment,
    /// A backslash, raw or encoded (`%5C`): some servers read it as `/`.
    Backslash,
    /// A NUL byte (`%00`): servers written in C read it as the path's end.
    NulByte,
    /// An overlong UTF-8 encoding (`%C0%AE` for `.`), which lenient decoders
    /// read as the ASCII character it spells.
    OverlongUtf8,
    /// Escapes left after decoding the path several times.
    TooManyEncodings,
}

impl UnsafePath {
    /// A short kebab-case label: `dot-segment`, `backslash`, `nul-byte`,
    /// `overlong-utf8`, `too-many-encodings` (the gateway's problem type).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DotSegment => "dot-segment",
            Self::Backslash => "backslash",
            Self::NulByte => "nul-byte",
            Self::OverlongUtf8 => "overlong-utf8",
            Self::TooManyEncodings => "too-many-encodings",
        }
    }
}

impl fmt::Display for UnsafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DotSegment => {
                "the path has a `.` or `..` segment (raw, percent-encoded, with path parameters or made by an encoded separator)"
            }
            Self::Backslash => "the path has a backslash (raw or percent-encoded)",
            Self::NulByte => "the path has a NUL byte",
            Self::OverlongUtf8 => "the path has an overlong UTF-8 encoding",
            Self::TooManyEncodings => "the path is percent-encoded too many times over",
        })
    }
}

impl Error for UnsafePath {}

/// Checks a path as it will be forwarded (still percent-encoded), or a value
/// that will be put into one: `Ok` if no reading of it has a `.` or `..`
/// segment, a backslash, a NUL byte or an overlong UTF-8 encoding.
///
/// The path is checked raw, then decoded and checked again, up to three
/// decodings. In each reading, segments are split at `/` and `\`, and a
/// segment's path parameters (from its first `;`) and trailing spaces are
/// ignored; what is left must not be `.` or `..`. A segment that only
/// contains dots among other characters (`a.b`, `...`, `.hidden`, `..x`) is
/// an ordinary name, and an encoded slash that makes no dot segment
/// (`a%2Fb`) is accepted.
///
/// A path with no `.`, `%`, `\` or NUL at all (most of them) is accepted
/// after one pass over its bytes. Nothing is allocated, except to decode a
/// path that is percent-encoded twice over.
///
/// # Errors
///
/// The first [`UnsafePath`] reason found.
pub fn check_path(path: &str) -> Result<(), UnsafePath> {
    let raw = path.as_bytes();
    // A raw NUL needs no `.`, `%` or `\` to be refused.
    if !raw.iter().any(|&b| matches!(b, b'.' | b'%' | b'\\' | 0)) {
        return Ok(());
    }
    // Each reading is checked as it is decoded, without a copy; a copy of a
    // reading is made only when it holds escapes to decode once more (a
    // path encoded twice).
    let mut escapes = check_reading(raw.iter().copied())?;
    let mut kept: Option<Vec<u8>> = None;
    let mut decodings = 0;
    while escapes {
        if decodings == MAX_DECODINGS {
            return Err(UnsafePath::TooManyEncodings);
        }
        decodings += 1;
        let source = kept.as_deref().unwrap_or(raw);
        escapes = check_reading(percent_decode(source))?;
        if escapes {
            let next: Vec<u8> = percent_decode(source).collect();
            kept = Some(next);
        }
    }
    Ok(())
}

/// Checks one reading of the path, byte by byte; `Ok(true)` if it holds
/// escapes (`%` and two hex digits) that a further decoding would decode.
/// A dot segment is reported before the other reasons.
fn check_reading(bytes: impl Iterator<Item = u8>) -> Result<bool, UnsafePath> {
    let mut segment = Segment::default();
    let (mut dot_segment, mut backslash, mut nul, mut overlong, mut escapes) =
        (false, false, false, false, false);
    // The two bytes before the current one.
    let (mut before, mut last) = (0_u8, 0_u8);
    for b in bytes {
        match b {
            b'/' => dot_segment |= segment.end(),
            b'\\' => {
                dot_segment |= segment.end();
                backslash = true;
            }
            _ => segment.push(b),
        }
        nul |= b == 0;
        // Overlong UTF-8: a lead byte `C0` or `C1` (always overlong), `E0`
        // followed by `80..=9F`, `F0` followed by `80..=8F`.
        overlong |= matches!(b, 0xC0 | 0xC1)
            || (last == 0xE0 && (0x80..=0x9F).contains(&b))
            || (last == 0xF0 && (0x80..=0x8F).contains(&b));
        escapes |= before == b'%' && last.is_ascii_hexdigit() && b.is_ascii_hexdigit();
        (before, last) = (last, b);
    }
    dot_segment |= segment.end();
    if dot_segment {
        Err(UnsafePath::DotSegment)
    } else if backslash {
        Err(UnsafePath::Backslash)
    } else if nul {
        Err(UnsafePath::NulByte)
    } else if overlong {
        Err(UnsafePath::OverlongUtf8)
    } else {
        Ok(escapes)
    }
}

/// One segment of a reading, fed byte by byte: is it `.` or `..` once its
/// path parameters (from its first `;`) and trailing spaces are dropped?
#[derive(Default)]
struct Segment {
    /// Dots so far, while nothing else was seen.
    dots: u8,
    /// A space after the dots: only more spaces may follow.
    spaces: bool,
    /// Anything that makes it an ordinary name.
    other: bool,
    /// Past the first `;`: the rest is parameters.
    params: bool,
}

impl Segment {
    fn push(&mut self, b: u8) {
        if self.params {
            return;
        }
        match b {
            b';' => self.params = true,
            b'.' if !self.spaces && !self.other && self.dots < 2 => self.dots += 1,
            b' ' if self.dots > 0 && !self.other => self.spaces = true,
            _ => self.other = true,
        }
    }

    /// `true` if the segment just ended is `.` or `..`; starts the next one.
    fn end(&mut self) -> bool {
        let dot = self.dots > 0 && !self.other;
        *self = Self::default();
        dot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spellings of a climb that servers and proxies have been caught out by
    /// (Tomcat and Spring path parameters, IIS and Windows backslashes,
    /// double decoding, NUL truncation, overlong UTF-8).
    const REFUSED: &[(&str, UnsafePath)] = &[
        ("/a/..", UnsafePath::DotSegment),
        ("/a/.", UnsafePath::DotSegment),
        ("/a/../admin", UnsafePath::DotSegment),
        ("/a/./b", UnsafePath::DotSegment),
        ("..", UnsafePath::DotSegment),
        ("/a//../x", UnsafePath::DotSegment),
        ("/a/..;", UnsafePath::DotSegment),
        ("/a/..;/admin", UnsafePath::DotSegment),
        ("/a/..;jsessionid=x/admin", UnsafePath::DotSegment),
        ("/a/.;x/b", UnsafePath::DotSegment),
        ("/a/%2e%2e/admin", UnsafePath::DotSegment),
        ("/a/%2E%2E/admin", UnsafePath::DotSegment),
        ("/a/.%2e/x", UnsafePath::DotSegment),
        ("/a/%2e./x", UnsafePath::DotSegment),
        ("/a/%2E", UnsafePath::DotSegment),
        ("/a/%2e%2e%3b/admin", UnsafePath::DotSegment),
        ("..%2F..%2Fadmin", UnsafePath::DotSegment),
        ("/a/..%2F..%2Fadmin", UnsafePath::DotSegment),
        ("/a/..%2f..%2fadmin", UnsafePath::DotSegment),
        ("%2e%2e%2fadmin", UnsafePath::DotSegment),
        ("/a/x%2F..%2Fadmin", UnsafePath::DotSegment),
        ("..%5C..%5Cadmin", UnsafePath::DotSegment),
        ("/a/..%5c..%5cadmin", UnsafePath::DotSegment),
        ("/a/..\\..\\admin", UnsafePath::DotSegment),
        ("/a/%252e%252e/admin", UnsafePath::DotSegment),
        ("/a/%252e%252e%252fadmin", UnsafePath::DotSegment),
        ("/a/%25252e%25252e/admin", UnsafePath::DotSegment),
        ("/a/..%20/admin", UnsafePath::DotSegment),
        ("/a/b\\c", UnsafePath::Backslash),
        ("/a/b%5Cc", UnsafePath::Backslash),
        ("/a/b%255Cc", UnsafePath::Backslash),
        ("/a/..%00/admin", UnsafePath::NulByte),
        ("/a/x%00.txt", UnsafePath::NulByte),
        // No `.`, `%` or `\` to send it down the slow path (found by the
        // `check_path` fuzz target).
        ("/a/x\0y", UnsafePath::NulByte),
        ("\0", UnsafePath::NulByte),
        ("/a/%c0%ae%c0%ae/admin", UnsafePath::OverlongUtf8),
        ("/a/%C0%AF", UnsafePath::OverlongUtf8),
        ("/a/%e0%80%ae", UnsafePath::OverlongUtf8),
        ("/a/%2525252e%2525252e/x", UnsafePath::TooManyEncodings),
    ];

    /// Paths that only look like a climb: dots in names, escapes that make
    /// no dot segment, literal percent signs.
    const ACCEPTED: &[&str] = &[
        "/",
        "",
        "/users/7/orders",
        "/a/.../x",
        "/a/.hidden",
        "/a/x..",
        "/a/..x",
        "/a/a.b",
        "/a/%2e%2e%2e",
        "/a/%2ex",
        "/a/%2",
        "/a/%zz",
        "/a/100%",
        "/a/%2f..x",
        "/a/a%2Fb",
        "/a/7%2F8",
        "/a/users?x=..",
        "/a/x;..",
        "/a/%25",
        "/a/caf%C3%A9",
        "/a/%E2%82%AC",
        "/a/ /b",
    ];

    #[test]
    fn every_spelling_of_a_climb_is_refused() {
        for (path, reason) in REFUSED {
            assert_eq!(check_path(path), Err(*reason), "{path}");
            assert_eq!(model(path), Err(*reason), "the model, {path}");
        }
    }

    #[test]
    fn names_that_only_look_like_a_climb_are_accepted() {
        for path in ACCEPTED {
            assert_eq!(check_path(path), Ok(()), "{path}");
            assert_eq!(model(path), Ok(()), "the model, {path}");
        }
    }

    /// The gateway's own table from when it had its own check: every path it
    /// refused is refused, every one it let through still passes.
    #[test]
    fn the_gateways_earlier_cases_hold() {
        for bad in [
            "/api/user/../../admin/chaos",
            "/api/user/..",
            "/api/user/./users/1",
            "/api/user/users/.",
            "/api/user/%2e%2e/%2E%2E/admin",
            "/api/user/%2E",
            "/api/user/.%2e/x",
            "/api/user/%2e./x",
            "/api/user//../x",
        ] {
            assert_eq!(check_path(bad), Err(UnsafePath::DotSegment), "{bad}");
        }
        for ok in [
            "/api/user/users/1",
            "/api/user/a.b",
            "/api/user/.../x",
            "/api/user/.hidden",
            "/api/user/x..",
            "/api/user/%2e%2e%2e",
            "/api/user/%2ex",
            "/api/user/%2",
            "/api/user/%",
            "/api/user/%2f..x",
            "/api/user/users?x=..",
            "/",
            "",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(UnsafePath::DotSegment.as_str(), "dot-segment");
        assert!(UnsafePath::Backslash.to_string().contains("backslash"));
        assert!(!UnsafePath::NulByte.to_string().ends_with('.'));
    }

    /// The check written the plain way (each reading decoded into a buffer,
    /// split into segments): the model the streaming check must agree with.
    fn model(path: &str) -> Result<(), UnsafePath> {
        fn dot(segment: &[u8]) -> bool {
            let name = segment.split(|&b| b == b';').next().unwrap_or_default();
            match name.iter().rposition(|&b| b != b' ') {
                Some(last) => matches!(&name[..=last], b"." | b".."),
                None => false,
            }
        }
        let mut reading = path.as_bytes().to_vec();
        for decodings in 0.. {
            if reading.split(|&b| b == b'/' || b == b'\\').any(dot) {
                return Err(UnsafePath::DotSegment);
            }
            if reading.contains(&b'\\') {
                return Err(UnsafePath::Backslash);
            }
            if reading.contains(&0) {
                return Err(UnsafePath::NulByte);
            }
            let overlong = reading.windows(2).any(|w| {
                matches!(w[0], 0xC0 | 0xC1)
                    || (w[0] == 0xE0 && (0x80..=0x9F).contains(&w[1]))
                    || (w[0] == 0xF0 && (0x80..=0x8F).contains(&w[1]))
            }) || reading.last().is_some_and(|b| matches!(b, 0xC0 | 0xC1));
            if overlong {
                return Err(UnsafePath::OverlongUtf8);
            }
            let decoded: Vec<u8> = percent_decode(&reading).collect();
            if decoded.len() == reading.len() {
                return Ok(());
            }
            if decodings == MAX_DECODINGS {
                return Err(UnsafePath::TooManyEncodings);
            }
            reading = decoded;
        }
        unreachable!("the loop returns")
    }

    proptest::proptest! {
        /// The streaming check and the plain model agree on every path.
        #[test]
        fn agrees_with_the_plain_model(
            path in "[./%;\\\\ a2345eEfFcC0-9]{0,28}"
        ) {
            proptest::prop_assert_eq!(check_path(&path), model(&path), "{}", path);
        }

        /// Never panics, and anything it accepts has no dot segment however
        /// a server splits and decodes it.
        #[test]
        fn accepted_paths_never_climb(path in "[a-zA-Z0-9./%;\\\\ 2eEfFcC5]{0,24}") {
            if check_path(&path).is_ok() {
                let mut reading = path.as_bytes().to_vec();
                for _ in 0..3 {
                    let climbs = reading
                        .split(|&b| b == b'/' || b == b'\\')
                        .any(|s| {
                            let s = s.split(|&b| b == b';').next().unwrap_or_default();
                            s == b"." || s == b".."
                        });
                    proptest::prop_assert!(!climbs, "{path} reads as {reading:?}");
                    reading = percent_decode(&reading).collect();
                }
            }
        }
    }
}
