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
        Nanos(((s * 1e9).round().max(0.0) as u64).min(Self::HORIZON.0))
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
}
