//! Predictions next to published measurements, rerun from data shipped in the repository
//! (`profiles/validation/*.yaml`, every figure with its source).

pub mod record;
pub mod stats;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, engine::EnginePreset, quant::KvDtype};
use crate::deploy::{Deployment, Target};
use crate::error::{Error, Result};
use crate::sim::{
    self, Dist, LatencySummary, Load, Metrics, Scenario, Stop, TraceLoad, TraceRequest,
};

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
    (
        "vllm019-rtx4090.yaml",
        include_str!("../profiles/validation/vllm019-rtx4090.yaml"),
    ),
    (
        "vllm019-rtxpro6000.yaml",
        include_str!("../profiles/validation/vllm019-rtxpro6000.yaml"),
    ),
    (
        "vllm019-rtxpro6000-qwen3-32b-tp2.yaml",
        include_str!("../profiles/validation/vllm019-rtxpro6000-qwen3-32b-tp2.yaml"),
    ),
    (
        "vllm015-h100-blis.yaml",
        include_str!("../profiles/validation/vllm015-h100-blis.yaml"),
    ),
    (
        "vllm015-h100-blis-codellama-34b-tp2.yaml",
        include_str!("../profiles/validation/vllm015-h100-blis-codellama-34b-tp2.yaml"),
    ),
    (
        "vllm015-h100-blis-llama-2-70b-tp4.yaml",
        include_str!("../profiles/validation/vllm015-h100-blis-llama-2-70b-tp4.yaml"),
    ),
    (
        "vllm015-h100-blis-mixtral-8x7b-tp2.yaml",
        include_str!("../profiles/validation/vllm015-h100-blis-mixtral-8x7b-tp2.yaml"),
    ),
];

/// Embedded request traces that rows replay: (file name, JSONL text).
pub const TRACES: &[(&str, &str)] = &[(
    "vllm019-rtx4090-sharegpt.jsonl",
    include_str!("../profiles/validation/vllm019-rtx4090-sharegpt.jsonl"),
)];

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
    /// Replay of an embedded trace ([`TRACES`]), every request measured.
    #[serde(default)]
    pub trace: Option<String>,
    /// Open loop: requests per second for `duration_s` seconds, gaps by `arrival`.
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub arrival: Arrival,
    /// The requests of a shared-prefix benchmark (with `rate`).
    #[serde(default)]
    pub shared_prefix: Option<SharedPrefix>,
    /// Settings of the measured server, where they differ from the engine preset's.
    #[serde(default)]
    pub kv_blocks: Option<u64>,
    #[serde(default)]
    pub max_num_seqs: Option<u32>,
    #[serde(default)]
    pub max_num_batched_tokens: Option<u32>,
    #[serde(default)]
    pub max_model_len: Option<u32>,
    /// The measured server could not keep up (queues grew all run): shown, but kept out of
    /// the accuracy summary, which is about servers within their capacity.
    #[serde(default)]
    pub overloaded: bool,
    pub measured: Observed,
}

/// Gaps between open-loop arrivals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Exponential gaps (`vllm bench serve --request-rate`).
    #[default]
    Poisson,
    /// Equal gaps (a load generator's constant rate; simulated as gamma gaps of shape 1000,
    /// within 3% of equal).
    Constant,
}

/// A shared-prefix benchmark (inference-perf's `shared_prefix` data): `groups` system prompts
/// of `system_prompt_len` tokens, each with `prompts_per_group` questions of `question_len`
/// tokens; every request asks one of them and gets `output_len` tokens (EOS ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedPrefix {
    pub system_prompt_len: u32,
    pub question_len: u32,
    pub output_len: u32,
    /// `NxM`: N groups (system prompts) of M questions.
    pub prompt_groups: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<Stat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tok_s: Option<f64>,
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
    /// The measured server was overloaded (then the row does not count in the summary).
    pub overloaded: bool,
    /// Share of prompt tokens served from the prefix cache in the simulation (None: caching off).
    pub prefix_hit_rate: Option<f64>,
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
    parse_embedded(SETS)
}

/// Parse embedded `profiles/validation/` files `(name, YAML)`, each error naming its file.
pub fn parse_embedded<T: serde::de::DeserializeOwned>(files: &[(&str, &str)]) -> Result<Vec<T>> {
    files
        .iter()
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
    let (load, scenario, stop) = match load {
        Some(l) => (l, scenario, stop),
        None => open_loop(row)?,
    };
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
        overloaded: row.overloaded,
        prefix_hit_rate: outcome.metrics.prefix_hit_rate,
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
    let mut engine = EnginePreset::load(engine_key)?;
    if let Some(n) = row.max_num_seqs {
        engine.max_num_seqs = n;
    }
    if let Some(n) = row.max_num_batched_tokens {
        engine.max_num_batched_tokens = n;
    }
    let target = Target {
        gpu: catalog::gpu(&set.gpu)?,
        model: catalog::model(&set.model)?,
        quant: set.quant.parse().map_err(Error::BadInput)?,
        kv: KvDtype::Fp16,
        tp: set.tp,
    };
    let mut d = Deployment::require(target, engine, row.kv_blocks)?;
    if let Some(m) = row.max_model_len {
        d.set_max_model_len(m)?;
    }
    Ok(d)
}

/// The load a row was measured under: closed-loop clients, one request alone, or a trace
/// (`None`: an open loop, see [`open_loop`]).
fn row_load(row: &Row) -> Result<(Option<Load>, Scenario, Stop)> {
    if let Some(name) = &row.trace {
        let (file, text) = TRACES.iter().find(|(f, _)| f == name).ok_or_else(|| {
            Error::BadInput(format!(
                "validation row '{}': no embedded trace {name}",
                row.name
            ))
        })?;
        let origin = format!("<embedded profiles/validation/{file}>");
        let requests = sim::trace::parse(text, Path::new(&origin))?;
        let n = requests.len() as u64;
        let trace = TraceLoad {
            path: origin,
            requests,
        };
        return Ok((
            Some(Load::Trace(trace)),
            Scenario::load("sharegpt")?,
            Stop::Requests(n),
        ));
    }
    if row.rate.is_some() {
        return Ok((None, Scenario::load("sharegpt")?, Stop::Requests(1)));
    }
    match (row.concurrency, row.prompt_tokens, row.output_tokens) {
        (Some(c), _, _) => {
            let scenario = Scenario::load(row.scenario.as_deref().unwrap_or("backprop-short"))?;
            Ok((
                Some(Load::Concurrency(c)),
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
                Some(Load::Trace(trace)),
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

/// An open-loop row: `rate` requests/s for `duration_s` s, lengths from `shared_prefix` or
/// from the named scenario.
fn open_loop(row: &Row) -> Result<(Load, Scenario, Stop)> {
    let bad = |m: &str| Error::BadInput(format!("validation row '{}': {m}", row.name));
    let rate = row.rate.ok_or_else(|| bad("needs `rate`"))?;
    let duration = row
        .duration_s
        .ok_or_else(|| bad("an open loop needs `duration_s`"))?;
    let burstiness = match row.arrival {
        Arrival::Poisson => 1.0,
        Arrival::Constant => 1000.0,
    };
    let mut scenario = Scenario::load(row.scenario.as_deref().unwrap_or("sharegpt"))?;
    if let Some(sp) = &row.shared_prefix {
        let (groups, per_group) = sp
            .prompt_groups
            .split_once(['x', 'X'])
            .and_then(|(n, m)| Some((n.trim().parse().ok()?, m.trim().parse().ok()?)))
            .ok_or_else(|| bad("prompt_groups must read NxM, e.g. 11x4"))?;
        let fixed = |v: u32| Dist::Fixed {
            value: f64::from(v),
        };
        scenario.key = format!("shared-prefix {}", sp.prompt_groups);
        scenario.prompt_tokens = fixed(sp.question_len);
        scenario.output_tokens = fixed(sp.output_len);
        scenario.system_prompt_tokens = sp.system_prompt_len;
        scenario.system_prompts = groups;
        scenario.questions_per_system_prompt = Some(per_group);
    }
    let load = Load::Rate { rate, burstiness };
    Ok((load, scenario, Stop::Duration(duration)))
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
        tpot_ms: {
            let tpot = lat(m.tpot_ms);
            stat(want.tpot_ms, tpot.0, tpot.1, f64::NAN)
        },
        output_tok_s: want.output_tok_s.map(|_| m.output_tok_s),
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
    push(
        "output_tok_s",
        measured.output_tok_s,
        predicted.output_tok_s,
    );
    for (name, m, p) in [
        ("e2e_s", measured.e2e_s, predicted.e2e_s),
        ("ttft_ms", measured.ttft_ms, predicted.ttft_ms),
        (
            "request_tok_s",
            measured.request_tok_s,
            predicted.request_tok_s,
        ),
        ("tpot_ms", measured.tpot_ms, predicted.tpot_ms),
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
/// fitted row was used to set a parameter, so it cannot count as evidence) nor overloaded.
pub fn accuracy(rows: &[RowResult]) -> Accuracy {
    let mut errs: Vec<f64> = rows
        .iter()
        .filter(|r| r.fitted.is_none() && !r.overloaded)
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
