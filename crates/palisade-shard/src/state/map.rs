//! [`ShardMap`]: which shard owns a key, under each scheme. Pure and
//! synchronous; every change builds a new map.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::error::{MapError, MapErrorKind};
use crate::settings::{MAX_RING_POINTS, MAX_SHARDS, MAX_VIRTUAL_NODES, MAX_WEIGHT, Scheme};
use crate::state::key::{ShardKey, mix, shard_hash};

/// Keys sampled to estimate the share of the key space a change moves.
pub const MOVE_SAMPLES: u64 = 16_384;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// One shard as the map sees it: a name and a weight.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardSpec {
    name: Arc<str>,
    weight: f64,
    hash: u64,
}

impl ShardSpec {
    /// The shard's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shard's name, shared.
    #[must_use]
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The shard's weight (relative; 1.0 by default).
    #[must_use]
    pub const fn weight(&self) -> f64 {
        self.weight
    }
}

#[derive(Clone, Default)]
struct Ring {
    /// Point positions, ascending.
    points: Box<[u64]>,
    /// The shard index owning each point.
    owners: Box<[u32]>,
}

/// Which shard owns each key: a list of named, weighted shards and the
/// lookup structure of its [`Scheme`].
///
/// A map is immutable: [`with_shard`](Self::with_shard),
/// [`without_shard`](Self::without_shard) and
/// [`with_weight`](Self::with_weight) build the next one. Lookups never
/// allocate. The assignment depends only on the shards' names and weights
/// (and, for jump, their order), never on the process: two processes with
/// the same shards agree on every key.
///
/// ```
/// use palisade_shard::{Scheme, ShardKey, ShardMap};
///
/// let map = ShardMap::new(Scheme::Rendezvous, 1000, [("a", 1.0), ("b", 1.0), ("c", 1.0)])?;
/// let owner = map.owner_name(ShardKey::from(42u64));
/// // Adding a shard moves only the keys the new shard takes.
/// let bigger = map.with_shard("d", 1.0)?;
/// let new_owner = bigger.owner_name(ShardKey::from(42u64));
/// assert!(new_owner == owner || new_owner == "d");
/// # Ok::<(), palisade_shard::error::MapError>(())
/// ```
#[derive(Clone)]
pub struct ShardMap {
    scheme: Scheme,
    virtual_nodes: u32,
    shards: Box<[ShardSpec]>,
    /// Every weight is the same: rendezvous compares integer scores.
    uniform: bool,
    ring: Ring,
}

fn check_weight(name: &str, weight: f64, scheme: Scheme) -> Result<(), MapError> {
    if !(weight > 0.0 && weight <= MAX_WEIGHT) {
        return Err(MapError::new(
            MapErrorKind::InvalidWeight,
            Some(name),
            format!("weight must be in (0, {MAX_WEIGHT}], got {weight}"),
        ));
    }
    if scheme == Scheme::Jump && weight != 1.0 {
        return Err(MapError::new(
            MapErrorKind::Unsupported,
            Some(name),
            "jump hash has no weights: every shard weighs 1".to_owned(),
        ));
    }
    Ok(())
}

/// The log-method weighted score (Schindelhauer and Schomaker): `w / -ln u`
/// with `u` uniform in (0, 1) from the mixed hash. The winner is distributed
/// exactly in proportion to the weights.
#[inline]
fn weighted_score(h: u64, weight: f64) -> f64 {
    // 53 random bits, centred in their interval so that u is never 0 or 1.
    #[allow(clippy::cast_precision_loss)]
    let u = ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    weight / -u.ln()
}

impl ShardMap {
    /// A map of `shards` (name, weight) under `scheme`; `virtual_nodes` is
    /// the ring's points per unit of weight (ignored by the other schemes).
    /// For jump, the order of `shards` numbers them.
    ///
    /// # Errors
    ///
    /// A [`MapError`]: no shard, an empty or repeated name, a weight outside
    /// (0, [`MAX_WEIGHT`]], a weight other than 1 under jump, more than
    /// [`MAX_SHARDS`] shards or [`MAX_RING_POINTS`] ring points, or
    /// `virtual_nodes` outside 1..=[`MAX_VIRTUAL_NODES`].
    pub fn new<N: AsRef<str>>(
        scheme: Scheme,
        virtual_nodes: u32,
        shards: impl IntoIterator<Item = (N, f64)>,
    ) -> Result<Self, MapError> {
        if virtual_nodes == 0 || virtual_nodes > MAX_VIRTUAL_NODES {
            return Err(MapError::new(
                MapErrorKind::TooLarge,
                None,
                format!("virtual_nodes must be in 1..={MAX_VIRTUAL_NODES}, got {virtual_nodes}"),
            ));
        }
        let mut specs: Vec<ShardSpec> = Vec::new();
        for (name, weight) in shards {
            let name = name.as_ref();
            if name.is_empty() {
                return Err(MapError::new(
                    MapErrorKind::InvalidName,
                    None,
                    "a shard name must not be empty".to_owned(),
                ));
            }
            if specs.iter().any(|s| &*s.name == name) {
                return Err(MapError::new(
                    MapErrorKind::DuplicateShard,
                    Some(name),
                    "a shard of that name is already in the map".to_owned(),
                ));
            }
            check_weight(name, weight, scheme)?;
            specs.push(ShardSpec {
                name: Arc::from(name),
                weight,
                hash: shard_hash(name),
            });
        }
        Self::from_specs(scheme, virtual_nodes, specs)
    }

    fn from_specs(
        scheme: Scheme,
        virtual_nodes: u32,
        specs: Vec<ShardSpec>,
    ) -> Result<Self, MapError> {
        if specs.is_empty() {
            return Err(MapError::new(
                MapErrorKind::Empty,
                None,
                "a map needs at least one shard".to_owned(),
            ));
        }
        if specs.len() > MAX_SHARDS {
            return Err(MapError::new(
                MapErrorKind::TooLarge,
                None,
                format!("at most {MAX_SHARDS} shards, got {}", specs.len()),
            ));
        }
        let uniform = specs.iter().all(|s| s.weight == specs[0].weight);
        let ring = if scheme == Scheme::Ring {
            build_ring(&specs, virtual_nodes)?
        } else {
            Ring::default()
        };
        Ok(Self {
            scheme,
            virtual_nodes,
            shards: specs.into(),
            uniform,
            ring,
        })
    }

    /// The scheme.
    #[must_use]
    pub const fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The ring's points per unit of weight.
    #[must_use]
    pub const fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    /// The shards, in the order they were added (jump's numbering).
    #[must_use]
    pub fn shards(&self) -> &[ShardSpec] {
        &self.shards
    }

    /// The number of shards (at least one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Always `false`: a map has at least one shard.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The index of the shard called `name`.
    #[must_use]
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.shards.iter().position(|s| &*s.name == name)
    }

    /// The points on the ring (0 for the other schemes).
    #[must_use]
    pub fn ring_points(&self) -> usize {
        self.ring.points.len()
    }

    /// The index (into [`shards`](Self::shards)) of the shard owning `key`.
    #[inline]
    #[must_use]
    pub fn owner(&self, key: ShardKey) -> usize {
        match self.scheme {
            Scheme::Rendezvous => self.rendezvous(key.hash()),
            Scheme::Ring => self.ring_owner(key.hash()),
            Scheme::Jump => jump(key.hash(), self.shards.len()),
        }
    }

    /// The name of the shard owning `key`.
    #[must_use]
    pub fn owner_name(&self, key: ShardKey) -> &str {
        &self.shards[self.owner(key)].name
    }

    #[inline]
    fn rendezvous(&self, key: u64) -> usize {
        let shards = &*self.shards;
        let mut best = 0;
        if self.uniform {
            let mut best_score = mix(key ^ shards[0].hash);
            for (i, shard) in shards.iter().enumerate().skip(1) {
                let score = mix(key ^ shard.hash);
                if score > best_score || (score == best_score && self.wins_tie(i, best)) {
                    best = i;
                    best_score = score;
                }
            }
        } else {
            let mut best_score = weighted_score(mix(key ^ shards[0].hash), shards[0].weight);
            for (i, shard) in shards.iter().enumerate().skip(1) {
                let score = weighted_score(mix(key ^ shard.hash), shard.weight);
                if score > best_score || (score == best_score && self.wins_tie(i, best)) {
                    best = i;
                    best_score = score;
                }
            }
        }
        best
    }

    /// A tie goes to the smaller name hash, then the smaller name: never to
    /// the order of insertion.
    #[cold]
    fn wins_tie(&self, challenger: usize, holder: usize) -> bool {
        let (a, b) = (&self.shards[challenger], &self.shards[holder]);
        (a.hash, &a.name) < (b.hash, &b.name)
    }

    #[inline]
    fn ring_owner(&self, key: u64) -> usize {
        let at = self.ring.points.partition_point(|&p| p < key);
        let at = if at == self.ring.points.len() { 0 } else { at };
        self.ring.owners[at] as usize
    }

    /// The shards for `key` in order of preference, at most `k` of them: the
    /// owner first, then where the key would go if the shards before were
    /// gone (rendezvous: the next scores; ring: the next distinct shards
    /// clockwise). Jump has no such order: only the owner.
    #[must_use]
    pub fn owners(&self, key: ShardKey, k: usize) -> Vec<usize> {
        let k = k.min(self.shards.len());
        match self.scheme {
            Scheme::Rendezvous => {
                let mut scored: Vec<(f64, u64, usize)> = self
                    .shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let h = mix(key.hash() ^ s.hash);
                        // Uniform weights compare the integer scores: keep
                        // the exact order `owner` uses.
                        let score = if self.uniform {
                            0.0
                        } else {
                            weighted_score(h, s.weight)
                        };
                        (score, h, i)
                    })
                    .collect();
                scored.sort_by(|a, b| {
                    b.0.partial_cmp(&a.0)
                        .unwrap_or(Ordering::Equal)
                        .then(b.1.cmp(&a.1))
                        .then_with(|| {
                            let (x, y) = (&self.shards[a.2], &self.shards[b.2]);
                            (x.hash, &x.name).cmp(&(y.hash, &y.name))
                        })
                });
                scored.into_iter().take(k).map(|(_, _, i)| i).collect()
            }
            Scheme::Ring => {
                let mut out = Vec::with_capacity(k);
                let n = self.ring.points.len();
                let start = self.ring.points.partition_point(|&p| p < key.hash());
                for step in 0..n {
                    if out.len() == k {
                        break;
                    }
                    let owner = self.ring.owners[(start + step) % n] as usize;
                    if !out.contains(&owner) {
                        out.push(owner);
                    }
                }
                out
            }
            Scheme::Jump => vec![self.owner(key)],
        }
    }

    /// This map with a shard `name` of `weight` added (jump: numbered last).
    ///
    /// # Errors
    ///
    /// A [`MapError`] as for [`new`](Self::new).
    pub fn with_shard(&self, name: &str, weight: f64) -> Result<Self, MapError> {
        let mut specs = self.shards.to_vec();
        if name.is_empty() {
            return Err(MapError::new(
                MapErrorKind::InvalidName,
                None,
                "a shard name must not be empty".to_owned(),
            ));
        }
        if self.index_of(name).is_some() {
            return Err(MapError::new(
                MapErrorKind::DuplicateShard,
                Some(name),
                "a shard of that name is already in the map".to_owned(),
            ));
        }
        check_weight(name, weight, self.scheme)?;
        specs.push(ShardSpec {
            name: Arc::from(name),
            weight,
            hash: shard_hash(name),
        });
        Self::from_specs(self.scheme, self.virtual_nodes, specs)
    }

    /// This map without the shard `name`.
    ///
    /// # Errors
    ///
    /// A [`MapError`]: no such shard, the last shard (a map keeps at least
    /// one), or under jump a shard that is not the last one numbered.
    pub fn without_shard(&self, name: &str) -> Result<Self, MapError> {
        let Some(at) = self.index_of(name) else {
            return Err(MapError::new(
                MapErrorKind::UnknownShard,
                Some(name),
                "no shard of that name".to_owned(),
            ));
        };
        if self.scheme == Scheme::Jump && at + 1 != self.shards.len() {
            return Err(MapError::new(
                MapErrorKind::Unsupported,
                Some(name),
                format!(
                    "jump hash can only remove the last shard (`{}`)",
                    self.shards[self.shards.len() - 1].name
                ),
            ));
        }
        let mut specs = self.shards.to_vec();
        specs.remove(at);
        Self::from_specs(self.scheme, self.virtual_nodes, specs)
    }

    /// This map with the shard `name` weighing `weight`.
    ///
    /// # Errors
    ///
    /// A [`MapError`]: no such shard, or a weight as for [`new`](Self::new).
    pub fn with_weight(&self, name: &str, weight: f64) -> Result<Self, MapError> {
        let Some(at) = self.index_of(name) else {
            return Err(MapError::new(
                MapErrorKind::UnknownShard,
                Some(name),
                "no shard of that name".to_owned(),
            ));
        };
        check_weight(name, weight, self.scheme)?;
        let mut specs = self.shards.to_vec();
        specs[at].weight = weight;
        Self::from_specs(self.scheme, self.virtual_nodes, specs)
    }

    /// The share of the key space each shard owns, in shard order; the
    /// shares add up to 1. Exact for the ring (arc lengths) and jump (equal);
    /// for rendezvous, the weights' proportions (what the log method
    /// guarantees in expectation).
    #[must_use]
    pub fn shares(&self) -> Vec<f64> {
        let n = self.shards.len();
        match self.scheme {
            Scheme::Rendezvous => {
                let total: f64 = self.shards.iter().map(|s| s.weight).sum();
                self.shards.iter().map(|s| s.weight / total).collect()
            }
            #[allow(clippy::cast_precision_loss)]
            Scheme::Jump => vec![1.0 / n as f64; n],
            Scheme::Ring => {
                let mut shares = vec![0.0; n];
                let points = &self.ring.points;
                let scale = 1.0 / 2f64.powi(64);
                for (i, &p) in points.iter().enumerate() {
                    // Point i owns the arc (previous point, p].
                    let prev = if i == 0 {
                        points[points.len() - 1]
                    } else {
                        points[i - 1]
                    };
                    let arc = p.wrapping_sub(prev);
                    #[allow(clippy::cast_precision_loss)]
                    let arc = if points.len() == 1 {
                        2f64.powi(64)
                    } else {
                        arc as f64
                    };
                    shares[self.ring.owners[i] as usize] += arc * scale;
                }
                shares
            }
        }
    }

    /// The share of the key space whose owner differs between `self` and
    /// `next` (by shard name), estimated from [`MOVE_SAMPLES`] fixed sample
    /// keys (standard error about 0.4 % of the key space).
    #[must_use]
    pub fn moved_share(&self, next: &Self) -> f64 {
        let moved = (0..MOVE_SAMPLES)
            .filter(|&i| {
                let key = ShardKey::from_hash(mix(i.wrapping_mul(GOLDEN) ^ 0x5eed));
                self.owner_name(key) != next.owner_name(key)
            })
            .count();
        #[allow(clippy::cast_precision_loss)]
        let share = moved as f64 / MOVE_SAMPLES as f64;
        share
    }

    /// How many of `keys` have a different owner in `next` (by shard name):
    /// the exact count for a known set of keys.
    pub fn moved_keys(&self, next: &Self, keys: impl IntoIterator<Item = ShardKey>) -> usize {
        keys.into_iter()
            .filter(|&key| self.owner_name(key) != next.owner_name(key))
            .count()
    }
}

fn build_ring(specs: &[ShardSpec], virtual_nodes: u32) -> Result<Ring, MapError> {
    let counts: Vec<usize> = specs
        .iter()
        .map(|s| {
            // At least one point per shard, however light.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (f64::from(virtual_nodes) * s.weight).round().max(1.0) as usize;
            n
        })
        .collect();
    let total: usize = counts.iter().sum();
    if total > MAX_RING_POINTS {
        return Err(MapError::new(
            MapErrorKind::TooLarge,
            None,
            format!(
                "the ring would hold {total} points, more than {MAX_RING_POINTS}: fewer virtual_nodes or lighter weights"
            ),
        ));
    }
    let mut points: Vec<(u64, u64, u32)> = Vec::with_capacity(total);
    for (i, (spec, &count)) in specs.iter().zip(&counts).enumerate() {
        #[allow(clippy::cast_possible_truncation)]
        let owner = i as u32;
        for v in 0..count as u64 {
            let point = mix(spec.hash ^ mix((v + 1).wrapping_mul(GOLDEN)));
            points.push((point, spec.hash, owner));
        }
    }
    // Sorted by position; a shared position goes to the smaller name hash,
    // so the order shards were added in never matters.
    points.sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| specs[a.2 as usize].name.cmp(&specs[b.2 as usize].name))
    });
    Ok(Ring {
        points: points.iter().map(|p| p.0).collect(),
        owners: points.iter().map(|p| p.2).collect(),
    })
}

/// Jump consistent hash (Lamping and Veach, 2014): the bucket in `0..n` for
/// `key`. Growing `n` to `n + 1` moves exactly the keys the new bucket takes.
#[inline]
#[must_use]
pub fn jump(mut key: u64, n: usize) -> usize {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    #[allow(clippy::cast_possible_wrap)]
    let n = n as i64;
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        {
            j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
        }
    }
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    let b = b as usize;
    b
}

impl fmt::Debug for ShardMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardMap")
            .field("scheme", &self.scheme)
            .field(
                "shards",
                &self
                    .shards
                    .iter()
                    .map(|s| (&*s.name, s.weight))
                    .collect::<Vec<_>>(),
            )
            .field("ring_points", &self.ring.points.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<(String, f64)> {
        (0..n).map(|i| (format!("shard-{i}"), 1.0)).collect()
    }

    #[test]
    fn jump_matches_the_paper_reference() {
        // Values from the reference C++ implementation.
        assert_eq!(jump(1, 1), 0);
        assert_eq!(jump(0xDEAD_BEEF, 1), 0);
        for n in 1..200 {
            assert!(jump(12345, n) < n);
        }
        // Growing by one: a key either stays or moves to the new bucket.
        for key in 0..10_000u64 {
            let k = mix(key);
            for n in 1..20 {
                let (a, b) = (jump(k, n), jump(k, n + 1));
                assert!(a == b || b == n);
            }
        }
    }

    #[test]
    fn insertion_order_does_not_matter_for_ring_and_rendezvous() {
        for scheme in [Scheme::Rendezvous, Scheme::Ring] {
            let a = ShardMap::new(scheme, 100, names(7)).unwrap();
            let mut reversed = names(7);
            reversed.reverse();
            let b = ShardMap::new(scheme, 100, reversed).unwrap();
            for i in 0..5_000u64 {
                let key = ShardKey::from(i);
                assert_eq!(a.owner_name(key), b.owner_name(key));
            }
        }
    }

    #[test]
    fn owners_start_with_the_owner_and_are_distinct() {
        for scheme in [Scheme::Rendezvous, Scheme::Ring] {
            for weights in [1.0, 2.0] {
                let mut shards = names(5);
                shards[2].1 = weights;
                let map = ShardMap::new(scheme, 50, shards).unwrap();
                for i in 0..2_000u64 {
                    let key = ShardKey::from(i);
                    let owners = map.owners(key, 5);
                    assert_eq!(owners[0], map.owner(key));
                    let mut sorted = owners.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), 5);
                }
            }
        }
        let jump_map = ShardMap::new(Scheme::Jump, 1, names(3)).unwrap();
        assert_eq!(jump_map.owners(ShardKey::from(1u8), 3).len(), 1);
    }

    #[test]
    fn removing_the_owner_hands_the_key_to_its_second_choice() {
        for scheme in [Scheme::Rendezvous, Scheme::Ring] {
            let map = ShardMap::new(scheme, 50, names(6)).unwrap();
            for i in 0..2_000u64 {
                let key = ShardKey::from(i);
                let owners = map.owners(key, 2);
                let first = map.shards()[owners[0]].name();
                let second = map.shards()[owners[1]].name();
                let smaller = map.without_shard(first).unwrap();
                assert_eq!(smaller.owner_name(key), second);
            }
        }
    }

    #[test]
    fn bad_changes_are_refused() {
        let map = ShardMap::new(Scheme::Jump, 1, names(3)).unwrap();
        assert_eq!(
            map.without_shard("shard-0").unwrap_err().kind(),
            MapErrorKind::Unsupported
        );
        assert!(map.without_shard("shard-2").is_ok());
        assert_eq!(
            map.with_weight("shard-0", 2.0).unwrap_err().kind(),
            MapErrorKind::Unsupported
        );
        let one = ShardMap::new(Scheme::Ring, 10, [("only", 1.0)]).unwrap();
        assert_eq!(
            one.without_shard("only").unwrap_err().kind(),
            MapErrorKind::Empty
        );
        assert_eq!(
            one.with_shard("only", 1.0).unwrap_err().kind(),
            MapErrorKind::DuplicateShard
        );
        assert_eq!(
            one.with_shard("x", f64::NAN).unwrap_err().kind(),
            MapErrorKind::InvalidWeight
        );
        assert_eq!(
            one.with_weight("nope", 1.0).unwrap_err().kind(),
            MapErrorKind::UnknownShard
        );
        assert_eq!(
            ShardMap::new(Scheme::Ring, MAX_VIRTUAL_NODES, names(100))
                .unwrap_err()
                .kind(),
            MapErrorKind::TooLarge
        );
        assert_eq!(
            ShardMap::new(Scheme::Ring, 1, Vec::<(&str, f64)>::new())
                .unwrap_err()
                .kind(),
            MapErrorKind::Empty
        );
    }

    #[test]
    fn shares_add_up_to_one() {
        for scheme in [Scheme::Rendezvous, Scheme::Ring, Scheme::Jump] {
            let map = ShardMap::new(scheme, 100, names(9)).unwrap();
            let total: f64 = map.shares().iter().sum();
            assert!((total - 1.0).abs() < 1e-9, "{scheme:?}: {total}");
        }
        let one = ShardMap::new(Scheme::Ring, 1, [("only", 1.0)]).unwrap();
        assert_eq!(one.shares(), vec![1.0]);
    }
}
