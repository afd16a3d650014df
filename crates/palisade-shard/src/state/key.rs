//! [`ShardKey`]: a key hashed once, the same way in every process.

use twox_hash::XxHash3_64;

/// The seed of the key hash. Part of the compatibility contract: changing it
/// would move every key.
const KEY_SEED: u64 = 0x7061_6c69_7361_6465; // "palisade"
/// The seed of the shard-name hash (a different stream from the keys').
const SHARD_SEED: u64 = 0x7368_6172_642d_6964; // "shard-id"

/// A request's shard key, hashed: what every scheme looks up.
///
/// The hash is XXH3-64 (a frozen, specified function, from the `twox-hash`
/// crate) with a fixed seed, never `RandomState`: a key maps to the same
/// shard in every process, on every machine, after every restart and in
/// every release of this crate (the tests pin known values).
///
/// Integers are keyed by their decimal text, so `ShardKey::from(7u64)`, the
/// path parameter `/users/7` and the header `x-user-id: 7` all land on the
/// same shard.
///
/// ```
/// use palisade_shard::ShardKey;
///
/// assert_eq!(ShardKey::from(7u64), ShardKey::from("7"));
/// assert_eq!(ShardKey::from(-3i64), ShardKey::new(b"-3"));
/// assert_ne!(ShardKey::from("7"), ShardKey::from("8"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey(u64);

impl ShardKey {
    /// The key of these bytes.
    #[inline]
    #[must_use]
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self(XxHash3_64::oneshot_with_seed(KEY_SEED, bytes.as_ref()))
    }

    /// A key whose hash is already known (for example a stored one). It is
    /// used as it is: give a well-mixed 64-bit value.
    #[must_use]
    pub const fn from_hash(hash: u64) -> Self {
        Self(hash)
    }

    /// The 64-bit hash.
    #[must_use]
    pub const fn hash(self) -> u64 {
        self.0
    }
}

/// The hash of a shard's name: where it sits on the ring and how it scores
/// in rendezvous.
pub(crate) fn shard_hash(name: &str) -> u64 {
    XxHash3_64::oneshot_with_seed(SHARD_SEED, name.as_bytes())
}

/// The murmur3 64-bit finalizer: a bijective mix with full avalanche.
#[inline]
pub(crate) const fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl From<&str> for ShardKey {
    #[inline]
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

impl From<&String> for ShardKey {
    #[inline]
    fn from(key: &String) -> Self {
        Self::new(key)
    }
}

impl From<String> for ShardKey {
    #[inline]
    fn from(key: String) -> Self {
        Self::new(key)
    }
}

impl From<&[u8]> for ShardKey {
    #[inline]
    fn from(key: &[u8]) -> Self {
        Self::new(key)
    }
}

/// Writes `n` in decimal at the end of `buf`, returning the digits.
fn decimal(mut n: u128, negative: bool, buf: &mut [u8; 40]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

macro_rules! unsigned_keys {
    ($($t:ty),*) => {$(
        impl From<$t> for ShardKey {
            /// The key of the integer's decimal text.
            #[inline]
            fn from(n: $t) -> Self {
                let mut buf = [0; 40];
                Self::new(decimal(n as u128, false, &mut buf))
            }
        }
    )*};
}

macro_rules! signed_keys {
    ($($t:ty),*) => {$(
        impl From<$t> for ShardKey {
            /// The key of the integer's decimal text.
            #[inline]
            fn from(n: $t) -> Self {
                let mut buf = [0; 40];
                Self::new(decimal(n.unsigned_abs() as u128, n < 0, &mut buf))
            }
        }
    )*};
}

unsigned_keys!(u8, u16, u32, u64, u128, usize);
signed_keys!(i8, i16, i32, i64, i128, isize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_hash_as_their_decimal_text() {
        assert_eq!(ShardKey::from(0u32), ShardKey::from("0"));
        assert_eq!(
            ShardKey::from(u64::MAX),
            ShardKey::from(u64::MAX.to_string())
        );
        assert_eq!(
            ShardKey::from(u128::MAX),
            ShardKey::from(u128::MAX.to_string())
        );
        assert_eq!(
            ShardKey::from(i64::MIN),
            ShardKey::from(i64::MIN.to_string())
        );
        assert_eq!(
            ShardKey::from(i128::MIN),
            ShardKey::from(i128::MIN.to_string())
        );
        assert_eq!(ShardKey::from(-1i8), ShardKey::from("-1"));
    }

    /// The hash is part of the contract: these values must never change, or
    /// every deployed map would move its keys. They are the reference C
    /// implementation's (libxxhash 0.8.1, `XXH3_64bits_withSeed`), so the
    /// function is XXH3 as specified, not merely this crate's version of it.
    #[test]
    fn the_hash_is_pinned_to_the_reference_xxh3() {
        assert_eq!(ShardKey::from("").hash(), 0x0c23_db99_9f8c_3f6d);
        assert_eq!(ShardKey::from("user-42").hash(), 0xb9eb_1a8a_a463_0a5f);
        assert_eq!(ShardKey::from(7u64).hash(), 0x993e_455a_88fe_342e);
        assert_eq!(shard_hash("users-0"), 0x269b_54ff_c88c_4ce1);
    }
}
