//! What a quantization changes, checked against serving runs that measured the same batches with
//! and without it: the step-time ratio of a variant (fp8 weights, fp8 KV cache) to the fp16 run of
//! the same batch and lengths. A ratio cancels what both runs share (the engine's CPU time, the
//! GPU's clocks and form factor), so it tests the quantized kernels' prices on their own.

use serde::{Deserialize, Serialize};

use crate::catalog::{self, engine::EnginePreset, quant::KvDtype, quant::Quant};
use crate::deploy::{Deployment, Target};
use crate::error::{Error, Result};
use crate::sim::{self, Load, Scenario, Stop, TraceLoad, TraceRequest};

/// Embedded ratio sets: (file name, YAML text).
pub const SETS: &[(&str, &str)] = &[(
    "vllm-h100-fp8-vs-fp16.yaml",
    include_str!("../../profiles/validation/vllm-h100-fp8-vs-fp16.yaml"),
)];

/// Runs of one GPU, model and engine: each row a variant and its fp16 baseline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioSet {
    pub source: String,
    pub gpu: String,
    pub model: String,
    pub engine: String,
    pub rows: Vec<RatioRow>,
}

/// A static batch: `batch` prompts of `input_len` tokens, `output_len` tokens out each; times
/// are batch latency / output_len, for the variant and for fp16 weights and KV cache.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioRow {
    pub quant: Quant,
    pub kv: KvDtype,
    pub batch: u32,
    pub input_len: u32,
    pub output_len: u32,
    pub ms_per_step: f64,
    pub baseline_ms_per_step: f64,
}

/// One row rerun.
#[derive(Debug, Clone, Serialize)]
pub struct RatioResult {
    /// e.g. `fp8-tensor/fp8 B=16 L=512`.
    pub name: String,
    pub gpu: String,
    pub quant: Quant,
    pub kv: KvDtype,
    pub measured_ms: f64,
    pub predicted_ms: f64,
    pub baseline_measured_ms: f64,
    pub baseline_predicted_ms: f64,
    pub measured_ratio: f64,
    pub predicted_ratio: f64,
    /// (predicted − measured) / measured, of the ratio.
    pub error: f64,
}

/// Parse every embedded ratio set.
pub fn sets() -> Result<Vec<RatioSet>> {
    super::parse_embedded(SETS)
}

/// Rerun every row of every embedded ratio set.
pub fn run_all() -> Result<Vec<RatioResult>> {
    let mut out = Vec::new();
    for set in sets()? {
        let engine: EnginePreset = set.engine.parse().map_err(Error::BadInput)?;
        for row in &set.rows {
            out.push(run_row(&set, &engine, row)?);
        }
    }
    Ok(out)
}

fn run_row(set: &RatioSet, engine: &EnginePreset, row: &RatioRow) -> Result<RatioResult> {
    let variant = ms_per_step(set, engine, row.quant, row.kv, row)?;
    let baseline = ms_per_step(set, engine, Quant::Fp16, KvDtype::Fp16, row)?;
    let measured_ratio = row.ms_per_step / row.baseline_ms_per_step;
    let predicted_ratio = variant / baseline;
    Ok(RatioResult {
        name: format!(
            "{}/{} B={} L={}",
            row.quant, row.kv, row.batch, row.input_len
        ),
        gpu: set.gpu.clone(),
        quant: row.quant,
        kv: row.kv,
        measured_ms: row.ms_per_step,
        predicted_ms: variant,
        baseline_measured_ms: row.baseline_ms_per_step,
        baseline_predicted_ms: baseline,
        measured_ratio,
        predicted_ratio,
        error: (predicted_ratio - measured_ratio) / measured_ratio,
    })
}

/// Predicted batch latency / output_len, ms: all prompts arrive at once (an offline run), the
/// batch ends with its last request.
fn ms_per_step(
    set: &RatioSet,
    engine: &EnginePreset,
    quant: Quant,
    kv: KvDtype,
    row: &RatioRow,
) -> Result<f64> {
    if row.batch == 0 || row.output_len == 0 || row.input_len == 0 {
        return Err(Error::BadInput(format!(
            "ratio row {quant}/{kv}: batch, input_len and output_len must be positive"
        )));
    }
    let target = Target {
        gpu: catalog::gpu(&set.gpu)?,
        model: catalog::model(&set.model)?,
        quant,
        kv,
        tp: 1,
    };
    let deployment = Deployment::require(target, engine.clone(), None)?;
    let trace = TraceLoad {
        path: format!(
            "<static batch: {} x ({} in, {} out)>",
            row.batch, row.input_len, row.output_len
        ),
        requests: (0..row.batch)
            .map(|_| TraceRequest {
                arrival_s: 0.0,
                prompt_tokens: row.input_len,
                output_tokens: row.output_len,
            })
            .collect(),
    };
    let cfg = deployment.sim_config(
        Load::Trace(trace),
        Scenario::load("backprop-short")?,
        Stop::Requests(u64::from(row.batch)),
        super::SEED,
        0.0,
    );
    let outcome = sim::run(&deployment.cost, &cfg)?;
    let e2e = outcome
        .metrics
        .e2e_s
        .ok_or_else(|| Error::Internal("a static batch finished no request".into()))?;
    Ok(e2e.max * 1e3 / f64::from(row.output_len))
}

/// Median and largest |error| of the ratios.
pub fn summary(rows: &[RatioResult]) -> super::Accuracy {
    let mut errs: Vec<f64> = rows.iter().map(|r| r.error.abs()).collect();
    errs.sort_by(f64::total_cmp);
    let n = errs.len();
    let median = match n {
        0 => 0.0,
        _ if n % 2 == 1 => errs[n / 2],
        _ => 0.5 * (errs[n / 2 - 1] + errs[n / 2]),
    };
    super::Accuracy {
        median_abs_error: median,
        max_abs_error: errs.last().copied().unwrap_or(0.0),
        figures_compared: n,
    }
}
