//! The shared tier's encoding of an HTTP entry: a small length-prefixed
//! binary layout. `http`'s types have no serde support, and a format crate
//! for a status, a header list and a body would add more than it saves.
//!
//! ```text
//! 1 (version) | 0 (response) | status u16 | http version u8 | headers u32
//!     | (name len u16 | name | value len u32 | value)* | body len u64 | body
//! 1 (version) | 1 (vary) | names u32 | (name len u16 | name)*
//! ```
//! Integers are big-endian. Anything else decodes to `None` (a miss).

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode, Version};

use super::{CachedResponse, HttpValue};

const FORMAT: u8 = 1;

fn version_code(v: Version) -> u8 {
    match v {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 2,
    }
}

fn version_of(code: u8) -> Option<Version> {
    Some(match code {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        2 => Version::HTTP_11,
        3 => Version::HTTP_2,
        4 => Version::HTTP_3,
        _ => return None,
    })
}

pub(super) fn encode(value: &HttpValue) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(FORMAT);
    match value {
        HttpValue::Response(r) => {
            out.push(0);
            out.extend_from_slice(&r.status.as_u16().to_be_bytes());
            out.push(version_code(r.version));
            let count = u32::try_from(r.headers.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for (name, value) in r.headers.iter().take(count as usize) {
                let name = name.as_str().as_bytes();
                out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(name);
                out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(value.as_bytes());
            }
            out.extend_from_slice(&(r.body.len() as u64).to_be_bytes());
            out.extend_from_slice(&r.body);
        }
        HttpValue::Vary(names) => {
            out.push(1);
            out.extend_from_slice(&u32::try_from(names.len()).unwrap_or(0).to_be_bytes());
            for name in names {
                let name = name.as_str().as_bytes();
                out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(name);
            }
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
}

pub(super) fn decode(bytes: &[u8]) -> Option<HttpValue> {
    let mut r = Reader(bytes);
    if r.u8()? != FORMAT {
        return None;
    }
    let value = match r.u8()? {
        0 => {
            let status = StatusCode::from_u16(r.u16()?).ok()?;
            let version = version_of(r.u8()?)?;
            let count = r.u32()? as usize;
            let mut headers = HeaderMap::with_capacity(count.min(128));
            for _ in 0..count {
                let len = usize::from(r.u16()?);
                let name = HeaderName::from_bytes(r.take(len)?).ok()?;
                let len = r.u32()? as usize;
                let value = HeaderValue::from_bytes(r.take(len)?).ok()?;
                headers.append(name, value);
            }
            let len = usize::try_from(r.u64()?).ok()?;
            let body = Bytes::copy_from_slice(r.take(len)?);
            let etag = headers::HeaderMapExt::typed_get::<headers::ETag>(&headers);
            HttpValue::Response(CachedResponse {
                status,
                version,
                headers,
                body,
                etag,
            })
        }
        1 => {
            let count = r.u32()? as usize;
            let mut names = Vec::with_capacity(count.min(64));
            for _ in 0..count {
                let len = usize::from(r.u16()?);
                names.push(HeaderName::from_bytes(r.take(len)?).ok()?);
            }
            HttpValue::Vary(names.into_boxed_slice())
        }
        _ => return None,
    };
    r.0.is_empty().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_and_a_marker_round_trip() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ETAG, HeaderValue::from_static("\"v1\""));
        headers.append(http::header::VARY, HeaderValue::from_static("accept"));
        headers.append(
            http::header::VARY,
            HeaderValue::from_static("accept-language"),
        );
        let value = HttpValue::Response(CachedResponse {
            status: StatusCode::CREATED,
            version: Version::HTTP_2,
            etag: headers::HeaderMapExt::typed_get(&headers),
            headers,
            body: Bytes::from_static(b"hello"),
        });
        let HttpValue::Response(back) = decode(&encode(&value)).unwrap() else {
            panic!("a response")
        };
        let HttpValue::Response(orig) = &value else {
            unreachable!()
        };
        assert_eq!(back.status, orig.status);
        assert_eq!(back.version, orig.version);
        assert_eq!(back.headers, orig.headers);
        assert_eq!(back.body, orig.body);
        assert_eq!(back.etag, orig.etag);

        let marker = HttpValue::Vary(vec![http::header::ACCEPT].into_boxed_slice());
        let HttpValue::Vary(names) = decode(&encode(&marker)).unwrap() else {
            panic!("a marker")
        };
        assert_eq!(&*names, &[http::header::ACCEPT]);
    }

    #[test]
    fn garbage_and_truncation_decode_to_nothing() {
        assert!(decode(b"").is_none());
        assert!(decode(b"\x02\x00").is_none());
        let full = encode(&HttpValue::Vary(
            vec![http::header::ACCEPT].into_boxed_slice(),
        ));
        for cut in 0..full.len() {
            assert!(decode(&full[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = full;
        longer.push(0);
        assert!(decode(&longer).is_none());
    }
}
