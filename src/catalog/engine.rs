//! Serving-engine presets: scheduler policy, limits and per-step CPU overhead.
//!
//! The overhead numbers are named parameters, not fitted constants hidden in code: each preset
//! says where its value comes from, and every knob can be overridden on the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// vLLM 0.5.x CPU time per running sequence per step. Fitted to one validation row (Backprop,
/// original prompt, 100 clients: mean tok/s), so that row is not counted in the accuracy claim.
/// The vLLM v0.6.0 release blog's profile of v0.5.3 (Llama 3 8B on an H100: API server 33%,
/// scheduling 29% of the time) implies 70–90 µs at batch 128–256 on a server CPU; Backprop's
/// streaming clients on a desktop host show three to four times that. Refit (one
/// `cardplan simulate … --per-seq-overhead-us` sweep on that row) whenever the measured profiles change.
pub const VLLM_V0_PER_SEQ_OVERHEAD_S: f64 = 274e-6;

/// How the scheduler forms batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// vLLM V1: running decodes first, then prefill chunks fill the remaining token budget.
    ChunkedDecodeFirst,
    /// vLLM V0 (0.5.x default): a step either prefills whole waiting prompts or decodes; waiting
    /// prefills go first.
    PrefillFirst,
    /// Hugging Face `generate`: a static batch runs until its longest output finishes.
    Static,
}

/// A named engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnginePreset {
    pub key: String,
    pub policy: Policy,
    /// Most sequences in one step (vLLM `max_num_seqs`; batch size for `hf-static`).
    pub max_num_seqs: u32,
    /// Token budget of one step (vLLM `max_num_batched_tokens`).
    pub max_num_batched_tokens: u32,
    /// Share of GPU memory the engine may use (vLLM `gpu_memory_utilization`).
    pub gpu_memory_utilization: f64,
    /// Fixed CPU/launch time per step, seconds (scheduling, sampling launch, output handling).
    pub step_overhead_s: f64,
    /// Extra CPU time per running sequence per step, seconds (detokenization, streaming).
    pub per_seq_overhead_s: f64,
    /// Paged KV-cache block size in tokens.
    pub block_size: u32,
    /// Where the numbers come from.
    pub source: String,
}

impl EnginePreset {
    pub const KEYS: [&'static str; 3] = ["vllm", "vllm-v0", "hf-static"];

    /// The built-in preset named `key`.
    pub fn builtin(key: &str) -> Option<EnginePreset> {
        let p = match key {
            "vllm" => EnginePreset {
                key: "vllm".into(),
                policy: Policy::ChunkedDecodeFirst,
                max_num_seqs: 256,
                max_num_batched_tokens: 2048,
                gpu_memory_utilization: 0.9,
                step_overhead_s: 0.0015,
                per_seq_overhead_s: 0.000_010,
                block_size: 16,
                source: "vLLM V1 defaults (max_num_seqs 256, max_num_batched_tokens 2048 for online serving, \
                         gpu_memory_utilization 0.9); overhead: CUDA-graph decode with async output \
                         processing, ~1.5 ms/step + 10 us/sequence (cardplan estimate)"
                    .into(),
            },
            "vllm-v0" => EnginePreset {
                key: "vllm-v0".into(),
                policy: Policy::PrefillFirst,
                max_num_seqs: 256,
                max_num_batched_tokens: 8192,
                gpu_memory_utilization: 0.9,
                step_overhead_s: 0.003,
                per_seq_overhead_s: VLLM_V0_PER_SEQ_OVERHEAD_S,
                block_size: 16,
                source: "vLLM 0.5.x defaults (prefill-first, no chunked prefill, max_num_seqs 256); \
                         overhead: synchronous Python scheduler, sampler, detokenizer and SSE streaming in \
                         the API process: 3 ms/step (cardplan estimate, checked by Backprop's c=1 rows) + \
                         274 us per running sequence, FITTED to Backprop's 'original c=100' row (mean \
                         tok/s); the vLLM v0.6.0 blog's profile of v0.5.3 (62% of time on CPU) implies \
                         70-90 us/sequence on an H100 server host"
                    .into(),
            },
            "hf-static" => EnginePreset {
                key: "hf-static".into(),
                policy: Policy::Static,
                max_num_seqs: 1,
                max_num_batched_tokens: u32::MAX,
                gpu_memory_utilization: 0.9,
                step_overhead_s: 0.012,
                per_seq_overhead_s: 0.0,
                block_size: 16,
                source: "Hugging Face transformers generate(): eager PyTorch, one kernel launch per op, \
                         no CUDA graphs; ~12 ms/step of launch and Python overhead (cardplan estimate)"
                    .into(),
            },
            _ => return None,
        };
        Some(p)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::ChunkedDecodeFirst => "chunked prefill, decodes first",
            Policy::PrefillFirst => "prefill first, no chunking",
            Policy::Static => "static batches",
        })
    }
}

impl FromStr for EnginePreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EnginePreset::builtin(s.trim())
            .ok_or_else(|| super::unknown_name("engine preset", s, EnginePreset::KEYS.into_iter()))
    }
}
