//! The service-level objective a card must meet, and whether one simulated window meets it.
//!
//! The default matches the question cardplan answers: 95% of requests stream at >= 10 tok/s
//! once their first token is out (the 5th percentile of the per-request streaming rate is at
//! least 10) and 95% of requests see their first token within 2 s. A scenario may hold the rate
//! end to end instead (Backprop's definition), where TTFT counts against the rate too.

use serde::{Deserialize, Serialize};

use crate::catalog::scenario::RateMetric;
use crate::error::{Error, Result, check_range};
use crate::sim::{Metrics, RateSummary, Scenario};

/// What "serving a user well" means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Minimum per-request rate, tokens/s, by `rate`.
    pub tok_s: f64,
    /// Which per-request rate is held to `tok_s`.
    pub rate: RateMetric,
    /// Share of requests that must meet both limits, e.g. 0.95.
    pub quantile: f64,
    /// Maximum time to first token, seconds.
    pub ttft_s: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            tok_s: 10.0,
            rate: RateMetric::Streaming,
            quantile: 0.95,
            ttft_s: 2.0,
        }
    }
}

/// The two numbers an SLO is checked against, taken from one simulated window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SloStats {
    /// Per-request rate at the slow tail: the `(1 − quantile)` quantile, tokens/s.
    pub tok_s_tail: f64,
    /// Time to first token at the `quantile` quantile, seconds.
    pub ttft_tail_s: f64,
    /// Requests the statistics rest on.
    pub requests: usize,
}

impl Slo {
    /// An SLO, range-checked with the field names in errors. The quantile must be one the
    /// simulator reports ([`SUPPORTED_QUANTILES`]).
    pub fn new(tok_s: f64, quantile: f64, ttft_s: f64) -> Result<Slo> {
        Ok(Slo {
            tok_s: check_range("SLO tok_s", tok_s, 0.0, 1e6)?,
            rate: RateMetric::Streaming,
            quantile: check_quantile("SLO quantile", quantile)?,
            ttft_s: check_range("SLO ttft_s", ttft_s, 0.001, 3600.0)?,
        })
    }

    /// This SLO holding `rate` to its tokens/s limit.
    pub fn with_rate(self, rate: RateMetric) -> Slo {
        Slo { rate, ..self }
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
            "{}% of requests {} >= {} tok/s and get their first token within {} s",
            trim_float(self.quantile * 100.0),
            self.rate.describe(),
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

/// The per-request rate an SLO with `rate` judges, from one window's metrics.
pub fn judged_rate(m: &Metrics, rate: RateMetric) -> Option<RateSummary> {
    match rate {
        RateMetric::Streaming => m.stream_tok_s,
        RateMetric::EndToEnd => m.request_tok_s,
    }
}

/// `q` if it is one of [`SUPPORTED_QUANTILES`]; an error naming `what` otherwise.
pub fn check_quantile(what: &str, q: f64) -> Result<f64> {
    if SUPPORTED_QUANTILES.iter().any(|s| (s - q).abs() < 1e-9) {
        return Ok(q);
    }
    Err(Error::BadInput(format!(
        "{what} must be one of 0.5, 0.9, 0.95, 0.99 (the percentiles the simulator reports), got {}",
        crate::error::compact(q)
    )))
}

/// The SLO quantiles the simulator's metrics carry (the per-request rate at `1 − q`, TTFT at `q`).
pub const SUPPORTED_QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// The SLO statistics of one simulated window. Requests refused (too long for the context or
/// the KV cache) or unfinished count as failing requests: if they alone exceed `1 − quantile`
/// of the requests, the tail values are set to fail the SLO.
pub fn slo_stats(m: &Metrics, slo: &Slo) -> Result<SloStats> {
    let q = check_quantile("SLO quantile", slo.quantile)?;
    let at = SUPPORTED_QUANTILES
        .iter()
        .position(|s| (s - q).abs() < 1e-9);
    let rates = judged_rate(m, slo.rate);
    let slow_tail = |r: RateSummary| match at {
        Some(0) => r.p50,
        Some(1) => r.p10,
        Some(2) => r.p05,
        _ => r.p01,
    };
    // No streaming phase at all (one-token answers): the rate limit holds trivially; no
    // completed request: nothing was served (the TTFT below fails it).
    let rate = rates.map_or(f64::INFINITY, slow_tail);
    let ttft_ms = m.ttft_ms.map_or(f64::INFINITY, |t| match at {
        Some(0) => t.p50,
        Some(1) => t.p90,
        Some(2) => t.p95,
        _ => t.p99,
    });
    let bad = m.rejected + m.unfinished;
    let total = m.requests + bad;
    let bad_share = if total == 0 {
        0.0
    } else {
        bad as f64 / total as f64
    };
    let failing = bad_share > 1.0 - q;
    Ok(SloStats {
        tok_s_tail: if failing { 0.0 } else { rate },
        ttft_tail_s: if failing {
            f64::INFINITY
        } else {
            ttft_ms / 1000.0
        },
        requests: m.requests as usize,
    })
}

/// SLO limits given by the user, each replacing the scenario's.
#[derive(Debug, Clone, Copy, Default)]
pub struct SloOverrides {
    pub tok_s: Option<f64>,
    pub quantile: Option<f64>,
    pub ttft_s: Option<f64>,
}

impl SloOverrides {
    fn any(&self) -> bool {
        self.tok_s.is_some() || self.quantile.is_some() || self.ttft_s.is_some()
    }
}

/// The SLO a plan checks: the scenario's, with the user's overrides, and where it came from
/// (`scenario <key>` or `command line`).
pub fn resolve_slo(scenario: &Scenario, overrides: &SloOverrides) -> Result<(Slo, String)> {
    let ss = &scenario.slo;
    let slo = Slo::new(
        overrides.tok_s.unwrap_or(ss.min_request_tok_s),
        overrides
            .quantile
            .unwrap_or(1.0 - ss.request_tok_s_percentile / 100.0),
        overrides.ttft_s.unwrap_or(ss.ttft_p95_s),
    )?
    .with_rate(ss.rate);
    let source = if overrides.any() {
        "command line".to_string()
    } else {
        format!("scenario {}", scenario.key)
    };
    Ok((slo, source))
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
    fn fields_are_range_checked() {
        assert!(Slo::new(10.0, 0.95, 2.0).is_ok());
        let e = Slo::new(10.0, 1.5, 2.0).unwrap_err().to_string();
        assert!(e.contains("SLO quantile"), "{e}");
        // a quantile in range but not reported by the simulator is refused up front, the same way
        let e = Slo::new(10.0, 0.999, 2.0).unwrap_err().to_string();
        assert!(e.contains("one of 0.5, 0.9, 0.95, 0.99"), "{e}");
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
