//! `palisade_core::http::parse_retry_after` on any header value.
//!
//! Properties: it never panics; delta-seconds (digits only, spaces around)
//! give exactly that many seconds, never wrapped or cut, or nothing when
//! they overflow a `u64`; an HTTP-date gives the time from `now` to it (zero
//! when past), which is a representable instant on the system clock and on
//! tokio's; anything else gives nothing. A delta-seconds value may be past
//! any clock (`18446744073709551615`): that is the header's own reading, and
//! callers add it with `checked_add` (the retry layer then stops with
//! `RetryAfterTooLong`), so it is not held to the last property.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use palisade_core::http::parse_retry_after;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    // 2023-11-14T22:13:20Z, and the epoch itself.
    for now in [UNIX_EPOCH + Duration::from_secs(1_700_000_000), UNIX_EPOCH] {
        let got = parse_retry_after(&value, now);
        let Some(delay) = got else { continue };
        let text = value.to_str().expect("a parsed value is text").trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let secs: u64 = text.parse().expect("digits that parsed");
            assert_eq!(delay, Duration::from_secs(secs), "{text:?}");
            continue;
        }
        let at = httpdate::parse_http_date(text).expect("a date, if not digits");
        let want = at.duration_since(now).unwrap_or(Duration::ZERO);
        assert_eq!(delay, want, "{text:?}");
        assert!(
            now.checked_add(delay).is_some(),
            "{value:?} gives {delay:?}, past the end of the system clock"
        );
        assert!(
            tokio::time::Instant::now().checked_add(delay).is_some(),
            "{value:?} gives {delay:?}, past the end of tokio's clock"
        );
    }
});
