//! `cardplan simulate`: replay a load through the simulated server.

use std::path::Path;

use clap::{ArgGroup, Args};

use super::bounds;
use super::common::{TargetArgs, print_json};
use crate::catalog::engine::EnginePreset;
use crate::deploy::Deployment;
use crate::error::{Error, Result, check_range};
use crate::report::{self, simulate::SimView};
use crate::sim::{self, Load, Scenario, Stop, TraceLoad};

const EXAMPLES: &str = "Examples:
  cardplan simulate --gpu rtx3090 --model llama-3.1-8b --quant fp16 --concurrency 100 --scenario backprop-short --engine vllm-v0
  cardplan simulate --gpu h100-sxm --quant nf4 --rate 20 --burstiness 0.5 --scenario sharegpt --requests 5000
  cardplan simulate --gpu rtx3090 --users 5000 --duration 600 --json
  cardplan simulate --gpu l4 --trace requests.jsonl
  cardplan simulate --gpu h100-sxm --model llama-3.1-70b --tp 4 --rate 5 --scenario sharegpt

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
    /// Engine preset: vllm (chunked prefill, decodes first), vllm-v0 (prefill first), hf-static,
    /// or an engine YAML path (see engines/*.yaml).
    #[arg(long, value_name = "ENGINE", default_value = "vllm")]
    pub engine: String,
    /// Turn the engine's automatic prefix caching off (to compare).
    #[arg(long)]
    pub no_prefix_caching: bool,
    /// Closed loop: N clients (at most 1,000,000), each sends its next request when its last
    /// one ends.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Open loop: requests per second, 1e-6 to 1e6 (Poisson unless --burstiness is set).
    #[arg(long, value_name = "REQ/S")]
    pub rate: Option<f64>,
    /// Gamma shape of the gaps between --rate arrivals (1 = Poisson, < 1 burstier).
    #[arg(long, value_name = "SHAPE", default_value_t = 1.0, requires = "rate")]
    pub burstiness: f64,
    /// A population of N users in sessions, per the scenario's session model (at most 1,000,000
    /// in a session at once).
    #[arg(long, value_name = "N")]
    pub users: Option<u64>,
    /// Replay a JSONL trace (arrival_s, prompt_tokens, output_tokens per line).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// Scenario key (see `cardplan list scenarios`) or a scenario YAML path.
    #[arg(long, value_name = "SCENARIO", default_value = "chat")]
    pub scenario: String,
    /// Measured requests to send after the warm-up (at most 10,000,000).
    #[arg(long, value_name = "K")]
    pub requests: Option<u64>,
    /// Measure the requests sent during this many seconds after the warm-up (at most 30 days,
    /// and at most 10,000,000 requests at the load given).
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

fn engine_with_overrides(args: &SimulateArgs) -> Result<EnginePreset> {
    let mut e: EnginePreset = EnginePreset::load(&args.engine)?;
    if args.no_prefix_caching {
        e.prefix_caching = false;
    }
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

fn load_from_args(args: &SimulateArgs, scenario: &Scenario) -> Result<Load> {
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
    bounds::check_load(&load, scenario)?;
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
    let engine = engine_with_overrides(&args)?;
    let (target, _) = args
        .target
        .resolve_tp(&engine, crate::catalog::shard::TpChoice::Fixed(1))?;
    let scenario = Scenario::load(&args.scenario)?;
    let load = load_from_args(&args, &scenario)?;
    let stop = stop_from_args(&args, &load);
    bounds::check_stop(&stop, &load, &scenario)?;
    let mut deployment = Deployment::require(target, engine, args.kv_blocks)?;
    if let Some(m) = args.max_model_len {
        deployment.set_max_model_len(m)?;
    }
    let warmup_s = match args.warmup {
        Some(w) => check_range("--warmup", w, 0.0, bounds::MAX_DURATION_S)?,
        None => load.default_warmup_s(&scenario),
    };
    let cfg = deployment.sim_config(load, scenario, stop, args.seed, warmup_s);
    let bar = super::progress::bar(1000, "simulated");
    let out = sim::run_with_progress(&deployment.cost, &cfg, &|share| {
        bar.set_position((share * 1000.0) as u64);
    });
    bar.finish_and_clear();
    let out = out?;
    let target = &deployment.target;
    let view = SimView {
        gpu: &target.gpu.key,
        tp: target.tp,
        model: &target.model.key,
        quant: target.quant.to_string(),
        kv_dtype: target.kv.to_string(),
        engine: &cfg.engine,
        kv_blocks: cfg.kv_blocks,
        kv_tokens: deployment.kv_tokens(),
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
        return print_json(&view);
    }
    print!("{}", report::simulate::terminal(&view));
    Ok(())
}
