//! Quantization schemes and the exact bytes each one stores.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::model::ModelArch;

/// How the weights of the linear layers are stored and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quant {
    /// 16-bit weights, cuBLAS GEMM (what vLLM runs by default).
    Fp16,
    /// W8A8, SmoothQuant-style: int8 weights with per-channel scales, activations quantized per
    /// token, int8 tensor-core GEMM with int32 accumulation (vLLM's compressed-tensors path).
    Int8,
    /// bitsandbytes LLM.int8(): int8 weights with per-row scales, mixed-precision decomposition.
    LlmInt8,
    /// bitsandbytes NF4 with block 64 and double-quantized absmax: fused GEMV for a few tokens,
    /// dequantize to fp16 then cuBLAS for more (the path bitsandbytes and vLLM take).
    Nf4,
    /// Same storage as `nf4`, run by cardplan's own fused dequantize-GEMM at every token count.
    /// Not what the libraries do: an upper bound on what NF4 could reach.
    Nf4Fused,
}

impl Quant {
    pub const ALL: [Quant; 5] = [
        Quant::Fp16,
        Quant::Int8,
        Quant::LlmInt8,
        Quant::Nf4,
        Quant::Nf4Fused,
    ];

    /// The name used on the command line and in profile tables.
    pub fn key(self) -> &'static str {
        match self {
            Quant::Fp16 => "fp16",
            Quant::Int8 => "int8",
            Quant::LlmInt8 => "llm-int8",
            Quant::Nf4 => "nf4",
            Quant::Nf4Fused => "nf4-fused",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Quant::Fp16 => "16-bit weights, cuBLAS fp16 GEMM (fp32 accumulate)",
            Quant::Int8 => {
                "W8A8 SmoothQuant-style: int8 weights + per-channel scales, per-token int8 activations, IMMA GEMM"
            }
            Quant::LlmInt8 => {
                "bitsandbytes LLM.int8(): int8 weights + per-row scales, outlier columns in fp16"
            }
            Quant::Nf4 => {
                "bitsandbytes NF4, block 64, double-quantized absmax; fused GEMV for <=16 tokens, dequantize + fp16 GEMM above"
            }
            Quant::Nf4Fused => {
                "NF4 storage run by cardplan's fused dequantize-GEMM at every size (not a library path; an upper bound)"
            }
        }
    }

    /// Bytes of one linear weight tensor of `n × k` in this scheme, with its scales.
    pub fn linear_bytes(self, n: u64, k: u64) -> u64 {
        let numel = n * k;
        match self {
            Quant::Fp16 => 2 * numel,
            // int8 weights + one fp32 scale per output channel (row).
            Quant::Int8 | Quant::LlmInt8 => numel + 4 * n,
            Quant::Nf4 | Quant::Nf4Fused => nf4_bytes(numel),
        }
    }

    /// Bytes of all weights of `model` stored in this scheme. Embeddings, LM head, norms and biases
    /// stay in 16 bits, as bitsandbytes and vLLM keep them.
    pub fn weight_bytes(self, model: &ModelArch) -> u64 {
        let p = model.params();
        let linear: u64 = model
            .linears()
            .iter()
            .map(|l| self.linear_bytes(u64::from(l.n), u64::from(l.k)))
            .sum::<u64>()
            * u64::from(model.layers);
        linear + 2 * (p.embedding + p.lm_head + p.small)
    }
}

/// bitsandbytes NF4 storage of `numel` weights: 4-bit codes, one 8-bit quantized absmax per 64
/// weights, one fp32 absmax per 256 such blocks (double quantization), plus per-tensor constants
/// (the 256-entry fp32 code of the absmax quantizer, the fp32 offset, the 16-entry NF4 table).
pub fn nf4_bytes(numel: u64) -> u64 {
    let blocks = numel.div_ceil(64);
    let nested_blocks = blocks.div_ceil(256);
    numel.div_ceil(2) + blocks + 4 * nested_blocks + 256 * 4 + 4 + 16 * 4
}

impl fmt::Display for Quant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim().to_ascii_lowercase();
        Quant::ALL
            .into_iter()
            .find(|q| q.key() == want)
            .ok_or_else(|| {
                super::unknown_name("quantization scheme", s, Quant::ALL.iter().map(|q| q.key()))
            })
    }
}

/// Data type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KvDtype {
    #[default]
    Fp16,
    /// 8 bits per element (vLLM's fp8/int8 KV cache); per-tensor scales are negligible.
    Int8,
}

impl KvDtype {
    pub const ALL: [KvDtype; 2] = [KvDtype::Fp16, KvDtype::Int8];

    pub fn key(self) -> &'static str {
        match self {
            KvDtype::Fp16 => "fp16",
            KvDtype::Int8 => "int8",
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            KvDtype::Fp16 => 2,
            KvDtype::Int8 => 1,
        }
    }

    /// KV-cache bytes per token of context: K and V, every layer, every KV head.
    pub fn bytes_per_token(self, model: &ModelArch) -> u64 {
        2 * u64::from(model.layers) * model.kv_width() * self.bytes()
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for KvDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim().to_ascii_lowercase();
        KvDtype::ALL
            .into_iter()
            .find(|q| q.key() == want)
            .ok_or_else(|| {
                super::unknown_name("KV-cache dtype", s, KvDtype::ALL.iter().map(|q| q.key()))
            })
    }
}
