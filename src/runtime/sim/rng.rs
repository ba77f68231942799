//! The simulation's pseudo-random number generator.

use std::net::IpAddr;

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, passes BigCrush, and every seed (even
/// 0) gives a full-period sequence. Good enough to decide packet fates; not for cryptography.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator of the link from `from` to `to` in a simulation seeded with `seed`.
    pub(super) fn for_link(seed: u64, from: IpAddr, to: IpAddr) -> Self {
        let mut mix = Rng::new(seed);
        let mut state = mix.next_u64();
        for octet in octets(from).into_iter().chain([0xff]).chain(octets(to)) {
            state = Rng::new(state ^ u64::from(octet)).next_u64();
        }
        Self(state)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p`. Draws nothing when `p <= 0` or `p >= 1`, so a link without
    /// loss does not shift the sequence other links see.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.unit() < p
        }
    }

    /// Uniform in `[0, n]`.
    pub(super) fn up_to(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        if n == u64::MAX {
            return self.next_u64();
        }
        ((u128::from(self.next_u64()) * u128::from(n + 1)) >> 64) as u64
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn chance_and_range_are_roughly_uniform() {
        let mut r = Rng::new(1);
        let hits = (0..100_000).filter(|_| r.chance(0.2)).count();
        assert!((19_000..21_000).contains(&hits), "{hits}");
        let mut seen = [0u32; 4];
        for _ in 0..40_000 {
            seen[r.up_to(3) as usize] += 1;
        }
        assert!(
            seen.iter().all(|&n| (9_000..11_000).contains(&n)),
            "{seen:?}"
        );
        assert!(!r.chance(0.0) && r.chance(1.0));
    }

    #[test]
    fn links_get_distinct_streams() {
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let ab = Rng::for_link(5, a, b).next_u64();
        assert_eq!(ab, Rng::for_link(5, a, b).next_u64());
        assert_ne!(ab, Rng::for_link(5, b, a).next_u64());
        assert_ne!(ab, Rng::for_link(6, a, b).next_u64());
    }
}
