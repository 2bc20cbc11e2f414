//! The sweep: which kernel calls to time, at which sizes, in an order that lets the timer reuse
//! its buffers (all jobs of one shape are adjacent).

use serde::{Deserialize, Serialize};

use crate::catalog::model::ModelArch;
use crate::catalog::quant::KvDtype;
use crate::profile::ElementwiseKind;

use super::moe::{MoeCase, MoeJob};
use super::shapes::{ModelShapes, push_unique};

/// Token counts at and below which the GEMV paths (one warp per output row) are tried.
pub const GEMV_MAX_TOKENS: u32 = 16;
/// The only head size the attention kernels are built for.
pub const HEAD_DIM: u32 = 128;
/// Most query heads per KV head the decode kernel handles.
pub const MAX_GQA_GROUP: u32 = 8;
/// Paged KV block size (vLLM's default).
pub const BLOCK_SIZE: u32 = 16;

/// How one linear layer is computed: the scheme it belongs to is [`GemmPath::scheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GemmPath {
    /// cuBLASLt fp16 GEMM, fp32 accumulate: the fastest of its heuristic's algorithms. Timed at
    /// the roof shape only (and inside `nf4-fused`'s dequantize + GEMM).
    Fp16Cublas,
    /// cuBLAS `cublasGemmEx` fp16 GEMM (`CUBLAS_COMPUTE_32F`, default math mode, TN layout): what
    /// torch's `F.linear` calls for fp16 without bias. The fp16 scheme takes the faster of the two.
    #[serde(rename = "fp16-cublas-gemmex")]
    Fp16CublasGemmEx,
    /// int8 weights, fp16 activations, our GEMV (T <= 16).
    Int8W8a16Gemv,
    /// Per-token activation quantization + cuBLASLt IMMA + dequantization epilogue.
    #[serde(rename = "int8-w8a8-imma")]
    Int8W8a8,
    /// The bare cuBLASLt IMMA GEMM (int8 in, int32 out): for the int8 roof and comparisons only.
    Int8ImmaOnly,
    /// NF4 fused dequantize-GEMV (T <= 16).
    Nf4Gemv,
    /// cardplan's one-kernel NF4 dequantize to fp16, then cuBLAS fp16 GEMM (`nf4-fused` only).
    Nf4DequantCublas,
    /// What bitsandbytes 0.50.2 runs for the layer at this token count on this GPU
    /// ([`super::bnb::dispatch`]), each kernel by cardplan's stand-in with its work split: its
    /// GEMV/SIMT kernel (cardplan's NF4 GEMV), its mma.sync kernel (kernels/nf4_mma.cu), or its
    /// unfused sequence (`_dequant_linear_fallback`: dequantize the 8-bit absmax, add its offset,
    /// dequantize the 4-bit weight, then the fp16 GEMM; the 4-bit dequantize with bitsandbytes'
    /// work split, see kernels/nf4.cu).
    Nf4Bnb,
    /// FP8 W8A8 with per-token dynamic activation scales and per-channel weight scales: our
    /// e4m3 quantize kernel, then cuBLASLt e4m3 × e4m3 → bf16 (fp32 accumulate) with outer-vector
    /// (row-wise) scales, as vLLM runs compressed-tensors FP8-dynamic.
    Fp8Row,
    /// FP8 W8A8 with one weight and one static activation scale: quantize with the scale, then
    /// cuBLASLt with scalar scales.
    Fp8Tensor,
    /// The bare cuBLASLt FP8 GEMM with row-wise scales (x already e4m3): compared with
    /// `torch._scaled_mm` only.
    Fp8RowGemmOnly,
    /// The bare cuBLASLt FP8 GEMM with tensor-wise scales: compared with `torch._scaled_mm` only.
    Fp8TensorGemmOnly,
    /// INT4 W4A16 by cardplan's Marlin-style kernel (kernels/quant.cu: dequantize in registers,
    /// mma.sync, group-128 scales, split over k).
    Int4Mma,
    /// INT4 W4A16 by cardplan's memory-bound GEMV (kernels/quant.cu `w4a16_gemv`, same layout,
    /// one launch), up to [`INT4_GEMV_MAX_TOKENS`] tokens.
    Int4Gemv,
    /// INT4 dequantized to fp16, then cublasGemmEx (vLLM's AWQ path at >= 256 tokens).
    Int4DequantCublas,
    /// LLM.int8() as bitsandbytes 0.50.2 runs it, launch for launch, its two host syncs included
    /// (host wall clock per call; src/calibrate/cuda/llm_int8.rs).
    LlmInt8Bnb,
}

/// Share of x's columns that carry outliers (|x| >= 6) in the LLM.int8() timing: 0.5%, inside the
/// 0.1-1% the LLM.int8() paper reports for 6.7B+ models.
pub const LLM_INT8_OUTLIER_SHARE: f64 = 0.005;

/// The paths timed for the FP8, INT4 and LLM.int8() schemes (and `--quant-only` runs).
pub const QUANT_PATHS: [GemmPath; 8] = [
    GemmPath::Fp8Row,
    GemmPath::Fp8Tensor,
    GemmPath::Fp8RowGemmOnly,
    GemmPath::Fp8TensorGemmOnly,
    GemmPath::Int4Mma,
    GemmPath::Int4Gemv,
    GemmPath::Int4DequantCublas,
    GemmPath::LlmInt8Bnb,
];

/// Most tokens the W4A16 GEMV path is timed at (four m16 tiles).
pub const INT4_GEMV_MAX_TOKENS: u32 = 64;
/// Whether the W4A16 kernel's layout takes an `n × k` layer (64-column blocks, 128-channel groups).
pub fn int4_shape_ok(n: u32, k: u32) -> bool {
    n % 64 == 0 && k % 128 == 0
}

impl GemmPath {
    /// The profile schemes this path is a candidate for (each scheme's table takes its fastest
    /// candidate); empty for a measurement-only path. `nf4` is bitsandbytes' dispatch alone;
    /// `nf4-fused` is cardplan's own faster path, not a library's.
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            // Serving engines call torch's F.linear, which (no bias) runs cublasGemmEx: that is
            // the faithful fp16 cost. cuBLASLt's best algorithm is timed for the record and the
            // fp16 roof only.
            GemmPath::Fp16CublasGemmEx => &["fp16"],
            GemmPath::Fp16Cublas => &[],
            GemmPath::Int8W8a16Gemv | GemmPath::Int8W8a8 => &["int8"],
            GemmPath::Nf4Gemv | GemmPath::Nf4DequantCublas => &["nf4-fused"],
            GemmPath::Nf4Bnb => &["nf4"],
            GemmPath::Int8ImmaOnly => &[],
            GemmPath::Fp8Row => &["fp8"],
            GemmPath::Fp8Tensor => &["fp8-tensor"],
            GemmPath::Fp8RowGemmOnly | GemmPath::Fp8TensorGemmOnly => &[],
            GemmPath::Int4Mma | GemmPath::Int4Gemv | GemmPath::Int4DequantCublas => &["int4"],
            GemmPath::LlmInt8Bnb => &["llm-int8"],
        }
    }

    /// Paths whose GEMM is the fp16 one (their rate counts towards the fp16 roof).
    pub fn is_fp16_gemm(self) -> bool {
        matches!(self, GemmPath::Fp16Cublas | GemmPath::Fp16CublasGemmEx)
    }

    pub fn key(self) -> &'static str {
        match self {
            GemmPath::Fp16Cublas => "fp16-cublas",
            GemmPath::Fp16CublasGemmEx => "fp16-cublas-gemmex",
            GemmPath::Int8W8a16Gemv => "int8-w8a16-gemv",
            GemmPath::Int8W8a8 => "int8-w8a8-imma",
            GemmPath::Int8ImmaOnly => "int8-imma-only",
            GemmPath::Nf4Gemv => "nf4-gemv",
            GemmPath::Nf4DequantCublas => "nf4-dequant-cublas",
            GemmPath::Nf4Bnb => "nf4-bnb",
            GemmPath::Fp8Row => "fp8-row",
            GemmPath::Fp8Tensor => "fp8-tensor",
            GemmPath::Fp8RowGemmOnly => "fp8-row-gemm-only",
            GemmPath::Fp8TensorGemmOnly => "fp8-tensor-gemm-only",
            GemmPath::Int4Mma => "int4-mma",
            GemmPath::Int4Gemv => "int4-gemv",
            GemmPath::Int4DequantCublas => "int4-dequant-cublas",
            GemmPath::LlmInt8Bnb => "llm-int8-bnb",
        }
    }
}

/// One timed kernel call (or fixed sequence of calls) at one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
pub enum Job {
    /// Device-to-device copy of `bytes` (read) into another buffer (written).
    Copy { bytes: u64 },
    /// `y[T×n] = x[T×k] · Wᵀ` by `path`.
    Gemm {
        path: GemmPath,
        n: u32,
        k: u32,
        tokens: u32,
    },
    /// Paged decode attention, one query token per sequence.
    Decode {
        kv: KvDtype,
        heads: u32,
        kv_heads: u32,
        batch: u32,
        context: u32,
    },
    /// Causal prefill attention of one sequence.
    Prefill {
        heads: u32,
        kv_heads: u32,
        tokens: u32,
    },
    Elementwise {
        kind: ElementwiseKind,
        width: u32,
        tokens: u32,
    },
    /// The routed experts' GEMMs of one MoE layer's linear ([`super::moe`]: routing and paths).
    Moe(MoeJob),
}

/// The token sweep has 1.5× points only below this count.
pub const MIDPOINTS_BELOW: u32 = 1024;

/// GEMMs from this many tokens up are compute-bound on the GPUs we calibrate (the tensor cores,
/// not the weight read, set their time).
pub const COMPUTE_BOUND_MIN_TOKENS: u32 = 128;

impl Job {
    /// Whether the job is compute-bound: on Hopper such kernels run at the clock the board's
    /// power cap allows under sustained load, not at the boost clock of a short burst, so the
    /// timer times them under sustained load (see `cuda/timing.rs`).
    pub fn compute_bound(&self) -> bool {
        match *self {
            Job::Gemm { tokens, .. } => tokens >= COMPUTE_BOUND_MIN_TOKENS,
            Job::Prefill { .. } => true,
            Job::Moe(m) => m.compute_bound(),
            Job::Copy { .. } | Job::Decode { .. } | Job::Elementwise { .. } => false,
        }
    }

    /// Whether a failure of this job skips it (with a note) rather than aborting the run: the
    /// FP8, INT4 and LLM.int8() paths and FP8-KV decode, new and checked on few GPUs.
    pub fn optional(&self) -> bool {
        match *self {
            Job::Gemm { path, .. } => QUANT_PATHS.contains(&path),
            Job::Decode { kv, .. } => kv == KvDtype::Fp8,
            // new: a path cuBLAS lacks here is skipped, the others still fill the table
            Job::Moe { .. } => true,
            _ => false,
        }
    }

    /// The kind of kernel, for progress and phase timings: `gemm`, `decode attention`, ….
    pub fn family(&self) -> &'static str {
        match self {
            Job::Copy { .. } => "copy",
            Job::Gemm { .. } => "gemm",
            Job::Decode { .. } => "decode attention",
            Job::Prefill { .. } => "prefill attention",
            Job::Elementwise { .. } => "elementwise",
            Job::Moe { .. } => "moe gemm",
        }
    }

    /// A one-line label of the job, for progress: `fp16-cublas-gemmex 4096x4096 T=64`.
    pub fn short_label(&self) -> String {
        match self {
            Job::Copy { .. } => "copy".into(),
            Job::Gemm { path, n, k, tokens } => format!("{} {n}x{k} T={tokens}", path.key()),
            Job::Decode {
                kv, batch, context, ..
            } => format!("decode {kv} B={batch} ctx={context}"),
            Job::Prefill { tokens, .. } => format!("prefill T={tokens}"),
            Job::Elementwise {
                kind,
                width,
                tokens,
            } => format!("{kind:?} w={width} T={tokens}"),
            Job::Moe(m) => m.label(),
        }
    }

    /// The jobs timed after one shared heat-up: every path of one GEMM shape and token count (they
    /// draw about the same power), or one prefill job; `None` for jobs that are not compute-bound.
    pub fn sustain_group(&self) -> Option<Job> {
        if !self.compute_bound() {
            return None;
        }
        Some(match *self {
            Job::Gemm { n, k, tokens, .. } => Job::Gemm {
                path: GemmPath::Fp16CublasGemmEx,
                n,
                k,
                tokens,
            },
            Job::Moe(m) => Job::Moe(m.sustain_group()),
            other => other,
        })
    }
}

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// `(n, k, label)` linear shapes.
    pub shapes: Vec<(u32, u32, String)>,
    /// Shapes timed in fp16 only (the LM head: engines keep it in 16 bits).
    pub fp16_only_shapes: Vec<(u32, u32, String)>,
    /// `(heads, kv_heads)` attention configurations (head_dim 128).
    pub attn: Vec<(u32, u32)>,
    /// `(kind, width)` elementwise kernels.
    pub elementwise: Vec<(ElementwiseKind, u32)>,
    pub tokens: Vec<u32>,
    pub decode_batches: Vec<u32>,
    pub decode_contexts: Vec<u32>,
    pub prefill_tokens: Vec<u32>,
    /// Shapes also timed with the bare IMMA GEMM at these token counts (the int8 roof and the
    /// torch._int_mm comparison).
    pub imma_only_tokens: Vec<u32>,
    pub copy_bytes: u64,
    /// Shapes the attention kernels cannot run, with why (reported in provenance notes).
    pub skipped: Vec<String>,
    /// Only the FP8, INT4 and LLM.int8() paths (with fp16 beside them for comparison) and FP8-KV
    /// decode attention, to merge into a measured profile ([`SweepSpec::quant_only`]).
    pub quant_only: bool,
    /// Expert linears of the MoE models, timed as grouped GEMMs ([`super::moe`]).
    pub moe: Vec<MoeCase>,
    /// Only the grouped MoE GEMMs (and the roof jobs every profile needs), to merge into a
    /// measured profile ([`SweepSpec::moe_only`]).
    pub moe_only: bool,
    /// With `quant_only`: only these schemes' paths (`fp8-kv`: FP8-KV decode); empty: all.
    pub quant_schemes: Vec<String>,
}

/// Token counts 1…`max`: every power of two, and the 1.5× points between them below
/// [`MIDPOINTS_BELOW`]. Above it GEMM time is close to proportional to tokens, and those points
/// would cost ~20 s of a full calibration (they are the longest jobs, each heated first).
pub fn token_sweep(max: u32) -> Vec<u32> {
    let mut v = vec![1, 2, 3];
    let mut p = 4u32;
    while p <= max {
        v.push(p);
        let mid = p + p / 2;
        if mid <= max && mid < MIDPOINTS_BELOW {
            v.push(mid);
        }
        p *= 2;
    }
    v.retain(|&t| t <= max);
    v.sort_unstable();
    v.dedup();
    v
}

/// Label prefix of the generic grid's shapes (a model's own shape of the same size keeps its label).
pub const GRID_LABEL: &str = "grid";

/// The generic grid of linear shapes, for models outside `--models`.
pub const GENERIC_GRID: [(u32, u32); 6] = [
    (2048, 2048),
    (4096, 4096),
    (8192, 8192),
    (16384, 4096),
    (4096, 16384),
    (32768, 8192),
];

impl SweepSpec {
    /// The sweep for `models`; `quick` is the smoke-test subset; `grid` adds the generic shapes.
    pub fn new(models: &[ModelArch], quick: bool, grid: bool) -> SweepSpec {
        let mut found = ModelShapes::default();
        for m in models {
            found.add(m, quick);
        }
        if grid && !quick {
            for (n, k) in GENERIC_GRID {
                push_unique(&mut found.shapes, n, k, format!("{GRID_LABEL} {n}x{k}"));
            }
        }
        let ModelShapes {
            mut shapes,
            fp16_only,
            attn,
            elementwise,
            mut skipped,
        } = found;
        shapes.retain(|(n, k, label)| {
            let ok = k % 64 == 0 && n % 4 == 0;
            if !ok {
                skipped.push(format!(
                    "{label}: n={n} k={k} not timed (int8/nf4 kernels need k % 64 == 0 and n % 4 == 0)"
                ));
            }
            ok
        });
        SweepSpec {
            moe: super::moe::cases(models),
            shapes,
            fp16_only_shapes: fp16_only,
            attn,
            elementwise,
            skipped,
            ..SweepSpec::sizes(quick)
        }
    }

    /// The sizes swept (no shapes): the smoke-test subset or the full sweep.
    fn sizes(quick: bool) -> SweepSpec {
        if quick {
            SweepSpec {
                shapes: Vec::new(),
                fp16_only_shapes: Vec::new(),
                attn: Vec::new(),
                elementwise: Vec::new(),
                tokens: vec![1, 8, 64, 512, 4096],
                decode_batches: vec![1, 16, 256],
                decode_contexts: vec![512, 4096],
                prefill_tokens: vec![512, 4096],
                imma_only_tokens: vec![4096],
                copy_bytes: 1 << 28,
                skipped: Vec::new(),
                quant_only: false,
                moe: Vec::new(),
                moe_only: false,
                quant_schemes: Vec::new(),
            }
        } else {
            SweepSpec {
                shapes: Vec::new(),
                fp16_only_shapes: Vec::new(),
                attn: Vec::new(),
                elementwise: Vec::new(),
                tokens: token_sweep(8192),
                decode_batches: vec![1, 2, 4, 8, 16, 32, 64, 128, 256],
                decode_contexts: vec![128, 256, 512, 1024, 2048, 4096, 8192],
                prefill_tokens: vec![128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                imma_only_tokens: vec![256, 512, 1024, 2048, 4096, 8192],
                copy_bytes: 1 << 30,
                skipped: Vec::new(),
                quant_only: false,
                moe: Vec::new(),
                moe_only: false,
                quant_schemes: Vec::new(),
            }
        }
    }

    /// The sweep of the FP8, INT4 and LLM.int8() tables alone (fp16 beside them, for the
    /// comparisons) and FP8-KV decode attention, on the model shapes (no grid, no LM head) at
    /// powers of two, over a coarser decode grid: what a `--quant-only` run merges into a
    /// measured profile in a few minutes.
    pub fn quant_only(mut self) -> SweepSpec {
        self.quant_only = true;
        self.moe.clear();
        self.shapes
            .retain(|(_, _, label)| !label.starts_with(GRID_LABEL));
        self.fp16_only_shapes.clear();
        self.tokens.retain(|t| t.is_power_of_two());
        self.decode_batches
            .retain(|b| [1, 4, 16, 64, 256].contains(b));
        self.decode_contexts
            .retain(|c| [256, 1024, 4096].contains(c));
        self.prefill_tokens.clear();
        self.elementwise.clear();
        self.imma_only_tokens.clear();
        self
    }

    /// Whether `path` is of a scheme [`Self::quant_schemes`] asks for (bare FP8 GEMMs: theirs).
    fn quant_family_wanted(&self, path: GemmPath) -> bool {
        if self.quant_schemes.is_empty() {
            return true;
        }
        let family: &[&str] = match path {
            GemmPath::Fp8RowGemmOnly => &["fp8"],
            GemmPath::Fp8TensorGemmOnly => &["fp8-tensor"],
            p => p.schemes(),
        };
        family.iter().any(|f| self.wants(f))
    }

    fn wants(&self, scheme: &str) -> bool {
        self.quant_schemes.iter().any(|s| s == scheme)
    }

    /// Every job, grouped by shape so buffers are reused.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = vec![Job::Copy {
            bytes: self.copy_bytes,
        }];
        if self.moe_only {
            // the MoE jobs first: a run cut short still has them
            jobs.extend(super::moe::jobs(&self.moe, &self.tokens));
        }
        let all_shapes = self
            .shapes
            .iter()
            .map(|s| (s, false))
            .chain(self.fp16_only_shapes.iter().map(|s| (s, true)));
        for ((n, k, label), fp16_only) in all_shapes {
            self.push_gemm_jobs(&mut jobs, (*n, *k), label, fp16_only);
        }
        // The fp16 and int8 roofs: a large square GEMM.
        for path in [
            GemmPath::Fp16Cublas,
            GemmPath::Fp16CublasGemmEx,
            GemmPath::Int8ImmaOnly,
        ] {
            jobs.push(Job::Gemm {
                path,
                n: 8192,
                k: 8192,
                tokens: 8192,
            });
        }
        let attn = !self.quant_only || self.quant_schemes.is_empty() || self.wants("fp8-kv");
        for &(heads, kv_heads) in self.attn.iter().filter(|_| attn) {
            self.push_attention_jobs(&mut jobs, heads, kv_heads);
        }
        for &(kind, width) in &self.elementwise {
            for &tokens in &self.tokens {
                jobs.push(Job::Elementwise {
                    kind,
                    width,
                    tokens,
                });
            }
        }
        if !self.moe_only {
            jobs.extend(super::moe::jobs(&self.moe, &self.tokens));
        }
        jobs
    }

    /// Every path of one linear shape at every token count.
    fn push_gemm_jobs(
        &self,
        jobs: &mut Vec<Job>,
        (n, k): (u32, u32),
        label: &str,
        fp16_only: bool,
    ) {
        // The generic grid is a fallback for other models: from the compute-bound sizes up it
        // gets powers of two only (its 1.5x points cost ~12 s of a full run) and no
        // IMMA-only timing (that is for the comparison with torch._int_mm on model shapes).
        let grid = label.starts_with(GRID_LABEL);
        for &tokens in &self.tokens {
            if grid && tokens >= COMPUTE_BOUND_MIN_TOKENS && !tokens.is_power_of_two() {
                continue;
            }
            // cuBLASLt fp16 only at the roof shape below: choosing its algorithm (16
            // candidates) at every point cost ~25 s of a full run, for no table.
            let mut paths = vec![GemmPath::Fp16CublasGemmEx];
            if !fp16_only {
                paths.extend(QUANT_PATHS.into_iter().filter(|&p| {
                    (int4_shape_ok(n, k) || !p.schemes().contains(&"int4"))
                        && (p != GemmPath::Int4Gemv || tokens <= INT4_GEMV_MAX_TOKENS)
                        && self.quant_family_wanted(p)
                }));
            }
            if !fp16_only && !self.quant_only {
                paths.extend([
                    GemmPath::Int8W8a8,
                    GemmPath::Nf4DequantCublas,
                    GemmPath::Nf4Bnb,
                ]);
                if tokens <= GEMV_MAX_TOKENS {
                    paths.extend([GemmPath::Int8W8a16Gemv, GemmPath::Nf4Gemv]);
                }
                if !grid && self.imma_only_tokens.contains(&tokens) {
                    paths.push(GemmPath::Int8ImmaOnly);
                }
            }
            for path in paths {
                jobs.push(Job::Gemm { path, n, k, tokens });
            }
        }
    }

    /// Decode attention (both KV dtypes, every batch and context), then prefill attention, of
    /// one head configuration.
    fn push_attention_jobs(&self, jobs: &mut Vec<Job>, heads: u32, kv_heads: u32) {
        let kvs: &[KvDtype] = if self.quant_only {
            &[KvDtype::Fp8]
        } else {
            &KvDtype::ALL
        };
        for &kv in kvs {
            for &batch in &self.decode_batches {
                for &context in &self.decode_contexts {
                    jobs.push(Job::Decode {
                        kv,
                        heads,
                        kv_heads,
                        batch,
                        context,
                    });
                }
            }
        }
        for &tokens in &self.prefill_tokens {
            jobs.push(Job::Prefill {
                heads,
                kv_heads,
                tokens,
            });
        }
    }
}
