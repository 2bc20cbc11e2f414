//! Discrete-event simulation of a vLLM-style server under load.
//!
//! Time is integer nanoseconds; simultaneous events are ordered by a sequence number; every
//! source of randomness (each closed-loop client, each user slot, the arrival process) has its
//! own seeded stream, so one seed always gives the same numbers.
//!
//! The simulator is handed everything it needs (engine limits, KV capacity, a resolved
//! scenario, step times through [`StepTime`]) and looks nothing up. Its parts, laid out like a
//! serving engine's: `sched` (one scheduling policy per engine), `kv` (the paged block
//! manager), `decode` (the decoding set, advanced in O(1) per step however many sequences
//! decode), `server` (the state the policies plan with), `engine` (the event loop),
//! `recorder` and `output` (what is measured and reported).
//!
//! The per-step paths across these modules carry `#[inline]`: they run millions of times per
//! simulated hour, and without the hints the split into modules (and codegen units) cost about
//! 4% more instructions than the single-file loop it replaced.

mod cached_runs;
mod decode;
mod engine;
mod events;
mod kv;
pub mod load;
mod memo;
pub mod metrics;
mod output;
mod prefix;
mod recorder;
mod request;
mod rng;
mod sample;
mod sched;
mod server;
pub mod sketch;
mod time;
pub mod trace;
mod verify;

use serde::Serialize;

use crate::catalog::engine::{EnginePreset, Policy};
use crate::error::{Error, Result};
use crate::step::StepTime;

pub use crate::catalog::scenario::{Dist, Scenario, ScenarioSlo, Session};
pub use load::{Load, TraceLoad};
pub use metrics::{LatencySummary, Metrics, RateSummary};
pub use trace::TraceRequest;

/// When a run stops issuing requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Issue this many measured requests (after the warm-up), then let them finish.
    Requests(u64),
    /// Measure the requests that arrive in `[warmup, warmup + duration)` seconds; the load keeps
    /// running until every measured request has finished.
    Duration(f64),
}

/// Everything one simulation needs besides the step-time model.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Scheduler policy and limits (already including command-line overrides).
    pub engine: EnginePreset,
    /// Paged KV blocks of `engine.block_size` tokens available to the server.
    pub kv_blocks: u64,
    /// Longest request (prompt + output) the server accepts (vLLM `max_model_len`).
    pub max_context: u32,
    pub load: Load,
    pub scenario: Scenario,
    pub stop: Stop,
    pub seed: u64,
    /// Requests that arrive before this time (seconds) load the server but are not measured.
    pub warmup_s: f64,
}

/// What one simulation produced.
#[derive(Debug, Clone, Serialize)]
pub struct SimOutput {
    pub metrics: Metrics,
    /// (time s, KV blocks in use / capacity), at most [`TIMELINE_POINTS`] evenly spaced samples.
    pub kv_timeline: Vec<(f64, f64)>,
    /// (time s, requests waiting), sampled at the same instants as `kv_timeline`.
    pub queue_timeline: Vec<(f64, f64)>,
    /// What the load generator did.
    pub load: LoadStats,
    /// The sketches behind `metrics`, for quantiles not in the summary (e.g. an SLO's p05 at
    /// another percentile): `sketches.request_tok_s.quantile(0.05)`.
    #[serde(skip)]
    pub sketches: Sketches,
}

/// What the load generator did over the whole run (warm-up and drain included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadStats {
    /// Requests sent, measured or not.
    pub sent: u64,
    /// Requests sent while measuring, per second of the measurement window.
    pub offered_requests_per_s: f64,
    /// Users in a session at the peak (`--users` only).
    pub active_sessions: Option<u64>,
    /// Warm-up applied, seconds.
    pub warmup_s: f64,
    /// Output tokens the server generated in the whole run, measured or not (for speed figures).
    pub simulated_output_tokens: u64,
}

/// Bounded-memory distributions of the measured requests.
#[derive(Debug, Clone, Default)]
pub struct Sketches {
    pub ttft_ms: sketch::Sketch,
    pub tpot_ms: sketch::Sketch,
    pub itl_ms: sketch::Sketch,
    pub e2e_s: sketch::Sketch,
    pub request_tok_s: sketch::Sketch,
    pub stream_tok_s: sketch::Sketch,
}

/// Upper bound on the number of samples in a timeline.
pub const TIMELINE_POINTS: usize = 500;

/// Run one simulation.
pub fn run(cost: &dyn StepTime, cfg: &SimConfig) -> Result<SimOutput> {
    run_with_progress(cost, cfg, &|_| {})
}

/// [`run`], telling `progress` now and then what share of the measured work is done (0 to 1),
/// for a progress bar on long runs.
pub fn run_with_progress(
    cost: &dyn StepTime,
    cfg: &SimConfig,
    progress: &dyn Fn(f64),
) -> Result<SimOutput> {
    validate(cfg)?;
    engine::simulate(cost, cfg, false, progress, None)
}

/// When a run may end before its window is measured: once `count` measured requests had a time
/// to first token above `ttft_ms` (by at least the sketch's resolution). A caller that only
/// needs "is the TTFT quantile above `ttft_ms`" picks `count` so that the answer is then yes
/// whatever the rest of the window would have done (see `plan::planner`); the output's
/// metrics describe the part that ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GiveUp {
    pub ttft_ms: f64,
    pub count: u64,
}

/// [`run`], ending early as `give_up` says.
pub fn run_giving_up(cost: &dyn StepTime, cfg: &SimConfig, give_up: GiveUp) -> Result<SimOutput> {
    validate(cfg)?;
    engine::simulate(cost, cfg, false, &|_| {}, Some(give_up))
}

/// [`run`], re-checking the server's bookkeeping (KV blocks, decode context, limits) from
/// scratch after every scheduling decision: O(running) per step, for tests.
pub fn run_checked(cost: &dyn StepTime, cfg: &SimConfig) -> Result<SimOutput> {
    validate(cfg)?;
    engine::simulate(cost, cfg, true, &|_| {}, None)
}

/// Check a configuration before running it.
pub fn validate(cfg: &SimConfig) -> Result<()> {
    let e = &cfg.engine;
    if e.max_num_seqs == 0 {
        return Err(Error::BadInput(
            "engine max_num_seqs must be at least 1".into(),
        ));
    }
    if e.max_num_batched_tokens == 0 {
        return Err(Error::BadInput(
            "engine max_num_batched_tokens must be at least 1".into(),
        ));
    }
    if e.policy == Policy::ChunkedDecodeFirst && e.max_num_batched_tokens < e.max_num_seqs {
        return Err(Error::BadInput(format!(
            "engine max_num_batched_tokens ({}) must be at least max_num_seqs ({}) with chunked prefill, as vLLM requires",
            e.max_num_batched_tokens, e.max_num_seqs
        )));
    }
    if e.block_size == 0 || e.block_size > 1024 {
        return Err(Error::BadInput(format!(
            "engine block_size must be 1..=1024, got {}",
            e.block_size
        )));
    }
    if cfg.kv_blocks == 0 {
        return Err(Error::BadInput("the KV cache has no blocks".into()));
    }
    if cfg.max_context == 0 {
        return Err(Error::BadInput(
            "max context must be at least 1 token".into(),
        ));
    }
    if !(cfg.warmup_s.is_finite() && cfg.warmup_s >= 0.0) {
        return Err(Error::BadInput(format!(
            "warmup_s must be a finite number >= 0, got {}",
            cfg.warmup_s
        )));
    }
    match cfg.stop {
        Stop::Requests(0) => {
            return Err(Error::BadInput("stop: requests must be at least 1".into()));
        }
        Stop::Duration(d) if !(d.is_finite() && d > 0.0) => {
            return Err(Error::BadInput(format!(
                "stop: duration must be a finite number > 0, got {d}"
            )));
        }
        _ => {}
    }
    cfg.load.validate()?;
    cfg.scenario
        .validate()
        .map_err(|m| Error::BadInput(format!("scenario {}: {m}", cfg.scenario.key)))
}
