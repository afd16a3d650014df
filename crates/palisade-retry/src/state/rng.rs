//! Random samples for jitter: per-thread and fast by default, or a seeded,
//! reproducible sequence for tests.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub(crate) enum JitterSource {
    /// fastrand's thread-local generator.
    Thread,
    /// SplitMix64 over a shared counter: the same seed gives the same
    /// sequence of samples, in the order they are drawn.
    Seeded(AtomicU64),
}

impl JitterSource {
    pub(crate) fn seeded(seed: u64) -> Self {
        Self::Seeded(AtomicU64::new(seed))
    }

    /// A uniform sample in `[0, 1)`.
    pub(crate) fn sample(&self) -> f64 {
        match self {
            Self::Thread => fastrand::f64(),
            Self::Seeded(state) => {
                let x = state
                    .fetch_add(GOLDEN, Ordering::Relaxed)
                    .wrapping_add(GOLDEN);
                unit(splitmix64(x))
            }
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits as a float in `[0, 1)`.
fn unit(bits: u64) -> f64 {
    let mantissa = bits >> 11;
    // Exact: a 53-bit integer fits an f64 mantissa.
    #[allow(clippy::cast_precision_loss)]
    let value = mantissa as f64;
    value / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_samples_repeat_and_stay_in_range() {
        let a = JitterSource::seeded(7);
        let b = JitterSource::seeded(7);
        let xs: Vec<f64> = (0..1000).map(|_| a.sample()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.sample()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
        let t = JitterSource::Thread.sample();
        assert!((0.0..1.0).contains(&t));
    }
}
