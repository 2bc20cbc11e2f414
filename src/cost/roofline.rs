//! Roofline work of each kernel class: the fewest bytes it must move and the FLOPs it must do.
//!
//! Every table lookup, shape transfer and GPU transfer in the cost model is a ratio of two of these
//! roofline times, so the same byte and FLOP counts are used everywhere.

use crate::catalog::gpu::Datasheet;
use crate::catalog::quant::{Quant, nf4_bytes};
use crate::profile::ElementwiseKind;

/// Token count up to which bitsandbytes (and the calibrator's `nf4` table) use the fused NF4
/// GEMV; above it the weights are dequantized to fp16 and multiplied by cuBLAS.
pub const NF4_GEMV_MAX_TOKENS: f64 = 16.0;

/// The roofs a roofline time is taken against: datasheet peaks, in bytes/s and FLOP/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofs {
    pub bandwidth: f64,
    pub fp16: f64,
    pub int8: f64,
    /// FP8 tensor rate; the fp16 rate on GPUs without FP8, where FP8 weights are multiplied in
    /// fp16 after dequantization (vLLM's W8A16 FP8 Marlin path).
    pub fp8: f64,
    /// Whether the GPU has FP8 tensor cores (Ada, Hopper, Blackwell).
    pub fp8_native: bool,
    /// FP4 tensor rate where the GPU has FP4 tensor cores (Blackwell): MXFP4 experts multiply
    /// at it; elsewhere they run as a W4A16 path at the fp16 rate.
    pub fp4: Option<f64>,
}

impl Roofs {
    /// Datasheet roofs. `fp16` is the fp32-accumulate rate (half the fp16-accumulate rate on
    /// GeForce cards), because serving engines accumulate in fp32.
    pub fn from_datasheet(d: &Datasheet) -> Roofs {
        let fp16 = d.fp16_tflops * 1e12;
        let fp8 = d.fp8_tflops.filter(|r| r.is_finite() && *r > 0.0);
        Roofs {
            bandwidth: d.bandwidth_gbs * 1e9,
            fp16,
            int8: d.int8_tops * 1e12,
            fp8: fp8.map_or(fp16, |r| r * 1e12),
            fp8_native: fp8.is_some(),
            fp4: d
                .fp4_tflops
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| r * 1e12),
        }
    }
}

/// Which tensor-core rate a kernel's arithmetic runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Fp16,
    Int8,
    Fp8,
}

/// Bytes moved and operations done by one kernel call (or fixed sequence of calls).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    pub bytes: f64,
    pub flops: f64,
    pub rate: Rate,
}

impl Work {
    /// Memory-only work (elementwise kernels).
    pub fn bytes(bytes: f64) -> Work {
        Work {
            bytes,
            flops: 0.0,
            rate: Rate::Fp16,
        }
    }

    pub fn memory_s(&self, r: &Roofs) -> f64 {
        self.bytes / r.bandwidth
    }

    pub fn compute_s(&self, r: &Roofs) -> f64 {
        let rate = match self.rate {
            Rate::Fp16 => r.fp16,
            Rate::Int8 => r.int8,
            Rate::Fp8 => r.fp8,
        };
        self.flops / rate
    }

    /// Roofline time: the larger of the memory and the compute time.
    pub fn seconds(&self, r: &Roofs) -> f64 {
        self.memory_s(r).max(self.compute_s(r))
    }
}

/// `y[T×n] = x[T×k] · Wᵀ` under `quant`, with every scheme-specific pass the profile contract
/// includes (activation quantization for int8, dequantization for nf4 above the GEMV range).
pub fn gemm(quant: Quant, n: f64, k: f64, tokens: f64) -> Work {
    let act = 2.0 * tokens * (k + n); // fp16 x read, fp16 y written
    let flops = 2.0 * tokens * n * k;
    let weights = quant.linear_bytes(n as u64, k as u64) as f64;
    match quant {
        Quant::Fp16 => Work {
            bytes: weights + act,
            flops,
            rate: Rate::Fp16,
        },
        // Per-token quantization reads x (fp16) and writes it as int8, which the GEMM reads.
        Quant::Int8 | Quant::LlmInt8 => Work {
            bytes: weights + act + 2.0 * tokens * k,
            flops,
            rate: Rate::Int8,
        },
        Quant::Nf4 if tokens > NF4_GEMV_MAX_TOKENS => Work {
            // dequantize (read NF4, write fp16 W), then an fp16 GEMM that reads W again
            bytes: nf4_bytes((n * k) as u64) as f64 + 4.0 * n * k + act,
            flops,
            rate: Rate::Fp16,
        },
        Quant::Nf4 | Quant::Nf4Fused => Work {
            bytes: weights + act,
            flops,
            rate: Rate::Fp16,
        },
        // Quantizing x to e4m3 reads it (fp16) and writes it (1 byte), which the GEMM reads; on
        // GPUs without FP8 the W8A16 path skips this pass, a few bytes per token against n·k of
        // weights, kept in the count so one Work serves every GPU.
        Quant::Fp8 | Quant::Fp8Tensor => Work {
            bytes: weights + act + 2.0 * tokens * k,
            flops,
            rate: Rate::Fp8,
        },
        // Marlin reads the 4-bit weights once per tile and dequantizes in registers: the 4-bit
        // bytes at few tokens, fp16 tensor-core math at many.
        Quant::Int4 | Quant::Int4Gptq => Work {
            bytes: weights + act,
            flops,
            rate: Rate::Fp16,
        },
    }
}

/// Attention head configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heads {
    pub heads: f64,
    pub kv_heads: f64,
    pub head_dim: f64,
}

/// Causal prefill attention of chunks whose FLOP sum is `Σ p·(q + p/2)` = `causal_pairs`, reading
/// `kv_tokens` = `Σ (q + p)` cached + new K/V rows and `new_tokens` = `Σ p` query/output rows.
/// A single prompt of P tokens has `causal_pairs = P²/2` and `kv_tokens = new_tokens = P`.
pub fn prefill_attn(h: Heads, causal_pairs: f64, kv_tokens: f64, new_tokens: f64) -> Work {
    Work {
        // QKᵀ and PV: 2 FLOPs per multiply-add, two matmuls, per query head
        flops: 4.0 * h.heads * h.head_dim * causal_pairs,
        bytes: 2.0 * 2.0 * new_tokens * h.heads * h.head_dim
            + 2.0 * 2.0 * kv_tokens * h.kv_heads * h.head_dim,
        rate: Rate::Fp16,
    }
}

/// Paged decode attention: `batch` sequences, one query each, over `context` cached tokens each,
/// KV elements of `kv_bytes` bytes. The per-sequence floor is the half-filled last block every
/// sequence reads on average (`block/2` tokens) plus its query and output rows.
pub fn decode_attn(h: Heads, kv_bytes: f64, block: f64, batch: f64, context: f64) -> Work {
    let per_token = 2.0 * h.kv_heads * h.head_dim * kv_bytes;
    Work {
        bytes: batch * (context + block / 2.0) * per_token
            + batch * 2.0 * 2.0 * h.heads * h.head_dim,
        flops: 4.0 * batch * h.heads * h.head_dim * context,
        rate: Rate::Fp16,
    }
}

/// Elementwise kernels of the profile contract: bytes read + written.
pub fn elementwise(kind: ElementwiseKind, width: f64, tokens: f64) -> Work {
    Work::bytes(match kind {
        // read x and residual, write normed x and the new residual; weight is negligible
        ElementwiseKind::RmsnormResidual => 8.0 * tokens * width + 2.0 * width,
        // read gate and up, write the product
        ElementwiseKind::SiluMul => 6.0 * tokens * width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roofs(bw_gbs: f64) -> Roofs {
        Roofs {
            bandwidth: bw_gbs * 1e9,
            fp16: 989e12,
            int8: 1979e12,
            fp8: 1979e12,
            fp8_native: true,
            fp4: None,
        }
    }

    #[test]
    fn doubling_bandwidth_halves_memory_bound_kernel() {
        let w = gemm(Quant::Fp16, 4096.0, 4096.0, 1.0);
        let t1 = w.seconds(&roofs(1000.0));
        let t2 = w.seconds(&roofs(2000.0));
        assert!(w.memory_s(&roofs(1000.0)) > w.compute_s(&roofs(1000.0)));
        assert!((t1 / t2 - 2.0).abs() < 1e-12, "{t1} {t2}");
    }

    #[test]
    fn quantized_weights_move_fewer_bytes_at_one_token() {
        let fp16 = gemm(Quant::Fp16, 4096.0, 4096.0, 1.0).bytes;
        let int8 = gemm(Quant::Int8, 4096.0, 4096.0, 1.0).bytes;
        let nf4 = gemm(Quant::Nf4, 4096.0, 4096.0, 1.0).bytes;
        assert!(
            int8 < 0.55 * fp16 && nf4 < 0.3 * fp16,
            "{fp16} {int8} {nf4}"
        );
        // above the GEMV range NF4 dequantizes: more bytes than fp16
        assert!(gemm(Quant::Nf4, 4096.0, 4096.0, 64.0).bytes > fp16);
        let fp8 = gemm(Quant::Fp8, 4096.0, 4096.0, 1.0).bytes;
        let int4 = gemm(Quant::Int4, 4096.0, 4096.0, 1.0).bytes;
        assert!(fp8 < 0.51 * fp16 && int4 < 0.27 * fp16, "{fp8} {int4}");
    }

    #[test]
    fn fp8_runs_at_the_fp8_rate_where_the_gpu_has_it_else_at_fp16() {
        let mut d = crate::catalog::gpu("h100-sxm").expect("gpu").datasheet;
        let w = gemm(Quant::Fp8, 4096.0, 4096.0, 8192.0);
        let hopper = Roofs::from_datasheet(&d);
        assert!(hopper.fp8_native);
        assert!((w.compute_s(&hopper) * 1979e12 - w.flops).abs() < 1e-3 * w.flops);
        d.fp8_tflops = None;
        let ampere_like = Roofs::from_datasheet(&d);
        assert!(!ampere_like.fp8_native);
        assert!((w.compute_s(&ampere_like) / w.compute_s(&hopper) - 1979.0 / 989.0).abs() < 1e-9);
        // int4 W4A16 computes in fp16 everywhere
        let i = gemm(Quant::Int4, 4096.0, 4096.0, 8192.0);
        assert!((i.compute_s(&hopper) * 989e12 - i.flops).abs() < 1e-3 * i.flops);
    }

    #[test]
    fn single_prompt_prefill_is_quadratic_in_flops() {
        let h = Heads {
            heads: 32.0,
            kv_heads: 8.0,
            head_dim: 128.0,
        };
        let a = prefill_attn(h, 1000.0 * 1000.0 / 2.0, 1000.0, 1000.0).flops;
        let b = prefill_attn(h, 2000.0 * 2000.0 / 2.0, 2000.0, 2000.0).flops;
        assert!((b / a - 4.0).abs() < 1e-12);
    }
}
