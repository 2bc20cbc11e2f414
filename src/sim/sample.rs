//! Drawing from a scenario's distributions with the simulator's random streams.

use super::rng::Rng;
use crate::catalog::scenario::Dist;

/// Draws from a [`Dist`]; a trait because `Dist` lives in the catalog, which knows no RNG.
pub(crate) trait Sample {
    /// One draw as a real number.
    fn sample(&self, rng: &mut Rng) -> f64;

    /// One draw as a count (tokens, turns): integers for `uniform`, rounded otherwise, >= 1.
    fn sample_count(&self, rng: &mut Rng) -> u32;
}

impl Sample for Dist {
    fn sample(&self, rng: &mut Rng) -> f64 {
        match self {
            Dist::Fixed { value } => *value,
            Dist::Uniform { min, max } => min + (max - min) * rng.f64(),
            Dist::Lognormal {
                median,
                p90,
                min,
                max,
            } => {
                let sigma = Dist::lognormal_sigma(*median, *p90);
                let v = (median.ln() + sigma * rng.normal()).exp();
                v.max(min.unwrap_or(0.0)).min(max.unwrap_or(f64::INFINITY))
            }
            Dist::Empirical { values, weights } => match weights {
                None => values[rng.range_inclusive(0, values.len() as u64 - 1) as usize],
                Some(w) => {
                    let total: f64 = w.iter().sum();
                    let mut x = rng.f64() * total;
                    for (v, wi) in values.iter().zip(w) {
                        if x < *wi {
                            return *v;
                        }
                        x -= wi;
                    }
                    values[values.len() - 1]
                }
            },
        }
    }

    fn sample_count(&self, rng: &mut Rng) -> u32 {
        let v = match self {
            Dist::Uniform { min, max } => {
                let lo = min.ceil() as u64;
                let hi = (max.floor() as u64).max(lo);
                rng.range_inclusive(lo, hi) as f64
            }
            _ => self.sample(rng).round(),
        };
        v.clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_hits_median_and_p90() {
        let d = Dist::Lognormal {
            median: 200.0,
            p90: 800.0,
            min: None,
            max: None,
        };
        let mut r = Rng::stream(3, 0);
        let mut v: Vec<f64> = (0..100_000).map(|_| d.sample(&mut r)).collect();
        v.sort_by(f64::total_cmp);
        let med = v[50_000];
        let p90 = v[90_000];
        assert!((med / 200.0 - 1.0).abs() < 0.03, "{med}");
        assert!((p90 / 800.0 - 1.0).abs() < 0.04, "{p90}");
    }

    #[test]
    fn uniform_counts_are_inclusive_integers() {
        let d = Dist::Uniform {
            min: 92.0,
            max: 100.0,
        };
        let mut r = Rng::stream(3, 1);
        let v: Vec<u32> = (0..10_000).map(|_| d.sample_count(&mut r)).collect();
        assert_eq!(v.iter().min(), Some(&92));
        assert_eq!(v.iter().max(), Some(&100));
    }
}
