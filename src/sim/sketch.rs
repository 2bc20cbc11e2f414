//! A quantile sketch in bounded memory: a log-bucketed histogram (like DDSketch).
//!
//! A positive value `v` falls in bucket `i = ceil(ln v / ln γ)` with `γ = (1 + α)/(1 − α)`;
//! reporting the bucket's midpoint `2γ^i/(γ + 1)` is within a relative error `α` of every value
//! in the bucket, so every quantile is within `α` of the true sample quantile (nearest rank).
//! Memory grows with `ln(max/min)/ln γ` (about 2,800 buckets for 12 decades at α = 0.5%), not with
//! the number of values, so 10⁶ or 10⁹ requests cost the same.

use serde::Serialize;

/// Relative error of every reported quantile.
pub const RELATIVE_ERROR: f64 = 0.005;

/// Values at or below this are counted as zero (exactly reported as 0).
const ZERO: f64 = 1e-12;

#[derive(Debug, Clone, Serialize)]
pub struct Sketch {
    #[serde(skip)]
    ln_gamma: f64,
    #[serde(skip)]
    offset: i64,
    #[serde(skip)]
    buckets: Vec<u64>,
    zeros: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

impl Sketch {
    pub fn new() -> Sketch {
        let gamma = (1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR);
        Sketch {
            ln_gamma: gamma.ln(),
            offset: 0,
            buckets: Vec::new(),
            zeros: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Add `v` (finite, >= 0) `n` times. Negative or non-finite values are a bug upstream and
    /// are clamped to 0 rather than poisoning the statistics.
    pub fn add_n(&mut self, v: f64, n: u64) {
        if n == 0 {
            return;
        }
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        self.count += n;
        self.sum += v * n as f64;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        match self.bucket_of(v) {
            None => self.zeros += n,
            Some(i) => self.bump(i, n),
        }
    }

    /// The bucket [`Sketch::add`] puts `v` in (`None`: the zero bucket). Bucket `i` holds
    /// (γ^(i−1), γ^i] and its quantile value lies inside that range (before the clamp to the
    /// exact min and max).
    #[inline]
    pub fn bucket_of(&self, v: f64) -> Option<i64> {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        (v > ZERO).then(|| ceil_i64(v.ln() / self.ln_gamma))
    }

    fn bump(&mut self, i: i64, n: u64) {
        if self.buckets.is_empty() {
            self.offset = i;
            self.buckets.push(0);
        } else if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.buckets.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i;
        } else if i >= self.offset + self.buckets.len() as i64 {
            self.buckets.resize((i - self.offset + 1) as usize, 0);
        }
        self.buckets[(i - self.offset) as usize] += n;
    }

    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    pub fn min(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.min }
    }

    pub fn max(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.max }
    }

    /// The `q`-quantile (0..=1), nearest rank `floor(q·(n−1))` of the sorted values, within
    /// [`RELATIVE_ERROR`]; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        if rank < self.zeros {
            return 0.0;
        }
        let mut seen = self.zeros;
        let gamma = self.ln_gamma.exp();
        for (j, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen > rank {
                let i = self.offset + j as i64;
                let v = 2.0 * (i as f64 * self.ln_gamma).exp() / (gamma + 1.0);
                return v.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Add every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        for (j, &c) in other.buckets.iter().enumerate() {
            if c > 0 {
                self.bump(other.offset + j as i64, c);
            }
        }
        self.zeros += other.zeros;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// `q.ceil() as i64` without the call to libm's `ceil` that the baseline x86-64 target makes
/// (no SSE4.1): every measured token's latency goes through here. For |q| < 2^63 truncation is
/// exact, so this is the same integer; NaN gives 0 as the cast does.
#[inline(always)]
fn ceil_i64(q: f64) -> i64 {
    let t = q as i64;
    t.saturating_add(i64::from((t as f64) < q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_without_libm_gives_libm_s_integer() {
        let mut rng = crate::sim::rng::Rng::stream(5, 5);
        let mut qs = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.5,
            -2.5,
            1e-300,
            -1e-300,
            f64::NAN,
        ];
        for _ in 0..100_000 {
            qs.push((rng.f64() - 0.5) * 10f64.powi(rng.range_inclusive(0, 15) as i32));
        }
        for q in qs {
            assert_eq!(ceil_i64(q), q.ceil() as i64, "{q}");
        }
    }
    use proptest::prelude::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    proptest! {
        #[test]
        fn quantiles_within_relative_error(
            mut v in proptest::collection::vec(1e-4f64..1e5, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut s = Sketch::new();
            for x in &v { s.add(*x); }
            v.sort_by(f64::total_cmp);
            let want = exact(&v, q);
            let got = s.quantile(q);
            prop_assert!((got - want).abs() <= RELATIVE_ERROR * want * 1.000_001,
                "q={q} want {want} got {got}");
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            prop_assert!((s.mean() - mean).abs() <= 1e-9 * mean.max(1.0));
        }
    }

    #[test]
    fn weights_and_zeros() {
        let mut s = Sketch::new();
        s.add_n(0.0, 10);
        s.add_n(2.0, 90);
        assert_eq!(s.count(), 100);
        assert_eq!(s.quantile(0.05), 0.0);
        assert!((s.quantile(0.5) - 2.0).abs() < 0.01);
        assert!((s.mean() - 1.8).abs() < 1e-12);
    }

    #[test]
    fn merge_matches_adding_everything() {
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for i in 0..1000 {
            let v = 1.0 + f64::from(i) * 0.37;
            if i % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        a.add(0.0);
        all.add(0.0);
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        for q in [0.0, 0.01, 0.5, 0.99, 1.0] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
        assert!((a.mean() - all.mean()).abs() < 1e-9);
    }
}
