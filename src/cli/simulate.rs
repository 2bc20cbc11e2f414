//! `cardplan simulate`: replay a load through the simulated server.

use std::path::Path;

use clap::{ArgGroup, Args};
use serde::Serialize;

use super::common::{TargetArgs, print_json};
use crate::catalog::engine::EnginePreset;
use crate::cost::ProfileInfo;
use crate::deploy::Deployment;
use crate::error::{Error, Result, check_range};
use crate::report::table::new_table;
use crate::sim::{self, Load, LoadStats, Metrics, Scenario, Stop, TraceLoad};

const EXAMPLES: &str = "Examples:
  cardplan simulate --gpu rtx3090 --model llama-3.1-8b --quant fp16 --concurrency 100 --scenario backprop-short --engine vllm-v0
  cardplan simulate --gpu h100-sxm --quant nf4 --rate 20 --burstiness 0.5 --scenario sharegpt --requests 5000
  cardplan simulate --gpu rtx3090 --users 5000 --duration 600 --json
  cardplan simulate --gpu l4 --trace requests.jsonl

Defaults: --concurrency N sends 10 x N requests (Backprop's ratio); --rate sends 1000;
--users runs a 600 s window after a warm-up of one average session; --trace replays every line.
A trace line is {\"arrival_s\": 0.5, \"prompt_tokens\": 812, \"output_tokens\": 164}.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
#[command(group(ArgGroup::new("load").required(true).args(["concurrency", "rate", "users", "trace"])))]
#[command(group(ArgGroup::new("stop").args(["requests", "duration"])))]
pub struct SimulateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Engine preset: vllm (chunked prefill, decodes first), vllm-v0 (prefill first), hf-static.
    #[arg(long, value_name = "ENGINE", default_value = "vllm")]
    pub engine: String,
    /// Closed loop: N clients, each sends its next request when its last one ends.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Open loop: requests per second (Poisson unless --burstiness is set).
    #[arg(long, value_name = "REQ/S")]
    pub rate: Option<f64>,
    /// Gamma shape of the gaps between --rate arrivals (1 = Poisson, < 1 burstier).
    #[arg(long, value_name = "SHAPE", default_value_t = 1.0, requires = "rate")]
    pub burstiness: f64,
    /// A population of N users in sessions, per the scenario's session model.
    #[arg(long, value_name = "N")]
    pub users: Option<u64>,
    /// Replay a JSONL trace (arrival_s, prompt_tokens, output_tokens per line).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// Scenario key (see `cardplan list scenarios`) or a scenario YAML path.
    #[arg(long, value_name = "SCENARIO", default_value = "chat")]
    pub scenario: String,
    /// Measured requests to send (after the warm-up).
    #[arg(long, value_name = "K")]
    pub requests: Option<u64>,
    /// Measure the requests sent during this many seconds (after the warm-up).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Requests sent before this time load the server but are not measured (seconds).
    #[arg(long, value_name = "SECONDS")]
    pub warmup: Option<f64>,
    /// Random seed: the same seed gives the same numbers.
    #[arg(long, value_name = "X", default_value_t = 0)]
    pub seed: u64,
    /// Override the engine's max_num_seqs (batch size for hf-static).
    #[arg(long, value_name = "N")]
    pub max_num_seqs: Option<u32>,
    /// Override the engine's token budget per step.
    #[arg(long, value_name = "TOKENS")]
    pub max_num_batched_tokens: Option<u32>,
    /// Override the share of GPU memory the engine may use.
    #[arg(long, value_name = "SHARE")]
    pub gpu_memory_utilization: Option<f64>,
    /// Override the fixed CPU/launch time per step, milliseconds.
    #[arg(long, value_name = "MS")]
    pub step_overhead_ms: Option<f64>,
    /// Override the CPU time per running sequence per step, microseconds.
    #[arg(long, value_name = "US")]
    pub per_seq_overhead_us: Option<f64>,
    /// Override the paged-KV block size, tokens.
    #[arg(long, value_name = "TOKENS")]
    pub block_size: Option<u32>,
    /// Override the number of KV blocks (instead of what fits in memory).
    #[arg(long, value_name = "N")]
    pub kv_blocks: Option<u64>,
    /// Longest request accepted, tokens (vLLM max_model_len; default: model context capped by KV).
    #[arg(long, value_name = "TOKENS")]
    pub max_model_len: Option<u32>,
    /// Print JSON (with KV and queue timelines) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Everything `simulate --json` prints: the inputs, then the metrics.
#[derive(Serialize)]
struct Report<'a> {
    gpu: &'a str,
    model: &'a str,
    quant: String,
    kv_dtype: String,
    engine: &'a EnginePreset,
    kv_blocks: u64,
    kv_tokens: u64,
    max_context: u32,
    load: &'a Load,
    stop: Stop,
    seed: u64,
    scenario: &'a Scenario,
    profile: &'a ProfileInfo,
    #[serde(flatten)]
    metrics: &'a Metrics,
    load_stats: &'a LoadStats,
    kv_timeline: &'a [(f64, f64)],
    queue_timeline: &'a [(f64, f64)],
}

fn engine_with_overrides(args: &SimulateArgs) -> Result<EnginePreset> {
    let mut e: EnginePreset = args.engine.parse().map_err(Error::Usage)?;
    if let Some(n) = args.max_num_seqs {
        if n == 0 || n > 1 << 20 {
            return Err(Error::BadInput(format!(
                "--max-num-seqs must be 1..=1048576, got {n}"
            )));
        }
        e.max_num_seqs = n;
    }
    if let Some(t) = args.max_num_batched_tokens {
        if t == 0 || t > 1 << 24 {
            return Err(Error::BadInput(format!(
                "--max-num-batched-tokens must be 1..=16777216, got {t}"
            )));
        }
        e.max_num_batched_tokens = t;
    }
    if let Some(u) = args.gpu_memory_utilization {
        e.gpu_memory_utilization = check_range("--gpu-memory-utilization", u, 0.05, 1.0)?;
    }
    if let Some(ms) = args.step_overhead_ms {
        e.step_overhead_s = check_range("--step-overhead-ms", ms, 0.0, 10_000.0)? * 1e-3;
    }
    if let Some(us) = args.per_seq_overhead_us {
        e.per_seq_overhead_s = check_range("--per-seq-overhead-us", us, 0.0, 1e6)? * 1e-6;
    }
    if let Some(b) = args.block_size {
        if b == 0 || b > 1024 {
            return Err(Error::BadInput(format!(
                "--block-size must be 1..=1024, got {b}"
            )));
        }
        e.block_size = b;
    }
    Ok(e)
}

fn load_from_args(args: &SimulateArgs) -> Result<Load> {
    let load = if let Some(n) = args.concurrency {
        Load::Concurrency(n)
    } else if let Some(r) = args.rate {
        Load::Rate {
            rate: r,
            burstiness: args.burstiness,
        }
    } else if let Some(n) = args.users {
        Load::Users(n)
    } else if let Some(path) = &args.trace {
        Load::Trace(TraceLoad {
            path: path.clone(),
            requests: sim::trace::read(Path::new(path))?,
        })
    } else {
        return Err(Error::Usage(
            "give one of --concurrency, --rate, --users or --trace".into(),
        ));
    };
    // Check the load before defaults are derived from it (e.g. 10 × N requests).
    load.validate()?;
    Ok(load)
}

fn stop_from_args(args: &SimulateArgs, load: &Load) -> Stop {
    match (args.requests, args.duration) {
        (Some(k), _) => Stop::Requests(k),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => match load {
            Load::Concurrency(n) => Stop::Requests(10 * u64::from(*n)),
            Load::Rate { .. } => Stop::Requests(1000),
            Load::Users(_) => Stop::Duration(600.0),
            Load::Trace(t) => Stop::Requests(t.requests.len() as u64),
        },
    }
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let target = args.target.resolve()?;
    let engine = engine_with_overrides(&args)?;
    let scenario = Scenario::load(&args.scenario)?;
    let load = load_from_args(&args)?;
    let stop = stop_from_args(&args, &load);
    let deployment = Deployment::require(target, engine, args.kv_blocks)?;
    let max_context = match args.max_model_len {
        Some(0) => return Err(Error::BadInput("--max-model-len must be at least 1".into())),
        Some(m) => m,
        None => deployment.max_context,
    };
    let warmup_s = match args.warmup {
        Some(w) => check_range("--warmup", w, 0.0, 1e7)?,
        None => load.default_warmup_s(&scenario),
    };
    let mut cfg = deployment.sim_config(load, scenario, stop, args.seed, warmup_s);
    cfg.max_context = max_context;
    let out = sim::run(&deployment.cost, &cfg)?;
    let target = &deployment.target;
    let report = Report {
        gpu: &target.gpu.key,
        model: &target.model.key,
        quant: target.quant.to_string(),
        kv_dtype: target.kv.to_string(),
        engine: &cfg.engine,
        kv_blocks: cfg.kv_blocks,
        kv_tokens: cfg.kv_blocks * u64::from(cfg.engine.block_size),
        max_context: cfg.max_context,
        load: &cfg.load,
        stop: cfg.stop,
        seed: cfg.seed,
        scenario: &cfg.scenario,
        profile: deployment.cost.profile_info(),
        metrics: &out.metrics,
        load_stats: &out.load,
        kv_timeline: &out.kv_timeline,
        queue_timeline: &out.queue_timeline,
    };
    if args.json {
        return print_json(&report);
    }
    print_table(&report);
    Ok(())
}

fn describe_load(load: &Load, stats: &LoadStats) -> String {
    match load {
        Load::Concurrency(n) => format!("closed loop, {n} clients"),
        Load::Rate { rate, burstiness } => {
            format!("open loop, {rate} req/s, gamma shape {burstiness}")
        }
        Load::Users(n) => format!(
            "{n} users, {} in a session at the peak",
            stats.active_sessions.unwrap_or(0)
        ),
        Load::Trace(t) => format!("trace {} ({} requests)", t.path, t.requests.len()),
    }
}

fn print_table(r: &Report<'_>) {
    let m = r.metrics;
    println!(
        "{} ({}, KV {}) on {}, engine {} ({}), scenario {}",
        r.model, r.quant, r.kv_dtype, r.gpu, r.engine.key, r.engine.policy, r.scenario.key
    );
    println!(
        "load: {}; seed {}; KV cache {} blocks = {} tokens; max context {} tokens",
        describe_load(r.load, r.load_stats),
        r.seed,
        r.kv_blocks,
        r.kv_tokens,
        r.max_context
    );
    println!("step times: {} ({})", r.profile.kind, r.profile.source);
    let mut t = new_table();
    t.set_header(vec!["metric", "mean", "p50", "p90", "p95", "p99", "max"]);
    let mut row = |name: &str, s: &sim::LatencySummary| {
        let f = |v: f64| format!("{v:.1}");
        t.add_row(vec![
            name.to_string(),
            f(s.mean),
            f(s.p50),
            f(s.p90),
            f(s.p95),
            f(s.p99),
            f(s.max),
        ]);
    };
    row("TTFT (ms)", &m.ttft_ms);
    row("TPOT (ms)", &m.tpot_ms);
    row("ITL (ms)", &m.itl_ms);
    let e2e_ms = sim::LatencySummary {
        mean: m.e2e_s.mean * 1e3,
        p50: m.e2e_s.p50 * 1e3,
        p90: m.e2e_s.p90 * 1e3,
        p95: m.e2e_s.p95 * 1e3,
        p99: m.e2e_s.p99 * 1e3,
        min: m.e2e_s.min * 1e3,
        max: m.e2e_s.max * 1e3,
        count: m.e2e_s.count,
    };
    row("E2E (ms)", &e2e_ms);
    println!("{t}");
    let mut t = new_table();
    t.set_header(vec![
        "per-request tok/s",
        "mean",
        "p50",
        "p10",
        "p05",
        "p01",
        "min",
    ]);
    let q = &m.request_tok_s;
    let f = |v: f64| format!("{v:.2}");
    t.add_row(vec![
        "output tokens / E2E".to_string(),
        f(q.mean),
        f(q.p50),
        f(q.p10),
        f(q.p05),
        f(q.p01),
        f(q.min),
    ]);
    println!("{t}");
    let mut t = new_table();
    t.set_header(vec!["", "value"]);
    let rows: Vec<(&str, String)> = vec![
        ("requests completed", m.requests.to_string()),
        ("requests rejected", m.rejected.to_string()),
        ("requests unfinished", m.unfinished.to_string()),
        ("output tokens", m.output_tokens.to_string()),
        ("makespan", format!("{:.2} s", m.duration_s)),
        ("throughput", format!("{:.1} output tok/s", m.output_tok_s)),
        ("request rate", format!("{:.3} req/s", m.requests_per_s)),
        ("preemptions", m.preemptions.to_string()),
        (
            "KV cache in use",
            format!(
                "peak {:.1}%, mean {:.1}%",
                m.kv_peak_util * 100.0,
                m.kv_mean_util * 100.0
            ),
        ),
        (
            "queue (waiting)",
            format!("peak {}, mean {:.1}", m.queue_peak, m.queue_mean),
        ),
        ("running (mean)", format!("{:.1} requests", m.running_mean)),
        (
            "simulated",
            format!("{} steps, {:.1} s", m.steps, m.simulated_s),
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
    println!("measured: {}", m.measured);
    println!(
        "quantiles within {:.1}% (log-bucketed sketch); SLO of {}: p{:02.0} >= {} tok/s, TTFT p95 <= {} s",
        m.quantile_relative_error * 100.0,
        r.scenario.key,
        r.scenario.slo.request_tok_s_percentile,
        r.scenario.slo.min_request_tok_s,
        r.scenario.slo.ttft_p95_s
    );
}
