//! The service-level objective a card must meet, and whether one simulated window meets it.
//!
//! The default matches the question cardplan answers: 95% of requests stream at >= 10 tok/s
//! (the 5th percentile of the per-request rate is at least 10) and 95% of requests see their
//! first token within 2 s.

use serde::Serialize;

use crate::error::{Result, check_range};

/// What "serving a user well" means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    /// Minimum per-request rate (output tokens / end-to-end time), tokens/s.
    pub tok_s: f64,
    /// Share of requests that must meet both limits, e.g. 0.95.
    pub quantile: f64,
    /// Maximum time to first token, seconds.
    pub ttft_s: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            tok_s: 10.0,
            quantile: 0.95,
            ttft_s: 2.0,
        }
    }
}

/// The two numbers an SLO is checked against, taken from one simulated window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SloStats {
    /// Per-request rate at the slow tail: the `(1 − quantile)` quantile, tokens/s.
    pub tok_s_tail: f64,
    /// Time to first token at the `quantile` quantile, seconds.
    pub ttft_tail_s: f64,
    /// Requests the statistics rest on.
    pub requests: usize,
}

impl Slo {
    /// An SLO from user-supplied flags, range-checked with the flag names in errors.
    pub fn new(tok_s: f64, quantile: f64, ttft_s: f64) -> Result<Slo> {
        Ok(Slo {
            tok_s: check_range("--slo-tok-s", tok_s, 0.0, 1e6)?,
            quantile: check_range("--slo-quantile", quantile, 0.5, 0.999)?,
            ttft_s: check_range("--slo-ttft-s", ttft_s, 0.001, 3600.0)?,
        })
    }

    /// Whether `stats` meets this SLO. A window without completed requests never does: nothing
    /// was served, so nothing can be claimed.
    pub fn met_by(&self, stats: &SloStats) -> bool {
        stats.requests > 0 && stats.tok_s_tail >= self.tok_s && stats.ttft_tail_s <= self.ttft_s
    }

    /// Whether every request `self` accepts is also accepted by `other` (self is at least as strict).
    pub fn at_least_as_strict_as(&self, other: &Slo) -> bool {
        self.tok_s >= other.tok_s && self.ttft_s <= other.ttft_s && self.quantile >= other.quantile
    }

    /// The SLO in words, e.g. "95% of requests at >= 10 tok/s and TTFT <= 2 s".
    pub fn describe(&self) -> String {
        format!(
            "{}% of requests stream at >= {} tok/s and get their first token within {} s",
            trim_float(self.quantile * 100.0),
            trim_float(self.tok_s),
            trim_float(self.ttft_s)
        )
    }

    /// Percentile labels used in tables, e.g. ("p05", "p95").
    pub fn labels(&self) -> (String, String) {
        (
            percentile_label(1.0 - self.quantile),
            percentile_label(self.quantile),
        )
    }
}

/// "p05" for 0.05, "p95" for 0.95, "p99.9" for 0.999.
pub fn percentile_label(q: f64) -> String {
    let pct = q * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("p{:02}", pct.round() as i64)
    } else {
        format!("p{}", trim_float(pct))
    }
}

/// `q`-quantile of `sorted` (ascending) by linear interpolation between order statistics
/// (the same definition as numpy's default), or NaN when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let i = pos.floor() as usize;
            let frac = pos - i as f64;
            if i + 1 >= n {
                sorted[n - 1]
            } else {
                sorted[i] + frac * (sorted[i + 1] - sorted[i])
            }
        }
    }
}

/// A float without trailing zeros: 10 → "10", 0.95 → "0.95".
fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(tok: f64, ttft: f64) -> SloStats {
        SloStats {
            tok_s_tail: tok,
            ttft_tail_s: ttft,
            requests: 100,
        }
    }

    #[test]
    fn default_slo_checks_both_limits() {
        let slo = Slo::default();
        assert!(slo.met_by(&stats(10.0, 2.0)));
        assert!(!slo.met_by(&stats(9.99, 0.1)));
        assert!(!slo.met_by(&stats(50.0, 2.01)));
        let empty = SloStats {
            requests: 0,
            ..stats(50.0, 0.1)
        };
        assert!(!slo.met_by(&empty));
    }

    #[test]
    fn flags_are_range_checked() {
        assert!(Slo::new(10.0, 0.95, 2.0).is_ok());
        let e = Slo::new(10.0, 1.5, 2.0).unwrap_err().to_string();
        assert!(e.contains("--slo-quantile"), "{e}");
        assert!(Slo::new(f64::NAN, 0.95, 2.0).is_err());
        assert!(Slo::new(10.0, 0.95, 0.0).is_err());
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 5.0);
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
        assert!((quantile_sorted(&v, 0.1) - 1.4).abs() < 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn labels_and_words() {
        assert_eq!(percentile_label(0.05), "p05");
        assert_eq!(percentile_label(0.95), "p95");
        assert_eq!(percentile_label(0.999), "p99.9");
        let slo = Slo::default();
        assert_eq!(slo.labels(), ("p05".into(), "p95".into()));
        assert!(slo.describe().contains("95% of requests"));
        assert!(slo.describe().contains(">= 10 tok/s"));
    }
}
