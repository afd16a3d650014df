//! The header codecs and the choice of a request's deadline: pure functions,
//! no I/O, no clock (the instant is passed in).

use std::time::Duration;

use http::HeaderValue;
use palisade_core::Deadline;
use tokio::time::Instant;

/// The largest value of a `grpc-timeout` header: 8 digits.
const GRPC_MAX_VALUE: u64 = 99_999_999;

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`), as the gRPC specification writes it. Anything else is
/// `None`, and the header is ignored.
///
/// ```
/// use http::HeaderValue;
/// use palisade_deadline::http::parse_grpc_timeout;
/// use std::time::Duration;
///
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("250m")), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("1H")), Some(Duration::from_secs(3600)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("123456789S")), None); // 9 digits
/// ```
#[must_use]
pub fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `left` as a `grpc-timeout` value in the finest unit that holds it
/// in 8 digits, rounded down, so a callee is never told it has more time
/// than the caller gives it (`1500ms` is `1500000u`).
///
/// ```
/// use palisade_deadline::http::grpc_timeout_value;
/// use std::time::Duration;
///
/// assert_eq!(grpc_timeout_value(Duration::from_millis(1500)), "1500000u");
/// assert_eq!(grpc_timeout_value(Duration::from_secs(7200)), "7200000m");
/// ```
#[must_use]
pub fn grpc_timeout_value(left: Duration) -> HeaderValue {
    let nanos = left.as_nanos();
    let units: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    let (value, unit) = units
        .iter()
        .find_map(|&(per, unit)| {
            let v = nanos / per;
            (v <= u128::from(GRPC_MAX_VALUE)).then_some((v, unit))
        })
        // More than 99 999 999 hours: say the most the header can.
        .unwrap_or((u128::from(GRPC_MAX_VALUE), b'H'));
    let mut buf = [0u8; 9];
    let len = write_digits(&mut buf, u64::try_from(value).unwrap_or(GRPC_MAX_VALUE));
    buf[len] = unit;
    HeaderValue::from_bytes(&buf[..=len]).unwrap_or_else(|_| HeaderValue::from_static("0n"))
}

/// Parses a whole number of milliseconds (the HTTP header's value). Anything
/// else is `None`.
#[must_use]
pub fn parse_timeout_ms(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().map(Duration::from_millis)
}

/// Formats `left` as whole milliseconds, rounded down.
#[must_use]
pub fn timeout_ms_value(left: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
}

/// Writes `n` in decimal at the start of `buf`; returns the length.
fn write_digits(buf: &mut [u8], mut n: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = &tmp[i..];
    buf[..digits.len()].copy_from_slice(digits);
    digits.len()
}

/// The deadline a request gets: the earliest of the one it carries, the
/// ones its headers announce (already parsed, relative to `now`) and `now +
/// budget`. `None` when there is none of them.
#[must_use]
pub(crate) fn resolve(
    now: Instant,
    carried: Option<Deadline>,
    announced: [Option<Duration>; 2],
    budget: Option<Duration>,
) -> Option<Deadline> {
    let mut deadline = carried;
    for left in announced.into_iter().chain([budget]).flatten() {
        let d = Deadline::after_from(now, left);
        deadline = Some(d.earliest(deadline));
    }
    deadline
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(
            parse_grpc_timeout(&hv("2H")),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            parse_grpc_timeout(&hv("3M")),
            Some(Duration::from_secs(180))
        );
        assert_eq!(parse_grpc_timeout(&hv("4S")), Some(Duration::from_secs(4)));
        assert_eq!(
            parse_grpc_timeout(&hv("5m")),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            parse_grpc_timeout(&hv("6u")),
            Some(Duration::from_micros(6))
        );
        assert_eq!(parse_grpc_timeout(&hv("7n")), Some(Duration::from_nanos(7)));
        assert_eq!(
            parse_grpc_timeout(&hv("99999999H")),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in [
            "",
            "S",
            "1",
            "1s",
            "-1S",
            "1.5S",
            "123456789n",
            " 1S",
            "1 S",
        ] {
            assert_eq!(parse_grpc_timeout(&hv(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn grpc_timeout_format_is_the_finest_unit_rounded_down() {
        assert_eq!(grpc_timeout_value(Duration::from_nanos(1)), "1n");
        assert_eq!(grpc_timeout_value(Duration::ZERO), "0n");
        assert_eq!(grpc_timeout_value(Duration::from_millis(99)), "99000000n");
        assert_eq!(grpc_timeout_value(Duration::from_millis(100)), "100000u");
        assert_eq!(
            grpc_timeout_value(Duration::from_nanos(100_000_999)),
            "100000u"
        );
        assert_eq!(grpc_timeout_value(Duration::MAX), "99999999H");
    }

    #[test]
    fn milliseconds() {
        assert_eq!(
            parse_timeout_ms(&hv("250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_timeout_ms(&hv(" 0 ")), Some(Duration::ZERO));
        for bad in ["", "-1", "1.5", "1e3", "soon", "99999999999999999999"] {
            assert_eq!(parse_timeout_ms(&hv(bad)), None, "{bad:?}");
        }
        assert_eq!(timeout_ms_value(Duration::from_micros(1999)), "1");
    }

    #[test]
    fn resolve_takes_the_earliest() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(resolve(now, None, [None, None], None), None);
        let d = resolve(now, None, [None, None], Some(ms(100))).unwrap();
        assert_eq!(d.remaining_at(now), ms(100));
        let d = resolve(now, None, [Some(ms(40)), Some(ms(60))], Some(ms(100))).unwrap();
        assert_eq!(d.remaining_at(now), ms(40));
        let carried = Deadline::after_from(now, ms(10));
        let d = resolve(now, Some(carried), [Some(ms(40)), None], Some(ms(100))).unwrap();
        assert_eq!(d, carried);
        let d = resolve(now, None, [None, Some(ms(500))], Some(ms(100))).unwrap();
        assert_eq!(
            d.remaining_at(now),
            ms(100),
            "the budget caps a caller's header"
        );
    }

    proptest! {
        #[test]
        fn grpc_timeout_round_trips_within_its_unit(nanos in 0u64..u64::MAX) {
            let left = Duration::from_nanos(nanos);
            let value = grpc_timeout_value(left);
            let back = parse_grpc_timeout(&value).expect("formatted values parse");
            prop_assert!(back <= left, "never more time than left: {back:?} > {left:?}");
            // Within one unit of the format chosen, which holds at least
            // 10^5 of them whenever it is coarser than a nanosecond.
            prop_assert!(left - back <= left / 100_000);
        }

        #[test]
        fn arbitrary_values_never_panic(bytes in proptest::collection::vec(32u8..127, 0..24)) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let _ = parse_grpc_timeout(&v);
                let _ = parse_timeout_ms(&v);
            }
        }
    }
}
