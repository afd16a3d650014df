//! `palisade_core::path::check_path` on any path.
//!
//! Properties: it never panics; it agrees with a plain model (every reading,
//! raw and decoded up to three times, split at `/` and `\`, parameters from
//! `;` and trailing spaces dropped, must have no `.` or `..` segment, no
//! backslash, no NUL, no overlong UTF-8; escapes left after three decodings
//! are refused); and a path it accepts has no dot segment in any reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::path::{UnsafePath, check_path};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let got = check_path(path);
    assert_eq!(
        got,
        model(path.as_bytes()),
        "check_path and the model differ on {path:?}"
    );
    if got.is_ok() {
        let mut reading = path.as_bytes().to_vec();
        for _ in 0..=3 {
            assert!(
                !reading.split(|&b| b == b'/' || b == b'\\').any(is_dot),
                "accepted {path:?}, which reads as {:?}",
                String::from_utf8_lossy(&reading)
            );
            assert!(!reading.contains(&0), "accepted {path:?} with a NUL byte");
            reading = decode(&reading);
        }
    }
});

/// A segment that is `.` or `..` once its parameters (from the first `;`)
/// and trailing spaces are dropped.
fn is_dot(segment: &[u8]) -> bool {
    let name = segment.split(|&b| b == b';').next().unwrap_or_default();
    let end = name.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    matches!(&name[..end], b"." | b"..")
}

/// Percent-decoding written out: `%` and two hex digits make a byte.
fn decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn model(path: &[u8]) -> Result<(), UnsafePath> {
    let mut reading = path.to_vec();
    for decodings in 0..=3 {
        if reading.split(|&b| b == b'/' || b == b'\\').any(is_dot) {
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
        if !has_escape(&reading) {
            return Ok(());
        }
        if decodings == 3 {
            return Err(UnsafePath::TooManyEncodings);
        }
        reading = decode(&reading);
    }
    unreachable!("the loop returns")
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}
