//! The model's own error, as measured by `cardplan validate`, turned into an interval on the
//! step-time scale, and combined with the traffic interval of the capacity search.
//!
//! The plan layer never runs validation itself (that would invert the layers): the caller hands
//! it an [`ErrorRecord`], one step-time error per validation row. Here the record becomes a
//! prediction interval for the error of one more deployment — widened when the plan's GPU,
//! scheme or model family is not in the record — and [`combine`] folds the capacity that
//! interval implies into the traffic interval.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use super::search::prediction_interval;
use crate::cost::ProfileKind;

/// Extra log-scale error (one standard deviation) for a GPU no validation row ran on, by how
/// its step times are priced. A measured profile is checked against a PyTorch step within 9.2%
/// (median 2.6%); a derived one adds the datasheet transfer, whose end-to-end error on the
/// record's two derived GPUs is what the record holds but not what a third GPU will see; the
/// default efficiency set has no measurement behind it at all (docs/ACCURACY.md, "Error bars").
pub const WIDEN_GPU_MEASURED: f64 = 0.05;
pub const WIDEN_GPU_DERIVED: f64 = 0.10;
pub const WIDEN_GPU_ROOFLINE: f64 = 0.20;
/// A weight scheme no row used: the measured NF4 and INT8 tables differ from the libraries
/// engines call by up to 9–14% (NF4) and more (INT8, faster than `torch._int_mm`).
pub const WIDEN_SCHEME: f64 = 0.10;
/// A model family no row used: the same kernels at other shapes; attention and MLP variants
/// the record has not exercised.
pub const WIDEN_FAMILY: f64 = 0.05;

/// One validation row's step-time error and what it ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorSample {
    pub dataset: String,
    pub row: String,
    pub gpu: String,
    pub profile: ProfileKind,
    pub model: String,
    pub quant: String,
    /// ln(predicted / measured) of the step time.
    pub log_error: f64,
}

/// The step-time errors of the validation rows that count (not fitted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// Which published figure each error comes from, in words.
    pub metric: String,
    pub samples: Vec<ErrorSample>,
}

/// What a plan (or a left-out dataset) is about, to compare with the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub gpu: String,
    pub profile: ProfileKind,
    pub model: String,
    pub quant: String,
}

/// One reason the interval was widened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Widening {
    pub reason: String,
    /// Extra log-scale error, one standard deviation.
    pub sigma: f64,
}

/// Rows of the record on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuRows {
    pub gpu: String,
    pub profile: ProfileKind,
    pub rows: usize,
}

/// What the model-error interval rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBasis {
    pub metric: String,
    pub rows: usize,
    pub datasets: Vec<String>,
    pub gpus: Vec<GpuRows>,
    pub gpu: String,
    pub profile: ProfileKind,
    pub gpu_covered: bool,
    pub scheme_covered: bool,
    pub family_covered: bool,
    pub widening: Vec<Widening>,
}

/// A prediction interval for one more deployment's ln(predicted / measured) step time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorInterval {
    pub confidence: f64,
    /// Mean log error of the record.
    pub mean: f64,
    /// Half-width from the record alone (Student t, `s·√(1 + 1/n)`).
    pub record_half_width: f64,
    /// Half-width with the widening added in quadrature.
    pub half_width: f64,
    pub low: f64,
    pub high: f64,
}

impl ErrorInterval {
    /// Real step time ÷ predicted at the interval's two ends: (fastest, slowest).
    pub fn step_scales(&self) -> (f64, f64) {
        ((-self.high).exp(), (-self.low).exp())
    }
}

/// The family of a model key: its first word (`llama-3.1-8b` → `llama`, `qwen2.5-7b` →
/// `qwen2.5`), which is how the catalog names models.
pub fn family(model: &str) -> String {
    model
        .split(['-', '_', '/', ' '])
        .find(|w| !w.is_empty())
        .unwrap_or(model)
        .to_ascii_lowercase()
}

/// Compare `subject` with the record: which rows it rests on, what is not covered and by how
/// much the interval widens for it.
pub fn basis(record: &ErrorRecord, subject: &Subject) -> ErrorBasis {
    let s = &record.samples;
    let gpu_covered = s.iter().any(|x| x.gpu == subject.gpu);
    let scheme_covered = s.iter().any(|x| x.quant == subject.quant);
    let fam = family(&subject.model);
    let family_covered = s.iter().any(|x| family(&x.model) == fam);
    let mut widening = Vec::new();
    if !gpu_covered {
        let sigma = match subject.profile {
            ProfileKind::Measured => WIDEN_GPU_MEASURED,
            ProfileKind::Derived => WIDEN_GPU_DERIVED,
            ProfileKind::DatasheetRoofline => WIDEN_GPU_ROOFLINE,
        };
        widening.push(Widening {
            reason: format!(
                "no validation row ran on {} ({} profile)",
                subject.gpu, subject.profile
            ),
            sigma,
        });
    }
    if !scheme_covered {
        widening.push(Widening {
            reason: format!("no validation row used {}", subject.quant),
            sigma: WIDEN_SCHEME,
        });
    }
    if !family_covered {
        widening.push(Widening {
            reason: format!("no validation row ran a {fam} model"),
            sigma: WIDEN_FAMILY,
        });
    }
    let mut datasets: Vec<String> = s.iter().map(|x| x.dataset.clone()).collect();
    datasets.sort();
    datasets.dedup();
    let mut gpus: Vec<GpuRows> = Vec::new();
    for x in s {
        match gpus.iter_mut().find(|g| g.gpu == x.gpu) {
            Some(g) => g.rows += 1,
            None => gpus.push(GpuRows {
                gpu: x.gpu.clone(),
                profile: x.profile,
                rows: 1,
            }),
        }
    }
    ErrorBasis {
        metric: record.metric.clone(),
        rows: s.len(),
        datasets,
        gpus,
        gpu: subject.gpu.clone(),
        profile: subject.profile,
        gpu_covered,
        scheme_covered,
        family_covered,
        widening,
    }
}

/// The `confidence` prediction interval of one more log error, from `errors` (at least two)
/// and the widening (standard deviations, added in quadrature at the normal quantile).
pub fn error_interval(
    errors: &[f64],
    widening: &[Widening],
    confidence: f64,
) -> Option<ErrorInterval> {
    if errors.len() < 2 || errors.iter().any(|e| !e.is_finite()) {
        return None;
    }
    let (mean, record_half_width) = prediction_interval(errors, confidence);
    let z = Normal::new(0.0, 1.0)
        .map(|d| d.inverse_cdf(0.5 + confidence / 2.0))
        .ok()?;
    let extra: f64 = widening.iter().map(|w| (z * w.sigma).powi(2)).sum();
    let half_width = if extra == 0.0 {
        record_half_width
    } else {
        (record_half_width.powi(2) + extra).sqrt()
    };
    Some(ErrorInterval {
        confidence,
        mean,
        record_half_width,
        half_width,
        low: mean - half_width,
        high: mean + half_width,
    })
}

/// Users per card between two bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub low: f64,
    pub high: f64,
}

/// The combined interval around `estimate`: on each side, the two parts' distances from the
/// estimate (on the log scale, counted only where a part reaches beyond the estimate) add in
/// quadrature, as independent errors do. A part that does not reach beyond the estimate on a
/// side leaves the other part's bound there unchanged, so zero model error gives the traffic
/// interval bit for bit, and the result always contains both parts.
pub fn combine(estimate: f64, traffic: Bounds, model: Bounds) -> Bounds {
    if estimate <= 0.0 {
        return Bounds {
            low: traffic.low.min(model.low).max(0.0),
            high: traffic.high.max(model.high),
        };
    }
    let below = |b: f64| {
        if b >= estimate {
            0.0
        } else if b <= 0.0 {
            f64::INFINITY
        } else {
            (estimate / b).ln()
        }
    };
    let above = |b: f64| {
        if b <= estimate {
            0.0
        } else {
            (b / estimate).ln()
        }
    };
    let side = |t: f64, m: f64, dist: &dyn Fn(f64) -> f64, sign: f64| {
        let (dt, dm) = (dist(t), dist(m));
        if dm == 0.0 {
            t
        } else if dt == 0.0 {
            m
        } else {
            estimate * (sign * dt.hypot(dm)).exp()
        }
    };
    let low = side(traffic.low, model.low, &below, -1.0);
    let high = side(traffic.high, model.high, &above, 1.0);
    Bounds {
        low: low.min(traffic.low).min(model.low).max(0.0),
        high: high.max(traffic.high).max(model.high),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(gpu: &str, model: &str, quant: &str, e: f64) -> ErrorSample {
        ErrorSample {
            dataset: format!("{gpu}.yaml"),
            row: "r".into(),
            gpu: gpu.into(),
            profile: ProfileKind::Derived,
            model: model.into(),
            quant: quant.into(),
            log_error: e,
        }
    }

    fn record() -> ErrorRecord {
        ErrorRecord {
            metric: "step".into(),
            samples: vec![
                sample("rtx3090", "llama-3.1-8b", "fp16", 0.05),
                sample("rtx3090", "llama-3.1-8b", "fp16", -0.05),
                sample("rtx-a4000", "phi-2", "fp16", 0.1),
            ],
        }
    }

    fn subject(gpu: &str, profile: ProfileKind, model: &str, quant: &str) -> Subject {
        Subject {
            gpu: gpu.into(),
            profile,
            model: model.into(),
            quant: quant.into(),
        }
    }

    #[test]
    fn families_are_first_words() {
        assert_eq!(family("llama-3.1-8b"), "llama");
        assert_eq!(family("Llama-2-7B"), "llama");
        assert_eq!(family("qwen2.5-7b"), "qwen2.5");
        assert_eq!(family("phi-2"), "phi");
        assert_eq!(family(""), "");
    }

    #[test]
    fn a_covered_target_is_not_widened_and_each_gap_is() {
        let r = record();
        let b = basis(
            &r,
            &subject("rtx3090", ProfileKind::Derived, "llama-3-8b", "fp16"),
        );
        assert!(b.gpu_covered && b.scheme_covered && b.family_covered);
        assert!(b.widening.is_empty());
        assert_eq!(b.rows, 3);
        assert_eq!(b.gpus.len(), 2);
        assert_eq!(b.gpus[0].rows, 2);
        let b = basis(
            &r,
            &subject("h100-sxm", ProfileKind::Measured, "qwen3-8b", "nf4"),
        );
        let sigmas: Vec<f64> = b.widening.iter().map(|w| w.sigma).collect();
        assert_eq!(sigmas, vec![WIDEN_GPU_MEASURED, WIDEN_SCHEME, WIDEN_FAMILY]);
        let b = basis(&r, &subject("l4", ProfileKind::Derived, "phi-4", "fp16"));
        assert_eq!(b.widening.len(), 1);
        assert_eq!(b.widening[0].sigma, WIDEN_GPU_DERIVED);
    }

    #[test]
    fn the_error_interval_is_a_t_prediction_interval_widened_in_quadrature() {
        let e = [0.1, -0.1, 0.0, 0.2];
        let i = error_interval(&e, &[], 0.9).unwrap();
        let (m, h) = prediction_interval(&e, 0.9);
        assert_eq!((i.mean, i.half_width, i.record_half_width), (m, h, h));
        let w = [Widening {
            reason: "x".into(),
            sigma: 0.1,
        }];
        let j = error_interval(&e, &w, 0.9).unwrap();
        let z = 1.644_853_626_951_472_2;
        assert!((j.half_width - (h * h + (z * 0.1f64).powi(2)).sqrt()).abs() < 1e-9);
        assert!(j.low < i.low && j.high > i.high);
        assert!(error_interval(&[0.1], &[], 0.9).is_none());
        assert!(error_interval(&[0.1, f64::NAN], &[], 0.9).is_none());
    }

    #[test]
    fn step_scales_invert_the_error() {
        // predicted 10% fast (log error −0.1): real steps are e^0.1 times the predicted
        let i = error_interval(&[-0.1, -0.1], &[], 0.9).unwrap();
        let (a, b) = i.step_scales();
        assert!((a - 0.1f64.exp()).abs() < 1e-12 && (b - 0.1f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn zero_model_error_gives_the_traffic_interval_exactly() {
        let t = Bounds {
            low: 511.7,
            high: 618.3,
        };
        let c = combine(
            560.25,
            t,
            Bounds {
                low: 560.25,
                high: 560.25,
            },
        );
        assert_eq!(c, t);
    }

    #[test]
    fn the_combined_interval_contains_both_parts() {
        let e = 500.0;
        let cases = [
            (
                Bounds {
                    low: 450.0,
                    high: 560.0,
                },
                Bounds {
                    low: 400.0,
                    high: 600.0,
                },
            ),
            (
                Bounds {
                    low: 450.0,
                    high: 560.0,
                },
                Bounds {
                    low: 520.0,
                    high: 700.0,
                },
            ),
            (
                Bounds {
                    low: 450.0,
                    high: 560.0,
                },
                Bounds {
                    low: 300.0,
                    high: 420.0,
                },
            ),
            (
                Bounds {
                    low: 0.0,
                    high: 560.0,
                },
                Bounds {
                    low: 480.0,
                    high: 510.0,
                },
            ),
        ];
        for (t, m) in cases {
            let c = combine(e, t, m);
            assert!(c.low <= t.low && c.low <= m.low, "{c:?} {t:?} {m:?}");
            assert!(c.high >= t.high && c.high >= m.high, "{c:?} {t:?} {m:?}");
        }
        // both parts reach out on both sides: wider than either, narrower than their sum
        let c = combine(e, cases[0].0, cases[0].1);
        let sum_low = e * (450.0 / e) * (400.0 / e);
        assert!(c.low < 400.0 && c.low > sum_low, "{c:?}");
        let expect = e * (-((e / 450.0f64).ln().hypot((e / 400.0f64).ln()))).exp();
        assert!((c.low - expect).abs() < 1e-9);
    }
}
