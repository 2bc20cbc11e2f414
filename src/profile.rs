//! The GPU profile file (`profiles/gpus/*.yaml`): a datasheet, and optionally the kernel timings
//! the calibrator measured on that GPU, with where and how they were measured.
//!
//! Every table entry is the time of **one kernel call for one layer**, in milliseconds, with the
//! token count (or batch/context) it was measured at. Contract per table:
//! - `gemm`: `y[T×n] = x[T×k] · Wᵀ` with fp16 `x` and `y`, including every scheme-specific step
//!   (activation quantization for int8, dequantization for nf4 at large T, scaling).
//! - `attn_prefill`: causal attention of one sequence of `tokens` new tokens over no cached prefix.
//! - `attn_decode`: one query token for each of `batch` sequences, each over `context` cached
//!   tokens, paged KV with `block_size`.
//! - `elementwise`: one kernel over `tokens` rows of `width` (RMSNorm + residual, SiLU·mul).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::gpu::Datasheet;
use crate::catalog::interconnect::Interconnect;
use crate::catalog::quant::KvDtype;
use crate::error::{Error, Result};

mod allreduce;
pub use allreduce::AllReduceTable;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuProfile {
    /// Catalog key, e.g. `h100-sxm`.
    pub key: String,
    /// Marketing name, e.g. `NVIDIA H100 SXM5 80GB`.
    pub name: String,
    pub datasheet: Datasheet,
    /// How the GPUs of one server of this model are linked (`None`: one card per server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interconnect: Option<Interconnect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
}

/// What the calibrator measured on this GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    pub provenance: Provenance,
    pub roofs: MeasuredRoofs,
    #[serde(default)]
    pub gemm: Vec<GemmTable>,
    #[serde(default)]
    pub attn_prefill: Vec<PrefillAttnTable>,
    #[serde(default)]
    pub attn_decode: Vec<DecodeAttnTable>,
    #[serde(default)]
    pub elementwise: Vec<ElementwiseTable>,
    /// NCCL all-reduce over this GPU model's server (machines with two or more GPUs only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allreduce: Vec<AllReduceTable>,
    /// Grouped mixture-of-experts GEMMs (`calibrate --moe-only`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moe_gemm: Vec<MoeGemmTable>,
}

/// Where, when and with what a profile was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Device name as the driver reports it.
    pub device: String,
    pub sm_count: u32,
    pub driver: String,
    pub cuda: String,
    /// UTC date and time of the run (RFC 3339).
    pub date: String,
    pub cardplan_version: String,
    pub git_rev: String,
    /// How times were taken (warm-up, repetitions, statistic, cache handling).
    pub method: String,
    /// Whether each time is one isolated call or a call among many back to back; decides whether
    /// the cost model corrects the tables towards in-graph times. Profiles without the field were
    /// all timed in isolation.
    #[serde(default)]
    pub timing: Timing,
    /// Set on a profile derived for a GPU that was not measured: what its tables were scaled
    /// from. Absent on a measured profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<DerivedFrom>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The measured GPU a derived profile's tables were scaled from, and by how much. The cost model
/// needs the source's L2 (the tables are DRAM-bound against that L2, not the target's); a reader
/// of the profile needs the ratios.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedFrom {
    /// Catalog key of the measured GPU.
    pub gpu: String,
    /// Its L2 cache, MB (10^6 bytes), from its datasheet.
    pub l2_mb: f64,
    /// Target ÷ source datasheet ratios the times were scaled by.
    pub bandwidth_ratio: f64,
    pub fp16_ratio: f64,
    pub int8_ratio: f64,
    /// The fixed per-call time kept unscaled (launch latency and the like), µs.
    pub fixed_us: f64,
}

/// How the calibrator timed each kernel call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timing {
    /// CUDA events around one call, right after a fill that evicts (and dirties) L2: carries a
    /// fixed launch/ramp/event cost and the write-back of the dirty lines, which a CUDA-graph
    /// serving step does not pay.
    #[default]
    Isolated,
    /// Many calls back to back (a CUDA graph), rotating over copies of the large inputs so they
    /// come from DRAM: what a serving step pays per kernel.
    BackToBack,
}

impl Timing {
    pub fn key(self) -> &'static str {
        match self {
            Timing::Isolated => "isolated",
            Timing::BackToBack => "back-to-back",
        }
    }
}

impl std::str::FromStr for Timing {
    type Err = String;
    fn from_str(s: &str) -> Result<Timing, String> {
        match s {
            "isolated" => Ok(Timing::Isolated),
            "back-to-back" => Ok(Timing::BackToBack),
            _ => Err(format!(
                "unknown timing method '{s}' (expected back-to-back or isolated)"
            )),
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Roofs measured by the calibrator itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredRoofs {
    /// Device-to-device copy, bytes read + written per second, GB/s.
    pub copy_gbs: f64,
    /// Best fp16 GEMM rate seen (fp32 accumulate), TFLOP/s.
    pub fp16_tflops: f64,
    /// Best int8 GEMM rate seen, TOP/s.
    pub int8_tops: f64,
}

/// One linear-layer shape under one scheme: token count → ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemmTable {
    /// Quantization scheme key (`fp16`, `int8`, `llm-int8`, `nf4`, `nf4-fused`).
    pub scheme: String,
    pub n: u32,
    pub k: u32,
    /// Host time per call on top of the table, µs: what a library's Python dispatch costs that no
    /// kernel timing sees (`llm-int8`: bitsandbytes' ~20 torch ops per call). Measured apart (the
    /// provenance notes say how) and added by the cost model to every call; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_us_per_call: Option<f64>,
    /// `(tokens, ms)`, tokens ascending.
    pub points: Vec<(u32, f64)>,
}

/// The routed experts' GEMMs of one MoE layer's linear (`experts` experts of `n × k` weights,
/// `top_k` per token) at `tokens` tokens, as one grouped call: token count → ms. Routing is
/// uniform and even (src/calibrate/moe.rs says how the rows are split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeGemmTable {
    /// `bf16` or `fp16` weights and activations (fp32 accumulate).
    pub dtype: String,
    pub experts: u32,
    pub top_k: u32,
    pub n: u32,
    pub k: u32,
    /// `(tokens, ms)`, tokens ascending.
    pub points: Vec<(u32, f64)>,
}

/// Causal prefill attention for one head configuration: prompt tokens → ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefillAttnTable {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    /// `(tokens, ms)`, tokens ascending.
    pub points: Vec<(u32, f64)>,
}

/// Paged decode attention for one head configuration and KV dtype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeAttnTable {
    pub kv: KvDtype,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub block_size: u32,
    pub points: Vec<DecodePoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodePoint {
    pub batch: u32,
    pub context: u32,
    pub ms: f64,
}

/// Elementwise kernel class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElementwiseKind {
    /// Residual add + RMSNorm, fp16 in and out.
    RmsnormResidual,
    /// `silu(gate) * up` over a `[T, 2·width]` input, fp16.
    SiluMul,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementwiseTable {
    pub kind: ElementwiseKind,
    pub width: u32,
    /// `(tokens, ms)`, tokens ascending.
    pub points: Vec<(u32, f64)>,
}

impl GpuProfile {
    /// Check the profile is usable; `origin` names the file.
    pub fn validate(&self, origin: &str) -> Result<(), String> {
        self.datasheet.validate(origin)?;
        if let Some(link) = &self.interconnect {
            link.validate(origin)?;
        }
        let Some(m) = &self.measured else {
            return Ok(());
        };
        for t in &m.allreduce {
            t.validate(origin)?;
        }
        for (name, v) in [
            ("roofs.copy_gbs", m.roofs.copy_gbs),
            ("roofs.fp16_tflops", m.roofs.fp16_tflops),
            ("roofs.int8_tops", m.roofs.int8_tops),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{origin}: `{name}` must be a positive number"));
            }
        }
        check_host_times(origin, m)?;
        let series = m
            .gemm
            .iter()
            .map(|t| (format!("gemm {} n={} k={}", t.scheme, t.n, t.k), &t.points))
            .chain(m.attn_prefill.iter().map(|t| {
                (
                    format!(
                        "attn_prefill heads={} kv_heads={} head_dim={}",
                        t.heads, t.kv_heads, t.head_dim
                    ),
                    &t.points,
                )
            }))
            .chain(m.elementwise.iter().map(|t| {
                (
                    format!("elementwise {:?} width={}", t.kind, t.width),
                    &t.points,
                )
            }))
            .chain(m.moe_gemm.iter().map(|t| {
                (
                    format!(
                        "moe_gemm {} experts={} top_k={} n={} k={}",
                        t.dtype, t.experts, t.top_k, t.n, t.k
                    ),
                    &t.points,
                )
            }));
        for (what, points) in series {
            check_points(origin, &what, points)?;
        }
        check_moe_tables(origin, m)?;
        for t in &m.attn_decode {
            if t.points.is_empty() {
                return Err(format!("{origin}: attn_decode table has no points"));
            }
            if t.points
                .iter()
                .any(|p| p.batch == 0 || p.context == 0 || !(p.ms.is_finite() && p.ms > 0.0))
            {
                return Err(format!(
                    "{origin}: attn_decode has a point with zero batch/context or a non-positive time"
                ));
            }
        }
        Ok(())
    }

    /// Write this profile as YAML, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = crate::yaml::to_string(self)?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    /// Read and validate a profile file.
    pub fn read(path: &Path) -> Result<GpuProfile> {
        let p: GpuProfile = crate::yaml::read(path)?;
        p.validate(&path.display().to_string())
            .map_err(Error::BadInput)?;
        Ok(p)
    }
}

/// A measured host time per call (Python dispatch a GEMM path pays) is a non-negative number.
fn check_host_times(origin: &str, m: &Measured) -> Result<(), String> {
    for t in &m.gemm {
        if let Some(us) = t.host_us_per_call
            && !(us.is_finite() && us >= 0.0)
        {
            return Err(format!(
                "{origin}: gemm {} n={} k={}: `host_us_per_call` must be a non-negative number",
                t.scheme, t.n, t.k
            ));
        }
    }
    Ok(())
}

/// A grouped MoE table routes 1..=experts experts per token, in a 16-bit dtype.
fn check_moe_tables(origin: &str, m: &Measured) -> Result<(), String> {
    if let Some(t) = m.moe_gemm.iter().find(|t| {
        t.top_k == 0 || t.top_k > t.experts || !["bf16", "fp16"].contains(&t.dtype.as_str())
    }) {
        return Err(format!(
            "{origin}: moe_gemm table ({} experts, top_k {}, dtype '{}') needs 1 <= top_k <= experts and dtype bf16 or fp16",
            t.experts, t.top_k, t.dtype
        ));
    }
    Ok(())
}

fn check_points(origin: &str, what: &str, points: &[(u32, f64)]) -> Result<(), String> {
    if points.is_empty() {
        return Err(format!("{origin}: {what}: no points"));
    }
    for w in points.windows(2) {
        if w[1].0 <= w[0].0 {
            return Err(format!(
                "{origin}: {what}: token counts must be strictly ascending"
            ));
        }
    }
    if points
        .iter()
        .any(|&(t, ms)| t == 0 || !(ms.is_finite() && ms > 0.0))
    {
        return Err(format!(
            "{origin}: {what}: every point needs tokens > 0 and a positive time"
        ));
    }
    Ok(())
}
