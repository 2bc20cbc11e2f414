//! One deployment — a model, quantized one way, on one GPU, under one engine preset — resolved
//! once: the GPU profile (measured or derived), the fit in memory, the KV capacity and the
//! step-time model. Every subcommand that simulates starts here, so the simulator receives its
//! inputs ready-made and never looks anything up itself.

use crate::catalog;
use crate::catalog::engine::EnginePreset;
use crate::catalog::model::ModelArch;
use crate::catalog::quant::{KvDtype, Quant};
use crate::cost::{PricingBasis, StepCost};

mod tp;
use crate::error::{Error, Result};
use crate::fit::{FitOptions, FitReport, fit, gb};
use crate::profile::GpuProfile;
use crate::sim::{Load, Scenario, SimConfig, Stop};
use crate::step::BatchShape;
pub use tp::{TpPick, USEFUL_KV_SEQS, pick_tp};

/// What a question is about: the GPU, the model, its weight scheme and the KV-cache dtype.
#[derive(Debug, Clone)]
pub struct Target {
    pub gpu: GpuProfile,
    pub model: ModelArch,
    pub quant: Quant,
    pub kv: KvDtype,
    /// Tensor-parallel size: the GPUs of one server the model is split over (1: one card).
    pub tp: u32,
}

impl Target {
    /// The fit of this target under `engine`'s memory settings, per GPU.
    pub fn fit(&self, engine: &EnginePreset) -> FitReport {
        fit(
            &self.gpu,
            &self.model,
            self.quant,
            &FitOptions::for_engine(engine, self.kv).with_tp(self.tp),
        )
    }

    /// The step-time model of this target under `engine`: its own tables, or tables derived from
    /// the nearest measured GPU of the catalog, and the communication of `tp` GPUs.
    pub fn step_cost(&self, engine: &EnginePreset) -> Result<StepCost> {
        let basis = PricingBasis::resolve(&self.gpu, catalog::measured_gpus()?);
        StepCost::tensor_parallel(
            &basis,
            &self.model,
            self.quant,
            self.kv,
            engine,
            self.comm()?,
        )
    }
}

/// What makes one priced step unrealistic on this target under `engine`: a model that does not
/// fit, more KV tokens than the cache holds, more sequences or tokens than the engine schedules.
/// The step is priced anyway; these say why the number may never be seen.
pub fn step_warnings(
    target: &Target,
    engine: &EnginePreset,
    batch: &BatchShape<'_>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let report = target.fit(engine);
    let kv_needed = batch.decode_context_tokens
        + batch
            .prefills
            .iter()
            .map(|c| u64::from(c.cached_tokens) + u64::from(c.new_tokens))
            .sum::<u64>();
    if !report.fits {
        warnings.push(format!(
            "the model does not fit on {}: {} (step time priced anyway)",
            target.gpu.key, report.reason
        ));
    } else if kv_needed > report.kv_tokens {
        warnings.push(format!(
            "this step holds {kv_needed} KV tokens but {} has room for {} (step time priced anyway)",
            target.gpu.key, report.kv_tokens
        ));
    }
    if batch.decode_seqs > engine.max_num_seqs {
        warnings.push(format!(
            "--batch {} exceeds the '{}' engine's max_num_seqs {}",
            batch.decode_seqs, engine.key, engine.max_num_seqs
        ));
    }
    if batch.tokens() > u64::from(engine.max_num_batched_tokens) {
        warnings.push(format!(
            "{} tokens exceed the '{}' engine's token budget {} per step",
            batch.tokens(),
            engine.key,
            engine.max_num_batched_tokens
        ));
    }
    warnings
}

/// A target under an engine, ready to simulate.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub target: Target,
    pub engine: EnginePreset,
    pub fit: FitReport,
    pub cost: StepCost,
    /// KV blocks the server has (the fit, or an override).
    pub kv_blocks: u64,
    /// `min(model context, KV tokens)`: what a deployer would set as vLLM's `max_model_len`.
    pub max_context: u32,
}

/// Whether a target fits; the deployment when it does.
#[derive(Debug)]
pub enum Placement {
    Fits(Box<Deployment>),
    DoesNotFit(FitReport),
}

impl Deployment {
    /// Fit the model and, when it fits, build the step-time model and the KV capacity. A model
    /// that does not fit is an answer ([`Placement::DoesNotFit`]), not an error.
    pub fn place(target: Target, engine: EnginePreset) -> Result<Placement> {
        let report = target.fit(&engine);
        if !report.fits {
            return Ok(Placement::DoesNotFit(report));
        }
        let blocks = report.kv_blocks;
        Ok(Placement::Fits(Box::new(Self::build(
            target, engine, report, blocks,
        )?)))
    }

    /// [`Deployment::place`] for commands that need a server: a model that does not fit is a
    /// [`Error::BadInput`] that says why. `kv_blocks` replaces the fitted block count (to match
    /// a measured server); with it, the fit is not required.
    pub fn require(target: Target, engine: EnginePreset, kv_blocks: Option<u64>) -> Result<Self> {
        let report = target.fit(&engine);
        let blocks = match kv_blocks {
            Some(b) => check_kv_blocks(&target, &report, b)?,
            None if !report.fits => {
                return Err(Error::BadInput(format!(
                    "{} ({}) does not fit on {}: {} (short by {}; try a smaller --quant, --kv int8 or a larger GPU)",
                    target.model.key,
                    target.quant,
                    target.gpu.key,
                    report.reason,
                    gb(report.shortfall_bytes)
                )));
            }
            None => report.kv_blocks,
        };
        Self::build(target, engine, report, blocks)
    }

    /// Accept requests up to `tokens` long (vLLM's `max_model_len`) instead of the default; as
    /// vLLM does, refuse more than the model was trained for or the KV cache holds.
    pub fn set_max_model_len(&mut self, tokens: u32) -> Result<()> {
        let model = &self.target.model;
        if tokens == 0 {
            return Err(Error::BadInput(
                "max_model_len must be at least 1 token".into(),
            ));
        }
        if tokens > model.max_context {
            return Err(Error::BadInput(format!(
                "max_model_len {tokens} exceeds {}'s context of {} tokens",
                model.key, model.max_context
            )));
        }
        if u64::from(tokens) > self.kv_tokens() {
            return Err(Error::BadInput(format!(
                "max_model_len {tokens} is larger than the KV cache ({} tokens): vLLM refuses to start",
                self.kv_tokens()
            )));
        }
        self.max_context = tokens;
        Ok(())
    }

    fn build(target: Target, engine: EnginePreset, fit: FitReport, kv_blocks: u64) -> Result<Self> {
        let engine = engine.for_tp(target.tp);
        let cost = target.step_cost(&engine)?;
        let kv_tokens = kv_blocks.saturating_mul(u64::from(engine.block_size));
        let max_context = u64::from(target.model.max_context).min(kv_tokens) as u32;
        Ok(Deployment {
            target,
            engine,
            fit,
            cost,
            kv_blocks,
            max_context,
        })
    }

    /// Tokens the KV cache holds.
    pub fn kv_tokens(&self) -> u64 {
        self.kv_blocks * u64::from(self.engine.block_size)
    }

    /// The simulation of this deployment under `load`.
    pub fn sim_config(
        &self,
        load: Load,
        scenario: Scenario,
        stop: Stop,
        seed: u64,
        warmup_s: f64,
    ) -> SimConfig {
        SimConfig {
            engine: self.engine.clone(),
            kv_blocks: self.kv_blocks,
            max_context: self.max_context,
            load,
            scenario,
            stop,
            seed,
            warmup_s,
        }
    }
}

/// An override of the KV block count must be at least one block and must fit beside the weights
/// in the card's whole memory: more than that is a server that cannot exist.
fn check_kv_blocks(target: &Target, fit: &FitReport, blocks: u64) -> Result<u64> {
    if blocks == 0 {
        return Err(Error::BadInput("kv_blocks must be at least 1".into()));
    }
    let bytes =
        u128::from(blocks) * u128::from(fit.block_size) * u128::from(fit.kv_bytes_per_token);
    let room = fit.memory_bytes.saturating_sub(fit.weights_bytes);
    if bytes > u128::from(room) {
        return Err(Error::BadInput(format!(
            "kv_blocks {blocks} needs {} of KV cache; {} has {} beside the weights",
            gb(u64::try_from(bytes).unwrap_or(u64::MAX)),
            target.gpu.key,
            gb(room)
        )));
    }
    Ok(blocks)
}
