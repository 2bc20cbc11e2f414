//! The simulator's random streams: `rand_xoshiro`'s xoshiro256++, one independent stream per
//! load source, sampled through `rand` and `rand_distr`.
//!
//! A seed must give the same numbers forever, so a saved result can be reproduced. Neither crate
//! promises its values across releases (a sampler may change algorithm in a minor version), so
//! `tests::golden_stream` pins the first draws of a stream exactly: a dependency update that
//! moves them fails that test, and then every seeded result moves too.

use rand::{Rng as _, RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::{SplitMix64, Xoshiro256PlusPlus};

/// One random stream.
#[derive(Debug, Clone)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// The stream `stream` of run `seed`: streams of one seed are independent of each other.
    ///
    /// The stream number is mixed (SplitMix64) into the seed, whose SplitMix64 sequence then
    /// fills the generator's state: nearby seeds and stream numbers give unrelated states, and
    /// creating stream n costs O(1) (jumping would cost O(n)).
    pub fn stream(seed: u64, stream: u64) -> Rng {
        let mut key = SplitMix64::seed_from_u64(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut state = SplitMix64::seed_from_u64(seed ^ key.next_u64());
        Rng(Xoshiro256PlusPlus::from_rng(&mut state))
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn f64(&mut self) -> f64 {
        self.0.random()
    }

    /// Uniform integer in `lo..=hi` (`lo <= hi`).
    #[inline]
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.random_range(lo..=hi)
    }

    /// Standard normal.
    #[inline]
    pub fn normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.0)
    }

    /// One draw of `dist`.
    #[inline]
    pub fn sample<D: Distribution<f64>>(&mut self, dist: &D) -> f64 {
        dist.sample(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng as _;
    use rand_distr::{Exp1, Gamma};

    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, 1).0.next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::stream(7, 1);
        let mut y = Rng::stream(7, 2);
        let mut z = Rng::stream(8, 1);
        let (xv, yv, zv) = (x.0.next_u64(), y.0.next_u64(), z.0.next_u64());
        assert_ne!(xv, yv);
        assert_ne!(xv, zv);
    }

    /// Exact first draws of one stream. If a dependency update fails this, seeded results
    /// (golden outputs, saved plans) change: update the numbers only knowingly.
    #[test]
    fn golden_stream() {
        // The raw stream is the one of the hand-written xoshiro256++ this replaced.
        let mut r = Rng::stream(42, 7);
        let raw: Vec<u64> = (0..4).map(|_| r.0.next_u64()).collect();
        assert_eq!(
            raw,
            [
                14675568302608274389,
                10338095985743283894,
                15294918080055733656,
                120708864707716247
            ]
        );
        let mut r = Rng::stream(42, 7);
        let gamma_small = Gamma::new(0.5, 1.0).expect("valid gamma");
        let gamma_large = Gamma::new(3.0, 1.0).expect("valid gamma");
        let got = [
            three(&mut r, |r| r.f64()),
            three(&mut r, |r| r.normal()),
            three(&mut r, |r| r.sample(&Exp1)),
            three(&mut r, |r| r.sample(&gamma_small)),
            three(&mut r, |r| r.sample(&gamma_large)),
        ];
        assert_eq!(got, GOLDEN, "{got:?}");
        let ints: Vec<u64> = (0..3).map(|_| r.range_inclusive(4, 1003)).collect();
        assert_eq!(ints, [622, 208, 733]);
    }

    /// Uniform [0, 1), standard normal, Exp(1), Gamma(0.5), Gamma(3): three draws each, in that
    /// order, from stream 7 of seed 42 (then three integers in 4..=1003).
    const GOLDEN: [[f64; 3]; 5] = [
        [0.7955641518073648, 0.560429306355327, 0.8291391705192123],
        [
            -1.3629612147312893,
            -0.02478545429460686,
            -0.8454702470578913,
        ],
        [0.19921100444636564, 1.4042910148773036, 0.4773098571700415],
        [
            2.0170411564715534,
            1.1396030055314395e-5,
            0.09830499537953309,
        ],
        [0.506279709687446, 8.687613623020612, 2.2984998965902204],
    ];

    fn three(r: &mut Rng, f: impl Fn(&mut Rng) -> f64) -> [f64; 3] {
        [f(r), f(r), f(r)]
    }

    #[test]
    fn moments_are_right() {
        let mut r = Rng::stream(1, 0);
        let n = 200_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        assert!((mean(&mut || r.f64()) - 0.5).abs() < 0.01);
        assert!((mean(&mut || r.sample(&Exp1)) - 1.0).abs() < 0.02);
        assert!(mean(&mut || r.normal()).abs() < 0.02);
        for shape in [0.5, 1.0, 3.0] {
            let g = Gamma::new(shape, 1.0).expect("valid gamma");
            let m = mean(&mut || r.sample(&g));
            assert!(
                (m - shape).abs() < 0.03 * shape.max(1.0),
                "shape {shape}: {m}"
            );
        }
        let mut hits = [0u32; 3];
        for _ in 0..30_000 {
            hits[(r.range_inclusive(4, 6) - 4) as usize] += 1;
        }
        assert!(
            hits.iter().all(|&h| (9_000..11_000).contains(&h)),
            "{hits:?}"
        );
    }
}
