//! The default efficiency set: what fraction of a datasheet roof each kernel class reaches, used
//! where no measured (or derived) table covers a kernel. Every number says where it comes from.
//!
//! A kernel's default time is `LAUNCH_FLOOR_S + max(bytes / (bandwidth × bw_eff),
//! flops / (rate × compute_eff(size)))`. These are estimates, not fits to any validation target;
//! a measured profile replaces them class by class as soon as it exists.

use super::roofline::{self, Heads, NF4_GEMV_MAX_TOKENS, Roofs, Work};
use crate::catalog::model::ModelArch;
use crate::catalog::quant::{KvDtype, Quant};
use crate::profile::{
    DecodeAttnTable, DecodePoint, ElementwiseKind, ElementwiseTable, GemmTable, GpuProfile,
    Measured, MeasuredRoofs, PrefillAttnTable, Provenance, Timing,
};

/// Fixed time of one kernel inside a CUDA graph (launch gap, ramp-up and tail), seconds. Kernels
/// replayed from a CUDA graph on Ampere/Hopper start about 1–3 µs apart and the smallest
/// kernels take 2–4 µs end to end (NVIDIA's CUDA-graph blog and Nsight traces of vLLM decode).
/// This part does not scale with bandwidth or FLOP/s when a table is transferred between GPUs.
pub const LAUNCH_FLOOR_S: f64 = 3.0e-6;

/// Achieved fraction of datasheet bandwidth and of datasheet tensor rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eff {
    pub bandwidth: f64,
    pub compute: f64,
}

/// Large-copy bandwidth over datasheet: 3.0 TB/s of 3.35 TB/s on the H100 SXM (a PyTorch
/// device-to-device copy on the lent H100). Weight-streaming GEMV/GEMM at few
/// tokens reaches a little less than a copy: 0.80.
const BW_GEMM: f64 = 0.80;
/// Large fp16 GEMM over datasheet: 730 TFLOP/s of 989 on the H100 (8192³, PyTorch on the lent
/// H100).
const FP16_PEAK_EFF: f64 = 0.74;
/// Token count at which the fp16 GEMM reaches half its large-size efficiency: tile and wave
/// quantization of cuBLAS's 64–128-row tiles (cardplan estimate).
const FP16_HALF_TOKENS: f64 = 32.0;
/// int8 IMMA GEMM over datasheet int8 rate, large sizes (cuBLASLt reaches 60–70% of the int8 peak on
/// Ampere/Hopper in NVIDIA's published cuBLASLt samples; cardplan estimate 0.65).
const INT8_PEAK_EFF: f64 = 0.65;
const INT8_HALF_TOKENS: f64 = 64.0;
/// W8A8 at few tokens streams int8 weights plus the activation-quantization pass (cardplan estimate).
const BW_INT8: f64 = 0.75;
/// bitsandbytes LLM.int8(): outlier decomposition, int8 matmul and dequantization in several
/// kernels; reported 15–40% slower than fp16 for large models and slower still at small batch
/// (bitsandbytes README / the LLM.int8() paper). Modeled as a fifth of the roofs (cardplan estimate).
const LLM_INT8_EFF: Eff = Eff {
    bandwidth: 0.20,
    compute: 0.15,
};
/// bitsandbytes NF4 GEMV (≤ 16 tokens): table lookups and absmax scaling per 64 weights keep it
/// well below copy bandwidth; ~0.45 of the datasheet on the NF4 bytes (cardplan estimate).
const BW_NF4_GEMV: f64 = 0.45;
/// A fused NF4 dequantize-GEMM (`nf4-fused`) at all sizes: 0.6 of bandwidth, 0.5 of fp16 peak
/// (dequantization in the main loop costs issue slots; cardplan estimate).
const NF4_FUSED_EFF: Eff = Eff {
    bandwidth: 0.60,
    compute: 0.50,
};
/// FP8 W8A8 GEMM (cuBLASLt / CUTLASS with scales in the epilogue) over the datasheet FP8 rate,
/// large sizes: torch._scaled_mm reaches ~1,300 of 1,979 dense TFLOP/s on the H100 SXM in
/// PyTorch's and NVIDIA's published FP8 GEMM benchmarks (cardplan estimate 0.65, as int8).
const FP8_PEAK_EFF: f64 = 0.65;
const FP8_HALF_TOKENS: f64 = 64.0;
/// FP8 at few tokens streams 1-byte weights plus the activation-quantization pass, as int8.
const BW_FP8: f64 = 0.75;
/// Weight-only FP8 on GPUs without FP8 (vLLM's FP8 Marlin, W8A16): 8-bit weights streamed and
/// dequantized in registers. Marlin's published batch-1..16 speed-ups put it close to a copy at
/// few tokens (0.75, cardplan estimate); at many tokens it is an fp16 tensor-core GEMM that also
/// dequantizes every weight tile, about 0.85 of cuBLAS fp16 (Marlin's large-batch results).
const BW_W8A16: f64 = 0.75;
const MARLIN_COMPUTE_FACTOR: f64 = 0.85;
/// INT4 W4A16 Marlin at few tokens: 4-bit weights plus group scales and zero points, read at
/// ~0.70 of datasheet bandwidth (Marlin's 3.9x over fp16 at batch 1-16 on an A10 implies near
/// the copy rate; cardplan estimate).
const BW_INT4: f64 = 0.70;
/// FlashAttention-2 causal fp16 forward with head_dim 128 reaches ~35–40% of the H100's fp16
/// peak at long sequences (FlashAttention-2/3 papers: ~350 TFLOP/s on H100 for FA2); short
/// prompts reach less (half at 512 tokens, cardplan estimate).
const PREFILL_ATTN_PEAK_EFF: f64 = 0.38;
const PREFILL_ATTN_HALF_TOKENS: f64 = 512.0;
/// Paged decode attention streams KV at ~0.70 of datasheet bandwidth (vLLM's paged-attention
/// and FlashDecoding benchmarks; cardplan estimate).
const BW_DECODE_ATTN: f64 = 0.70;
/// Small fused elementwise kernels (RMSNorm, SiLU·mul, rotary): ~0.6 of bandwidth (cardplan estimate).
const BW_ELEMENTWISE: f64 = 0.60;

/// Efficiency of a linear layer under `quant` at `tokens` on a GPU with roofs `r` (FP8 depends on
/// whether it has FP8 tensor cores).
pub fn gemm_eff(quant: Quant, tokens: f64, r: &Roofs) -> Eff {
    let fp16_compute = FP16_PEAK_EFF * ramp(tokens, FP16_HALF_TOKENS);
    match quant {
        Quant::Fp8 | Quant::Fp8Tensor if r.fp8_native => Eff {
            bandwidth: BW_FP8,
            compute: FP8_PEAK_EFF * ramp(tokens, FP8_HALF_TOKENS),
        },
        Quant::Fp8 | Quant::Fp8Tensor => Eff {
            bandwidth: BW_W8A16,
            compute: fp16_compute * MARLIN_COMPUTE_FACTOR,
        },
        Quant::Int4 | Quant::Int4Gptq => Eff {
            bandwidth: BW_INT4,
            compute: fp16_compute * MARLIN_COMPUTE_FACTOR,
        },
        Quant::Fp16 => Eff {
            bandwidth: BW_GEMM,
            compute: FP16_PEAK_EFF * ramp(tokens, FP16_HALF_TOKENS),
        },
        Quant::Int8 => Eff {
            bandwidth: BW_INT8,
            compute: INT8_PEAK_EFF * ramp(tokens, INT8_HALF_TOKENS),
        },
        Quant::LlmInt8 => LLM_INT8_EFF,
        Quant::Nf4 if tokens <= NF4_GEMV_MAX_TOKENS => Eff {
            bandwidth: BW_NF4_GEMV,
            compute: FP16_PEAK_EFF * ramp(tokens, FP16_HALF_TOKENS),
        },
        Quant::Nf4 => Eff {
            bandwidth: BW_GEMM,
            compute: FP16_PEAK_EFF * ramp(tokens, FP16_HALF_TOKENS),
        },
        Quant::Nf4Fused => NF4_FUSED_EFF,
    }
}

pub fn prefill_attn_eff(equivalent_tokens: f64) -> Eff {
    Eff {
        bandwidth: BW_DECODE_ATTN,
        compute: PREFILL_ATTN_PEAK_EFF * ramp(equivalent_tokens, PREFILL_ATTN_HALF_TOKENS),
    }
}

pub fn decode_attn_eff() -> Eff {
    Eff {
        bandwidth: BW_DECODE_ATTN,
        compute: 0.5,
    }
}

pub fn elementwise_eff() -> Eff {
    Eff {
        bandwidth: BW_ELEMENTWISE,
        compute: 1.0,
    }
}

/// Default time of `work` on `roofs` at efficiency `eff`.
pub fn seconds(work: &Work, eff: Eff, roofs: &Roofs) -> f64 {
    let scaled = Roofs {
        bandwidth: roofs.bandwidth * eff.bandwidth,
        fp16: roofs.fp16 * eff.compute,
        int8: roofs.int8 * eff.compute,
        fp8: roofs.fp8 * eff.compute,
        fp8_native: roofs.fp8_native,
        fp4: roofs.fp4.map(|r| r * eff.compute),
    };
    LAUNCH_FLOOR_S + work.seconds(&scaled)
}

/// `x / (x + half)`: 0 at no work, ½ at `half`, → 1 for large `x`.
fn ramp(x: f64, half: f64) -> f64 {
    x / (x + half)
}

/// The default efficiency set written out as profile tables for `model`'s shapes on `gpu`, on
/// the calibrator's size grid. Not a measurement (provenance says so): used to exercise the
/// table path (benchmarks, tests) and to show in profile form what the defaults predict.
pub fn as_tables(gpu: &GpuProfile, model: &ModelArch) -> Measured {
    let r = Roofs::from_datasheet(&gpu.datasheet);
    let tokens: Vec<u32> = (0..=13).map(|i| 1u32 << i).collect();
    let elem = |kind, width: u32| ElementwiseTable {
        kind,
        width,
        points: tokens
            .iter()
            .map(|&t| {
                let w = roofline::elementwise(kind, f64::from(width), f64::from(t));
                (t, seconds(&w, elementwise_eff(), &r) * 1e3)
            })
            .collect(),
    };
    Measured {
        allreduce: vec![],
        moe_gemm: vec![],
        provenance: Provenance {
            device: format!("{} (default efficiency set, NOT measured)", gpu.name),
            sm_count: gpu.datasheet.sm_count,
            driver: "n/a".into(),
            cuda: "n/a".into(),
            date: "n/a".into(),
            cardplan_version: env!("CARGO_PKG_VERSION").into(),
            git_rev: "n/a".into(),
            method: "src/cost/defaults.rs efficiencies applied to the datasheet".into(),
            // the default efficiencies are in-graph estimates already: no correction
            timing: Timing::BackToBack,
            derived_from: None,
            notes: Vec::new(),
        },
        roofs: MeasuredRoofs {
            copy_gbs: gpu.datasheet.bandwidth_gbs * 0.9,
            fp16_tflops: gpu.datasheet.fp16_tflops * FP16_PEAK_EFF,
            int8_tops: gpu.datasheet.int8_tops * INT8_PEAK_EFF,
        },
        gemm: gemm_tables(model, &tokens, &r),
        attn_prefill: vec![prefill_table(model, &r)],
        attn_decode: KvDtype::ALL
            .iter()
            .map(|&kv| decode_table(model, kv, &r))
            .collect(),
        elementwise: vec![
            elem(ElementwiseKind::RmsnormResidual, model.hidden),
            elem(ElementwiseKind::SiluMul, model.intermediate),
        ],
    }
}

fn model_heads(model: &ModelArch) -> Heads {
    Heads {
        heads: f64::from(model.heads),
        kv_heads: f64::from(model.kv_heads),
        head_dim: f64::from(model.head_dim),
    }
}

/// Every linear shape of `model` (and the LM head in fp16) under fp16, int8, nf4, fp8 and int4.
fn gemm_tables(model: &ModelArch, tokens: &[u32], r: &Roofs) -> Vec<GemmTable> {
    let mut gemm = Vec::new();
    for q in [
        Quant::Fp16,
        Quant::Int8,
        Quant::Nf4,
        Quant::Fp8,
        Quant::Int4,
    ] {
        let mut shapes: Vec<(u32, u32)> = model.linears().iter().map(|l| (l.n, l.k)).collect();
        if q == Quant::Fp16 {
            shapes.push((model.vocab, model.hidden));
        }
        for (n, k) in shapes {
            let points = tokens
                .iter()
                .map(|&t| {
                    let tf = f64::from(t);
                    let w = roofline::gemm(q, f64::from(n), f64::from(k), tf);
                    (t, seconds(&w, gemm_eff(q, tf, r), r) * 1e3)
                })
                .collect();
            gemm.push(GemmTable {
                scheme: q.key().into(),
                n,
                k,
                host_us_per_call: None,
                points,
            });
        }
    }
    gemm
}

fn prefill_table(model: &ModelArch, r: &Roofs) -> PrefillAttnTable {
    let h = model_heads(model);
    PrefillAttnTable {
        heads: model.heads,
        kv_heads: model.kv_heads,
        head_dim: model.head_dim,
        points: (7..=14)
            .map(|i| {
                let p = 1u32 << i;
                let x = f64::from(p);
                let w = roofline::prefill_attn(h, x * x / 2.0, x, x);
                (p, seconds(&w, prefill_attn_eff(x), r) * 1e3)
            })
            .collect(),
    }
}

fn decode_table(model: &ModelArch, kv: KvDtype, r: &Roofs) -> DecodeAttnTable {
    let h = model_heads(model);
    DecodeAttnTable {
        kv,
        heads: model.heads,
        kv_heads: model.kv_heads,
        head_dim: model.head_dim,
        block_size: 16,
        points: (0..=8)
            .flat_map(|i| {
                (7..=13).map(move |j| {
                    let (b, c) = (1u32 << i, 1u32 << j);
                    let w = roofline::decode_attn(
                        h,
                        kv.bytes() as f64,
                        16.0,
                        f64::from(b),
                        f64::from(c),
                    );
                    DecodePoint {
                        batch: b,
                        context: c,
                        ms: seconds(&w, decode_attn_eff(), r) * 1e3,
                    }
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::roofline::gemm;

    #[test]
    fn default_tables_are_a_valid_profile() {
        let mut g = crate::catalog::gpu("l4").expect("gpu");
        let m = crate::catalog::model("qwen2.5-7b").expect("model");
        g.measured = Some(as_tables(&g, &m));
        g.validate("defaults").expect("valid");
    }

    fn h100_roofs(fp8_native: bool) -> Roofs {
        Roofs {
            bandwidth: 3.35e12,
            fp16: 989e12,
            int8: 1979e12,
            fp8: if fp8_native { 1979e12 } else { 989e12 },
            fp8_native,
            fp4: None,
        }
    }

    #[test]
    fn efficiencies_are_fractions() {
        for native in [true, false] {
            for q in Quant::ALL {
                for t in [1.0, 16.0, 17.0, 512.0, 65536.0] {
                    let e = gemm_eff(q, t, &h100_roofs(native));
                    assert!(e.bandwidth > 0.0 && e.bandwidth <= 1.0, "{q} {t}");
                    assert!(e.compute > 0.0 && e.compute <= 1.0, "{q} {t}");
                }
            }
        }
    }

    #[test]
    fn fp8_without_fp8_tensor_cores_is_slower_when_compute_bound_only() {
        let (native, w8a16) = (h100_roofs(true), h100_roofs(false));
        let at = |t: f64, r: &Roofs| {
            seconds(
                &gemm(Quant::Fp8, 4096.0, 4096.0, t),
                gemm_eff(Quant::Fp8, t, r),
                r,
            )
        };
        // one token: a weight stream, the same bytes either way
        assert!((at(1.0, &native) / at(1.0, &w8a16) - 1.0).abs() < 0.01);
        // 8192 tokens: fp16 math at 0.85 of fp16 efficiency instead of the FP8 rate
        assert!(at(8192.0, &w8a16) > 2.0 * at(8192.0, &native));
    }

    #[test]
    fn int4_streams_a_quarter_of_fp16_at_one_token_and_is_fp16_bound_at_many() {
        let r = h100_roofs(true);
        let at = |q: Quant, t: f64| {
            seconds(&gemm(q, 4096.0, 14336.0, t), gemm_eff(q, t, &r), &r) - LAUNCH_FLOOR_S
        };
        let ratio = at(Quant::Int4, 1.0) / at(Quant::Fp16, 1.0);
        // 0.26 of the bytes at 0.70 instead of 0.80 of bandwidth
        assert!((0.28..0.33).contains(&ratio), "{ratio}");
        let big = at(Quant::Int4, 8192.0) / at(Quant::Fp16, 8192.0);
        assert!((big - 1.0 / MARLIN_COMPUTE_FACTOR).abs() < 0.01, "{big}");
    }

    #[test]
    fn default_gemm_time_grows_with_tokens() {
        let r = h100_roofs(true);
        for q in Quant::ALL {
            let mut prev = 0.0;
            for t in (1..=8192).step_by(7) {
                let t = f64::from(t);
                let s = seconds(&gemm(q, 4096.0, 4096.0, t), gemm_eff(q, t, &r), &r);
                // NF4 switches from GEMV to dequantize + GEMM at 17 tokens: a step up is expected
                assert!(s >= prev * 0.999, "{q} at {t}: {s} < {prev}");
                prev = s;
            }
        }
    }
}
