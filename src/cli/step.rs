//! `cardplan step`: the time of one serving step and what it is made of.

use clap::Args;

use crate::catalog::shard::TpChoice;

use super::common::{TargetArgs, print_json};
use crate::catalog::engine::EnginePreset;
use crate::deploy::step_warnings;
use crate::error::{Error, Result};
use crate::report::{
    self,
    step::{BreakdownMs, StepView},
};
use crate::step::{BatchShape, PrefillChunk, StepTime};

const EXAMPLES: &str = "Examples:
  cardplan step --gpu h100-sxm --model llama-3.1-8b --batch 64 --context 1024
  cardplan step --gpu rtx3090 --batch 1 --context 512 --quant nf4
  cardplan step --gpu h100-sxm --batch 0 --context 0 --prefill-tokens 2048 --json
  cardplan step --gpu l40s --batch 32 --context 2048 --prefill-tokens 512 --prefill-cached 1024
  cardplan step --gpu h100-sxm --model llama-3.1-70b --tp 4 --batch 64 --context 2048
  cardplan step --gpu rtx3090 --batch 1 --context 512 --write-profile rtx3090-derived.yaml

A step runs --batch sequences decoding one token each over --context cached tokens, plus (with
--prefill-tokens) one prompt chunk of that many new tokens on top of --prefill-cached cached ones.
'gpu_ms' is the GPU time; 'step_ms' adds the engine's per-step overhead.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct StepArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sequences decoding one token each in this step (0: a pure prefill step).
    #[arg(long, value_name = "SEQS", default_value_t = 1)]
    pub batch: u32,
    /// Cached context of each decoding sequence, tokens.
    #[arg(long, value_name = "TOKENS", default_value_t = 1024)]
    pub context: u32,
    /// New prompt tokens of one prefill chunk in the same step.
    #[arg(long, value_name = "TOKENS", default_value_t = 0)]
    pub prefill_tokens: u32,
    /// Tokens of that prompt already in the KV cache (earlier chunks).
    #[arg(long, value_name = "TOKENS", default_value_t = 0)]
    pub prefill_cached: u32,
    /// Engine preset (overhead per step and per sequence, block size): vllm, vllm-v0, hf-static.
    #[arg(long, value_name = "ENGINE", default_value = "vllm")]
    pub engine: String,
    /// Also write the profile derived for this GPU (from the nearest measured one) to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_profile: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Reject steps that mean nothing.
fn check(args: &StepArgs) -> Result<()> {
    if args.batch == 0 && args.prefill_tokens == 0 {
        return Err(Error::BadInput(
            "a step needs tokens: give --batch > 0 (decoding sequences) or --prefill-tokens > 0"
                .into(),
        ));
    }
    if args.batch > 0 && args.context == 0 {
        return Err(Error::BadInput(
            "--context must be at least 1 token when --batch > 0 (a decoding sequence attends to its context)"
                .into(),
        ));
    }
    if args.prefill_tokens == 0 && args.prefill_cached > 0 {
        return Err(Error::BadInput(
            "--prefill-cached needs --prefill-tokens > 0".into(),
        ));
    }
    Ok(())
}

pub fn run(args: StepArgs) -> Result<()> {
    check(&args)?;
    let engine: EnginePreset = EnginePreset::load(&args.engine)?;
    let (target, _) = args.target.resolve_tp(&engine, TpChoice::Fixed(1))?;
    let cost = target.step_cost(&engine)?;
    let chunks = [PrefillChunk {
        new_tokens: args.prefill_tokens,
        cached_tokens: args.prefill_cached,
    }];
    let batch = BatchShape {
        decode_seqs: args.batch,
        decode_context_tokens: u64::from(args.batch) * u64::from(args.context),
        prefills: if args.prefill_tokens > 0 {
            &chunks
        } else {
            &[]
        },
    };
    if let Some(path) = &args.write_profile {
        let Some(p) = cost.derived_profile() else {
            return Err(Error::Usage(format!(
                "--write-profile: nothing derived for {} ({}: {})",
                target.gpu.key,
                cost.profile_info().kind,
                cost.profile_info().source
            )));
        };
        p.write(path)?;
    }
    let b = cost.breakdown(&batch);
    let step_s = cost.step_seconds(&batch);
    let warnings = step_warnings(&target, &engine, &batch);
    let view = StepView {
        gpu: &target.gpu.key,
        model: &target.model.key,
        quant: target.quant.to_string(),
        kv: target.kv.to_string(),
        engine: &engine.key,
        tp: target.tp,
        comm: cost.comm_source().describe(),
        batch: args.batch,
        context: args.context,
        prefill_tokens: args.prefill_tokens,
        prefill_cached: args.prefill_cached,
        tokens: batch.tokens(),
        step_ms: step_s * 1e3,
        gpu_ms: (step_s - b.overhead) * 1e3,
        breakdown: BreakdownMs::from(&b),
        notes: &b.notes,
        profile: cost.profile_info(),
        warnings: &warnings,
        engine_source: &engine.source,
        seconds: &b,
    };
    if args.json {
        return print_json(&view);
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", report::step::terminal(&view));
    Ok(())
}
