//! Which tensor-parallel size a target runs at: checked when given, chosen when `--tp auto`.

use super::Target;
use crate::catalog::engine::EnginePreset;
use crate::catalog::shard::{TP_SIZES, TpChoice};
use crate::cost::Comm;
use crate::error::{Error, Result};

/// `--tp auto` wants a KV cache that holds at least this many requests of the model's context
/// (capped at 4,096 tokens) at once: a model that barely fits serves almost nobody, and one more
/// doubling of GPUs is what a deployer would buy (cardplan's rule, stated with the answer).
pub const USEFUL_KV_SEQS: u64 = 4;

/// The size chosen and why, in words for the output.
#[derive(Debug, Clone, PartialEq)]
pub struct TpPick {
    pub tp: u32,
    pub reason: String,
}

impl Target {
    /// Why this target's `tp` cannot run, if it cannot: a size the model's heads don't divide,
    /// a GPU whose catalog entry has no interconnect, more GPUs than its servers link.
    pub fn check_tp(&self) -> Result<()> {
        if self.tp == 1 {
            return Ok(());
        }
        self.model
            .check_tp(self.tp)
            .map_err(|e| Error::BadInput(format!("--tp {}: {e}", self.tp)))?;
        let Some(link) = &self.gpu.interconnect else {
            return Err(Error::BadInput(format!(
                "--tp {}: {} has no interconnect in its catalog entry, so cardplan cannot price \
                 its all-reduce; use --tp 1, or a GPU profile YAML with an `interconnect:` block",
                self.tp, self.gpu.key
            )));
        };
        if self.tp > link.max_gpus {
            return Err(Error::BadInput(format!(
                "--tp {}: {} servers link at most {} GPUs ({}); valid: {}",
                self.tp,
                self.gpu.key,
                link.max_gpus,
                link.kind.name(),
                valid_sizes(link.max_gpus)
            )));
        }
        Ok(())
    }

    /// How this target's GPUs communicate (nothing at TP 1).
    pub fn comm(&self) -> Result<Comm> {
        self.check_tp()?;
        let Some(link) = self.gpu.interconnect.as_ref().filter(|_| self.tp > 1) else {
            return Ok(Comm::single());
        };
        let tables = self
            .gpu
            .measured
            .as_ref()
            .map(|m| m.allreduce.as_slice())
            .unwrap_or(&[]);
        Ok(Comm::new(&self.gpu.key, self.tp, link, tables))
    }
}

fn valid_sizes(max: u32) -> String {
    TP_SIZES
        .iter()
        .filter(|&&n| n <= max)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The KV tokens `--tp auto` calls useful for `target`'s model.
fn useful_kv_tokens(target: &Target) -> u64 {
    USEFUL_KV_SEQS * u64::from(target.model.max_context.min(4096))
}

/// The tensor-parallel size for `target` under `engine`: `choice` when fixed (checked), else
/// the smallest size whose per-GPU fit leaves a useful KV cache; failing that, the smallest that
/// fits at all; failing that, the largest the server allows (the caller reports the misfit).
pub fn pick_tp(target: &Target, engine: &EnginePreset, choice: TpChoice) -> Result<TpPick> {
    if let TpChoice::Fixed(tp) = choice {
        let t = Target {
            tp,
            ..target.clone()
        };
        t.check_tp()?;
        return Ok(TpPick {
            tp,
            reason: format!("TP {tp} (--tp {tp})"),
        });
    }
    let useful = useful_kv_tokens(target);
    let mut candidates = Vec::new();
    for tp in TP_SIZES {
        let t = Target {
            tp,
            ..target.clone()
        };
        if t.check_tp().is_ok() {
            let fit = t.fit(engine);
            candidates.push((tp, fit.fits, fit.kv_tokens));
        }
    }
    let gpus = |tp: u32| {
        if tp == 1 {
            "one GPU".to_string()
        } else {
            format!("{tp} GPUs")
        }
    };
    if let Some(&(tp, _, kv)) = candidates.iter().find(|c| c.1 && c.2 >= useful) {
        return Ok(TpPick {
            tp,
            reason: format!(
                "TP {tp} (auto): the fewest GPUs whose KV cache holds at least {USEFUL_KV_SEQS} \
                 requests of {} tokens ({kv} tokens on {})",
                useful / USEFUL_KV_SEQS,
                gpus(tp)
            ),
        });
    }
    if let Some(&(tp, _, kv)) = candidates.iter().find(|c| c.1) {
        return Ok(TpPick {
            tp,
            reason: format!(
                "TP {tp} (auto): no size gives a KV cache of {useful} tokens; {} is the fewest \
                 GPUs the model fits on, with {kv} KV tokens",
                gpus(tp)
            ),
        });
    }
    let tp = candidates.last().map_or(1, |c| c.0);
    Ok(TpPick {
        tp,
        reason: format!(
            "TP {tp} (auto): the model fits at no size up to {} on {}",
            gpus(tp),
            target.gpu.key
        ),
    })
}
