//! Property tests of the schemes: balance, minimal movement on add and
//! remove, weighted shares. 100 000 keys per case.

use palisade_shard::{Scheme, ShardKey, ShardMap};
use proptest::prelude::*;

const KEYS: u64 = 100_000;

fn keys(salt: u64) -> impl Iterator<Item = ShardKey> {
    // Realistic keys: the decimal ids of users, offset per case.
    (0..KEYS).map(move |i| ShardKey::from(salt.wrapping_mul(1_000_003).wrapping_add(i)))
}

fn counts(map: &ShardMap, salt: u64) -> Vec<u64> {
    let mut counts = vec![0u64; map.len()];
    for key in keys(salt) {
        counts[map.owner(key)] += 1;
    }
    counts
}

fn max_over_mean(counts: &[u64]) -> f64 {
    let max = *counts.iter().max().unwrap() as f64;
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    max / mean
}

fn shard_names(prefix: &str, n: usize) -> Vec<(String, f64)> {
    (0..n).map(|i| (format!("{prefix}-{i}"), 1.0)).collect()
}

/// Enough virtual nodes for the ring to meet the balance bound: the spread
/// of a shard's arc falls as 1/sqrt(points).
const RING_VNODES: u32 = 2000;

fn map(scheme: Scheme, shards: &[(String, f64)]) -> ShardMap {
    ShardMap::new(
        scheme,
        RING_VNODES,
        shards.iter().map(|(n, w)| (n.as_str(), *w)),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Equal weights: the fullest shard holds at most 1.1 × the mean.
    #[test]
    fn equal_weights_are_balanced(n in 2usize..=24, prefix in "[a-z]{1,8}", salt in any::<u64>()) {
        let shards = shard_names(&prefix, n);
        for scheme in [Scheme::Rendezvous, Scheme::Ring, Scheme::Jump] {
            let ratio = max_over_mean(&counts(&map(scheme, &shards), salt));
            prop_assert!(ratio <= 1.1, "{scheme:?} with {n} shards: max/mean {ratio:.3}");
        }
    }

    /// Adding a shard moves about K/(n+1) keys, all to the new shard;
    /// removing one moves about K/n, all from the removed shard.
    #[test]
    fn changes_move_only_what_they_must(n in 2usize..=24, prefix in "[a-z]{1,8}", salt in any::<u64>()) {
        let shards = shard_names(&prefix, n);
        for scheme in [Scheme::Rendezvous, Scheme::Ring, Scheme::Jump] {
            let before = map(scheme, &shards);
            let added_name = format!("{prefix}-{n}");
            let after = before.with_shard(&added_name, 1.0).unwrap();
            let mut moved = 0u64;
            for key in keys(salt) {
                let (a, b) = (before.owner_name(key), after.owner_name(key));
                if a != b {
                    prop_assert_eq!(b, added_name.as_str(), "{:?}: a key moved between old shards", scheme);
                    moved += 1;
                }
            }
            let expected = KEYS as f64 / (n + 1) as f64;
            prop_assert!(
                (moved as f64 - expected).abs() <= 0.1 * expected,
                "{:?} add to {}: moved {} keys, expected about {:.0}", scheme, n, moved, expected
            );
            // The estimate reported to operators agrees.
            let share = before.moved_share(&after);
            prop_assert!((share - 1.0 / (n + 1) as f64).abs() <= 0.1 / (n + 1) as f64 + 0.01);

            // Remove a shard (jump: only the last can go).
            let victim = if scheme == Scheme::Jump { shards[n - 1].0.clone() } else { shards[n / 2].0.clone() };
            let smaller = before.without_shard(&victim).unwrap();
            let mut moved = 0u64;
            for key in keys(salt) {
                let (a, b) = (before.owner_name(key), smaller.owner_name(key));
                if a != b {
                    prop_assert_eq!(a, victim.as_str(), "{:?}: a key left a shard that stayed", scheme);
                    moved += 1;
                }
            }
            let expected = KEYS as f64 / n as f64;
            prop_assert!(
                (moved as f64 - expected).abs() <= 0.1 * expected,
                "{:?} remove from {}: moved {} keys, expected about {:.0}", scheme, n, moved, expected
            );
        }
    }

    /// Weighted shards get their weight's share, within a few percent.
    #[test]
    fn weights_set_the_shares(weights in prop::collection::vec(1u32..=8, 2..=8), salt in any::<u64>()) {
        let shards: Vec<(String, f64)> =
            weights.iter().enumerate().map(|(i, w)| (format!("w-{i}"), f64::from(*w))).collect();
        let total: f64 = shards.iter().map(|s| s.1).sum();
        for scheme in [Scheme::Rendezvous, Scheme::Ring] {
            let m = map(scheme, &shards);
            let counts = counts(&m, salt);
            for (i, (name, weight)) in shards.iter().enumerate() {
                let expected = weight / total;
                let got = counts[i] as f64 / KEYS as f64;
                prop_assert!(
                    (got - expected).abs() <= 0.05 * expected + 0.002,
                    "{:?}: {} (weight {}) got {:.4} of the keys, expected {:.4}", scheme, name, weight, got, expected
                );
                // And the map's own account of the shares agrees.
                prop_assert!((m.shares()[i] - expected).abs() <= 0.05 * expected);
            }
        }
    }

    /// Re-weighting moves keys only between the re-weighted shard and the
    /// others, in the direction of the change.
    #[test]
    fn reweighting_moves_keys_one_way(n in 2usize..=12, salt in any::<u64>()) {
        let shards = shard_names("rw", n);
        for scheme in [Scheme::Rendezvous, Scheme::Ring] {
            let before = map(scheme, &shards);
            let heavier = before.with_weight("rw-0", 2.0).unwrap();
            for key in keys(salt).take(20_000) {
                let (a, b) = (before.owner_name(key), heavier.owner_name(key));
                if a != b {
                    prop_assert_eq!(b, "rw-0", "{:?}: a heavier shard only gains keys", scheme);
                }
            }
        }
    }
}
