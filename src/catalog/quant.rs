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
    /// W8A8 FP8 (e4m3), per-output-channel weight scales and per-token dynamic activation scales:
    /// compressed-tensors `FP8_DYNAMIC` checkpoints (llm-compressor), run by vLLM through
    /// cuBLASLt/CUTLASS with row-wise scales. On GPUs without FP8 (Ampere, Turing) vLLM runs the
    /// same weights weight-only through its FP8 Marlin (W8A16) kernel.
    Fp8,
    /// W8A8 FP8 (e4m3) with one weight scale and one static activation scale per layer:
    /// `quant_method: fp8` checkpoints and compressed-tensors per-tensor FP8.
    Fp8Tensor,
    /// W4A16 int4, group 128, AWQ layout (asymmetric: packed 4-bit zero points, fp16 scales),
    /// run by vLLM's Marlin kernels.
    Int4,
    /// W4A16 int4, group 128, GPTQ layout (packed 4-bit zero points, fp16 scales and an int32
    /// group index per input channel), run by the same Marlin kernels as `int4`.
    Int4Gptq,
}

impl Quant {
    pub const ALL: [Quant; 9] = [
        Quant::Fp16,
        Quant::Int8,
        Quant::LlmInt8,
        Quant::Nf4,
        Quant::Nf4Fused,
        Quant::Fp8,
        Quant::Fp8Tensor,
        Quant::Int4,
        Quant::Int4Gptq,
    ];

    /// The name used on the command line and in profile tables.
    pub fn key(self) -> &'static str {
        match self {
            Quant::Fp16 => "fp16",
            Quant::Int8 => "int8",
            Quant::LlmInt8 => "llm-int8",
            Quant::Nf4 => "nf4",
            Quant::Nf4Fused => "nf4-fused",
            Quant::Fp8 => "fp8",
            Quant::Fp8Tensor => "fp8-tensor",
            Quant::Int4 => "int4",
            Quant::Int4Gptq => "int4-gptq",
        }
    }

    /// The scheme whose kernel tables price this one: the GPTQ layout runs the same Marlin
    /// kernel as AWQ once loaded, so both use the `int4` tables.
    pub fn priced_as(self) -> Quant {
        match self {
            Quant::Int4Gptq => Quant::Int4,
            q => q,
        }
    }

    /// Whether the scheme multiplies in FP8 on the tensor cores (where the GPU has FP8).
    pub fn is_fp8(self) -> bool {
        matches!(self, Quant::Fp8 | Quant::Fp8Tensor)
    }

    /// What the scheme runs as on a GPU without FP8 tensor cores, said in the output; `None`
    /// where it runs as named. vLLM falls back to weight-only FP8 (W8A16, its FP8 Marlin kernel)
    /// on Ampere and older, so the weights stay 8-bit but the math is fp16.
    pub fn hardware_note(self, gpu_key: &str, has_fp8: bool) -> Option<String> {
        (self.is_fp8() && !has_fp8).then(|| {
            format!(
                "{self}: {gpu_key} has no FP8 tensor cores; priced as vLLM runs it there, weight-only \
                 FP8 (W8A16 through its FP8 Marlin kernel: 8-bit weight reads, fp16 math)"
            )
        })
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
            Quant::Fp8 => {
                "W8A8 FP8 e4m3: per-channel weight scales, per-token dynamic activation scales (FP8-dynamic); W8A16 Marlin where the GPU lacks FP8"
            }
            Quant::Fp8Tensor => {
                "W8A8 FP8 e4m3: one weight scale and one static activation scale per layer; W8A16 Marlin where the GPU lacks FP8"
            }
            Quant::Int4 => {
                "W4A16 int4, group 128, AWQ layout (fp16 scales, packed 4-bit zero points), Marlin kernels"
            }
            Quant::Int4Gptq => {
                "W4A16 int4, group 128, GPTQ layout (fp16 scales, packed zero points, int32 g_idx), Marlin kernels"
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
            // e4m3 weights + one fp32 scale per output channel, as vLLM holds them
            Quant::Fp8 => numel + 4 * n,
            // e4m3 weights + one fp32 weight scale and one fp32 input scale (vLLM requantizes
            // fused shards to their largest scale at load)
            Quant::Fp8Tensor => numel + 8,
            Quant::Int4 => int4_awq_bytes(n, k),
            Quant::Int4Gptq => int4_gptq_bytes(n, k),
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

/// Input channels per int4 group (the AWQ/GPTQ default, the only one cardplan prices).
pub const INT4_GROUP: u64 = 128;

/// Int4 AWQ checkpoint bytes of an `n × k` linear: `qweight` int32 `[k, n/8]` (eight 4-bit
/// weights per word), `qzeros` int32 `[k/128, n/8]` (packed 4-bit zero points), `scales` fp16
/// `[k/128, n]`. A ragged last group or column word is stored whole.
pub fn int4_awq_bytes(n: u64, k: u64) -> u64 {
    let groups = k.div_ceil(INT4_GROUP);
    let words_n = n.div_ceil(8);
    4 * k * words_n + 4 * groups * words_n + 2 * groups * n
}

/// Int4 GPTQ checkpoint bytes of an `n × k` linear: `qweight` int32 `[k/8, n]`, `qzeros` int32
/// `[k/128, n/8]`, `scales` fp16 `[k/128, n]`, `g_idx` int32 `[k]` (stored even without
/// act-order).
pub fn int4_gptq_bytes(n: u64, k: u64) -> u64 {
    let groups = k.div_ceil(INT4_GROUP);
    4 * k.div_ceil(8) * n + 4 * groups * n.div_ceil(8) + 2 * groups * n + 4 * k
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
    /// 8-bit integers per element with per-tensor scales (negligible bytes).
    Int8,
    /// FP8 e4m3 per element with per-tensor K and V scales (vLLM's `--kv-cache-dtype fp8`).
    Fp8,
}

impl KvDtype {
    pub const ALL: [KvDtype; 3] = [KvDtype::Fp16, KvDtype::Int8, KvDtype::Fp8];

    pub fn key(self) -> &'static str {
        match self {
            KvDtype::Fp16 => "fp16",
            KvDtype::Int8 => "int8",
            KvDtype::Fp8 => "fp8",
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            KvDtype::Fp16 => 2,
            KvDtype::Int8 | KvDtype::Fp8 => 1,
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
