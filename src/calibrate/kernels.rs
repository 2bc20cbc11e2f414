//! Which kernels of `kernels/*.cu` a calibration builds and loads: the fixed ones, the GEMV and
//! decode instantiations the run needs, and the paged-decode variants the sweep times. Kept apart
//! from the CUDA timer so the lists (and their agreement with the `.cu` macros) are plain data,
//! tested without a GPU.

use super::bnb::MMA_TILES;
use super::sweep::{self, SweepSpec};
use crate::catalog::quant::KvDtype;

/// The kernels of kernels/*.cu that are not templated per token count or GQA group.
/// The kernels of kernels/quant.cu (FP8, INT4 W4A16, LLM.int8()).
pub(crate) const QUANT_KERNELS: [&str; 24] = [
    "quant_fp8_per_token",
    "quant_fp8_tensor",
    "zero_f32",
    "f32_to_f16",
    "w4a16_mma_m1",
    "w4a16_mma_m2",
    "w4a16_mma_m4",
    "w4a16_gemv_m1",
    "w4a16_gemv_m2",
    "w4a16_gemv_m4",
    "w4_dequant",
    "bnb_abs",
    "bnb_ge",
    "bnb_any",
    "bnb_any_dim0",
    "bnb_count",
    "bnb_select",
    "bnb_vector_quant",
    "bnb_zero_cols",
    "gather_cols",
    "bnb_gather_i8",
    "bnb_mul_rows",
    "bnb_scale",
    "bnb_plant_outliers",
];

const KERNELS: [&str; 15] = [
    "spin_ns",
    "fill_half",
    "fill_u8",
    "fill_e4m3",
    "fill_f32",
    "nf4_dequant",
    "nf4_absmax_dequant",
    "add_scalar_f32",
    "nf4_dequant_bnb",
    "quant_per_token",
    "dequant_i32",
    "paged_decode_reduce",
    "prefill_attn",
    "rmsnorm_residual",
    "silu_mul",
];
/// Longest partition of the two-pass decode kernel (its scores live in shared memory).
pub(super) const PART: u32 = 512;
/// Longest partition of the one-pass decode kernels.
pub(crate) const STREAM_MAX_PART: u32 = 4096;

/// The templated kernels one calibration needs: GEMV token counts (the sweep's and the checks')
/// and GQA group sizes (the models' and the check's). Only these are instantiated, which keeps
/// NVRTC's work (most of `--quick`'s wall time on a fresh machine) small.
pub(super) struct Instances {
    pub(super) gemv_tokens: Vec<u32>,
    pub(super) groups: Vec<u32>,
}

impl Instances {
    pub(super) fn for_spec(spec: &SweepSpec) -> Instances {
        let mut gemv_tokens: Vec<u32> = spec
            .tokens
            .iter()
            .copied()
            .filter(|&t| t <= sweep::GEMV_MAX_TOKENS)
            .chain(CHECK_GEMV_TOKENS)
            .collect();
        gemv_tokens.sort_unstable();
        gemv_tokens.dedup();
        let mut groups: Vec<u32> = spec
            .attn
            .iter()
            .map(|&(h, kv)| h / kv.max(1))
            .chain([CHECK_DECODE_HEADS.0 / CHECK_DECODE_HEADS.1])
            .collect();
        groups.sort_unstable();
        groups.dedup();
        Instances {
            gemv_tokens,
            groups,
        }
    }

    /// Source prefix defining the instantiation lists (`#line 1` keeps NVRTC's line numbers).
    pub(super) fn prefix(&self) -> String {
        let list = |v: &[u32]| {
            v.iter()
                .map(|x| format!("X({x})"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "#define GEMV_TOKENS(X) {}\n#define DECODE_GROUPS(X) {}\n#line 1\n",
            list(&self.gemv_tokens),
            list(&self.groups)
        )
    }

    /// Every kernel the timer loads.
    pub(super) fn kernel_names(&self) -> Vec<String> {
        let mut v: Vec<String> = KERNELS
            .iter()
            .chain(QUANT_KERNELS.iter())
            .map(|s| s.to_string())
            .collect();
        for kv in KvDtype::ALL {
            for &g in &self.groups {
                v.extend(DecodeKernel::for_kv(kv).map(|k| k.name(kv, g)));
            }
        }
        v.extend(MMA_TILES.iter().map(|t| t.kernel_name()));
        for t in &self.gemv_tokens {
            v.push(format!("nf4_gemv_t{t}"));
            v.push(format!("w8a16_gemv_t{t}"));
        }
        v
    }
}

/// Token counts of the GEMV correctness checks.
pub(super) const CHECK_GEMV_TOKENS: [u32; 3] = [1, 7, 16];
/// (query heads, KV heads) of the decode-attention correctness check.
pub(super) const CHECK_DECODE_HEADS: (u32, u32) = (8, 2);

/// The paged-decode kernels of attention.cu. The calibrator times each (at several partition
/// sizes) and keeps the fastest, as an autotuned engine would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DecodeKernel {
    /// Two passes over a partition (scores to shared memory, then P·V), query in registers.
    TwoPassQreg,
    /// One pass with an online softmax, 8 warps, a whole KV block per load step.
    Stream8,
    /// One pass, 4 warps of at most 128 registers, half a KV block per load step (fp16 KV only:
    /// the int8 instance spills).
    Stream4Half,
    /// One pass, 4 warps, half blocks, three further steps in flight through cp.async.
    Stream4Async,
    /// The same with 8 warps (one CTA per SM streams faster: for small grids).
    Stream8Async,
    /// One pass on tensor cores (mma.sync), 4 warps, a whole KV block per step, two further
    /// blocks in flight through cp.async (fp16 KV only).
    Tensor4,
    /// The same with 8 warps and one further block in flight.
    Tensor8,
}

/// Pipeline depth of the cp.async decode kernel (ASYNC_STAGES in attention.cu).
pub(super) const ASYNC_STAGES: u32 = 4;

impl DecodeKernel {
    pub(super) const ALL: [DecodeKernel; 7] = [
        DecodeKernel::TwoPassQreg,
        DecodeKernel::Stream8,
        DecodeKernel::Stream4Half,
        DecodeKernel::Stream4Async,
        DecodeKernel::Stream8Async,
        DecodeKernel::Tensor4,
        DecodeKernel::Tensor8,
    ];

    /// The variants built for a KV dtype (attention.cu says why the others are not).
    pub(super) fn for_kv(kv: KvDtype) -> impl Iterator<Item = DecodeKernel> {
        DecodeKernel::ALL.into_iter().filter(move |k| match kv {
            KvDtype::Fp16 => *k != DecodeKernel::TwoPassQreg,
            // fp8 KV: the one-pass CUDA-core kernels of int8 KV, e4m3 converted by hand
            KvDtype::Int8 | KvDtype::Fp8 => {
                !matches!(
                    k,
                    DecodeKernel::Stream4Half | DecodeKernel::Tensor4 | DecodeKernel::Tensor8
                ) && (kv == KvDtype::Int8 || *k != DecodeKernel::TwoPassQreg)
            }
        })
    }

    pub(super) fn name(self, kv: KvDtype, g: u32) -> String {
        let dt = match kv {
            KvDtype::Fp16 => "f16",
            KvDtype::Int8 => "i8",
            KvDtype::Fp8 => "f8",
        };
        match self {
            DecodeKernel::TwoPassQreg => format!("paged_decode_{dt}_g{g}_r"),
            DecodeKernel::Stream8 => format!("paged_decode_s_{dt}_g{g}_w8"),
            DecodeKernel::Stream4Half => format!("paged_decode_s_{dt}_g{g}_w4h"),
            DecodeKernel::Stream4Async => format!("paged_decode_s_{dt}_g{g}_w4a"),
            DecodeKernel::Stream8Async => format!("paged_decode_s_{dt}_g{g}_w8a"),
            DecodeKernel::Tensor4 => format!("paged_decode_t_{dt}_g{g}_w4"),
            DecodeKernel::Tensor8 => format!("paged_decode_t_{dt}_g{g}_w8"),
        }
    }

    /// Longest partition: the two-pass kernel keeps a partition's scores in shared memory.
    pub(super) fn max_part(self) -> u32 {
        match self {
            DecodeKernel::TwoPassQreg => PART,
            _ => STREAM_MAX_PART,
        }
    }

    pub(super) fn threads(self) -> u32 {
        match self {
            DecodeKernel::Stream8 | DecodeKernel::Stream8Async | DecodeKernel::Tensor8 => 256,
            _ => 128,
        }
    }

    /// Dynamic shared memory: the cp.async kernel's per-warp pipeline of half KV blocks (K and
    /// V, 16 tokens × 128 dims / 2 per block half).
    pub(super) fn dyn_smem(self, kv: KvDtype) -> u32 {
        let elem = kv.bytes() as u32;
        match self {
            DecodeKernel::Stream4Async | DecodeKernel::Stream8Async => {
                self.threads() / 32 * ASYNC_STAGES * 2 * (8 * 128 * elem)
            }
            // Whole blocks (16 tokens x 128 dims of K and V) per stage: 3 stages for 4 warps,
            // 2 for 8 (TC_G in attention.cu).
            DecodeKernel::Tensor4 => 4 * 3 * 2 * (16 * 128 * elem),
            DecodeKernel::Tensor8 => 8 * 2 * 2 * (16 * 128 * elem),
            _ => 0,
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            DecodeKernel::TwoPassQreg => "two-pass",
            DecodeKernel::Stream8 => "one-pass, 8 warps",
            DecodeKernel::Stream4Half => "one-pass, 4 warps, half blocks",
            DecodeKernel::Stream4Async => "one-pass, 4 warps, half blocks, cp.async pipeline",
            DecodeKernel::Stream8Async => "one-pass, 8 warps, half blocks, cp.async pipeline",
            DecodeKernel::Tensor4 => "one-pass on tensor cores, 4 warps, cp.async pipeline",
            DecodeKernel::Tensor8 => "one-pass on tensor cores, 8 warps, cp.async pipeline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn spec(models: &[&str], quick: bool) -> SweepSpec {
        let m: Vec<_> = models.iter().map(|k| catalog::model(k).unwrap()).collect();
        SweepSpec::new(&m, quick, true)
    }

    #[test]
    fn instances_cover_the_sweep_and_the_checks_only() {
        let inst = Instances::for_spec(&spec(&["llama-3.1-8b"], true));
        // quick sweep tokens 1, 8 (<= 16) plus the checks' 1, 7, 16
        assert_eq!(inst.gemv_tokens, vec![1, 7, 8, 16]);
        // llama's 32 / 8 heads and the check's 8 / 2: both group 4
        assert_eq!(inst.groups, vec![4]);
        let prefix = inst.prefix();
        assert!(prefix.contains("#define GEMV_TOKENS(X) X(1) X(7) X(8) X(16)\n"));
        assert!(prefix.contains("#define DECODE_GROUPS(X) X(4)\n"));
        assert!(prefix.ends_with("#line 1\n"));
        let full_spec = spec(&["llama-3.1-8b"], false);
        let full = Instances::for_spec(&full_spec);
        let mut want: Vec<u32> = full_spec
            .tokens
            .iter()
            .copied()
            .filter(|&t| t <= 16)
            .collect();
        want.push(7);
        want.sort_unstable();
        assert_eq!(
            full.gemv_tokens, want,
            "the sweep's GEMV token counts and the checks' 7"
        );
    }

    #[test]
    fn every_kernel_name_the_timer_loads_is_instantiated_in_the_sources() {
        // The Rust side names kernels; the CUDA side instantiates them through macros. Check that
        // each decode name's suffix has an instantiation line, and that no instance is asked for
        // that the sources leave out (the fp16 two-pass and int8 4-warp kernels).
        let att = include_str!("../../kernels/attention.cu");
        for kv in KvDtype::ALL {
            for k in DecodeKernel::for_kv(kv) {
                let name = k.name(kv, 4);
                let macro_name = name.replacen("_g4", "_g##G##", 1);
                assert!(
                    att.contains(&macro_name),
                    "{name}: no `{macro_name}` in attention.cu"
                );
            }
        }
        assert!(!att.contains("paged_decode_f16_g##G##_r"));
        assert!(!att.contains("paged_decode_s_i8_g##G##_w4h"));
        assert!(!att.contains("paged_decode_t_i8"));
        assert!(!att.contains("paged_decode_f8_g##G##_r"));
        assert!(!att.contains("paged_decode_t_f8"));
        let inst = Instances::for_spec(&spec(&["llama-3.1-8b"], true));
        let names = inst.kernel_names();
        assert!(names.contains(&"nf4_gemv_t7".to_string()));
        assert!(!names.contains(&"nf4_gemv_t2".to_string()));
        assert!(names.contains(&"paged_decode_s_f16_g4_w4a".to_string()));
        assert!(names.contains(&"paged_decode_i8_g4_r".to_string()));
        assert!(names.contains(&"paged_decode_s_f8_g4_w8a".to_string()));
        assert!(names.contains(&"fill_e4m3".to_string()));
        assert!(!names.iter().any(|n| n.contains("_g8")));
    }

    #[test]
    fn every_quant_kernel_is_defined_in_quant_cu() {
        let src = include_str!("../../kernels/quant.cu");
        for name in QUANT_KERNELS {
            let defined = src.contains(&format!("void {name}("))
                || name
                    .strip_prefix("w4a16_mma_m")
                    .is_some_and(|mt| src.contains(&format!("W4A16_KERNEL({mt})")))
                || name
                    .strip_prefix("w4a16_gemv_m")
                    .is_some_and(|mt| src.contains(&format!("W4A16_GEMV_KERNEL({mt})")));
            assert!(defined, "{name} not in kernels/quant.cu");
        }
    }

    #[test]
    fn cp_async_kernels_ask_for_their_pipeline_in_shared_memory() {
        let (f16, i8) = (KvDtype::Fp16, KvDtype::Int8);
        // (kernel, KV dtype, warps x stages x (K, V) x tokens per stage x 128 dims x bytes):
        // half blocks (8 tokens) in 4 stages for the CUDA-core ones, whole blocks (16 tokens) in
        // 3 stages of 4 warps or 2 of 8 for the tensor-core ones
        for (k, kv, want) in [
            (DecodeKernel::Stream4Async, f16, 4 * 4 * 2 * 8 * 128 * 2),
            (DecodeKernel::Stream8Async, f16, 8 * 4 * 2 * 8 * 128 * 2),
            (DecodeKernel::Stream8Async, i8, 8 * 4 * 2 * 8 * 128),
            (DecodeKernel::Stream8, f16, 0),
            (DecodeKernel::Tensor4, f16, 4 * 3 * 2 * 16 * 128 * 2),
            (DecodeKernel::Tensor8, f16, 8 * 2 * 2 * 16 * 128 * 2),
        ] {
            assert_eq!(k.dyn_smem(kv), want, "{k:?} {kv}");
        }
        for k in [DecodeKernel::Tensor4, DecodeKernel::Tensor8] {
            // the merge reuses the pipeline's memory: [warps][G][128] outputs, [warps][G] max, sum
            let warps = k.threads() / 32;
            let merge = 4 * warps * sweep::MAX_GQA_GROUP * (128 + 2);
            assert!(merge <= k.dyn_smem(KvDtype::Fp16), "{k:?}");
        }
        // within the 227 KB an sm_90 block may opt into
        for k in DecodeKernel::ALL {
            assert!(k.dyn_smem(KvDtype::Fp16) <= 227 * 1024, "{k:?}");
        }
    }
}
