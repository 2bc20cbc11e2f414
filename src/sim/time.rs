//! Simulated time.
//!
//! Integer nanoseconds rather than float seconds: event order then never depends on rounding,
//! and equal instants compare equal, so ties are broken only by the event queue's sequence.

use std::ops::{Add, Sub};

/// A point in simulated time (or a duration), in nanoseconds since the start of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Nanos(pub u64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);
    /// The end of simulated time (2^62 ns, about 146 years): nothing happens at or after it,
    /// and time arithmetic stops here instead of overflowing, so a run whose load reaches
    /// beyond it ends there and says what was left undone.
    pub const HORIZON: Nanos = Nanos(1 << 62);

    /// Seconds to the nearest nanosecond, at most [`Nanos::HORIZON`]; negative and NaN inputs
    /// give zero.
    #[inline]
    pub fn from_secs(s: f64) -> Nanos {
        Nanos(round_ns(s * 1e9).min(Self::HORIZON.0))
    }

    #[inline]
    pub fn secs(self) -> f64 {
        self.0 as f64 * 1e-9
    }

    #[inline]
    pub fn millis(self) -> f64 {
        self.0 as f64 * 1e-6
    }

    #[inline]
    pub fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }
}

/// A later time, never past [`Nanos::HORIZON`].
/// `x.round().max(0.0) as u64` for the values that matter (up to [`Nanos::HORIZON`]; above it
/// the horizon), without the call to libm's `round` that the baseline x86-64 target makes (no
/// SSE4.1): every step's time goes through here. Truncation and the remainder are exact, so
/// the result is the same integer, halves rounding away from zero.
#[inline(always)]
fn round_ns(x: f64) -> u64 {
    const LIMIT: f64 = Nanos::HORIZON.0 as f64;
    if x >= LIMIT {
        return Nanos::HORIZON.0;
    }
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let t = x as u64;
    t + u64::from(x - t as f64 >= 0.5)
}

impl Add for Nanos {
    type Output = Nanos;
    #[inline]
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0).min(Self::HORIZON.0))
    }
}

/// A duration: panics (in debug builds) if `rhs` is later, which would be a scheduling bug.
impl Sub for Nanos {
    type Output = Nanos;
    #[inline]
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0 - rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_to_the_nearest_nanosecond() {
        assert_eq!(Nanos::from_secs(1.5), Nanos(1_500_000_000));
        assert_eq!(Nanos::from_secs(2.4e-9), Nanos(2));
        assert_eq!(Nanos::from_secs(-1.0), Nanos::ZERO);
        assert_eq!(Nanos::from_secs(f64::NAN), Nanos::ZERO);
        assert_eq!(Nanos(2_500_000).millis(), 2.5);
        assert_eq!(Nanos(7) - Nanos(3) + Nanos(1), Nanos(5));
        assert_eq!(Nanos(3).saturating_sub(Nanos(7)), Nanos::ZERO);
        // the clock stops at the horizon instead of wrapping
        assert_eq!(Nanos::from_secs(1e30), Nanos::HORIZON);
        assert_eq!(Nanos::HORIZON + Nanos(u64::MAX), Nanos::HORIZON);
    }

    #[test]
    fn rounding_without_libm_gives_libm_s_integer() {
        let libm = |x: f64| (x.round().max(0.0) as u64).min(Nanos::HORIZON.0);
        let mut xs = vec![
            0.0,
            -0.0,
            0.499_999_999_999_999_94,
            0.5,
            1.5,
            2.5,
            4_503_599_627_370_495.5,
            4_503_599_627_370_497.0,
            Nanos::HORIZON.0 as f64,
            Nanos::HORIZON.0 as f64 * (1.0 - f64::EPSILON),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -3.7,
        ];
        let mut rng = crate::sim::rng::Rng::stream(3, 3);
        for _ in 0..100_000 {
            let scale = 10f64.powi(rng.range_inclusive(0, 19) as i32);
            xs.push(rng.f64() * scale);
            xs.push((rng.range_inclusive(0, 1 << 40) as f64) + 0.5);
        }
        for x in xs {
            assert_eq!(round_ns(x), libm(x), "{x}");
        }
    }
}
