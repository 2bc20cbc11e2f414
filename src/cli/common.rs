//! Arguments and helpers shared by several subcommands.

use clap::Args;

use crate::catalog::engine::EnginePreset;
use crate::catalog::shard::TpChoice;
use crate::catalog::{self, hf_quant, quant::Quant};
use crate::deploy::{Target, TpPick, pick_tp};
use crate::error::{Error, Result};

/// The GPU, model, scheme and KV dtype a command is about.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// GPU catalog key (see `cardplan list gpus`) or a profile YAML path.
    #[arg(long, value_name = "GPU")]
    pub gpu: String,
    /// Model catalog key (see `cardplan list models`), a model YAML path, or a Hugging Face config.json.
    #[arg(long, value_name = "MODEL", default_value = "llama-3.1-8b")]
    pub model: String,
    /// Weight quantization: fp16, int8, llm-int8, nf4, nf4-fused, fp8, fp8-tensor, int4,
    /// int4-gptq [default: the config.json's quantization_config, else fp16].
    #[arg(long, value_name = "SCHEME")]
    pub quant: Option<String>,
    /// KV-cache dtype: fp16, int8 or fp8.
    #[arg(long, value_name = "DTYPE", default_value = "fp16")]
    pub kv: String,
    /// Tensor-parallel size: the GPUs of one server the model is split over (1, 2, 4, 8), or
    /// `auto`: the fewest that fit the model with a useful KV cache [default: 1; plan: auto].
    #[arg(long, value_name = "N|auto", value_parser = parse_tp)]
    pub tp: Option<TpChoice>,
}

/// `--tp`'s parser: a clap error names the flag and the valid values.
pub fn parse_tp(s: &str) -> std::result::Result<TpChoice, String> {
    s.parse()
}

impl TargetArgs {
    /// The target at the `--tp` given (or `default`), resolved for `engine` when `auto`; the
    /// pick says why, for the output.
    pub fn resolve_tp(&self, engine: &EnginePreset, default: TpChoice) -> Result<(Target, TpPick)> {
        let base = self.resolve()?;
        let pick = pick_tp(&base, engine, self.tp.unwrap_or(default))?;
        Ok((
            Target {
                tp: pick.tp,
                ..base
            },
            pick,
        ))
    }

    /// The target on one GPU (TP 1), whatever `--tp` says.
    pub fn resolve(&self) -> Result<Target> {
        Ok(Target {
            tp: 1,
            gpu: catalog::gpu(&self.gpu)?,
            model: catalog::model(&self.model)?,
            quant: self.quant()?,
            kv: self
                .kv
                .parse()
                .map_err(|e: String| Error::Usage(format!("--kv: {e}")))?,
        })
    }
}

impl TargetArgs {
    /// `--quant`, else the checkpoint's own `quantization_config` (a config.json `--model`),
    /// else fp16. Which one was taken, and an override, is said on stderr.
    fn quant(&self) -> Result<Quant> {
        let checkpoint = hf_quant::for_model_arg(&self.model)?;
        Ok(match (&self.quant, checkpoint) {
            (Some(q), Some(c)) => {
                let q = parse_quant(q)?;
                if q != c.quant {
                    eprintln!(
                        "note: --quant {q} overrides the checkpoint's quantization_config ({}: {})",
                        c.summary, c.quant
                    );
                }
                q
            }
            (Some(q), None) => parse_quant(q)?,
            (None, Some(c)) => {
                eprintln!(
                    "note: scheme {} from the checkpoint's quantization_config ({})",
                    c.quant, c.summary
                );
                c.quant
            }
            (None, None) => Quant::Fp16,
        })
    }
}

pub fn parse_quant(s: &str) -> Result<Quant> {
    s.parse()
        .map_err(|e: String| Error::Usage(format!("--quant: {e}")))
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
