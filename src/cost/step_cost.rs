//! [`StepCost`]: the time of one step from kernel tables, precomputed per token count so the
//! simulator's millions of calls do no table search.

use super::basis::{PricingBasis, ProfileInfo};
use super::comm::Comm;
use super::roofline::{Heads, Roofs};
use super::tables::{Flags, KernelSet, Priced, heads};
use crate::catalog::engine::EnginePreset;
use crate::catalog::model::{MlpKind, ModelArch};
use crate::catalog::quant::{KvDtype, Quant};
use crate::error::{Error, Result};
use crate::profile::{ElementwiseKind, GpuProfile};
use crate::step::{BatchShape, StepTime};

/// Step-time model for one (GPU, model, scheme, KV dtype, engine).
///
/// Built once (tables resolved, profile derived, per-token-count costs precomputed), then priced
/// millions of times by the simulator: [`StepTime::step_seconds`] does no allocation, no string
/// work and no table search for the linear layers, elementwise kernels and LM head.
#[derive(Debug, Clone)]
pub struct StepCost {
    pub(super) kernels: KernelSet,
    pub(super) shape: Shape,
    /// Seconds per step by token count `T` (index), for `T ≤ dense_max`: all linear layers, all
    /// elementwise passes.
    dense_linear: Vec<f64>,
    dense_elementwise: Vec<f64>,
    /// LM head by number of logit rows.
    dense_lm_head: Vec<f64>,
    /// Tensor-parallel communication by token count (all-reduces) and by logit rows (gather).
    dense_allreduce: Vec<f64>,
    dense_gather: Vec<f64>,
    pub(super) comm: Comm,
    /// Attention tables chosen once for this model (`None`: default efficiency set).
    pub(super) decode_table: Option<usize>,
    pub(super) prefill_table: Option<usize>,
    step_overhead: f64,
    per_seq_overhead: f64,
    info: ProfileInfo,
    /// The profile the tables came from (measured, or derived for this GPU); `None` when the
    /// default efficiency set prices everything.
    profile: Option<GpuProfile>,
}

/// Precompute up to this many tokens per step even when the engine allows more (`hf-static` has
/// no token budget); larger steps are priced directly (same numbers, a little slower).
const DENSE_MAX_TOKENS: u32 = 16_384;

/// The model numbers the step needs, as floats.
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub(super) quant: Quant,
    pub(super) kv: KvDtype,
    layers: f64,
    pub(super) linears: Vec<(f64, f64)>,
    hidden: f64,
    intermediate: f64,
    vocab: f64,
    mlp: MlpKind,
    norms_per_layer: f64,
    pub(super) heads: Heads,
    q_width: f64,
    kv_width: f64,
    block: f64,
    /// The MoE feed-forward stack (`None` for a dense model).
    pub(super) moe: Option<super::moe::MoeShape>,
}

impl Shape {
    fn new(model: &ModelArch, quant: Quant, kv: KvDtype, block: u32) -> Shape {
        Shape {
            quant,
            kv,
            layers: f64::from(model.layers),
            linears: model
                .linears()
                .iter()
                .map(|l| (f64::from(l.n), f64::from(l.k)))
                .collect(),
            hidden: f64::from(model.hidden),
            intermediate: model.mlp_width_per_token() as f64,
            vocab: f64::from(model.vocab),
            mlp: model.mlp,
            norms_per_layer: f64::from(model.norms_per_layer),
            heads: heads(model.heads, model.kv_heads, model.head_dim),
            q_width: model.q_width() as f64,
            kv_width: model.kv_width() as f64,
            block: f64::from(block),
            moe: super::moe::MoeShape::new(model),
        }
    }
}

impl StepCost {
    /// The step-time model of `basis`'s GPU for `model` under `quant`, `kv` and `engine`, on
    /// one GPU.
    pub fn new(
        basis: &PricingBasis,
        model: &ModelArch,
        quant: Quant,
        kv: KvDtype,
        engine: &EnginePreset,
    ) -> Result<StepCost> {
        Self::tensor_parallel(basis, model, quant, kv, engine, Comm::single())
    }

    /// The step-time model of one rank of `comm.tp` GPUs: `model` is sharded (see
    /// [`ModelArch::shard`]) and each step adds the communication `comm` prices.
    pub fn tensor_parallel(
        basis: &PricingBasis,
        model: &ModelArch,
        quant: Quant,
        kv: KvDtype,
        engine: &EnginePreset,
        comm: Comm,
    ) -> Result<StepCost> {
        check_engine(engine)?;
        let model = &model.shard(comm.tp).map_err(Error::BadInput)?;
        let roofs = Roofs::from_datasheet(&basis.target.datasheet);
        let kernels = KernelSet::new(
            basis.tables.as_ref().and_then(|p| p.measured.as_ref()),
            roofs,
            basis.tables_l2_bytes,
        );
        let shape = Shape::new(model, quant, kv, engine.block_size);
        let mut cost = StepCost {
            decode_table: kernels.nearest_decode_index(kv, shape.heads),
            prefill_table: kernels.nearest_prefill_index(shape.heads),
            kernels,
            shape,
            dense_linear: Vec::new(),
            dense_elementwise: Vec::new(),
            dense_lm_head: Vec::new(),
            dense_allreduce: Vec::new(),
            dense_gather: Vec::new(),
            comm,
            step_overhead: engine.step_overhead_s,
            per_seq_overhead: engine.per_seq_overhead_s,
            info: basis.info.clone(),
            profile: basis.derived_profile().cloned(),
        };
        let max = engine
            .max_num_batched_tokens
            .max(engine.max_num_seqs)
            .min(DENSE_MAX_TOKENS);
        cost.dense_linear = (0..=max).map(|t| cost.price_linear(t).s).collect();
        cost.dense_elementwise = (0..=max).map(|t| cost.price_elementwise(t).s).collect();
        cost.dense_lm_head = (0..=max).map(|r| cost.price_lm_head(r).s).collect();
        cost.dense_allreduce = (0..=max).map(|t| cost.price_allreduce(t)).collect();
        cost.dense_gather = (0..=max).map(|r| cost.price_gather(r)).collect();
        Ok(cost)
    }

    /// Where this step's all-reduce times come from.
    pub fn comm_source(&self) -> &super::comm::CommSource {
        &self.comm.source
    }

    pub fn profile_info(&self) -> &ProfileInfo {
        &self.info
    }

    /// The profile derived for this GPU from a measured one (`None` when the GPU's own
    /// measurements or the default efficiency set are used), e.g. to write it out for inspection.
    pub fn derived_profile(&self) -> Option<&GpuProfile> {
        self.profile.as_ref()
    }

    /// All linear layers of all decoder layers at `t` tokens.
    pub(super) fn price_linear(&self, t: u32) -> Priced {
        let s = &self.shape;
        let mut out = Priced {
            s: 0.0,
            flags: Flags::default(),
        };
        if t == 0 {
            return out;
        }
        for &(n, k) in &s.linears {
            let p = self.kernels.gemm(s.quant, n, k, f64::from(t));
            out.s += p.s;
            out.flags |= p.flags;
        }
        out.s *= s.layers;
        if let Some(moe) = &s.moe {
            let p = moe.price(&self.kernels, s.quant, f64::from(t));
            out.s += p.s;
            out.flags |= p.flags;
        }
        out
    }

    /// Elementwise passes at `t` tokens: per layer the norms, the MLP activation, rotary and the
    /// KV-cache write; per step the embedding gather and the final norm.
    pub(super) fn price_elementwise(&self, t: u32) -> Priced {
        let s = &self.shape;
        let k = &self.kernels;
        if t == 0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let tf = f64::from(t);
        let norm = k.elementwise(ElementwiseKind::RmsnormResidual, s.hidden, tf);
        let act = match s.mlp {
            MlpKind::GatedSilu | MlpKind::GatedGelu => {
                k.elementwise(ElementwiseKind::SiluMul, s.intermediate, tf)
            }
            // plain GELU: read and write one [T, intermediate] tensor
            MlpKind::Gelu => k.elementwise_like(
                ElementwiseKind::SiluMul,
                s.intermediate,
                tf,
                4.0 * tf * s.intermediate,
            ),
        };
        let like_norm =
            |bytes: f64| k.elementwise_like(ElementwiseKind::RmsnormResidual, s.hidden, tf, bytes);
        // rotary: read and write q and k in fp16
        let rope = like_norm(4.0 * tf * (s.q_width + s.kv_width));
        // KV-cache write: read new k, v (fp16), write them in the cache dtype
        let kv_write = like_norm(tf * 2.0 * s.kv_width * (2.0 + s.kv.bytes() as f64));
        let per_layer = s.norms_per_layer * norm.s + act.s + rope.s + kv_write.s;
        // embedding gather (read a row, write it) and the final norm, once per step
        let embed = like_norm(4.0 * tf * s.hidden);
        Priced {
            s: s.layers * per_layer + embed.s + norm.s,
            flags: norm.flags | act.flags | rope.flags | kv_write.flags | embed.flags,
        }
    }

    /// LM head for `rows` logit rows (kept in 16 bits by every scheme).
    pub(super) fn price_lm_head(&self, rows: u32) -> Priced {
        if rows == 0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let s = &self.shape;
        self.kernels
            .gemm(Quant::Fp16, s.vocab, s.hidden, f64::from(rows))
    }

    /// The all-reduces of a step of `t` tokens: two per layer (after attention and after the
    /// MLP) and one for the vocab-parallel embedding, each over `t × hidden` fp16 values.
    pub(super) fn price_allreduce(&self, t: u32) -> f64 {
        if t == 0 || self.comm.tp <= 1 {
            return 0.0;
        }
        let s = &self.shape;
        let bytes = 2.0 * f64::from(t) * s.hidden;
        (2.0 * s.layers + 1.0) * self.comm.allreduce_s(bytes)
    }

    /// Gathering `rows` rows of each rank's vocabulary slice of fp16 logits onto the first rank.
    pub(super) fn price_gather(&self, rows: u32) -> f64 {
        if rows == 0 || self.comm.tp <= 1 {
            return 0.0;
        }
        self.comm.gather_s(2.0 * f64::from(rows) * self.shape.vocab)
    }

    pub(super) fn decode_attn(&self, batch: &BatchShape<'_>) -> Priced {
        let s = &self.shape;
        if batch.decode_seqs == 0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let b = f64::from(batch.decode_seqs);
        // the simulator gives the context sum; decode attention is linear in Σ c, so the mean
        // context at the real batch reproduces it
        let c = (batch.decode_context_tokens as f64 / b).max(1.0);
        let p = self
            .kernels
            .decode_attn_at(self.decode_table, s.kv, s.heads, s.block, b, c);
        Priced {
            s: s.layers * p.s,
            flags: p.flags,
        }
    }

    /// `(Σ p(q + p/2), Σ (q + p), Σ p)` over the prefill chunks.
    pub(super) fn prefill_sums(batch: &BatchShape<'_>) -> (f64, f64, f64) {
        let mut sums = (0.0, 0.0, 0.0);
        for c in batch.prefills {
            let (p, q) = (f64::from(c.new_tokens), f64::from(c.cached_tokens));
            sums.0 += p * (q + p / 2.0);
            sums.1 += q + p;
            sums.2 += p;
        }
        sums
    }

    pub(super) fn prefill_attn(&self, batch: &BatchShape<'_>) -> Priced {
        let s = &self.shape;
        let (pairs, kv_tokens, new_tokens) = Self::prefill_sums(batch);
        if new_tokens == 0.0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let p =
            self.kernels
                .prefill_attn_at(self.prefill_table, s.heads, pairs, kv_tokens, new_tokens);
        Priced {
            s: s.layers * p.s,
            flags: p.flags,
        }
    }

    fn lookup_f(&self, dense: &[f64], x: u64, slow: impl Fn(u32) -> f64) -> f64 {
        match dense.get(x as usize) {
            Some(&v) => v,
            None => slow(u32::try_from(x).unwrap_or(u32::MAX)),
        }
    }

    fn lookup(&self, dense: &[f64], x: u64, slow: impl Fn(u32) -> Priced) -> f64 {
        match dense.get(x as usize) {
            Some(&v) => v,
            None => slow(u32::try_from(x).unwrap_or(u32::MAX)).s,
        }
    }

    /// The components in [`StepBreakdown`] order, without notes (the hot path).
    pub(super) fn components(&self, batch: &BatchShape<'_>) -> [f64; 6] {
        let t = batch.tokens();
        if t == 0 {
            return [0.0; 6];
        }
        let rows = u64::from(batch.seqs());
        let linear = self.lookup(&self.dense_linear, t, |t| self.price_linear(t));
        let elementwise = self.lookup(&self.dense_elementwise, t, |t| self.price_elementwise(t));
        let lm_head = self.lookup(&self.dense_lm_head, rows, |r| self.price_lm_head(r));
        let attention = self.decode_attn(batch).s + self.prefill_attn(batch).s;
        let overhead = self.step_overhead + self.per_seq_overhead * rows as f64;
        let comm = if self.comm.tp > 1 {
            self.lookup_f(&self.dense_allreduce, t, |t| self.price_allreduce(t))
                + self.lookup_f(&self.dense_gather, rows, |r| self.price_gather(r))
                + self.comm.step_sync_s()
        } else {
            0.0
        };
        [linear, attention, lm_head, elementwise, overhead, comm]
    }
}

impl StepTime for StepCost {
    fn step_seconds(&self, batch: &BatchShape<'_>) -> f64 {
        let [a, b, c, d, e, f] = self.components(batch);
        a + b + c + d + e + f
    }
}

/// Engine numbers the step time uses directly: a bad override is an error, not a NaN.
fn check_engine(engine: &EnginePreset) -> Result<()> {
    if engine.block_size == 0 {
        return Err(Error::BadInput(format!(
            "engine '{}': block_size must be positive",
            engine.key
        )));
    }
    for (what, v) in [
        ("step_overhead_s", engine.step_overhead_s),
        ("per_seq_overhead_s", engine.per_seq_overhead_s),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::BadInput(format!(
                "engine '{}': {what} must be a non-negative number, got {v}",
                engine.key
            )));
        }
    }
    Ok(())
}
