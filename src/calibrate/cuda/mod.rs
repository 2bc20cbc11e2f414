//! The CUDA [`KernelTimer`]: our kernels (kernels/*.cu, compiled by NVRTC for the device's own
//! architecture), cuBLAS fp16 GEMM and cuBLASLt int8 IMMA GEMM, timed with CUDA events.
//!
//! Two timing methods ([`Timing`]). `back-to-back` (the default) prices a kernel as a serving step
//! pays it: a CUDA graph of R calls replayed between one event pair (time = elapsed / R), each
//! call reading another of S copies of the operation's large inputs (weights, KV cache + block
//! table, prompt Q/K/V, elementwise rows) so that S × bytes ≥ 2 × L2 and they come from DRAM, as
//! in a forward pass where every layer's weights are new. Small activations (GEMM `x`, decode `q`)
//! stay shared: in a real step the previous kernel just wrote them and they sit in L2. No fill
//! between calls, so no dirty lines are written back on the timed kernel's account. `isolated`
//! (the old method) times one call after a memset that evicts L2.
//!
//! Everything is loaded dynamically, so this compiles and links on machines without CUDA;
//! [`CudaTimer::new`] checks for the libraries first because cudarc panics on a missing one.
//!
//! The parts: [`device`] (context, streams, kernels, buffers, input fills), [`timing`] (the
//! timing method; [`method`] its line in the profile's provenance), [`cublas`], [`gemm`],
//! [`attention`] and [`elementwise`] (one kernel family each), [`check`] (correctness against
//! the CPU reference).

/// Launch kernel `$name` on `$dev`'s timer stream (or `@on` another stream) with `$cfg`;
/// the arguments are passed by value, in the order of the kernel's signature.
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {
        launch!(@on $dev.stream, $dev, $name, $cfg; $($arg),*)
    };
    (@on $stream:expr, $dev:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let func = $dev.func($name)?;
        let mut b = $stream.launch_builder(func);
        $( let a = $arg; cudarc::driver::PushKernelArg::arg(&mut b, &a); )*
        // SAFETY: argument lists match the kernel signatures in kernels/*.cu and every pointer
        // is a live allocation of at least the size the kernel touches.
        let launched = unsafe { b.launch($cfg) }.map(|_| ());
        super::device::GpuErr::gpu(launched, $name)
    }};
}

mod attention;
mod check;
mod check_quant;
mod cublas;
mod device;
mod elementwise;
mod gemm;
mod llm_int8;
mod method;
mod moe;
mod quant_gemm;
mod timing;

pub use device::check_libraries;

use attention::{DecodeState, PrefillState};
use cublas::{Blas, Handles, LT_WORKSPACE};
use device::{Buf, Device, GpuErr, alloc};
use elementwise::ElemState;
use gemm::GemmState;
use method::MethodFacts;
use timing::Bench;

use super::quant;
use super::sweep::{Job, SweepSpec};
use super::timer::{CheckReport, DeviceInfo, KernelTimer};
use crate::error::{Error, Result};
use crate::profile::Timing;

/// Times the sweep's jobs on GPU 0 (see the module docs for how).
pub struct CudaTimer {
    /// Context, streams, loaded kernels, the input seed.
    dev: Device,
    /// cuBLAS/cuBLASLt handles, workspace, chosen algorithms.
    blas: Blas,
    /// The timing method and its state.
    bench: Bench,
    bounds: Bounds,
    bufs: Buffers,
    /// Why the FP8, INT4 and LLM.int8() paths are off (kernels/quant.cu did not compile, or a
    /// check failed): their jobs then fail and are skipped with this reason, the rest is timed.
    quant_off: Option<String>,
    /// The grouped MoE GEMM's kernels, buffers and the paths turned off.
    moe: moe::MoeCtx,
}

/// The sweep's largest sizes, which the per-family buffers are allocated for.
struct Bounds {
    max_tokens: u32,
    max_batch: u32,
    max_context: u32,
    max_prefill: u32,
    /// Every (batch, context) of the decode sweep, to size the partition buffers.
    decode_grid: Vec<(u32, u32)>,
}

impl Bounds {
    fn of(spec: &SweepSpec) -> Bounds {
        Bounds {
            max_tokens: spec.tokens.iter().copied().max().unwrap_or(1).max(8192),
            max_batch: spec.decode_batches.iter().copied().max().unwrap_or(1),
            max_context: spec.decode_contexts.iter().copied().max().unwrap_or(16),
            max_prefill: spec.prefill_tokens.iter().copied().max().unwrap_or(64),
            decode_grid: spec
                .decode_batches
                .iter()
                .flat_map(|&b| spec.decode_contexts.iter().map(move |&c| (b, c)))
                .collect(),
        }
    }
}

/// Each kernel family's buffers for the shape being timed (replaced when the shape changes), and
/// NF4's code table.
struct Buffers {
    /// The 256-entry dynamic map the NF4 kernels decode the 8-bit absmax with.
    nf4_code: Buf,
    gemm: Option<GemmState>,
    decode: Option<DecodeState>,
    prefill: Option<PrefillState>,
    elem: Option<ElemState>,
}

impl CudaTimer {
    /// Open GPU 0, compile the kernels for its architecture and prepare the libraries.
    pub fn new(spec: &SweepSpec, reps: usize, seed: u64, timing: Timing) -> Result<CudaTimer> {
        check_libraries()?;
        let (ctx, stream) = device::open()?;
        let (kernels, quant_off) = device::load_kernels(&ctx, spec)?;
        let handles = Handles::new(&stream)?;
        let info = device::device_info(&ctx)?;
        let start = device::event(&ctx)?;
        let end = device::event(&ctx)?;
        let lt_ws = alloc(&stream, LT_WORKSPACE)?;
        let nf4_code = alloc(&stream, 256 * 4)?;
        let flush = alloc(&stream, (2 * info.l2_bytes as usize).max(64 << 20))?;
        let t = CudaTimer {
            dev: Device::new(ctx, stream, kernels, info, seed as u32),
            blas: Blas::new(handles, lt_ws),
            bench: Bench::new(timing, reps, start, end, flush),
            bounds: Bounds::of(spec),
            bufs: Buffers {
                nf4_code,
                gemm: None,
                decode: None,
                prefill: None,
                elem: None,
            },
            quant_off,
            moe: Default::default(),
        };
        let map = quant::dynamic_map();
        t.dev.htod(&map, t.bufs.nf4_code.ptr)?;
        Ok(t)
    }
}

/// The dispatcher: each job to its kernel family's timing.
impl KernelTimer for CudaTimer {
    fn device(&self) -> &DeviceInfo {
        &self.dev.info
    }

    fn check(&mut self) -> Result<Vec<CheckReport>> {
        let r = self.check_all()?;
        self.dev.stream.synchronize().gpu("synchronize")?;
        Ok(r)
    }

    fn time(&mut self, job: &Job) -> Result<f64> {
        self.bench.sustain.set(job.sustain_group());
        match *job {
            Job::Copy { bytes } => self.time_copy(bytes),
            Job::Gemm { path, n, k, tokens } => self.time_gemm(path, n, k, tokens),
            Job::Decode {
                kv,
                heads,
                kv_heads,
                batch,
                context,
            } => self.time_decode(kv, heads, kv_heads, batch, context),
            Job::Prefill {
                heads,
                kv_heads,
                tokens,
            } => self.time_prefill(heads, kv_heads, tokens),
            Job::Elementwise {
                kind,
                width,
                tokens,
            } => self.time_elementwise(kind, width, tokens),
            Job::Moe(m) => self.time_moe(m),
        }
        .map_err(|e| Error::Gpu(format!("timing {job:?}: {e}")))
    }

    fn method(&self) -> String {
        method::line(&MethodFacts {
            timing: self.bench.timing,
            warmup: self.bench.warmup,
            reps: self.bench.reps,
            flush_bytes: self.bench.flush.bytes,
            l2_bytes: self.dev.info.l2_bytes,
            rot: self.bench.rot.get(),
        })
    }

    fn timing(&self) -> Timing {
        self.bench.timing
    }
}
