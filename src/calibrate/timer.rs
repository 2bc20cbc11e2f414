//! The seam between the sweep and the hardware: a [`KernelTimer`] runs one [`Job`] and returns
//! its median time. The CUDA implementation times real kernels; [`MockTimer`] returns times from
//! a simple roofline so the sweep and the profile writer are tested without a GPU.

use serde::Serialize;

use super::sweep::{GemmPath, Job};
use crate::error::{Error, Result};
use crate::profile::Timing;

/// What the timer knows about its device, for the profile's provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceInfo {
    pub name: String,
    pub sm_count: u32,
    /// (major, minor): picks bitsandbytes' kernels for the faithful `nf4` scheme.
    pub compute_capability: (u32, u32),
    pub driver: String,
    pub cuda: String,
    pub l2_bytes: u64,
    pub memory_bytes: u64,
}

/// The outcome of one correctness check of a custom kernel against the CPU reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub kernel: String,
    /// Largest `|gpu - cpu| / (atol + rtol·|cpu|)` over all outputs: the check passes at <= 1.
    pub worst_ratio: f64,
    pub max_abs_err: f64,
    /// The bound, e.g. `|err| <= 2e-3 + 1e-2·|ref|`.
    pub bound: String,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.worst_ratio.is_finite() && self.worst_ratio <= 1.0
    }
}

/// Times kernel calls on one device.
pub trait KernelTimer {
    fn device(&self) -> &DeviceInfo;
    /// Check every custom kernel against its CPU reference; an error if any check fails.
    fn check(&mut self) -> Result<Vec<CheckReport>>;
    /// Median time of one call of `job`, in milliseconds.
    fn time(&mut self, job: &Job) -> Result<f64>;
    /// How times are taken (warm-up, repetitions, statistic, cache handling).
    fn method(&self) -> String;
    /// Which timing method the times are (recorded in the profile; the cost model reads it).
    fn timing(&self) -> Timing;
}

/// A CPU stand-in: times from a roofline of a made-up GPU, deterministic.
pub struct MockTimer {
    pub info: DeviceInfo,
    /// Fail `time` on this job index (counting from 0), to test error paths.
    pub fail_at: Option<usize>,
    /// Make `check` fail.
    pub fail_check: bool,
    /// The method the mock claims; isolated adds the launch cost to every call.
    pub timing: Timing,
    calls: usize,
}

impl MockTimer {
    pub fn new(name: &str) -> MockTimer {
        MockTimer {
            info: DeviceInfo {
                name: name.to_string(),
                sm_count: 132,
                compute_capability: (9, 0),
                driver: "mock".into(),
                cuda: "mock".into(),
                l2_bytes: 50 << 20,
                memory_bytes: 80 << 30,
            },
            fail_at: None,
            fail_check: false,
            timing: Timing::BackToBack,
            calls: 0,
        }
    }
}

const MOCK_BW: f64 = 3.0e12;
const MOCK_FLOPS: f64 = 700e12;
const MOCK_LAUNCH_S: f64 = 4e-6;
const MOCK_GRAPH_LAUNCH_S: f64 = 2e-6;

impl KernelTimer for MockTimer {
    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn check(&mut self) -> Result<Vec<CheckReport>> {
        let r = CheckReport {
            kernel: "mock".into(),
            worst_ratio: if self.fail_check { 3.0 } else { 0.1 },
            max_abs_err: 0.0,
            bound: "mock".into(),
        };
        if !r.passed() {
            return Err(Error::Gpu("mock kernel failed its check".into()));
        }
        Ok(vec![r])
    }

    fn time(&mut self, job: &Job) -> Result<f64> {
        let i = self.calls;
        self.calls += 1;
        if self.fail_at == Some(i) {
            return Err(Error::Gpu(format!("mock failure at job {i}")));
        }
        let (bytes, flops) = match *job {
            Job::Copy { bytes } => (2.0 * bytes as f64, 0.0),
            Job::Gemm { path, n, k, tokens } => mock_gemm(path, n, k, tokens),
            Job::Decode {
                kv,
                kv_heads,
                batch,
                context,
                ..
            } => (
                2.0 * f64::from(batch)
                    * f64::from(context)
                    * f64::from(kv_heads)
                    * 128.0
                    * kv.bytes() as f64,
                0.0,
            ),
            Job::Prefill {
                heads,
                kv_heads,
                tokens,
            } => {
                let t = f64::from(tokens);
                (
                    2.0 * t * f64::from(heads + 2 * kv_heads) * 128.0,
                    2.0 * t * t * f64::from(heads) * 128.0,
                )
            }
            Job::Elementwise { width, tokens, .. } => {
                (6.0 * f64::from(width) * f64::from(tokens), 0.0)
            }
            Job::Moe(m) => mock_moe(m.path, (m.experts, m.top_k), m.n, m.k, m.tokens),
        };
        let launch = match self.timing {
            Timing::Isolated => MOCK_LAUNCH_S,
            Timing::BackToBack => MOCK_GRAPH_LAUNCH_S,
        };
        Ok(1e3 * (launch + (bytes / MOCK_BW).max(flops / MOCK_FLOPS)))
    }

    fn method(&self) -> String {
        format!(
            "mock roofline (no GPU): 3 TB/s, 700 TFLOP/s, {} us per call ({})",
            match self.timing {
                Timing::Isolated => MOCK_LAUNCH_S,
                Timing::BackToBack => MOCK_GRAPH_LAUNCH_S,
            } * 1e6,
            self.timing
        )
    }

    fn timing(&self) -> Timing {
        self.timing
    }
}

/// Bytes and FLOPs the mock charges a grouped MoE GEMM: the touched experts' weights, the rows'
/// activations, and a launch per expert on the loop path (as bytes, so the grouped call wins).
fn mock_moe(
    path: super::moe::MoePath,
    (experts, top_k): (u32, u32),
    n: u32,
    k: u32,
    tokens: u32,
) -> (f64, f64) {
    let d = f64::from(super::moe::distinct_experts(experts, top_k, tokens));
    let (n, k, rows) = (f64::from(n), f64::from(k), f64::from(tokens * top_k));
    let launches = match path {
        super::moe::MoePath::Loop => d * MOCK_LAUNCH_S * MOCK_BW,
        _ => 0.0,
    };
    (
        2.0 * d * n * k + 2.0 * rows * (n + k) + launches,
        2.0 * rows * n * k,
    )
}

/// Bytes and FLOPs the mock charges a GEMM path: its weight bytes, extra passes, and the int8/FP8
/// paths at twice the fp16 rate.
fn mock_gemm(path: GemmPath, n: u32, k: u32, tokens: u32) -> (f64, f64) {
    let (n, k, t) = (f64::from(n), f64::from(k), f64::from(tokens));
    let wbytes = match path {
        GemmPath::Fp16Cublas | GemmPath::Fp16CublasGemmEx | GemmPath::Nf4DequantCublas => {
            2.0 * n * k
        }
        GemmPath::Int8W8a16Gemv | GemmPath::Int8W8a8 | GemmPath::Int8ImmaOnly => n * k,
        GemmPath::Nf4Gemv => 0.5 * n * k,
        // bitsandbytes: its GEMV up to 4 tokens, its dequantize sequence above
        GemmPath::Nf4Bnb if t <= 4.0 => 0.5 * n * k,
        GemmPath::Nf4Bnb => 2.0 * n * k,
        GemmPath::Fp8Row
        | GemmPath::Fp8Tensor
        | GemmPath::Fp8RowGemmOnly
        | GemmPath::Fp8TensorGemmOnly
        | GemmPath::LlmInt8Bnb => n * k,
        GemmPath::Int4Mma | GemmPath::Int4Gemv => 0.5 * n * k,
        GemmPath::Int4DequantCublas => 2.0 * n * k,
    };
    let extra = match path {
        GemmPath::Nf4DequantCublas => 2.5 * n * k,
        // bitsandbytes' sequence also writes and rereads the fp32 absmax twice
        GemmPath::Nf4Bnb if t > 4.0 => 2.5 * n * k + 0.5 * n * k,
        // GemmEx a little slower than cuBLASLt here, so both paths win somewhere
        GemmPath::Fp16CublasGemmEx => 0.1 * n * k,
        GemmPath::Int4DequantCublas => 2.5 * n * k,
        // the outlier columns' weights dequantized on every call
        GemmPath::LlmInt8Bnb => 0.02 * n * k,
        _ => 0.0,
    };
    let rate = match path {
        GemmPath::Int8W8a8
        | GemmPath::Int8ImmaOnly
        | GemmPath::LlmInt8Bnb
        | GemmPath::Fp8Row
        | GemmPath::Fp8Tensor
        | GemmPath::Fp8RowGemmOnly
        | GemmPath::Fp8TensorGemmOnly => 2.0,
        _ => 1.0,
    };
    (wbytes + extra + 2.0 * t * (n + k), 2.0 * t * n * k / rate)
}
