//! Trace context carried in message headers (W3C `traceparent`), and the
//! context a handler runs in, so what it publishes continues its trace and
//! keeps its correlation id.
//!
//! Palisade carries the trace with `tracing` alone: no OpenTelemetry
//! dependency. A published message gets a `traceparent` header (a child of
//! the message being handled, or a new trace); a consumer parses it, opens its
//! per-message span with `trace_id`, `span_id` and `parent_span_id` fields,
//! and runs the handler in a context whose span id is the parent of whatever
//! the handler publishes. A log or trace pipeline joins the hops on
//! `trace_id`. An application that uses `tracing-opentelemetry` can parent
//! its OpenTelemetry span on the same header ([`TraceContext::parse`]).

use std::fmt;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: the trace a message belongs to and the span that
/// published it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// A new trace (random ids), sampled.
    #[must_use]
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            flags: 0x01,
        }
    }

    /// A new span in the same trace, whose parent is `self`.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: nonzero_u64(),
            flags: self.flags,
        }
    }

    /// Parses a `traceparent` header value (`00-<32 hex>-<16 hex>-<2 hex>`);
    /// `None` for anything else (an all-zero id is invalid, as the spec says).
    ///
    /// Lowercase hex only, as the spec requires; a future version's value
    /// may carry more fields after the flags (`-…`), version `00` may not.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        // Read once per consumed message: one pass over fixed offsets, no
        // splitting, no integer parsing through `from_str_radix`.
        let b = value.trim().as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_value(&b[0..2])?;
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        let trace_id =
            (u128::from(hex_value(&b[3..19])?) << 64) | u128::from(hex_value(&b[19..35])?);
        let span_id = hex_value(&b[36..52])?;
        let flags = u8::try_from(hex_value(&b[53..55])?).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The trace id.
    #[must_use]
    pub const fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The span id.
    #[must_use]
    pub const fn span_id(&self) -> u64 {
        self.span_id
    }

    /// Whether the trace is sampled (flag `01`).
    #[must_use]
    pub const fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// The trace id as 32 lowercase hex digits.
    #[must_use]
    pub fn trace_id_hex(&self) -> String {
        let mut buf = [0; 32];
        let (high, low) = halves(self.trace_id);
        write_hex(&mut buf[..16], high);
        write_hex(&mut buf[16..], low);
        ascii(&buf).to_owned()
    }

    /// The span id as 16 lowercase hex digits.
    #[must_use]
    pub fn span_id_hex(&self) -> String {
        let mut buf = [0; 16];
        write_hex(&mut buf, self.span_id);
        ascii(&buf).to_owned()
    }

    /// The `traceparent` header value, formatted without `fmt`'s machinery
    /// (every published message gets one).
    pub(crate) fn header_value(&self) -> String {
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let (high, low) = halves(self.trace_id);
        write_hex(&mut buf[3..19], high);
        write_hex(&mut buf[19..35], low);
        write_hex(&mut buf[36..52], self.span_id);
        write_hex(&mut buf[53..55], u64::from(self.flags));
        ascii(&buf).to_owned()
    }
}

/// Each byte's value as a lowercase hex digit, `0xff` for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Each byte as two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 0xf]];
        i += 1;
    }
    table
};

/// The value of lowercase hex digits (at most 16), or `None` for any other
/// byte. No branch per digit: a bad one sets a high bit checked at the end.
#[inline]
fn hex_value(digits: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut bad = 0;
    for &d in digits {
        let n = HEX_VALUE[usize::from(d)];
        bad |= n;
        v = (v << 4) | u64::from(n & 0xf);
    }
    (bad & 0xf0 == 0).then_some(v)
}

/// Fills `out` (an even length, at most 16 bytes) with the low
/// `out.len()` hex digits of `v`, lowercase, zero-padded, two per byte.
#[inline]
fn write_hex(out: &mut [u8], v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.len() - out.len() / 2;
    for (pair, &byte) in out.chunks_exact_mut(2).zip(&bytes[skip..]) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
}

/// The high and low halves of a trace id.
#[allow(clippy::cast_possible_truncation)]
const fn halves(v: u128) -> (u64, u64) {
    ((v >> 64) as u64, v as u64)
}

fn ascii(buf: &[u8]) -> &str {
    std::str::from_utf8(buf).expect("hex digits are ASCII")
}

impl fmt::Display for TraceContext {
    /// The `traceparent` header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let v = fastrand::u64(..);
        if v != 0 {
            return v;
        }
    }
}

fn nonzero_u128() -> u128 {
    loop {
        let v = fastrand::u128(..);
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_header() {
        let root = TraceContext::new_root();
        let parsed = TraceContext::parse(&root.to_string()).unwrap();
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert!(child.sampled());
    }

    #[test]
    fn parses_the_spec_example_and_rejects_garbage() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = TraceContext::parse(tp).unwrap();
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(cx.to_string(), tp);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    /// The parser before it read fixed offsets: split on `-`, then
    /// `from_str_radix`.
    fn split_reference(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if flags.len() != 2 || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !(hex(version) && hex(trace) && hex(span) && hex(flags)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            flags,
        })
    }

    proptest::proptest! {
        /// Valid values, their mutations (a byte changed, cut, extended)
        /// and a future version's extra fields parse as splitting did.
        #[test]
        fn parses_like_splitting(
            trace_id in proptest::prelude::any::<u128>(),
            span_id in proptest::prelude::any::<u64>(),
            flags in proptest::prelude::any::<u8>(),
            version in proptest::sample::select(vec!["00", "01", "cc", "ff", "0g", "-0"]),
            at in 0usize..70,
            byte in proptest::sample::select(b"-0a9fgF \t".to_vec()),
            edit in 0u8..4,
            tail in proptest::sample::select(vec!["", "-", "-x", "-01-zz", "x"]),
        ) {
            let tc = TraceContext { trace_id, span_id, flags };
            let mut value = format!("{version}{}{tail}", &tc.to_string()[2..]).into_bytes();
            let at = at.min(value.len());
            match edit {
                0 if at < value.len() => value[at] = byte,
                1 => value.truncate(at),
                2 => value.insert(at, byte),
                _ => {}
            }
            let value = String::from_utf8(value).unwrap();
            proptest::prop_assert_eq!(TraceContext::parse(&value), split_reference(&value), "{:?}", value);
        }

        #[test]
        fn formats_like_fmt(
            trace_id in proptest::prelude::any::<u128>(),
            span_id in proptest::prelude::any::<u64>(),
            flags in proptest::prelude::any::<u8>(),
        ) {
            let tc = TraceContext { trace_id, span_id, flags };
            proptest::prop_assert_eq!(
                tc.to_string(),
                format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}")
            );
            proptest::prop_assert_eq!(tc.trace_id_hex(), format!("{trace_id:032x}"));
            proptest::prop_assert_eq!(tc.span_id_hex(), format!("{span_id:016x}"));
        }
    }
}
