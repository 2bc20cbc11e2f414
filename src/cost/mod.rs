//! Cost model: the time of one serving step, from measured kernel tables (or tables derived
//! from a measured GPU for one you don't own).
//!
//! Owned by the cost-model issue. The types below are the contract the simulator builds on.

/// New tokens of one prompt processed in this step, on top of `cached_tokens` already in KV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefillChunk {
    pub new_tokens: u32,
    pub cached_tokens: u32,
}

/// What one step runs: `decode_seqs` sequences decoding one token each (their contexts summing to
/// `decode_context_tokens`), and some prefill chunks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BatchShape<'a> {
    pub decode_seqs: u32,
    pub decode_context_tokens: u64,
    pub prefills: &'a [PrefillChunk],
}

impl BatchShape<'_> {
    /// Tokens through the linear layers: one per decode sequence plus every new prefill token.
    pub fn tokens(&self) -> u64 {
        u64::from(self.decode_seqs)
            + self
                .prefills
                .iter()
                .map(|p| u64::from(p.new_tokens))
                .sum::<u64>()
    }

    /// Sequences in the step (decode + prefill).
    pub fn seqs(&self) -> u32 {
        self.decode_seqs + self.prefills.len() as u32
    }
}

/// Anything that can price a step: the real [`StepCost`] or a mock in tests.
pub trait StepTime: Send + Sync {
    /// Wall time of the step in seconds, engine overhead included.
    fn step_seconds(&self, batch: &BatchShape<'_>) -> f64;
}

use serde::Serialize;

use crate::catalog::engine::EnginePreset;
use crate::catalog::model::ModelArch;
use crate::catalog::quant::{KvDtype, Quant};
use crate::error::Result;
use crate::profile::GpuProfile;

/// Which profile a prediction rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileInfo {
    /// GPU key of the target.
    pub gpu: String,
    /// `measured`, `derived` or `datasheet-roofline`.
    pub kind: String,
    /// What it was measured on / derived from, in words.
    pub source: String,
}

/// Time of one step, split by component (seconds).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StepBreakdown {
    pub linear: f64,
    pub attention: f64,
    pub lm_head: f64,
    pub elementwise: f64,
    pub overhead: f64,
    /// Caveats, e.g. "prefill of 20000 tokens beyond the measured range (16384)".
    pub notes: Vec<String>,
}

impl StepBreakdown {
    pub fn total(&self) -> f64 {
        self.linear + self.attention + self.lm_head + self.elementwise + self.overhead
    }
}

/// Step-time model for one (GPU, model, scheme, KV dtype, engine).
///
/// PLACEHOLDER: a plain datasheet roofline so the simulator can be built; the cost-model issue
/// replaces the body with measured tables and transfer. The signatures stay.
#[derive(Debug, Clone)]
pub struct StepCost {
    weight_bytes_per_layer: f64,
    lm_head_bytes: f64,
    flops_per_token_layer: f64,
    kv_bytes_per_token_layer: f64,
    layers: f64,
    bw: f64,
    flops: f64,
    step_overhead: f64,
    per_seq_overhead: f64,
    info: ProfileInfo,
}

impl StepCost {
    pub fn new(
        gpu: &GpuProfile,
        model: &ModelArch,
        quant: Quant,
        kv: KvDtype,
        engine: &EnginePreset,
    ) -> Result<StepCost> {
        let layers = f64::from(model.layers);
        let p = model.params();
        let lm_head_bytes = 2.0 * model.vocab as f64 * f64::from(model.hidden);
        let weights = quant.weight_bytes(model) as f64 - 2.0 * (p.embedding + p.lm_head) as f64;
        Ok(StepCost {
            weight_bytes_per_layer: weights / layers,
            lm_head_bytes,
            flops_per_token_layer: model.linear_flops_per_token() / layers,
            kv_bytes_per_token_layer: kv.bytes_per_token(model) as f64 / layers,
            layers,
            bw: gpu.datasheet.bandwidth_gbs * 1e9 * 0.8,
            flops: gpu.datasheet.fp16_tflops * 1e12 * 0.7,
            step_overhead: engine.step_overhead_s,
            per_seq_overhead: engine.per_seq_overhead_s,
            info: ProfileInfo {
                gpu: gpu.key.clone(),
                kind: "datasheet-roofline".into(),
                source: "placeholder roofline (80% bandwidth, 70% fp16 peak)".into(),
            },
        })
    }

    pub fn profile_info(&self) -> &ProfileInfo {
        &self.info
    }

    pub fn breakdown(&self, batch: &BatchShape<'_>) -> StepBreakdown {
        let t = batch.tokens() as f64;
        if t == 0.0 {
            return StepBreakdown::default();
        }
        let linear = self.layers
            * (self.weight_bytes_per_layer / self.bw)
                .max(t * self.flops_per_token_layer / self.flops);
        let attention =
            self.layers * batch.decode_context_tokens as f64 * self.kv_bytes_per_token_layer
                / self.bw;
        let rows = f64::from(batch.seqs());
        let lm_head = (self.lm_head_bytes / self.bw).max(rows * self.lm_head_bytes / self.flops);
        StepBreakdown {
            linear,
            attention,
            lm_head,
            elementwise: 0.0,
            overhead: self.step_overhead + self.per_seq_overhead * rows,
            notes: Vec::new(),
        }
    }
}

impl StepTime for StepCost {
    fn step_seconds(&self, batch: &BatchShape<'_>) -> f64 {
        self.breakdown(batch).total()
    }
}
