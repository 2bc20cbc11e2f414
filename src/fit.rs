//! Does the model fit? Weights, runtime reserve and KV-cache capacity on one GPU.

use serde::{Deserialize, Serialize};

use crate::catalog::engine::{EnginePreset, Policy};
use crate::catalog::model::ModelArch;
use crate::catalog::quant::{KvDtype, Quant};
use crate::profile::GpuProfile;

/// Memory outside weights and KV: CUDA context, cuBLAS workspaces and CUDA graphs. vLLM counts
/// all of it against `gpu_memory_utilization`; 512 MiB is the low end of what its logs show for
/// one process on one GPU (cardplan estimate).
pub const FIXED_RESERVE_BYTES: u64 = 512 * 1024 * 1024;

/// Inputs to the fit calculation beyond model, scheme and GPU.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub kv: KvDtype,
    pub gpu_memory_utilization: f64,
    /// Token budget of one step: sets the activation peak the engine reserves for.
    pub max_num_batched_tokens: u32,
    /// Sequences per step: sets the logits buffer.
    pub max_num_seqs: u32,
    pub block_size: u32,
    /// Tensor-parallel size: weights, reserve and KV are per GPU of `tp`.
    pub tp: u32,
}

impl FitOptions {
    /// The same options for one GPU of `tp`.
    pub fn with_tp(self, tp: u32) -> Self {
        FitOptions { tp, ..self }
    }

    pub fn for_engine(engine: &EnginePreset, kv: KvDtype) -> Self {
        // HF `generate` has no token budget: size the activation peak for a batch of 2048-token
        // prompts (cardplan assumption) rather than an arbitrary ceiling.
        let step_tokens = match engine.policy {
            Policy::Static => engine.max_num_seqs.saturating_mul(2048),
            Policy::ChunkedDecodeFirst | Policy::PrefillFirst => engine.max_num_batched_tokens,
        };
        FitOptions {
            kv,
            gpu_memory_utilization: engine.gpu_memory_utilization,
            max_num_batched_tokens: step_tokens.min(1 << 16),
            max_num_seqs: engine.max_num_seqs,
            block_size: engine.block_size,
            tp: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitReport {
    pub fits: bool,
    /// GPUs the model is split over; every byte figure below is per GPU.
    pub tp: u32,
    pub gpu: String,
    pub model: String,
    pub quant: Quant,
    pub kv_dtype: KvDtype,
    pub memory_bytes: u64,
    pub gpu_memory_utilization: f64,
    /// `memory × utilization`: what the engine may allocate.
    pub usable_bytes: u64,
    pub weights_bytes: u64,
    /// Activation peak + fixed runtime reserve.
    pub reserve_bytes: u64,
    pub activation_bytes: u64,
    pub kv_bytes_per_token: u64,
    /// Bytes left for the KV cache (0 when it does not fit).
    pub kv_bytes: u64,
    /// Whole paged blocks that fit, and the tokens they hold.
    pub kv_blocks: u64,
    pub kv_tokens: u64,
    pub block_size: u32,
    /// Bytes missing for the weights plus reserve plus one full-context sequence, when it does not fit.
    pub shortfall_bytes: u64,
    /// Why it does not fit, or empty.
    pub reason: String,
    /// Total vs active parameters of a mixture-of-experts model (absent for a dense model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moe: Option<Box<MoeSummary>>,
}

/// What a mixture-of-experts model costs in memory (every expert) and in time (the experts a
/// step touches).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoeSummary {
    pub total_params: u64,
    /// Parameters one token multiplies by (embedding and LM head included).
    pub active_params: u64,
    pub experts: u32,
    pub top_k: u32,
    /// Tokens per step from which uniform routing touches 90% of the experts.
    pub tokens_to_touch_most: u64,
    /// The same in one sentence, for the fit table and the plan's assumptions.
    pub note: String,
}

impl MoeSummary {
    /// `None` for a dense model.
    pub fn of(model: &ModelArch) -> Option<MoeSummary> {
        let m = model.moe.as_ref()?;
        let total = model.params().total();
        let active = model.active_params();
        let most = m.tokens_to_touch_most() as u64;
        let b = |x: u64| format!("{:.2} B", x as f64 / 1e9);
        let note = format!(
            "mixture of experts ({} of {} experts per token): {} parameters in total, {} active; \
             memory holds all {}, while a decode step at small batch reads about the active {} \
             (every expert once a step has about {} tokens or more, under uniform routing)",
            m.top_k,
            m.experts,
            b(total),
            b(active),
            b(total),
            b(active),
            most
        );
        let note = match (m.expert_format, m.expert_bits()) {
            (Some(f), Some(bits)) => format!(
                "{note}; experts stored in {} ({bits} bits per weight) as the checkpoint ships \
                 them, whatever the scheme",
                f.key()
            ),
            (None, Some(bits)) => format!(
                "{note}; experts stored at {bits} bits per weight as the checkpoint ships them, \
                 whatever the scheme"
            ),
            (_, None) => note,
        };
        Some(MoeSummary {
            total_params: total,
            active_params: active,
            experts: m.experts,
            top_k: m.top_k,
            tokens_to_touch_most: most,
            note,
        })
    }
}

/// Bytes of all weights of `model` in `quant`: what the scheme stores for the linears present in
/// every layer, plus, for a MoE model, every expert (memory holds them all).
pub fn weight_bytes(model: &ModelArch, quant: Quant) -> u64 {
    quant.weight_bytes(model) + model.moe_weight_bytes(quant)
}

impl FitReport {
    /// Sequences of `context` tokens that fit in the KV cache at once.
    pub fn max_seqs_at(&self, context: u32) -> u64 {
        let blocks_per_seq = u64::from(context.max(1)).div_ceil(u64::from(self.block_size));
        self.kv_blocks / blocks_per_seq
    }
}

/// Peak activation memory of one forward pass over `tokens` tokens plus the logits of `seqs`
/// sequences: the largest intermediate tensors of one layer alive at once (fp16), and fp32 logits
/// and probabilities for sampling. A MoE layer's intermediates are its routed and shared
/// experts' widths, plus the `k` expert outputs per token before they are combined.
pub fn activation_bytes(model: &ModelArch, tokens: u32, seqs: u32) -> u64 {
    let t = u64::from(tokens);
    let expert_outputs = model
        .moe
        .as_ref()
        .map_or(0, |m| u64::from(m.top_k) * u64::from(model.hidden));
    let per_token = model.q_width()
        + 2 * model.kv_width()
        + 3 * model.mlp_width_per_token()
        + expert_outputs
        + 4 * u64::from(model.hidden);
    2 * t * per_token + 8 * u64::from(seqs) * u64::from(model.vocab)
}

/// Compute weights, reserve and KV capacity of `model` in `quant` on `gpu`.
pub fn fit(gpu: &GpuProfile, model: &ModelArch, quant: Quant, opts: &FitOptions) -> FitReport {
    match model.shard(opts.tp) {
        Ok(rank) => fit_rank(gpu, model, &rank, quant, opts),
        Err(reason) => {
            let mut r = fit_rank(gpu, model, model, quant, opts);
            r.fits = false;
            r.kv_bytes = 0;
            r.kv_blocks = 0;
            r.kv_tokens = 0;
            r.reason = reason;
            r
        }
    }
}

/// [`fit`] of one rank: `rank` is the slice of `model` one GPU holds.
fn fit_rank(
    gpu: &GpuProfile,
    model: &ModelArch,
    rank: &ModelArch,
    quant: Quant,
    opts: &FitOptions,
) -> FitReport {
    let memory = gpu.datasheet.memory_bytes();
    let usable = (memory as f64 * opts.gpu_memory_utilization) as u64;
    let weights = weight_bytes(rank, quant);
    let activation = activation_bytes(rank, opts.max_num_batched_tokens, opts.max_num_seqs);
    let reserve = activation + FIXED_RESERVE_BYTES;
    let per_token = opts.kv.bytes_per_token(rank);
    let block_bytes = per_token * u64::from(opts.block_size);
    let kv_bytes = usable.saturating_sub(weights + reserve);
    let kv_blocks = kv_bytes / block_bytes;
    let kv_tokens = kv_blocks * u64::from(opts.block_size);
    // It fits when at least one block is free; a buyer also sees how many full-context
    // sequences fit via `max_seqs_at`.
    let need_one_block = weights + reserve + block_bytes;
    let fits = usable >= need_one_block;
    let (shortfall, reason) = if fits {
        (0, String::new())
    } else if weights > usable {
        (
            need_one_block - usable,
            format!(
                "weights alone ({}) exceed the usable memory ({} = {} × {:.2})",
                gb(weights),
                gb(usable),
                gb(memory),
                opts.gpu_memory_utilization
            ),
        )
    } else {
        (
            need_one_block - usable,
            format!(
                "weights ({}) + runtime reserve ({}) leave no room for the KV cache in {}",
                gb(weights),
                gb(reserve),
                gb(usable)
            ),
        )
    };
    FitReport {
        fits,
        tp: opts.tp,
        gpu: gpu.key.clone(),
        model: model.key.clone(),
        quant,
        kv_dtype: opts.kv,
        memory_bytes: memory,
        gpu_memory_utilization: opts.gpu_memory_utilization,
        usable_bytes: usable,
        weights_bytes: weights,
        reserve_bytes: reserve,
        activation_bytes: activation,
        kv_bytes_per_token: per_token,
        kv_bytes: if fits { kv_bytes } else { 0 },
        kv_blocks: if fits { kv_blocks } else { 0 },
        kv_tokens: if fits { kv_tokens } else { 0 },
        block_size: opts.block_size,
        shortfall_bytes: shortfall,
        reason,
        moe: MoeSummary::of(model).map(Box::new),
    }
}

/// Bytes in GiB, the unit every size cardplan prints is in.
pub fn gb(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / GIB)
}

/// Bytes in a GiB: memory is sized in binary units (a "24 GB" card holds 24 GiB), so every
/// size cardplan prints is in GiB, as `cardplan list gpus` shows the cards.
const GIB: f64 = (1u64 << 30) as f64;
