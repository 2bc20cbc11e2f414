//! A small, self-contained random number generator and the samplers the simulator needs.
//!
//! Our own xoshiro256++ (seeded through SplitMix64) rather than `rand`'s `StdRng`, whose stream
//! is not promised to stay the same across `rand` releases: a seed must give the same numbers
//! forever, so a saved result can be reproduced.

/// xoshiro256++ (Blackman & Vigna), one independent stream per load source.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream `stream` of run `seed`: streams of one seed are independent of each other.
    pub fn stream(seed: u64, stream: u64) -> Rng {
        let mut k = stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut st = seed ^ splitmix64(&mut k);
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `(0, 1]`: safe to take the logarithm of.
    pub fn f64_open0(&mut self) -> f64 {
        1.0 - self.f64()
    }

    /// Uniform integer in `lo..=hi` (`lo <= hi`).
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        // Lemire's multiply-shift; the bias for spans far below 2^64 is negligible (< 2^-40).
        lo + ((u128::from(self.next_u64()) * u128::from(span + 1)) >> 64) as u64
    }

    /// Standard normal (Box–Muller; one value per call, for simplicity and determinism).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64_open0();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Exponential with mean 1.
    pub fn exp1(&mut self) -> f64 {
        -self.f64_open0().ln()
    }

    /// Gamma with `shape` and scale 1 (Marsaglia & Tsang 2000; shape < 1 by the boost
    /// `G(a) = G(a+1) · U^(1/a)`).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let g = self.gamma(shape + 1.0);
            return g * self.f64_open0().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.f64_open0();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::stream(7, 1);
        let mut y = Rng::stream(7, 2);
        let mut z = Rng::stream(8, 1);
        let (xv, yv, zv) = (x.next_u64(), y.next_u64(), z.next_u64());
        assert_ne!(xv, yv);
        assert_ne!(xv, zv);
    }

    #[test]
    fn moments_are_right() {
        let mut r = Rng::stream(1, 0);
        let n = 200_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        assert!((mean(&mut || r.f64()) - 0.5).abs() < 0.01);
        assert!((mean(&mut || r.exp1()) - 1.0).abs() < 0.02);
        assert!(mean(&mut || r.normal()).abs() < 0.02);
        for shape in [0.5, 1.0, 3.0] {
            let m = mean(&mut || r.gamma(shape));
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
