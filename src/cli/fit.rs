//! `cardplan fit`: does the model fit, and how much KV cache is left?

use clap::Args;

use crate::catalog::shard::TpChoice;

use super::common::{TargetArgs, print_json};
use crate::catalog::engine::EnginePreset;
use crate::error::{Error, Result, check_range};
use crate::fit::{FitOptions, fit};
use crate::report::{self, fit::FitView};

const EXAMPLES: &str = "Examples:
  cardplan fit --gpu rtx3090
  cardplan fit --gpu rtx3090 --model llama-3.1-70b --quant nf4 --kv int8
  cardplan fit --gpu l4 --model ./config.json --context 8192 --json
  cardplan fit --gpu h100-sxm --model llama-3.1-70b --tp auto";

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
    /// Context length (prompt + output tokens) for "sequences that fit at once", at most the
    /// model's [default: 4096, or the model's context if shorter].
    #[arg(long, value_name = "TOKENS")]
    pub context: Option<u32>,
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

pub fn run(args: FitArgs) -> Result<()> {
    let engine: EnginePreset = EnginePreset::load(&args.engine)?;
    let (target, pick) = args.target.resolve_tp(&engine, TpChoice::Fixed(1))?;
    check_range(
        "--gpu-memory-utilization",
        args.gpu_memory_utilization,
        0.05,
        1.0,
    )?;
    let max = target.model.max_context;
    let context = args.context.unwrap_or(4096.min(max));
    if context == 0 || context > max {
        return Err(Error::BadInput(format!(
            "--context must be 1..={max} ({}'s context), got {context}",
            target.model.key
        )));
    }
    let mut opts = FitOptions::for_engine(&engine, target.kv).with_tp(target.tp);
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
    let view = FitView {
        report: &report,
        context,
        max_seqs_at_context: report.max_seqs_at(context),
        model_params: target.model.params().total(),
        step_tokens: opts.max_num_batched_tokens,
        target: &target,
        tp_reason: (target.tp > 1 || args.target.tp.is_some()).then_some(pick.reason),
    };
    if args.json {
        return print_json(&view);
    }
    print!("{}", report::fit::terminal(&view));
    Ok(())
}
