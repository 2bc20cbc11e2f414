//! The distribution of the signed log error per metric over the rows not marked fitted, and
//! the leave-one-dataset-out check of the intervals a plan builds from it.

use serde::Serialize;

use super::record::{Dataset, METRICS, Metric, STEP_TIME, point, samples, step_error};
use crate::plan::error_bars::{ErrorRecord, Widening, basis, error_interval};
use crate::plan::slo::quantile_sorted;
use crate::validate::RowResult;

/// Nominal level of the intervals the report prints and the leave-one-out check tests.
pub const NOMINAL: f64 = 0.90;

/// Signed log error, ln(predicted / measured), of one metric over the rows that count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricStats {
    pub metric: String,
    pub name: String,
    pub rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub median: f64,
    pub mean: f64,
    /// Sample standard deviation.
    pub sd: f64,
    pub min: f64,
    pub p05: f64,
    pub p25: f64,
    pub p75: f64,
    pub p95: f64,
    pub max: f64,
    /// The `NOMINAL` prediction interval for one more row (Student t on the mean and sd; needs
    /// two rows), what a plan's interval is built like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<(f64, f64)>,
}

/// Summary statistics of `errors` (`None` when empty).
pub fn summarise(errors: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = errors.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() < 2 {
        0.0
    } else {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    let q = |p| quantile_sorted(&v, p);
    Some(Summary {
        median: q(0.5),
        mean,
        sd,
        min: v[0],
        p05: q(0.05),
        p25: q(0.25),
        p75: q(0.75),
        p95: q(0.95),
        max: v[v.len() - 1],
        interval: error_interval(&v, &[], NOMINAL).map(|i| (i.low, i.high)),
    })
}

/// A row's error on some metric, if the row has it.
pub type RowError<'a> = Box<dyn Fn(&RowResult) -> Option<f64> + 'a>;

/// A metric's error: its figure's log error, or the step time's.
pub fn error_fn(metric: Option<&Metric>) -> RowError<'_> {
    match metric {
        Some(m) => Box::new(move |r| point(r, m).map(|p| p.log_error)),
        None => Box::new(step_error),
    }
}

/// The four metrics, then the step time a plan folds in.
pub fn metric_stats(datasets: &[Dataset]) -> Vec<MetricStats> {
    let metrics: Vec<Option<&Metric>> = METRICS.iter().map(Some).chain([None]).collect();
    metrics
        .into_iter()
        .map(|m| {
            let e: Vec<f64> = samples(datasets, &*error_fn(m), &|_| true)
                .iter()
                .map(|s| s.log_error)
                .collect();
            MetricStats {
                metric: m.map_or("step_time", |m| m.key).to_string(),
                name: m.map_or(STEP_TIME, |m| m.name).to_string(),
                rows: e.len(),
                summary: summarise(&e),
            }
        })
        .collect()
}

/// One metric, one dataset left out: the interval built from the others (widened for what
/// they do not cover, as a plan's is), applied to the left-out rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeftOut {
    pub metric: String,
    pub dataset: String,
    /// Rows the interval was built from.
    pub built_from: usize,
    /// The left-out dataset's rows with this metric.
    pub rows: usize,
    /// How many of them fall inside the interval (`None`: fewer than two rows to build from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<(f64, f64)>,
    pub widening: Vec<Widening>,
}

/// Every metric (and the step time) × every dataset with rows for it, at `confidence`.
pub fn leave_one_out(datasets: &[Dataset], confidence: f64) -> Vec<LeftOut> {
    let metrics: Vec<Option<&Metric>> = METRICS.iter().map(Some).chain([None]).collect();
    let mut out = Vec::new();
    for m in metrics {
        let error = error_fn(m);
        for d in datasets {
            let Some(subject) = d.subject() else { continue };
            let test = samples(datasets, &*error, &|x| x.name == d.name);
            if test.is_empty() {
                continue;
            }
            let record = ErrorRecord {
                metric: m.map_or(STEP_TIME, |m| m.name).to_string(),
                samples: samples(datasets, &*error, &|x| x.name != d.name),
            };
            let b = basis(&record, &subject);
            let train: Vec<f64> = record.samples.iter().map(|s| s.log_error).collect();
            let i = error_interval(&train, &b.widening, confidence);
            out.push(LeftOut {
                metric: m.map_or("step_time", |m| m.key).to_string(),
                dataset: d.name.clone(),
                built_from: train.len(),
                rows: test.len(),
                covered: i.map(|i| {
                    test.iter()
                        .filter(|s| (i.low..=i.high).contains(&s.log_error))
                        .count()
                }),
                interval: i.map(|i| (i.low, i.high)),
                widening: b.widening,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let s = summarise(&[0.3, -0.1, 0.1, 0.5, f64::NAN]).unwrap();
        assert_eq!((s.min, s.max), (-0.1, 0.5));
        assert!((s.median - 0.2).abs() < 1e-12);
        assert!((s.mean - 0.2).abs() < 1e-12);
        assert!((s.sd - (0.2f64 / 3.0).sqrt()).abs() < 1e-12);
        let (lo, hi) = s.interval.unwrap();
        assert!(lo < s.min && hi > s.max, "{lo} {hi}");
        assert!(summarise(&[]).is_none());
        assert!(summarise(&[0.1]).unwrap().interval.is_none());
    }
}
