//! The validation record by dataset, and the signed log error of each row per metric: what the
//! error statistics, the leave-one-dataset-out check and a plan's model-error interval are
//! built from.

use rayon::prelude::*;
use serde::Serialize;

use super::{RowResult, SETS, run_row, sets};
use crate::error::Result;
use crate::plan::error_bars::{ErrorRecord, ErrorSample, Subject};

/// One file of `profiles/validation/` and its rows' outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    /// File name without `.yaml`, e.g. `backprop-rtx3090`.
    pub name: String,
    pub source: String,
    pub rows: Vec<RowResult>,
}

impl Dataset {
    /// The GPU, profile, model and scheme its rows ran (those of the first row).
    pub fn subject(&self) -> Option<Subject> {
        self.rows.first().map(|r| Subject {
            gpu: r.gpu.clone(),
            profile: r.profile.kind,
            model: r.model.clone(),
            quant: r.quant.clone(),
        })
    }
}

/// Rerun every row of every embedded set (rows in parallel), grouped by file.
pub fn run_datasets() -> Result<Vec<Dataset>> {
    let parsed = sets()?;
    let jobs: Vec<(usize, usize)> = parsed
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..s.rows.len()).map(move |j| (i, j)))
        .collect();
    let results: Vec<RowResult> = jobs
        .par_iter()
        .map(|&(i, j)| run_row(&parsed[i], &parsed[i].rows[j]))
        .collect::<Result<_>>()?;
    let mut out: Vec<Dataset> = SETS
        .iter()
        .zip(&parsed)
        .map(|((file, _), set)| Dataset {
            name: file.trim_end_matches(".yaml").to_string(),
            source: set.source.clone(),
            rows: Vec::new(),
        })
        .collect();
    for (&(i, _), r) in jobs.iter().zip(results) {
        out[i].rows.push(r);
    }
    Ok(out)
}

/// A metric the record's error is reported for, and the published figures that measure it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    pub key: &'static str,
    pub name: &'static str,
    /// Axis unit for charts.
    pub unit: &'static str,
    /// Figure keys (as in `validate --json`), the first a row has counts: one value per row.
    pub figures: &'static [&'static str],
}

/// The metrics of the error report. A figure a new dataset publishes under another key joins a
/// metric here.
pub const METRICS: [Metric; 4] = [
    Metric {
        key: "tpot",
        name: "mean TPOT",
        unit: "ms",
        figures: &["tpot_ms.mean"],
    },
    Metric {
        key: "ttft",
        name: "mean TTFT",
        unit: "ms",
        figures: &["ttft_ms.mean"],
    },
    Metric {
        key: "request_tok_s",
        name: "per-request tok/s",
        unit: "tok/s",
        figures: &["request_tok_s.mean"],
    },
    Metric {
        key: "throughput",
        name: "throughput",
        unit: "req/s or tok/s",
        figures: &["output_tok_s", "requests_per_s"],
    },
];

/// What a plan's step times are checked against: mean TPOT where a row has it, else the mean
/// per-request rate, inverted (a rate is tokens per step time).
pub const STEP_TIME: &str = "step time (mean TPOT, else 1 / mean per-request tok/s)";

/// One row's figure for a metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub figure: String,
    pub measured: f64,
    pub predicted: f64,
    /// ln(predicted / measured).
    pub log_error: f64,
}

/// The row's figure for `m`, if it has one (and both numbers are positive).
pub fn point(r: &RowResult, m: &Metric) -> Option<Point> {
    m.figures.iter().find_map(|f| {
        let e = r.errors.iter().find(|e| e.figure == *f)?;
        let ok = e.measured > 0.0 && e.predicted > 0.0 && e.predicted.is_finite();
        ok.then(|| Point {
            figure: e.figure.clone(),
            measured: e.measured,
            predicted: e.predicted,
            log_error: (e.predicted / e.measured).ln(),
        })
    })
}

/// ln(predicted / measured) of the row's step time, by [`STEP_TIME`].
pub fn step_error(r: &RowResult) -> Option<f64> {
    let tpot = Metric {
        figures: &["tpot_ms.mean"],
        ..METRICS[0]
    };
    let rate = Metric {
        figures: &["request_tok_s.mean"],
        ..METRICS[2]
    };
    point(r, &tpot)
        .map(|p| p.log_error)
        .or_else(|| point(r, &rate).map(|p| -p.log_error))
}

/// A row's error on one metric, with what the row ran on.
pub fn sample(d: &Dataset, r: &RowResult, log_error: f64) -> ErrorSample {
    ErrorSample {
        dataset: d.name.clone(),
        row: r.name.clone(),
        gpu: r.gpu.clone(),
        profile: r.profile.kind,
        model: r.model.clone(),
        quant: r.quant.clone(),
        log_error,
    }
}

/// Errors of the rows not marked fitted and not overloaded (a measured server whose queue grew
/// all run reports on the requests that survived, not on the model), by `error` (a metric's, or
/// the step time's), from the datasets `keep` accepts.
pub fn samples(
    datasets: &[Dataset],
    error: &dyn Fn(&RowResult) -> Option<f64>,
    keep: &dyn Fn(&Dataset) -> bool,
) -> Vec<ErrorSample> {
    datasets
        .iter()
        .filter(|d| keep(d))
        .flat_map(|d| {
            d.rows
                .iter()
                .filter(|r| r.fitted.is_none() && !r.overloaded)
                .filter_map(move |r| error(r).map(|e| sample(d, r, e)))
        })
        .collect()
}

/// The step-time record a plan folds into its interval.
pub fn step_record(datasets: &[Dataset]) -> ErrorRecord {
    ErrorRecord {
        metric: STEP_TIME.to_string(),
        samples: samples(datasets, &step_error, &|_| true),
    }
}

/// The record's TTFT error in words, said with a TTFT-limited answer.
pub fn ttft_caveat(datasets: &[Dataset]) -> Option<String> {
    let m = &METRICS[1];
    let mut e: Vec<f64> = samples(datasets, &|r| point(r, m).map(|p| p.log_error), &|_| true)
        .iter()
        .map(|s| s.log_error)
        .collect();
    if e.is_empty() {
        return None;
    }
    e.sort_by(f64::total_cmp);
    let pct = |x: f64| format!("{:+.0}%", 100.0 * x.exp_m1());
    Some(format!(
        "capacity is limited by time to first token, which cardplan predicts with a median \
         error of {} ({} to {}, {} validation rows); that error is not in the interval, which \
         scales step times only (see `cardplan validate`)",
        pct(crate::plan::slo::quantile_sorted(&e, 0.5)),
        pct(e[0]),
        pct(e[e.len() - 1]),
        e.len()
    ))
}
