//! `cardplan fit`: does the model fit, and how much KV cache is left?

use crate::report::table::new_table;
use clap::Args;
use serde::Serialize;

use super::common::{TargetArgs, print_json};
use crate::catalog::engine::EnginePreset;
use crate::error::{Error, Result, check_range};
use crate::fit::{FitOptions, FitReport, fit, gb};

const EXAMPLES: &str = "Examples:
  cardplan fit --gpu rtx3090
  cardplan fit --gpu rtx3090 --model llama-3.1-70b --quant nf4 --kv int8
  cardplan fit --gpu l4 --model ./config.json --context 8192 --json";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct FitArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Share of GPU memory the engine may use (vLLM's gpu_memory_utilization).
    #[arg(
        long,
        value_name = "SHARE",
        default_value_t = 0.9,
        allow_negative_numbers = true
    )]
    pub gpu_memory_utilization: f64,
    /// Context length (prompt + output tokens) for "sequences that fit at once".
    #[arg(long, value_name = "TOKENS", default_value_t = 4096)]
    pub context: u32,
    /// Engine preset whose step budget sets the activation reserve: vllm, vllm-v0, hf-static.
    #[arg(long, value_name = "ENGINE", default_value = "vllm")]
    pub engine: String,
    /// Override the engine's token budget per step (sets the activation peak).
    #[arg(long, value_name = "TOKENS")]
    pub max_num_batched_tokens: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct FitJson<'a> {
    #[serde(flatten)]
    report: &'a FitReport,
    context: u32,
    max_seqs_at_context: u64,
    model_params: u64,
}

pub fn run(args: FitArgs) -> Result<()> {
    let target = args.target.resolve()?;
    check_range(
        "--gpu-memory-utilization",
        args.gpu_memory_utilization,
        0.05,
        1.0,
    )?;
    if args.context == 0 {
        return Err(Error::BadInput("--context must be at least 1 token".into()));
    }
    let engine: EnginePreset = args.engine.parse().map_err(Error::Usage)?;
    let mut opts = FitOptions::for_engine(&engine, target.kv);
    opts.gpu_memory_utilization = args.gpu_memory_utilization;
    if let Some(t) = args.max_num_batched_tokens {
        if t == 0 || t > 1 << 20 {
            return Err(Error::BadInput(format!(
                "--max-num-batched-tokens must be 1..={}, got {t}",
                1 << 20
            )));
        }
        opts.max_num_batched_tokens = t;
    }
    let report = fit(&target.gpu, &target.model, target.quant, &opts);
    let max_seqs = report.max_seqs_at(args.context);
    if args.json {
        return print_json(&FitJson {
            report: &report,
            context: args.context,
            max_seqs_at_context: max_seqs,
            model_params: target.model.params().total(),
        });
    }
    println!(
        "{} ({}) on {} ({}), KV cache {}",
        target.model.key, target.quant, target.gpu.key, target.gpu.name, target.kv
    );
    let mut t = new_table();
    t.set_header(vec!["", "value", "note"]);
    t.add_row(vec![
        "GPU memory".to_string(),
        gb(report.memory_bytes),
        format!(
            "× {:.2} usable = {}",
            report.gpu_memory_utilization,
            gb(report.usable_bytes)
        ),
    ]);
    t.add_row(vec![
        "weights".to_string(),
        gb(report.weights_bytes),
        format!(
            "{:.2} B params, {}",
            target.model.params().total() as f64 / 1e9,
            target.quant.describe()
        ),
    ]);
    t.add_row(vec![
        "runtime reserve".to_string(),
        gb(report.reserve_bytes),
        format!(
            "activations {} at {} tokens/step + {} CUDA context, workspaces, graphs",
            gb(report.activation_bytes),
            opts.max_num_batched_tokens,
            gb(crate::fit::FIXED_RESERVE_BYTES)
        ),
    ]);
    t.add_row(vec![
        "KV per token".to_string(),
        format!("{} KiB", report.kv_bytes_per_token as f64 / 1024.0),
        format!(
            "2 × {} layers × {} KV heads × {} dims × {} B",
            target.model.layers,
            target.model.kv_heads,
            target.model.head_dim,
            target.kv.bytes()
        ),
    ]);
    t.add_row(vec![
        "KV cache".to_string(),
        gb(report.kv_bytes),
        format!(
            "{} blocks of {} tokens = {} tokens",
            report.kv_blocks, report.block_size, report.kv_tokens
        ),
    ]);
    t.add_row(vec![
        format!("sequences at {} tokens", args.context),
        max_seqs.to_string(),
        "that fit in KV at once".to_string(),
    ]);
    println!("{t}");
    if report.fits {
        println!("fits: yes");
    } else {
        println!(
            "fits: NO, short by {}: {}",
            gb(report.shortfall_bytes),
            report.reason
        );
    }
    Ok(())
}
