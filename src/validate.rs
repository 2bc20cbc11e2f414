//! Predictions next to published measurements, rerun from data shipped in the repository
//! (`profiles/validation/*.yaml`, every figure with its source).

pub mod record;
pub mod stats;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, engine::EnginePreset, quant::KvDtype};
use crate::deploy::{Deployment, Target};
use crate::error::{Error, Result};
use crate::sim::{self, LatencySummary, Load, Metrics, Scenario, Stop, TraceLoad, TraceRequest};

pub mod quant_ratio;

/// Embedded validation sets: (file name, YAML text).
pub const SETS: &[(&str, &str)] = &[
    (
        "backprop-rtx3090.yaml",
        include_str!("../profiles/validation/backprop-rtx3090.yaml"),
    ),
    (
        "phi2-single.yaml",
        include_str!("../profiles/validation/phi2-single.yaml"),
    ),
];

/// Seed of every validation run (one run per row, like the published single runs).
pub const SEED: u64 = 1;

/// One published experiment: a GPU, a model, and rows of measured results.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSet {
    pub source: String,
    pub gpu: String,
    pub model: String,
    pub quant: String,
    /// Engine preset of every row unless a row names its own.
    #[serde(default)]
    pub engine: Option<String>,
    /// Tensor-parallel size the runs used (1 when absent).
    #[serde(default = "one")]
    pub tp: u32,
    pub rows: Vec<Row>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub name: String,
    #[serde(default)]
    pub engine: Option<String>,
    /// Closed-loop run: scenario, clients and requests.
    #[serde(default)]
    pub scenario: Option<String>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub requests: Option<u64>,
    /// Single-request run: one prompt of this length and this many output tokens.
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub output_tokens: Option<u32>,
    /// What cardplan fitted to this row, if anything; such a row is left out of the accuracy claim.
    #[serde(default)]
    pub fitted: Option<String>,
    pub measured: Observed,
}

/// The figures compared, named as in `cardplan simulate --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_s: Option<Stat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<Stat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_tok_s: Option<Stat>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p01: Option<f64>,
}

/// One row's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    pub name: String,
    pub source: String,
    pub gpu: String,
    pub model: String,
    pub quant: String,
    pub engine: String,
    /// What was fitted to this row (then it does not count in the accuracy summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fitted: Option<String>,
    /// Where the step times come from (measured / derived profile and its source).
    pub profile: crate::cost::ProfileInfo,
    pub measured: Observed,
    pub predicted: Observed,
    /// Signed relative error (predicted − measured) / measured, per compared figure.
    pub errors: Vec<FigureError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FigureError {
    /// e.g. `request_tok_s.mean`.
    pub figure: String,
    pub measured: f64,
    pub predicted: f64,
    pub error: f64,
}

impl RowResult {
    /// The signed error of one figure, if compared.
    pub fn error_of(&self, figure: &str) -> Option<f64> {
        self.errors
            .iter()
            .find(|e| e.figure == figure)
            .map(|e| e.error)
    }
}

/// Parse every embedded validation set.
pub fn sets() -> Result<Vec<ValidationSet>> {
    SETS.iter()
        .map(|(name, text)| {
            crate::yaml::from_str(
                text,
                Path::new(&format!("<embedded profiles/validation/{name}>")),
            )
        })
        .collect()
}

/// Rerun every row of every embedded set.
pub fn run_all() -> Result<Vec<RowResult>> {
    let mut out = Vec::new();
    for set in sets()? {
        for row in &set.rows {
            out.push(run_row(&set, row)?);
        }
    }
    Ok(out)
}

/// Rerun one row through the simulator.
pub fn run_row(set: &ValidationSet, row: &Row) -> Result<RowResult> {
    let deployment = deployment(set, row)?;
    let (load, scenario, stop) = row_load(row)?;
    let cfg = deployment.sim_config(load, scenario, stop, SEED, 0.0);
    let outcome = sim::run(&deployment.cost, &cfg)?;
    let want = &row.measured;
    let predicted = predicted(want, &outcome.metrics);
    Ok(RowResult {
        name: row.name.clone(),
        source: set.source.clone(),
        gpu: deployment.target.gpu.key.clone(),
        model: deployment.target.model.key.clone(),
        quant: deployment.target.quant.key().to_string(),
        engine: deployment.engine.key.clone(),
        fitted: row.fitted.clone(),
        profile: deployment.cost.profile_info().clone(),
        errors: compare(want, &predicted),
        measured: want.clone(),
        predicted,
    })
}

/// The GPU, model, scheme and engine a row was measured with.
fn deployment(set: &ValidationSet, row: &Row) -> Result<Deployment> {
    let engine_key = row
        .engine
        .as_deref()
        .or(set.engine.as_deref())
        .ok_or_else(|| Error::BadInput(format!("validation row '{}' names no engine", row.name)))?;
    let engine: EnginePreset = engine_key.parse().map_err(Error::BadInput)?;
    let target = Target {
        gpu: catalog::gpu(&set.gpu)?,
        model: catalog::model(&set.model)?,
        quant: set.quant.parse().map_err(Error::BadInput)?,
        kv: KvDtype::Fp16,
        tp: set.tp,
    };
    Deployment::require(target, engine, None)
}

/// The load a row was measured under: closed-loop clients, or one request alone.
fn row_load(row: &Row) -> Result<(Load, Scenario, Stop)> {
    match (row.concurrency, row.prompt_tokens, row.output_tokens) {
        (Some(c), _, _) => {
            let scenario = Scenario::load(row.scenario.as_deref().unwrap_or("backprop-short"))?;
            Ok((
                Load::Concurrency(c),
                scenario,
                Stop::Requests(row.requests.unwrap_or(u64::from(c) * 10)),
            ))
        }
        (None, Some(p), Some(o)) => {
            let trace = TraceLoad {
                path: format!("<single request: {p} prompt, {o} output tokens>"),
                requests: vec![TraceRequest {
                    arrival_s: 0.0,
                    prompt_tokens: p,
                    output_tokens: o,
                }],
            };
            Ok((
                Load::Trace(trace),
                Scenario::load("backprop-short")?,
                Stop::Requests(1),
            ))
        }
        _ => Err(Error::BadInput(format!(
            "validation row '{}' needs either `concurrency` or `prompt_tokens` and `output_tokens`",
            row.name
        ))),
    }
}

/// The simulated figures the row measured (and only those).
fn predicted(want: &Observed, m: &Metrics) -> Observed {
    let stat = |want: Option<Stat>, mean: f64, p50: f64, p01: f64| {
        want.map(|w| Stat {
            mean: w.mean.map(|_| mean),
            p50: w.p50.map(|_| p50),
            p01: w.p01.map(|_| p01),
        })
    };
    // a figure nothing was measured for is NaN: it shows as an error, never as a match
    let lat = |s: Option<LatencySummary>| s.map_or((f64::NAN, f64::NAN), |s| (s.mean, s.p50));
    let (e2e, ttft) = (lat(m.e2e_s), lat(m.ttft_ms));
    let rate = m
        .request_tok_s
        .map_or((f64::NAN, f64::NAN, f64::NAN), |r| (r.mean, r.p50, r.p01));
    Observed {
        requests_per_s: want.requests_per_s.map(|_| m.requests_per_s),
        e2e_s: stat(want.e2e_s, e2e.0, e2e.1, f64::NAN),
        ttft_ms: stat(want.ttft_ms, ttft.0, ttft.1, f64::NAN),
        request_tok_s: stat(want.request_tok_s, rate.0, rate.1, rate.2),
    }
}

fn compare(measured: &Observed, predicted: &Observed) -> Vec<FigureError> {
    let mut out = Vec::new();
    let mut push = |figure: &str, m: Option<f64>, p: Option<f64>| {
        if let (Some(m), Some(p)) = (m, p) {
            out.push(FigureError {
                figure: figure.to_string(),
                measured: m,
                predicted: p,
                error: (p - m) / m,
            });
        }
    };
    push(
        "requests_per_s",
        measured.requests_per_s,
        predicted.requests_per_s,
    );
    for (name, m, p) in [
        ("e2e_s", measured.e2e_s, predicted.e2e_s),
        ("ttft_ms", measured.ttft_ms, predicted.ttft_ms),
        (
            "request_tok_s",
            measured.request_tok_s,
            predicted.request_tok_s,
        ),
    ] {
        let (m, p) = (m.unwrap_or_default(), p.unwrap_or_default());
        push(&format!("{name}.mean"), m.mean, p.mean);
        push(&format!("{name}.p50"), m.p50, p.p50);
        push(&format!("{name}.p01"), m.p01, p.p01);
    }
    out
}

/// How close the predictions are, over the rows not marked fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracy {
    pub median_abs_error: f64,
    pub max_abs_error: f64,
    pub figures_compared: usize,
}

/// Median and largest |relative error| over every figure of the rows not marked fitted (a
/// fitted row was used to set a parameter, so it cannot count as evidence).
pub fn accuracy(rows: &[RowResult]) -> Accuracy {
    let mut errs: Vec<f64> = rows
        .iter()
        .filter(|r| r.fitted.is_none())
        .flat_map(|r| r.errors.iter().map(|e| e.error.abs()))
        .collect();
    let figures_compared = errs.len();
    if errs.is_empty() {
        return Accuracy {
            median_abs_error: 0.0,
            max_abs_error: 0.0,
            figures_compared,
        };
    }
    errs.sort_by(f64::total_cmp);
    let n = errs.len();
    let median = if n % 2 == 1 {
        errs[n / 2]
    } else {
        0.5 * (errs[n / 2 - 1] + errs[n / 2])
    };
    Accuracy {
        median_abs_error: median,
        max_abs_error: errs[n - 1],
        figures_compared,
    }
}
