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

use std::sync::Arc;

use cudarc::cublas::sys as bsys;
use cudarc::cublaslt::{result as ltres, sys as ltsys};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg, result as dres, sys as dsys,
};
use half::f16;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::bnb::{self, BnbKernel, MMA_TILES, MmaTile};
use super::kernels::{
    CHECK_DECODE_HEADS, CHECK_GEMV_TOKENS, DecodeKernel, Instances, PART, STREAM_MAX_PART,
};
use super::nvrtc;
use super::plan::{COMPUTE_BOUND_MIN_TOKENS, GEMV_MAX_TOKENS, GemmPath, Job, SweepSpec};
use super::quant::{self, Nf4Tensor};
use super::reference as cpu;
use super::timer::{CheckReport, DeviceInfo, KernelTimer};
use crate::catalog::quant::KvDtype;
use crate::error::{Error, Result};
use crate::profile::{ElementwiseKind, Timing};

const SOURCES: [(&str, &str); 6] = [
    ("util.cu", include_str!("../../kernels/util.cu")),
    ("nf4.cu", include_str!("../../kernels/nf4.cu")),
    ("nf4_mma.cu", include_str!("../../kernels/nf4_mma.cu")),
    ("int8.cu", include_str!("../../kernels/int8.cu")),
    ("attention.cu", include_str!("../../kernels/attention.cu")),
    (
        "elementwise.cu",
        include_str!("../../kernels/elementwise.cu"),
    ),
];
/// Dynamic shared memory of `prefill_attn` (see attention.cu).
const PREFILL_SMEM: u32 = (64 + 128) * 136 * 2 + 4 * 16 * 68 * 4 + 4 * 16 * 72 * 2;
const LT_WORKSPACE: usize = 32 << 20;
const INT8_KV_SCALE: f32 = 1.0 / 64.0;
/// Most copies of an operation's inputs rotated over (back-to-back timing).
const MAX_COPIES: usize = 64;
/// Most memory spent on the extra copies of one operation's inputs.
const MAX_ROTATION_BYTES: u64 = 4 << 30;
/// Most calls in one timed graph.
const MAX_CALLS: usize = 64;
/// Fewest calls in one timed graph (a call with a neighbour on each side, as in a step).
const MIN_CALLS: usize = 2;
/// Each timed graph runs at least this long, so the ~1–2 µs of event and graph-launch latency
/// left per sample is below 1% of it.
const SAMPLE_TARGET_MS: f64 = 0.3;
/// A busy-wait before each timed sample, long enough for the host to queue the event pair and
/// the graph behind it: the start event then fires with the graph already waiting.
const SPIN_NS: u64 = 50_000;
/// Graph replays per candidate (cuBLASLt algorithm, decode kernel variant) when choosing one;
/// the chosen one is then timed with the full count.
const SELECT_REPS: usize = 3;
// Compute-bound jobs ([`Job::compute_bound`]) are timed under sustained load: on Hopper they
// draw the board's power cap, and the clock the power controller settles to is 7-19% below the
// boost clock a short burst after idle runs at (benches/gpu-results/diag-heat-h*.md). A
// serving GPU at capacity is under sustained load.
/// Heat-up before a compute-bound job's samples: its own graph replayed back to back this long.
/// The power controller has pulled the clock most of the way down by then (7-9% of the 9-12% at
/// 3 s for T = 512-1024 GEMMs; diag-heat-h100.md). It is still moving: in a full run the time
/// changes by a median 1-1.5% (p90 5-7%) between 0.1 and 0.2 s (`CARDPLAN_DEBUG_TIMING` prints
/// each heat-up), hence the sampling window after it.
const SUSTAIN_HEAT: std::time::Duration = std::time::Duration::from_millis(200);
/// After a heat-up, samples are taken for at least this long (and at least `reps` of them): under
/// the power cap the clock saws by ±7% over hundreds of milliseconds (nvidia-smi trace,
/// benches/gpu-results/diag-window-h200.md), and 30 samples of ~2 ms see one ~60 ms phase of it.
/// Later jobs of the same group (other paths) take `reps` samples at the clock this one settled.
const SUSTAIN_WINDOW: std::time::Duration = std::time::Duration::from_millis(150);
/// A later job of the same group starting within this of the last one's end needs no heat-up.
const SUSTAIN_GAP: std::time::Duration = std::time::Duration::from_millis(50);
/// A job that is not compute-bound, starting within this of a heated group's last sample
/// (the first small GEMM of a shape, after the previous shape's largest ones), first replays its
/// own graph for [`RECOVER_HEAT`]: right after sustained load the power controller holds the
/// clock down for a while, and these jobs are timed at their own steady clock.
const RECOVER_AFTER: std::time::Duration = std::time::Duration::from_millis(1000);
/// See [`RECOVER_AFTER`].
const RECOVER_HEAT: std::time::Duration = std::time::Duration::from_millis(200);
/// Each timed replay of a sustained job lasts at least this long, so the 30 samples span ~60 ms
/// of the controller's clock swings instead of ~9 ms.
const SUSTAIN_SAMPLE_MS: f64 = 2.0;

trait GpuErr<T> {
    fn gpu(self, what: &str) -> Result<T>;
}
impl<T, E: std::fmt::Debug> GpuErr<T> for std::result::Result<T, E> {
    fn gpu(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::Gpu(format!("{what}: {e:?}")))
    }
}

/// Whether the CUDA libraries the calibrator needs can be loaded; a clear error if not.
pub fn check_libraries() -> Result<()> {
    // SAFETY: these only try to dlopen the libraries.
    let present = unsafe {
        [
            ("libcuda (driver)", cudarc::driver::sys::is_culib_present()),
            ("libnvrtc", cudarc::nvrtc::sys::is_culib_present()),
            ("libcublas", cudarc::cublas::sys::is_culib_present()),
            ("libcublasLt", cudarc::cublaslt::sys::is_culib_present()),
        ]
    };
    let missing: Vec<&str> = present
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Gpu(format!(
            "cannot calibrate: CUDA libraries not found: {} (install the NVIDIA driver and CUDA 13 toolkit, or put them on the loader path)",
            missing.join(", ")
        )))
    }
}

/// A device allocation addressed by raw pointer (kernels take plain pointers).
struct Buf {
    _mem: CudaSlice<u8>,
    ptr: u64,
    bytes: usize,
}

/// One layer's weights in each format, in as many copies as the timer rotates over; activations
/// and scratch once.
struct GemmState {
    n: u32,
    k: u32,
    w16: Vec<Buf>,
    x: Buf,
    y: Buf,
    int8: Option<(Vec<I8Weights>, Int8Act)>,
    nf4: Option<(Vec<Nf4Weights>, Nf4Scratch)>,
}
/// Scratch rewritten by every NF4 dequantize call (as in bitsandbytes): the fp16 weights, and
/// for bitsandbytes' sequence the fp32 absmax before and after adding the offset.
struct Nf4Scratch {
    wdq: Buf,
    absmax: Buf,
    absmax_off: Buf,
}
struct I8Weights {
    wq: Buf,
    wscale: Buf,
}
/// W8A8 activations and scratch: quantized x, its scales, the int32 accumulator.
struct Int8Act {
    xq: Buf,
    sx: Buf,
    acc: Buf,
}
struct Nf4Weights {
    packed: Buf,
    absmax_q: Buf,
    absmax2: Buf,
}
struct DecodeState {
    key: (KvDtype, u32, u32),
    kc: Buf,
    vc: Buf,
    table: Buf,
    max_blocks: u32,
    /// Blocks in the pool (each job scatters its blocks over the first ones it needs).
    blocks: usize,
    q: Buf,
    out: Buf,
    part_o: Buf,
    part_m: Buf,
    part_l: Buf,
}
struct PrefillState {
    key: (u32, u32),
    q: Buf,
    k: Buf,
    v: Buf,
    o: Buf,
}
struct ElemState {
    key: (ElementwiseKind, u32),
    a: Buf,
    b: Buf,
    w: Buf,
    y: Buf,
}

/// The cuBLASLt descriptors of one GEMM shape (int8 IMMA or fp16), prepared outside the timed
/// region.
struct Imma {
    /// fp16 in and out with fp32 accumulation; otherwise int8 in, int32 out.
    f16: bool,
    desc: ltsys::cublasLtMatmulDesc_t,
    la: ltsys::cublasLtMatrixLayout_t,
    lb: ltsys::cublasLtMatrixLayout_t,
    lc: ltsys::cublasLtMatrixLayout_t,
    algo: ltsys::cublasLtMatmulAlgo_t,
}
impl Drop for Imma {
    fn drop(&mut self) {
        // SAFETY: created by Imma::new and destroyed once.
        unsafe {
            let _ = ltres::destroy_matrix_layout(self.la);
            let _ = ltres::destroy_matrix_layout(self.lb);
            let _ = ltres::destroy_matrix_layout(self.lc);
            let _ = ltres::destroy_matmul_desc(self.desc);
        }
    }
}

/// What the back-to-back timer did, for the profile's method line.
#[derive(Debug, Clone, Copy, Default)]
struct RotationStats {
    jobs: usize,
    /// Jobs whose copies cover less than 2 × L2 (the copy cap or the preallocated pool bit).
    capped: usize,
    /// Largest per-copy input of a capped job, bytes.
    capped_max_bytes: u64,
    /// Smallest rotated footprint (copies × bytes) of a capped job, bytes.
    capped_min_footprint: u64,
    min_calls: usize,
    max_calls: usize,
}

pub struct CudaTimer {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Where inputs are written: the legacy default stream, as a PyTorch process writes its
    /// weights and runs its work. A process that has written several allocations there times
    /// small GEMMs up to 6% slower (o_proj at 1-64 tokens on an H200), whatever stream the timed
    /// graph runs on (benches/gpu-results/diag-legacy-h200.md); a serving engine is such a
    /// process. `CARDPLAN_FILL_OWN_STREAM` (for diagnosis) writes on the timer's stream instead.
    fill_stream: Arc<CudaStream>,
    lt: ltsys::cublasLtHandle_t,
    lt_ws: Buf,
    /// cuBLAS (not Lt) handle for `cublasGemmEx`, with a workspace of its own so that graph
    /// capture never needs an allocation.
    blas: bsys::cublasHandle_t,
    _blas_ws: Buf,
    f: std::collections::HashMap<String, CudaFunction>,
    code: Buf,
    flush: Buf,
    start: CudaEvent,
    end: CudaEvent,
    info: DeviceInfo,
    timing: Timing,
    rot: std::cell::Cell<RotationStats>,
    /// The job being timed's heat-up group ([`Job::sustain_group`]); `None` when it is not
    /// compute-bound.
    sustain: std::cell::Cell<Option<Job>>,
    /// (the group the GPU was last heated for, when its last bench ended): the next job of the
    /// same group within [`SUSTAIN_GAP`] needs no heat-up of its own.
    load: std::cell::Cell<Option<(Job, std::time::Instant)>>,
    warmup: usize,
    reps: usize,
    /// `CARDPLAN_DEBUG_TIMING`: print each job's wall time, and each heat-up's trajectory.
    debug_timing: bool,
    /// How many L2s the rotated copies cover (`CARDPLAN_ROTATE_L2X`, for diagnosis; default 2).
    rotate_l2x: u64,
    /// Extra device memory held while timing (`CARDPLAN_BALLAST_MB`, for diagnosis).
    _ballast: Option<Ballast>,
    max_tokens: u32,
    max_batch: u32,
    max_context: u32,
    max_prefill: u32,
    /// Every (batch, context) of the decode sweep, to size the partition buffers.
    decode_grid: Vec<(u32, u32)>,
    seed: u32,
    /// cuBLASLt algorithm chosen per (fp16?, n, k, T).
    imma_cache: std::cell::RefCell<
        std::collections::HashMap<(bool, u32, u32, u32), ltsys::cublasLtMatmulAlgo_t>,
    >,
    gemm: Option<GemmState>,
    decode: Option<DecodeState>,
    prefill: Option<PrefillState>,
    elem: Option<ElemState>,
}

impl Drop for CudaTimer {
    fn drop(&mut self) {
        // SAFETY: the handle was created in `new` and is destroyed once.
        unsafe {
            let _ = ltres::destroy_handle(self.lt);
            let _ = cudarc::cublas::result::destroy_handle(self.blas);
        }
    }
}

macro_rules! launch {
    ($s:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {
        launch!(@on $s.stream, $s, $name, $cfg; $($arg),*)
    };
    (@on $stream:expr, $s:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let func = $s.func($name)?;
        let mut b = $stream.launch_builder(func);
        $( let a = $arg; b.arg(&a); )*
        // SAFETY: argument lists match the kernel signatures in kernels/*.cu and every pointer
        // is a live allocation of at least the size the kernel touches.
        unsafe { b.launch($cfg) }.map(|_| ()).gpu($name)
    }};
}

fn cfg(grid: (u32, u32, u32), block: u32, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    }
}

fn grid_for(items: u64, block: u32, cap: u64) -> (u32, u32, u32) {
    (items.div_ceil(u64::from(block)).clamp(1, cap) as u32, 1, 1)
}

impl CudaTimer {
    /// Open GPU 0, compile the kernels for its architecture and prepare the libraries.
    pub fn new(spec: &SweepSpec, reps: usize, seed: u64, timing: Timing) -> Result<CudaTimer> {
        check_libraries()?;
        let ctx = CudaContext::new(0).map_err(|e| {
            Error::Gpu(format!(
                "cannot calibrate: no usable CUDA GPU ({e:?}); is the NVIDIA driver loaded and a GPU visible?"
            ))
        })?;
        // SAFETY: all work goes to one stream and the timer synchronizes it explicitly before
        // reading results; without per-buffer events a graph capture records only our kernels.
        unsafe { ctx.disable_event_tracking() };
        // A stream of its own: the legacy default stream cannot be captured into a graph.
        let stream = ctx.new_stream().gpu("stream")?;
        let (major, minor) = ctx.compute_capability().gpu("compute capability")?;
        let mut include_paths = Vec::new();
        if let Ok(home) = std::env::var("CUDA_HOME") {
            include_paths.push(format!("{home}/include"));
        }
        include_paths.push("/usr/local/cuda/include".to_string());
        let inst = Instances::for_spec(spec);
        let prefix = inst.prefix();
        // One thread per source; NVRTC emits SASS for this GPU, so loading needs no JIT.
        let images: Vec<(&str, std::result::Result<Vec<u8>, String>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = SOURCES
                .iter()
                .map(|&(file, src)| {
                    let (prefix, include_paths) = (&prefix, &include_paths);
                    let h = sc.spawn(move || {
                        nvrtc::compile_cubin(
                            &format!("{prefix}{src}"),
                            file,
                            (major, minor),
                            include_paths,
                        )
                    });
                    (file, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(file, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err("the compiler thread panicked".to_string()));
                    (file, r)
                })
                .collect()
        });
        let names = inst.kernel_names();
        let mut f = std::collections::HashMap::new();
        for (file, image) in images {
            let image = image.map_err(|e| {
                Error::Gpu(format!(
                    "NVRTC could not compile kernels/{file} for sm_{major}{minor} (include paths {include_paths:?}): {e}"
                ))
            })?;
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(image))
                .gpu(file)?;
            for name in &names {
                if let Ok(func) = module.load_function(name) {
                    f.insert(name.clone(), func);
                }
            }
        }
        if let Some(missing) = names.iter().find(|k| !f.contains_key(*k)) {
            return Err(Error::Internal(format!(
                "kernel {missing} not found in kernels/*.cu"
            )));
        }
        f["prefill_attn"]
            .set_attribute(
                dsys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                PREFILL_SMEM as i32,
            )
            .gpu("prefill shared memory")?;
        for tile in MMA_TILES {
            f[&tile.kernel_name()]
                .set_attribute(
                    dsys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    mma_smem(tile) as i32,
                )
                .gpu("nf4 mma shared memory")?;
        }
        // Decode kernels that ask for dynamic shared memory may need more than the default 48 KB.
        for kv in KvDtype::ALL {
            for k in DecodeKernel::for_kv(kv).filter(|k| k.dyn_smem(kv) > 0) {
                for &g in &inst.groups {
                    if let Some(func) = f.get(&k.name(kv, g)) {
                        func.set_attribute(
                            dsys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                            k.dyn_smem(kv) as i32,
                        )
                        .gpu("decode shared memory")?;
                    }
                }
            }
        }
        let lt = ltres::create_handle().gpu("cuBLASLt init")?;
        let blas_ws = alloc(&stream, LT_WORKSPACE)?;
        let blas = cudarc::cublas::result::create_handle().gpu("cuBLAS init")?;
        // SAFETY: the handle is live; the stream and the workspace outlive it (both are owned by
        // the timer, which destroys the handle in Drop). Default math mode, as torch leaves it for
        // fp16 (reduced-precision reduction allowed).
        unsafe {
            cudarc::cublas::result::set_stream(blas, stream.cu_stream() as bsys::cudaStream_t)
                .gpu("cuBLAS stream")?;
            bsys::cublasSetWorkspace_v2(blas, blas_ws.ptr as *mut _, LT_WORKSPACE)
                .result()
                .gpu("cuBLAS workspace")?;
            bsys::cublasSetMathMode(blas, bsys::cublasMath_t::CUBLAS_DEFAULT_MATH)
                .result()
                .gpu("cuBLAS math mode")?;
        }
        let ballast = Ballast::from_env(&stream)?;
        let info = device_info(&ctx)?;
        let start = ctx
            .new_event(Some(dsys::CUevent_flags::CU_EVENT_DEFAULT))
            .gpu("event")?;
        let end = ctx
            .new_event(Some(dsys::CUevent_flags::CU_EVENT_DEFAULT))
            .gpu("event")?;
        let fill_stream = if std::env::var_os("CARDPLAN_FILL_OWN_STREAM").is_some() {
            stream.clone()
        } else {
            ctx.default_stream()
        };
        let t = CudaTimer {
            fill_stream,
            lt_ws: alloc(&stream, LT_WORKSPACE)?,
            code: alloc(&stream, 256 * 4)?,
            flush: alloc(&stream, (2 * info.l2_bytes as usize).max(64 << 20))?,
            ctx,
            stream,
            lt,
            blas,
            _blas_ws: blas_ws,
            f,
            start,
            end,
            info,
            timing,
            rot: Default::default(),
            sustain: Default::default(),
            load: Default::default(),
            warmup: 5,
            reps: reps.max(20),
            debug_timing: std::env::var_os("CARDPLAN_DEBUG_TIMING").is_some(),
            rotate_l2x: std::env::var("CARDPLAN_ROTATE_L2X")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&x| x >= 1)
                .unwrap_or(2),
            _ballast: ballast,
            max_tokens: spec.tokens.iter().copied().max().unwrap_or(1).max(8192),
            max_batch: spec.decode_batches.iter().copied().max().unwrap_or(1),
            max_context: spec.decode_contexts.iter().copied().max().unwrap_or(16),
            max_prefill: spec.prefill_tokens.iter().copied().max().unwrap_or(64),
            decode_grid: spec
                .decode_batches
                .iter()
                .flat_map(|&b| spec.decode_contexts.iter().map(move |&c| (b, c)))
                .collect(),
            seed: seed as u32,
            imma_cache: Default::default(),
            gemm: None,
            decode: None,
            prefill: None,
            elem: None,
        };
        let map = quant::dynamic_map();
        t.htod(&map, t.code.ptr)?;
        Ok(t)
    }

    fn func(&self, name: &str) -> Result<&CudaFunction> {
        self.f
            .get(name)
            .ok_or_else(|| Error::Internal(format!("kernel {name} not loaded")))
    }

    fn next_seed(&mut self) -> u32 {
        self.seed = self
            .seed
            .wrapping_mul(747_796_405)
            .wrapping_add(2_891_336_453);
        self.seed
    }

    fn htod<T: DeviceRepr>(&self, data: &[T], dst: u64) -> Result<()> {
        let bytes = std::mem::size_of_val(data);
        // SAFETY: dst is an allocation of at least `bytes` (callers size it from `data`).
        unsafe {
            dres::memcpy_htod_async(dst, data, self.stream.cu_stream()).gpu("copy to GPU")?;
        }
        let _ = bytes;
        self.stream.synchronize().gpu("synchronize")
    }

    fn dtoh<T: DeviceRepr + Default + Clone>(&self, src: &Buf, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        assert!(len * std::mem::size_of::<T>() <= src.bytes);
        self.stream.synchronize().gpu("synchronize")?;
        // SAFETY: src holds at least len elements of T (asserted above).
        unsafe { dres::memcpy_dtoh_sync(&mut out, src.ptr) }.gpu("copy from GPU")?;
        Ok(out)
    }

    fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<Buf> {
        let b = alloc(&self.stream, std::mem::size_of_val(data).max(16))?;
        self.htod(data, b.ptr)?;
        Ok(b)
    }

    /// Run `fill` (a launch on [`Self::fill_stream`]) ordered after the timer's stream and
    /// finished before it goes on: the timer's stream does not wait for the legacy stream.
    fn on_fill_stream(&self, fill: impl FnOnce() -> Result<()>) -> Result<()> {
        self.stream.synchronize().gpu("synchronize")?;
        fill()?;
        self.fill_stream.synchronize().gpu("synchronize")
    }
    fn fill_half(&mut self, b: &Buf, scale: f32) -> Result<()> {
        let n = (b.bytes / 2) as u64;
        let seed = self.next_seed();
        self.on_fill_stream(|| {
            launch!(@on self.fill_stream, self, "fill_half", cfg(grid_for(n, 256, 65_536), 256, 0); b.ptr, n, seed, scale)
        })
    }
    fn fill_u8(&mut self, b: &Buf) -> Result<()> {
        let n = b.bytes as u64;
        let seed = self.next_seed();
        self.on_fill_stream(|| {
            launch!(@on self.fill_stream, self, "fill_u8", cfg(grid_for(n, 256, 65_536), 256, 0); b.ptr, n, seed)
        })
    }
    fn fill_f32(&mut self, b: &Buf, lo: f32, hi: f32) -> Result<()> {
        let n = (b.bytes / 4) as u64;
        let seed = self.next_seed();
        self.on_fill_stream(|| {
            launch!(@on self.fill_stream, self, "fill_f32", cfg(grid_for(n, 256, 65_536), 256, 0); b.ptr, n, seed, lo, hi)
        })
    }
    fn new_half(&mut self, elems: u64, scale: f32) -> Result<Buf> {
        let b = alloc(&self.stream, (2 * elems) as usize)?;
        self.fill_half(&b, scale)?;
        Ok(b)
    }

    /// Copies of an operation's large inputs (`bytes` per call) to rotate over: enough that the
    /// copies together are at least twice the L2, at most [`MAX_COPIES`], at most
    /// [`MAX_ROTATION_BYTES`] in all and at most `room` (what preallocated buffers hold). One for
    /// isolated timing (the memset evicts L2 instead).
    fn copies_for(&self, bytes: u64, room: usize) -> usize {
        if self.timing == Timing::Isolated {
            return 1;
        }
        let bytes = bytes.max(1);
        let want = (self.rotate_l2x * self.info.l2_bytes)
            .div_ceil(bytes)
            .max(1) as usize;
        let mem_cap = (MAX_ROTATION_BYTES / bytes).max(1) as usize;
        let copies = want.min(MAX_COPIES).min(mem_cap).min(room.max(1));
        let mut r = self.rot.get();
        r.jobs += 1;
        if copies < want {
            let footprint = copies as u64 * bytes;
            r.capped_min_footprint = if r.capped == 0 {
                footprint
            } else {
                r.capped_min_footprint.min(footprint)
            };
            r.capped += 1;
            r.capped_max_bytes = r.capped_max_bytes.max(bytes);
        }
        self.rot.set(r);
        copies
    }

    /// Median time of one call of `op`; `op(timer, i)` runs the call on copy `i` of `copies`.
    fn bench(&self, copies: usize, op: &dyn Fn(&Self, usize) -> Result<()>) -> Result<f64> {
        self.bench_with(copies, op, self.reps, self.sustain.get().is_some())
    }

    /// [`Self::bench`] with [`SELECT_REPS`] short samples and no heat-up: for choosing among
    /// candidates (the chosen one is timed again by [`Self::bench`]).
    fn bench_select(&self, copies: usize, op: &dyn Fn(&Self, usize) -> Result<()>) -> Result<f64> {
        self.bench_with(copies, op, SELECT_REPS, false)
    }

    fn bench_with(
        &self,
        copies: usize,
        op: &dyn Fn(&Self, usize) -> Result<()>,
        reps: usize,
        sustained: bool,
    ) -> Result<f64> {
        let ms = match self.timing {
            Timing::Isolated => self.bench_isolated(&|s| op(s, 0)),
            Timing::BackToBack => self.bench_back_to_back(copies, op, reps, sustained),
        };
        // A choice among candidates of a heated group keeps the GPU under that group's load.
        if let (Some(group), Some((heated, _))) = (self.sustain.get(), self.load.get())
            && group == heated
        {
            self.load.set(Some((group, std::time::Instant::now())));
        }
        ms
    }

    /// Replay `graph` for [`SUSTAIN_HEAT`] unless the GPU was heated for the same group (one GEMM
    /// shape and token count, every path) less than [`SUSTAIN_GAP`] ago: the samples then see the
    /// clock the power cap settles to under this load, whatever ran before.
    /// Returns whether it heated (the first job of its group).
    fn heat(&self, graph: &cudarc::driver::CudaGraph, calls: usize) -> Result<bool> {
        let Some(group) = self.sustain.get() else {
            return Ok(false);
        };
        let now = std::time::Instant::now();
        let warm = matches!(self.load.get(), Some((g, last)) if g == group && now.duration_since(last) < SUSTAIN_GAP);
        if !warm {
            let blocks =
                self.replay_for(graph, SUSTAIN_HEAT, self.debug_timing.then_some(calls))?;
            if self.debug_timing {
                let list: Vec<String> = blocks.iter().map(|b| format!("{:.5}", b)).collect();
                eprintln!(
                    "heat {group:?}: {} blocks, ms per call: {}",
                    blocks.len(),
                    list.join(" ")
                );
            }
        }
        self.load.set(Some((group, std::time::Instant::now())));
        Ok(!warm)
    }

    /// Replay `graph` for [`RECOVER_HEAT`] when a heated group's samples ended less than
    /// [`RECOVER_AFTER`] ago (then forget that group: later light jobs need no recovery).
    fn recover(&self, graph: &cudarc::driver::CudaGraph) -> Result<()> {
        if let Some((_, last)) = self.load.get()
            && last.elapsed() < RECOVER_AFTER
        {
            self.replay_for(graph, RECOVER_HEAT, None)?;
            self.load.set(None);
        }
        Ok(())
    }

    /// Replay `graph` back to back, in blocks of 8 with a synchronize after each, for `dur`.
    /// With `timed` = Some(calls per replay), each block is also timed: ms per call, one per block.
    fn replay_for(
        &self,
        graph: &cudarc::driver::CudaGraph,
        dur: std::time::Duration,
        timed: Option<usize>,
    ) -> Result<Vec<f64>> {
        let now = std::time::Instant::now();
        let mut blocks = Vec::new();
        while now.elapsed() < dur {
            if timed.is_some() {
                self.start.record(&self.stream).gpu("event")?;
            }
            for _ in 0..8 {
                graph.launch().gpu("graph launch")?;
            }
            if let Some(calls) = timed {
                self.end.record(&self.stream).gpu("event")?;
                let ms = self.start.elapsed_ms(&self.end).gpu("event time")?;
                blocks.push(f64::from(ms) / (8 * calls) as f64);
            }
            self.stream.synchronize().gpu("synchronize")?;
        }
        Ok(blocks)
    }

    /// Back to back: a CUDA graph of R calls rotating over the copies, replayed `reps` times
    /// between one event pair each (after a busy-wait that lets the host queue it); median of
    /// elapsed / R. R: [`replay_calls`], sized for [`SAMPLE_TARGET_MS`] ([`SUSTAIN_SAMPLE_MS`]
    /// when `sustained`). `sustained`: the samples follow [`Self::heat`], and span at least
    /// [`SUSTAIN_WINDOW`] after a heat-up.
    fn bench_back_to_back(
        &self,
        copies: usize,
        op: &dyn Fn(&Self, usize) -> Result<()>,
        reps: usize,
        sustained: bool,
    ) -> Result<f64> {
        let target_ms = if sustained {
            SUSTAIN_SAMPLE_MS
        } else {
            SAMPLE_TARGET_MS
        };
        let copies = copies.clamp(1, MAX_COPIES);
        for i in 0..copies.max(self.warmup) {
            op(self, i % copies)?;
        }
        // a rough per-call time, to size the graph
        self.start.record(&self.stream).gpu("event")?;
        for i in 0..3 {
            op(self, i % copies)?;
        }
        self.end.record(&self.stream).gpu("event")?;
        let est = f64::from(self.start.elapsed_ms(&self.end).gpu("event time")?) / 3.0;
        let calls = replay_calls(est, target_ms, copies);
        let mut r = self.rot.get();
        r.min_calls = if r.min_calls == 0 {
            calls
        } else {
            r.min_calls.min(calls)
        };
        r.max_calls = r.max_calls.max(calls);
        self.rot.set(r);
        let graph = self.capture(calls, copies, op)?;
        graph.upload().gpu("graph upload")?;
        graph.launch().gpu("graph launch")?;
        self.stream.synchronize().gpu("synchronize")?;
        let window = if sustained && self.heat(&graph, calls)? {
            SUSTAIN_WINDOW
        } else {
            std::time::Duration::ZERO
        };
        if self.sustain.get().is_none() {
            self.recover(&graph)?;
        }
        let mut times = Vec::with_capacity(reps);
        let sampling = std::time::Instant::now();
        while times.len() < reps.max(1) || sampling.elapsed() < window {
            launch!(self, "spin_ns", cfg((1, 1, 1), 32, 0); SPIN_NS)?;
            self.start.record(&self.stream).gpu("event")?;
            graph.launch().gpu("graph launch")?;
            self.end.record(&self.stream).gpu("event")?;
            let ms = f64::from(self.start.elapsed_ms(&self.end).gpu("event time")?);
            times.push(ms / calls as f64);
        }
        if self.debug_timing && sustained {
            let list: Vec<String> = times.iter().map(|t| format!("{t:.5}")).collect();
            eprintln!(
                "samples {:?} ({copies} copies, {calls} calls, {} samples): {}",
                self.sustain.get(),
                times.len(),
                list.join(" ")
            );
        }
        Ok(median(times))
    }

    /// `calls` calls of `op` (copy `i % copies` each) captured into one graph.
    fn capture(
        &self,
        calls: usize,
        copies: usize,
        op: &dyn Fn(&Self, usize) -> Result<()>,
    ) -> Result<cudarc::driver::CudaGraph> {
        self.stream.synchronize().gpu("synchronize")?;
        self.stream
            .begin_capture(dsys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .gpu("begin graph capture")?;
        let recorded = (0..calls).try_for_each(|i| op(self, i % copies));
        // end the capture also when a call failed, so the stream is usable again
        let graph = self
            .stream
            .end_capture(dsys::CUgraphInstantiate_flags(0))
            .gpu("graph capture");
        recorded?;
        graph?.ok_or_else(|| Error::Gpu("graph capture recorded nothing".into()))
    }

    /// Median of `reps` single-call CUDA-event timings, each after an L2-evicting memset.
    fn bench_isolated(&self, op: &dyn Fn(&Self) -> Result<()>) -> Result<f64> {
        for _ in 0..self.warmup {
            op(self)?;
        }
        self.stream.synchronize().gpu("synchronize")?;
        let mut times = Vec::with_capacity(self.reps);
        for i in 0..self.reps {
            // SAFETY: flush is a live allocation of flush.bytes.
            unsafe {
                dres::memset_d8_async(
                    self.flush.ptr,
                    (i % 251 + 1) as u8,
                    self.flush.bytes,
                    self.stream.cu_stream(),
                )
            }
            .gpu("L2 flush")?;
            self.start.record(&self.stream).gpu("event")?;
            op(self)?;
            self.end.record(&self.stream).gpu("event")?;
            times.push(f64::from(
                self.start.elapsed_ms(&self.end).gpu("event time")?,
            ));
        }
        Ok(median(times))
    }

    // ---- building blocks shared by checks and timing -----------------------------------------

    /// cuBLASLt descriptors (int8 IMMA, or fp16 with fp32 accumulation when `f16`) for `n × k`
    /// at `t` tokens, with the fastest of cuBLASLt's top-16
    /// heuristic candidates (timed once on `bufs` = (wq, xq, acc), cached per shape), as
    /// frameworks' autotuners pick. Where cuBLASLt has no kernel for an odd token count the GEMM
    /// runs on `t` rounded up to a multiple of 4 (the extra rows are ignored).
    /// `bufs`: the rotated copies of A (the weights), B and C. The algorithm is chosen by the
    /// same method as the final timing (back to back over the copies), so a choice made on
    /// cached weights cannot win.
    fn imma_prepare(
        &self,
        f16: bool,
        n: u32,
        k: u32,
        t: u32,
        bufs: (&[u64], u64, u64),
    ) -> Result<Imma> {
        match self.imma_prepare_exact(f16, n, k, t, bufs) {
            Ok(m) => Ok(m),
            Err(e) if !f16 && t % 4 != 0 && t.next_multiple_of(4) <= self.max_tokens => self
                .imma_prepare_exact(f16, n, k, t.next_multiple_of(4), bufs)
                .map_err(|_| e),
            Err(e) => Err(e),
        }
    }

    fn imma_prepare_exact(
        &self,
        f16: bool,
        n: u32,
        k: u32,
        t: u32,
        bufs: (&[u64], u64, u64),
    ) -> Result<Imma> {
        use ltsys::cudaDataType_t as dt;
        let (compute, scale, ab, c) = if f16 {
            (
                ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                dt::CUDA_R_32F,
                dt::CUDA_R_16F,
                dt::CUDA_R_16F,
            )
        } else {
            (
                ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32I,
                dt::CUDA_R_32I,
                dt::CUDA_R_8I,
                dt::CUDA_R_32I,
            )
        };
        let desc = ltres::create_matmul_desc(compute, scale).gpu("cuBLASLt matmul desc")?;
        let trans = bsys::cublasOperation_t::CUBLAS_OP_T;
        // SAFETY: desc is live; the attribute value is a cublasOperation_t.
        unsafe {
            ltres::set_matmul_desc_attribute(
                desc,
                ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&trans) as *const _ as *const _,
                std::mem::size_of_val(&trans),
            )
        }
        .gpu("cuBLASLt TRANSA")?;
        let la = ltres::create_matrix_layout(ab, u64::from(k), u64::from(n), i64::from(k))
            .gpu("layout A")?;
        let lb = ltres::create_matrix_layout(ab, u64::from(k), u64::from(t), i64::from(k))
            .gpu("layout B")?;
        let lc = ltres::create_matrix_layout(c, u64::from(n), u64::from(t), i64::from(n))
            .gpu("layout C")?;
        // From here on `m` owns the descriptors (its Drop frees them on every error path).
        let mut m = Imma {
            f16,
            desc,
            la,
            lb,
            lc,
            // SAFETY: an all-zero algo is a valid placeholder; it is replaced before use.
            algo: unsafe { std::mem::zeroed() },
        };
        let pref = ltres::create_matmul_pref().gpu("cuBLASLt preference")?;
        let ws = LT_WORKSPACE as u64;
        // SAFETY: plain C structs filled by cuBLASLt.
        let mut results: [ltsys::cublasLtMatmulHeuristicResult_t; 16] =
            unsafe { std::mem::zeroed() };
        let mut count = 0i32;
        // SAFETY: all descriptors are live; pref is destroyed right after the query.
        let status = unsafe {
            let r = ltres::set_matmul_pref_attribute(
                pref,
                ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws) as *const u64 as *const _,
                8,
            )
            .and_then(|_| {
                ltsys::cublasLtMatmulAlgoGetHeuristic(
                    self.lt,
                    desc,
                    la,
                    lb,
                    lc,
                    lc,
                    pref,
                    results.len() as i32,
                    results.as_mut_ptr(),
                    &mut count,
                )
                .result()
            });
            let _ = ltres::destroy_matmul_pref(pref);
            r
        };
        let candidates: Vec<ltsys::cublasLtMatmulAlgo_t> = results
            .iter()
            .take(count.max(0) as usize)
            .filter(|r| r.state.result().is_ok())
            .map(|r| r.algo)
            .collect();
        if status.is_err() || candidates.is_empty() {
            return Err(Error::Gpu(format!(
                "cuBLASLt has no {} algorithm for n={n} k={k} T={t} ({status:?})",
                if f16 { "fp16" } else { "int8 IMMA" }
            )));
        }
        if let Some(algo) = self.imma_cache.borrow().get(&(f16, n, k, t)) {
            m.algo = *algo;
            return Ok(m);
        }
        let (wq, xq, acc) = bufs;
        if wq.is_empty() {
            return Err(Error::Internal(
                "cuBLASLt algorithm choice without weights".into(),
            ));
        }
        let mut best = (f64::INFINITY, candidates[0]);
        for algo in candidates {
            m.algo = algo;
            let op = |s: &Self, i: usize| s.imma_run(&m, wq[i], xq, acc);
            if let Ok(ms) = self.bench_select(wq.len(), &op)
                && ms < best.0
            {
                best = (ms, algo);
            }
        }
        m.algo = best.1;
        self.imma_cache.borrow_mut().insert((f16, n, k, t), best.1);
        Ok(m)
    }

    /// `acc[T×n] = xq[T×k] · Wqᵀ` through cuBLASLt (int8 → int32, or fp16 → fp16).
    fn imma_run(&self, m: &Imma, wq: u64, xq: u64, acc: u64) -> Result<()> {
        let (ai, bi, af, bf) = (1i32, 0i32, 1f32, 0f32);
        let (alpha, beta): (*const std::ffi::c_void, *const std::ffi::c_void) = if m.f16 {
            (
                (&af) as *const f32 as *const _,
                (&bf) as *const f32 as *const _,
            )
        } else {
            (
                (&ai) as *const i32 as *const _,
                (&bi) as *const i32 as *const _,
            )
        };
        // SAFETY: descriptors match the buffers' shapes (prepared for this n, k, T).
        unsafe {
            ltres::matmul(
                self.lt,
                m.desc,
                alpha,
                beta,
                wq as *const _,
                m.la,
                xq as *const _,
                m.lb,
                acc as *const _,
                m.lc,
                acc as *mut _,
                m.lc,
                &m.algo,
                self.lt_ws.ptr as *mut _,
                LT_WORKSPACE,
                self.stream.cu_stream() as ltsys::cudaStream_t,
            )
        }
        .gpu("cuBLASLt GEMM")
    }

    #[allow(clippy::too_many_arguments)]
    fn w8a8(
        &self,
        m: &Imma,
        w: &I8Weights,
        a: &Int8Act,
        x: u64,
        y: u64,
        n: u32,
        k: u32,
        t: u32,
    ) -> Result<()> {
        launch!(self, "quant_per_token", cfg((t, 1, 1), 256, 0); x, a.xq.ptr, a.sx.ptr, k as i32)?;
        self.imma_run(m, w.wq.ptr, a.xq.ptr, a.acc.ptr)?;
        let quads = u64::from(t) * u64::from(n) / 4;
        launch!(self, "dequant_i32", cfg(grid_for(quads, 256, 65_536), 256, 0);
            a.acc.ptr, a.sx.ptr, w.wscale.ptr, y, t as i32, n as i32)
    }

    #[allow(clippy::too_many_arguments)]
    fn nf4_gemv(
        &self,
        s: &Nf4Weights,
        offset: f32,
        x: u64,
        y: u64,
        n: u32,
        k: u32,
        t: u32,
    ) -> Result<()> {
        let name = format!("nf4_gemv_t{t}");
        launch!(self, &name, cfg((n.div_ceil(4), 1, 1), 128, 0);
            s.packed.ptr, s.absmax_q.ptr, s.absmax2.ptr, self.code.ptr, offset, x, y,
            n as i32, k as i32)
    }

    fn nf4_dequant(&self, s: &Nf4Weights, offset: f32, wdq: u64, numel: u64) -> Result<()> {
        let sms = u64::from(self.info.sm_count);
        launch!(self, "nf4_dequant", cfg(grid_for(numel / 8, 256, sms * 32), 256, 0);
            s.packed.ptr, s.absmax_q.ptr, s.absmax2.ptr, self.code.ptr, offset, wdq, numel)
    }

    /// bitsandbytes' unfused dequantize (`_dequant_linear_fallback`): three kernels, as it runs them.
    fn nf4_bnb_dequant(
        &self,
        s: &Nf4Weights,
        offset: f32,
        sc: &Nf4Scratch,
        numel: u64,
    ) -> Result<()> {
        let sms = u64::from(self.info.sm_count);
        let blocks = numel.div_ceil(64);
        launch!(self, "nf4_absmax_dequant", cfg(grid_for(blocks, 256, sms * 32), 256, 0);
            s.absmax_q.ptr, s.absmax2.ptr, self.code.ptr, sc.absmax.ptr, blocks)?;
        launch!(self, "add_scalar_f32", cfg(grid_for(blocks, 256, sms * 32), 256, 0);
            sc.absmax.ptr, offset, sc.absmax_off.ptr, blocks)?;
        let numel = i32::try_from(numel).map_err(|_| {
            Error::BadInput(format!(
                "nf4: {numel} weights in one layer; bitsandbytes' dequantize indexes with int"
            ))
        })?;
        launch!(self, "nf4_dequant_bnb", cfg(((numel as u32).div_ceil(1024), 1, 1), 64, 0);
            s.packed.ptr, sc.absmax_off.ptr, sc.wdq.ptr, 64i32, numel)
    }

    /// cardplan's stand-in for bitsandbytes' mma.sync 4-bit kernel with its `tile`.
    #[allow(clippy::too_many_arguments)]
    fn nf4_mma(
        &self,
        tile: MmaTile,
        s: &Nf4Weights,
        offset: f32,
        x: u64,
        y: u64,
        n: u32,
        k: u32,
        t: u32,
    ) -> Result<()> {
        let name = tile.kernel_name();
        launch!(self, &name, cfg((t.div_ceil(tile.mt), n.div_ceil(tile.nt), 1), 256, mma_smem(tile));
            x, s.packed.ptr, s.absmax_q.ptr, s.absmax2.ptr, self.code.ptr, offset, y,
            t as i32, n as i32, k as i32, 64i32)
    }

    /// The kernel bitsandbytes runs for `t` tokens through an `n × k` layer on this GPU.
    fn bnb_kernel(&self, n: u32, k: u32, t: u32) -> BnbKernel {
        let dev = &self.info;
        bnb::priced(
            dev.compute_capability,
            dev.sm_count,
            t,
            n,
            k,
            GEMV_MAX_TOKENS,
        )
    }

    /// `y[T×n] = x[T×k] · Wᵀ` through `cublasGemmEx` as torch's `F.linear` calls it for fp16
    /// (at::cuda::blas::gemm<at::Half>): column-major C(n×T) = op(A)·B with A = W seen as k×n
    /// (transposed, lda = k), B = x seen as k×T (ldb = k), fp32 compute, default algorithm.
    #[allow(clippy::too_many_arguments)]
    fn gemmex_run(&self, w: u64, x: u64, y: u64, n: u32, k: u32, t: u32) -> Result<()> {
        use bsys::cudaDataType_t as dt;
        let (alpha, beta) = (1f32, 0f32);
        let (n, k, t) = (n as i32, k as i32, t as i32);
        // SAFETY: w holds n×k, x T×k and y T×n halves; the handle is bound to our stream.
        unsafe {
            bsys::cublasGemmEx(
                self.blas,
                bsys::cublasOperation_t::CUBLAS_OP_T,
                bsys::cublasOperation_t::CUBLAS_OP_N,
                n,
                t,
                k,
                (&alpha) as *const f32 as *const _,
                w as *const _,
                dt::CUDA_R_16F,
                k,
                x as *const _,
                dt::CUDA_R_16F,
                k,
                (&beta) as *const f32 as *const _,
                y as *mut _,
                dt::CUDA_R_16F,
                n,
                bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
            )
        }
        .result()
        .gpu("cublasGemmEx")
    }

    fn w8a16(&self, s: &I8Weights, x: u64, y: u64, n: u32, k: u32, t: u32) -> Result<()> {
        let name = format!("w8a16_gemv_t{t}");
        launch!(self, &name, cfg((n.div_ceil(4), 1, 1), 128, 0);
            s.wq.ptr, s.wscale.ptr, x, y, n as i32, k as i32)
    }

    /// Tokens per decode partition: 512, halved (down to 64) while the grid would not fill the
    /// GPU twice over, as flash-decoding splits long contexts for small batches.
    fn decode_part(&self, batch: u32, kv_heads: u32, max_ctx: u32) -> u32 {
        let target = 2 * self.info.sm_count;
        let mut part = PART;
        while part > 64 && batch * kv_heads * max_ctx.div_ceil(part) < target {
            part /= 2;
        }
        part
    }

    /// CTAs of a decode kernel the GPU holds at once (occupancy × SMs).
    fn decode_resident(&self, kernel: DecodeKernel, kv: KvDtype, group: u32) -> Result<u32> {
        let name = kernel.name(kv, group);
        let per_sm = self
            .func(&name)?
            .occupancy_max_active_blocks_per_multiprocessor(
                kernel.threads(),
                kernel.dyn_smem(kv) as usize,
                None,
            )
            .gpu(&name)?;
        Ok(per_sm.max(1) * self.info.sm_count)
    }

    /// Paged decode: one query per sequence; partitions of the context, then a reduce. `table`
    /// holds `stride` block ids per sequence.
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        kv: KvDtype,
        d: &DecodeState,
        table: u64,
        stride: u32,
        ctx_lens: u64,
        heads: u32,
        kv_heads: u32,
        batch: u32,
        max_ctx: u32,
        kernel: DecodeKernel,
        part: u32,
    ) -> Result<()> {
        let part = part.min(kernel.max_part());
        let nparts = max_ctx.div_ceil(part).max(1);
        if nparts > 1024 {
            return Err(Error::BadInput(format!(
                "decode context {max_ctx} needs {nparts} partitions; the reduce kernel takes at most 1024"
            )));
        }
        let scale = 1.0 / (128f32).sqrt();
        let kv_scale = match kv {
            KvDtype::Fp16 => 1.0f32,
            KvDtype::Int8 => INT8_KV_SCALE,
        };
        let name = kernel.name(kv, heads / kv_heads);
        launch!(self, &name, cfg((kv_heads, batch, nparts), kernel.threads(), kernel.dyn_smem(kv));
            d.q.ptr, d.kc.ptr, d.vc.ptr, table, ctx_lens, d.out.ptr, d.part_o.ptr,
            d.part_m.ptr, d.part_l.ptr, scale, kv_scale, heads as i32, kv_heads as i32,
            stride as i32, part as i32)?;
        if nparts > 1 {
            launch!(self, "paged_decode_reduce", cfg((heads, batch, 1), 128, 0);
                d.part_o.ptr, d.part_m.ptr, d.part_l.ptr, d.out.ptr, heads as i32, nparts as i32)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn prefill(
        &self,
        q: u64,
        k: u64,
        v: u64,
        o: u64,
        t: u32,
        heads: u32,
        kv_heads: u32,
    ) -> Result<()> {
        let scale_log2 = std::f32::consts::LOG2_E / (128f32).sqrt();
        launch!(self, "prefill_attn", cfg((t.div_ceil(64), heads, 1), 128, PREFILL_SMEM);
            q, k, v, o, t as i32, heads as i32, kv_heads as i32, scale_log2)
    }

    fn rmsnorm(&self, x: u64, res: u64, w: u64, y: u64, width: u32, t: u32) -> Result<()> {
        launch!(self, "rmsnorm_residual", cfg((t, 1, 1), 256, 0); x, res, w, y, width as i32, 1e-5f32)
    }

    fn silu(&self, input: u64, out: u64, width: u32, t: u32) -> Result<()> {
        let total = u64::from(t) * u64::from(width) / 8;
        let sms = u64::from(self.info.sm_count);
        launch!(self, "silu_mul", cfg(grid_for(total, 256, sms * 16), 256, 0);
            input, out, width as i32, u64::from(t))
    }

    // ---- per-job state ------------------------------------------------------------------------

    fn gemm_state(&mut self, n: u32, k: u32, path: GemmPath) -> Result<()> {
        let numel = n as usize * k as usize;
        let same = matches!(&self.gemm, Some(g) if g.n == n && g.k == k);
        if !same {
            self.gemm = None;
            let copies = self.copies_for(2 * numel as u64, MAX_COPIES);
            let mut w16 = Vec::with_capacity(copies);
            for _ in 0..copies {
                w16.push(self.new_half(numel as u64, 0.05)?);
            }
            let x = self.new_half(u64::from(self.max_tokens) * u64::from(k), 1.0)?;
            let y = alloc(&self.stream, 2 * self.max_tokens as usize * n as usize)?;
            self.gemm = Some(GemmState {
                n,
                k,
                w16,
                x,
                y,
                int8: None,
                nf4: None,
            });
        }
        let tmax = self.max_tokens as usize;
        let need_int8 = matches!(
            path,
            GemmPath::Int8W8a16Gemv | GemmPath::Int8W8a8 | GemmPath::Int8ImmaOnly
        );
        let need_nf4 = matches!(
            path,
            GemmPath::Nf4Gemv | GemmPath::Nf4DequantCublas | GemmPath::Nf4Bnb
        );
        if need_int8 && self.gemm.as_ref().is_some_and(|g| g.int8.is_none()) {
            let copies = self.copies_for((numel + 4 * n as usize) as u64, MAX_COPIES);
            let mut ws = Vec::with_capacity(copies);
            for _ in 0..copies {
                let wq = alloc(&self.stream, numel)?;
                self.fill_u8(&wq)?;
                let wscale = alloc(&self.stream, 4 * n as usize)?;
                self.fill_f32(&wscale, 1e-3, 2e-3)?;
                ws.push(I8Weights { wq, wscale });
            }
            let xq = alloc(&self.stream, tmax * k as usize)?;
            self.fill_u8(&xq)?;
            let act = Int8Act {
                xq,
                sx: alloc(&self.stream, 4 * tmax)?,
                acc: alloc(&self.stream, 4 * tmax * n as usize)?,
            };
            if let Some(g) = self.gemm.as_mut() {
                g.int8 = Some((ws, act));
            }
        }
        if need_nf4 && self.gemm.as_ref().is_some_and(|g| g.nf4.is_none()) {
            let blocks = numel.div_ceil(64);
            let bytes = numel / 2 + blocks + 4 * blocks.div_ceil(256);
            let copies = self.copies_for(bytes as u64, MAX_COPIES);
            let mut ws = Vec::with_capacity(copies);
            for _ in 0..copies {
                let packed = alloc(&self.stream, numel / 2)?;
                self.fill_u8(&packed)?;
                let absmax_q = alloc(&self.stream, blocks)?;
                self.fill_u8(&absmax_q)?;
                let absmax2 = alloc(&self.stream, 4 * blocks.div_ceil(256))?;
                self.fill_f32(&absmax2, 0.02, 0.04)?;
                ws.push(Nf4Weights {
                    packed,
                    absmax_q,
                    absmax2,
                });
            }
            let scratch = Nf4Scratch {
                wdq: alloc(&self.stream, 2 * numel)?,
                absmax: alloc(&self.stream, 4 * blocks)?,
                absmax_off: alloc(&self.stream, 4 * blocks)?,
            };
            if let Some(g) = self.gemm.as_mut() {
                g.nf4 = Some((ws, scratch));
            }
        }
        Ok(())
    }

    fn time_gemm(&mut self, path: GemmPath, n: u32, k: u32, t: u32) -> Result<f64> {
        self.gemm_state(n, k, path)?;
        let Some(g) = self.gemm.take() else {
            return Err(Error::Internal("GEMM buffers missing".into()));
        };
        let r = self.time_gemm_with(&g, path, n, k, t);
        self.gemm = Some(g);
        r
    }

    fn time_gemm_with(&self, g: &GemmState, path: GemmPath, n: u32, k: u32, t: u32) -> Result<f64> {
        let missing = || Error::Internal("quantized weights missing".into());
        let offset = 0.03f32;
        let (x, y) = (g.x.ptr, g.y.ptr);
        match path {
            GemmPath::Fp16Cublas => {
                let ws: Vec<u64> = g.w16.iter().map(|b| b.ptr).collect();
                let m = self.imma_prepare(true, n, k, t, (&ws, x, y))?;
                self.bench(g.w16.len(), &|s, i| s.imma_run(&m, g.w16[i].ptr, x, y))
            }
            GemmPath::Fp16CublasGemmEx => self.bench(g.w16.len(), &|s, i| {
                s.gemmex_run(g.w16[i].ptr, x, y, n, k, t)
            }),
            GemmPath::Int8W8a16Gemv => {
                let (w, _) = g.int8.as_ref().ok_or_else(missing)?;
                self.bench(w.len(), &|s, i| s.w8a16(&w[i], x, y, n, k, t))
            }
            GemmPath::Int8W8a8 => {
                let (w, a) = g.int8.as_ref().ok_or_else(missing)?;
                let ws: Vec<u64> = w.iter().map(|b| b.wq.ptr).collect();
                let m = self.imma_prepare(false, n, k, t, (&ws, a.xq.ptr, a.acc.ptr))?;
                self.bench(w.len(), &|s, i| s.w8a8(&m, &w[i], a, x, y, n, k, t))
            }
            GemmPath::Int8ImmaOnly => {
                let (w, a) = g.int8.as_ref().ok_or_else(missing)?;
                let ws: Vec<u64> = w.iter().map(|b| b.wq.ptr).collect();
                let m = self.imma_prepare(false, n, k, t, (&ws, a.xq.ptr, a.acc.ptr))?;
                self.bench(w.len(), &|s, i| {
                    s.imma_run(&m, w[i].wq.ptr, a.xq.ptr, a.acc.ptr)
                })
            }
            GemmPath::Nf4Gemv => {
                let (w, _) = g.nf4.as_ref().ok_or_else(missing)?;
                self.bench(w.len(), &|s, i| s.nf4_gemv(&w[i], offset, x, y, n, k, t))
            }
            GemmPath::Nf4DequantCublas => {
                let (w, sc) = g.nf4.as_ref().ok_or_else(missing)?;
                let (wdq, numel) = (sc.wdq.ptr, u64::from(n) * u64::from(k));
                self.nf4_dequant(&w[0], offset, wdq, numel)?;
                let m = self.imma_prepare(true, n, k, t, (&[wdq], x, y))?;
                self.bench(w.len(), &|s, i| {
                    s.nf4_dequant(&w[i], offset, wdq, numel)?;
                    s.imma_run(&m, wdq, x, y)
                })
            }
            GemmPath::Nf4Bnb => {
                let (w, sc) = g.nf4.as_ref().ok_or_else(missing)?;
                match self.bnb_kernel(n, k, t) {
                    BnbKernel::Simt => {
                        self.bench(w.len(), &|s, i| s.nf4_gemv(&w[i], offset, x, y, n, k, t))
                    }
                    BnbKernel::Mma(tile) => self.bench(w.len(), &|s, i| {
                        s.nf4_mma(tile, &w[i], offset, x, y, n, k, t)
                    }),
                    // bitsandbytes' F.linear is cuBLAS (cublasGemmEx), as torch calls it for fp16.
                    BnbKernel::DequantLinear => {
                        let numel = u64::from(n) * u64::from(k);
                        self.bench(w.len(), &|s, i| {
                            s.nf4_bnb_dequant(&w[i], offset, sc, numel)?;
                            s.gemmex_run(sc.wdq.ptr, x, y, n, k, t)
                        })
                    }
                }
            }
        }
    }

    fn time_decode(
        &mut self,
        kv: KvDtype,
        heads: u32,
        kv_heads: u32,
        batch: u32,
        context: u32,
    ) -> Result<f64> {
        let key = (kv, heads, kv_heads);
        let elem = match kv {
            KvDtype::Fp16 => 2,
            KvDtype::Int8 => 1,
        };
        if !matches!(&self.decode, Some(d) if d.key == key) {
            self.decode = None;
            let max_blocks = self.max_context.div_ceil(16);
            let blocks = (self.max_batch * max_blocks) as usize;
            let cache_bytes = blocks * kv_heads as usize * 16 * 128 * elem;
            let kc = alloc(&self.stream, cache_bytes)?;
            let vc = alloc(&self.stream, cache_bytes)?;
            for c in [&kc, &vc] {
                match kv {
                    KvDtype::Fp16 => self.fill_half(c, 1.0)?,
                    KvDtype::Int8 => self.fill_u8(c)?,
                }
            }
            let qn = u64::from(self.max_batch) * u64::from(heads) * 128;
            // Largest batch × partitions over the sweep (at the smallest partition tried).
            let bparts = self
                .decode_grid
                .iter()
                .map(|&(b, c)| {
                    b as usize * c.div_ceil(min_part(self.decode_part(b, kv_heads, c))) as usize
                })
                .max()
                .unwrap_or(1);
            let bh = heads as usize;
            let nparts = bparts;
            self.decode = Some(DecodeState {
                key,
                q: self.new_half(qn, 1.0)?,
                out: alloc(&self.stream, 2 * qn as usize)?,
                part_o: alloc(&self.stream, 4 * bh * nparts * 128)?,
                part_m: alloc(&self.stream, 4 * bh * nparts)?,
                part_l: alloc(&self.stream, 4 * bh * nparts)?,
                kc,
                vc,
                table: alloc(&self.stream, 16)?,
                max_blocks,
                blocks,
            });
        }
        let lens = self.upload(&vec![context as i32; batch as usize])?;
        let d = self
            .decode
            .as_ref()
            .ok_or_else(|| Error::Internal("decode buffers".into()))?;
        // Each rotated copy is a block table over its own stretch of the (shuffled) pool, so the
        // copies read disjoint KV blocks; q and the outputs are shared.
        let stride = context.div_ceil(16);
        let per_copy = batch as usize * stride as usize;
        let kv_bytes =
            2 * u64::from(batch) * u64::from(context) * u64::from(kv_heads) * 128 * elem as u64;
        let copies = self.copies_for(kv_bytes, d.blocks / per_copy.max(1));
        // The blocks in use, scattered at random over a span exactly as large as they are: a
        // full, fragmented cache (vLLM sizes each layer's cache to the memory left), the same
        // for every point whatever the largest point of the sweep is.
        let n = copies * per_copy;
        if n > d.blocks {
            return Err(Error::Internal(format!(
                "decode batch {batch} × context {context} needs more blocks than the pool holds"
            )));
        }
        let mut ids: Vec<i32> = (0..n as i32).collect();
        let mut rng = StdRng::seed_from_u64(u64::from(batch) << 32 | u64::from(context));
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.random_range(0..=i));
        }
        let table = self.upload(&ids)?;
        let copy_table = |i: usize| table.ptr + (4 * i * per_copy) as u64;
        let base = self.decode_part(batch, kv_heads, context);
        let debug = std::env::var_os("CARDPLAN_DEBUG_DECODE").is_some();
        let run = |s: &Self, i: usize, kernel: DecodeKernel, part: u32| {
            s.decode(
                kv,
                d,
                copy_table(i),
                stride,
                lens.ptr,
                heads,
                kv_heads,
                batch,
                context,
                kernel,
                part,
            )
        };
        // Every kernel variant at up to five power-of-two partition sizes (half the base one to
        // 8x, up to the whole context) and the wave-fitted ones, chosen on short samples; the
        // fastest is what an autotuned engine would run, and is then timed in full.
        let mut best: Option<(f64, DecodeKernel, u32)> = None;
        let mut parts = vec![min_part(base)];
        for scale in [1u32, 2, 4, 8] {
            if scale > 1 && base * scale / 2 >= context {
                break; // the previous size already covered the context in one partition
            }
            parts.push(base * scale);
        }
        parts.dedup();
        // Per kernel, also the partitions that fill the CTAs the GPU holds at once (one or two
        // full waves): powers of two can leave a last wave mostly idle (e.g. 2.6 waves).
        let pairs = batch * kv_heads;
        let mut runs = Vec::new();
        for (order, kernel) in DecodeKernel::for_kv(kv).enumerate() {
            let resident = self.decode_resident(kernel, kv, heads / kv_heads)?;
            let mut own = parts.clone();
            own.extend(wave_parts(pairs, context, resident, min_part(base)));
            own.sort_unstable();
            own.dedup();
            runs.extend(
                own.into_iter()
                    .filter(|&p| p <= kernel.max_part())
                    .map(|p| (p, order, kernel)),
            );
        }
        // By partition, then kernel: each size's variants are sampled under the same load.
        runs.sort_by_key(|&(p, order, _)| (p, order));
        for (part, _, kernel) in runs {
            let ms = self.bench_select(copies, &|s, i| run(s, i, kernel, part))?;
            if debug {
                eprintln!(
                    "decode {kv} {heads}/{kv_heads} batch {batch} context {context} part {part}: {} {ms:.4} ms",
                    kernel.label()
                );
            }
            if best.is_none_or(|(b, _, _)| ms < b) {
                best = Some((ms, kernel, part));
            }
        }
        let (_, kernel, part) = best.ok_or_else(|| {
            Error::Internal(format!(
                "no decode kernel variant for batch {batch} context {context}"
            ))
        })?;
        self.bench(copies, &|s, i| run(s, i, kernel, part))
    }

    fn time_prefill(&mut self, heads: u32, kv_heads: u32, t: u32) -> Result<f64> {
        let key = (heads, kv_heads);
        if !matches!(&self.prefill, Some(p) if p.key == key) {
            self.prefill = None;
            let tm = u64::from(self.max_prefill);
            self.prefill = Some(PrefillState {
                key,
                q: self.new_half(tm * u64::from(heads) * 128, 1.0)?,
                k: self.new_half(tm * u64::from(kv_heads) * 128, 1.0)?,
                v: self.new_half(tm * u64::from(kv_heads) * 128, 1.0)?,
                o: alloc(&self.stream, (2 * tm * u64::from(heads) * 128) as usize)?,
            });
        }
        let p = self
            .prefill
            .as_ref()
            .ok_or_else(|| Error::Internal("prefill buffers".into()))?;
        // Rotated copies are consecutive stretches of `t` tokens of the preallocated buffers.
        let (qrow, kvrow) = (256 * u64::from(heads), 256 * u64::from(kv_heads));
        let tt = u64::from(t);
        let copies = self.copies_for(
            tt * (qrow + 2 * kvrow),
            (self.max_prefill / t.max(1)) as usize,
        );
        let at = |base: u64, row: u64, i: usize| base + i as u64 * tt * row;
        self.bench(copies, &|s, i| {
            s.prefill(
                at(p.q.ptr, qrow, i),
                at(p.k.ptr, kvrow, i),
                at(p.v.ptr, kvrow, i),
                at(p.o.ptr, qrow, i),
                t,
                heads,
                kv_heads,
            )
        })
    }

    fn time_elementwise(&mut self, kind: ElementwiseKind, width: u32, t: u32) -> Result<f64> {
        let key = (kind, width);
        if !matches!(&self.elem, Some(e) if e.key == key) {
            self.elem = None;
            let rows = u64::from(self.max_tokens);
            let w = u64::from(width);
            let st = match kind {
                ElementwiseKind::RmsnormResidual => ElemState {
                    key,
                    a: self.new_half(rows * w, 0.1)?,
                    b: self.new_half(rows * w, 1.0)?,
                    w: self.new_half(w, 1.0)?,
                    y: alloc(&self.stream, (2 * rows * w) as usize)?,
                },
                ElementwiseKind::SiluMul => ElemState {
                    key,
                    a: self.new_half(2 * rows * w, 2.0)?,
                    b: alloc(&self.stream, 16)?,
                    w: alloc(&self.stream, 16)?,
                    y: alloc(&self.stream, (2 * rows * w) as usize)?,
                },
            };
            self.elem = Some(st);
        }
        let e = self
            .elem
            .as_ref()
            .ok_or_else(|| Error::Internal("elementwise buffers".into()))?;
        // Rotated copies are consecutive stretches of `t` rows of the preallocated buffers.
        let row = 2 * u64::from(width);
        let room = (self.max_tokens / t.max(1)) as usize;
        let at = |base: u64, row: u64, i: usize| base + i as u64 * u64::from(t) * row;
        match kind {
            ElementwiseKind::RmsnormResidual => {
                // reads x and the residual (written back), writes y
                let copies = self.copies_for(2 * u64::from(t) * row, room);
                self.bench(copies, &|s, i| {
                    s.rmsnorm(
                        at(e.a.ptr, row, i),
                        at(e.b.ptr, row, i),
                        e.w.ptr,
                        at(e.y.ptr, row, i),
                        width,
                        t,
                    )
                })
            }
            ElementwiseKind::SiluMul => {
                let copies = self.copies_for(2 * u64::from(t) * row, room);
                self.bench(copies, &|s, i| {
                    s.silu(at(e.a.ptr, 2 * row, i), at(e.y.ptr, row, i), width, t)
                })
            }
        }
    }

    fn time_copy(&mut self, bytes: u64) -> Result<f64> {
        let a = alloc(&self.stream, bytes as usize)?;
        self.fill_u8(&a)?;
        let b = alloc(&self.stream, bytes as usize)?;
        let op = |s: &Self, _: usize| {
            // SAFETY: both buffers hold `bytes`.
            unsafe { dres::memcpy_dtod_async(b.ptr, a.ptr, bytes as usize, s.stream.cu_stream()) }
                .gpu("device copy")
        };
        match self.timing {
            Timing::Isolated => self.bench(1, &op),
            // Not in a graph: a captured copy becomes a copy-engine node, slower than the SM copy
            // kernel a stream copy runs (2.4 vs 3.0 TB/s on the H100); the copy roof is the
            // latter. The sweep's copy reads far more than 2 × L2 and lasts long enough that
            // launching from the host keeps up.
            Timing::BackToBack => self.bench_stream(MIN_CALLS.max(4), &op),
        }
    }

    /// `calls` stream launches of `op` back to back between one event pair, median of `reps`.
    fn bench_stream(&self, calls: usize, op: &dyn Fn(&Self, usize) -> Result<()>) -> Result<f64> {
        for i in 0..self.warmup {
            op(self, i)?;
        }
        let mut times = Vec::with_capacity(self.reps);
        for _ in 0..self.reps {
            launch!(self, "spin_ns", cfg((1, 1, 1), 32, 0); SPIN_NS)?;
            self.start.record(&self.stream).gpu("event")?;
            for i in 0..calls {
                op(self, i)?;
            }
            self.end.record(&self.stream).gpu("event")?;
            let ms = f64::from(self.start.elapsed_ms(&self.end).gpu("event time")?);
            times.push(ms / calls as f64);
        }
        Ok(median(times))
    }

    // ---- correctness checks -------------------------------------------------------------------

    fn check_all(&mut self) -> Result<Vec<CheckReport>> {
        let mut rng = StdRng::seed_from_u64(u64::from(self.next_seed()));
        let mut out = Vec::new();
        out.extend(self.check_linear(&mut rng)?);
        out.extend(self.check_decode(&mut rng)?);
        out.push(self.check_prefill(&mut rng)?);
        out.extend(self.check_elementwise(&mut rng)?);
        Ok(out)
    }

    /// A CPU-quantized NF4 tensor on the device.
    fn upload_nf4(&self, t: &Nf4Tensor) -> Result<Nf4Weights> {
        Ok(Nf4Weights {
            packed: self.upload(&t.packed)?,
            absmax_q: self.upload(&t.absmax_q)?,
            absmax2: self.upload(&t.absmax2)?,
        })
    }

    /// Every mma tile on a shape that leaves partial tiles in M and N (K a multiple of 128).
    fn check_nf4_mma(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let (n, k, t) = (200usize, 1152usize, 37usize);
        let w = rand_f16(rng, n * k, 0.05);
        let x = rand_f16(rng, t * k, 1.0);
        let nf4 = Nf4Tensor::quantize(&to_f32(&w), n, k);
        let want = cpu::linear(&to_f32(&x), &nf4.dequantize(), t, n, k);
        let s = self.upload_nf4(&nf4)?;
        let x_d = self.upload(&x)?;
        let y_d = alloc(&self.stream, 2 * t * n)?;
        let mut reports = Vec::new();
        for tile in MMA_TILES {
            self.fill_half(&y_d, 1.0)?; // no output left over from the previous tile
            self.nf4_mma(
                tile, &s, nf4.offset, x_d.ptr, y_d.ptr, n as u32, k as u32, t as u32,
            )?;
            let y: Vec<f16> = self.dtoh(&y_d, t * n)?;
            reports.push(cpu::compare(
                &format!("{} T={t} n={n} k={k}", tile.kernel_name()),
                &to_f32(&y),
                &want,
                5e-3,
                1e-2,
            ));
        }
        Ok(reports)
    }

    fn check_linear(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let (n, k) = (72usize, 1088usize);
        let tmax = 37usize;
        let w = rand_f16(rng, n * k, 0.05);
        let x = rand_f16(rng, tmax * k, 1.0);
        let wf = to_f32(&w);
        let xf = to_f32(&x);
        let (atol, rtol) = (5e-3, 1e-2);
        let mut reports = Vec::new();
        let w_d = self.upload(&w)?;
        let x_d = self.upload(&x)?;
        let y_d = alloc(&self.stream, 2 * tmax * n)?;
        let (nu, ku) = (n as u32, k as u32);
        // Read the first `t` rows of y back and compare them with x · wrefᵀ on the CPU.
        let linear_check = |s: &Self, name: &str, t: usize, wref: &[f32]| -> Result<CheckReport> {
            let y: Vec<f16> = s.dtoh(&y_d, t * n)?;
            Ok(cpu::compare(
                name,
                &to_f32(&y),
                &cpu::linear(&xf, wref, t, n, k),
                atol,
                rtol,
            ))
        };
        // fp16 cuBLASLt.
        let m16 = self.imma_prepare(true, nu, ku, tmax as u32, (&[w_d.ptr], x_d.ptr, y_d.ptr))?;
        self.imma_run(&m16, w_d.ptr, x_d.ptr, y_d.ptr)?;
        reports.push(linear_check(self, "fp16 cuBLASLt GEMM", tmax, &wf)?);
        // fp16 cublasGemmEx (torch's call).
        self.gemmex_run(w_d.ptr, x_d.ptr, y_d.ptr, nu, ku, tmax as u32)?;
        reports.push(linear_check(self, "fp16 cublasGemmEx", tmax, &wf)?);
        // NF4.
        let nf4 = Nf4Tensor::quantize(&wf, n, k);
        let wdq = nf4.dequantize();
        let s = self.upload_nf4(&nf4)?;
        let wdq_d = alloc(&self.stream, 2 * n * k)?;
        self.nf4_dequant(&s, nf4.offset, wdq_d.ptr, (n * k) as u64)?;
        let dq: Vec<f16> = self.dtoh(&wdq_d, n * k)?;
        let wdq64: Vec<f64> = wdq.iter().map(|&v| f64::from(v)).collect();
        reports.push(cpu::compare(
            "nf4_dequant",
            &to_f32(&dq),
            &wdq64,
            1e-4,
            1e-3,
        ));
        let blocks = (n * k).div_ceil(64);
        let sc = Nf4Scratch {
            wdq: alloc(&self.stream, 2 * n * k)?,
            absmax: alloc(&self.stream, 4 * blocks)?,
            absmax_off: alloc(&self.stream, 4 * blocks)?,
        };
        self.nf4_bnb_dequant(&s, nf4.offset, &sc, (n * k) as u64)?;
        let dq: Vec<f16> = self.dtoh(&sc.wdq, n * k)?;
        reports.push(cpu::compare(
            "nf4 bitsandbytes dequantize sequence",
            &to_f32(&dq),
            &wdq64,
            1e-4,
            1e-3,
        ));
        for t in CHECK_GEMV_TOKENS.map(|t| t as usize) {
            self.nf4_gemv(&s, nf4.offset, x_d.ptr, y_d.ptr, nu, ku, t as u32)?;
            reports.push(linear_check(self, &format!("nf4_gemv T={t}"), t, &wdq)?);
        }
        self.imma_run(&m16, wdq_d.ptr, x_d.ptr, y_d.ptr)?;
        reports.push(linear_check(
            self,
            "nf4_dequant + cuBLASLt T=37",
            tmax,
            &wdq,
        )?);
        reports.extend(self.check_nf4_mma(rng)?);
        // int8.
        let wq = quant::quantize_rows(&wf, n, k);
        let wq_f = wq.dequantize(k);
        let st = I8Weights {
            wq: self.upload(&wq.q)?,
            wscale: self.upload(&wq.scale)?,
        };
        let act = Int8Act {
            // Room for T rounded up to 4 (see imma_prepare).
            xq: alloc(&self.stream, tmax.next_multiple_of(4) * k)?,
            sx: alloc(&self.stream, 4 * tmax)?,
            acc: alloc(&self.stream, 4 * tmax.next_multiple_of(4) * n)?,
        };
        for t in CHECK_GEMV_TOKENS.map(|t| t as usize) {
            self.w8a16(&st, x_d.ptr, y_d.ptr, nu, ku, t as u32)?;
            reports.push(linear_check(self, &format!("w8a16_gemv T={t}"), t, &wq_f)?);
        }
        let m = self.imma_prepare(
            false,
            nu,
            ku,
            tmax as u32,
            (&[st.wq.ptr], act.xq.ptr, act.acc.ptr),
        )?;
        self.w8a8(&m, &st, &act, x_d.ptr, y_d.ptr, nu, ku, tmax as u32)?;
        let y: Vec<f16> = self.dtoh(&y_d, tmax * n)?;
        let xq = quant::quantize_rows(&xf, tmax, k);
        let mut want = vec![0f64; tmax * n];
        for ti in 0..tmax {
            for j in 0..n {
                let dot: i64 = (0..k)
                    .map(|c| i64::from(xq.q[ti * k + c]) * i64::from(wq.q[j * k + c]))
                    .sum();
                want[ti * n + j] = dot as f64 * f64::from(xq.scale[ti]) * f64::from(wq.scale[j]);
            }
        }
        reports.push(cpu::compare(
            "w8a8 quantize + IMMA + dequantize T=37",
            &to_f32(&y),
            &want,
            atol,
            rtol,
        ));
        Ok(reports)
    }

    fn check_decode(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let (heads, kv_heads) = (CHECK_DECODE_HEADS.0 as usize, CHECK_DECODE_HEADS.1 as usize);
        let mut reports = Vec::new();
        for kv in KvDtype::ALL {
            // Split contexts (several partitions, some empty) and, with 140 short sequences, a
            // grid large enough for the single-partition path.
            let many: Vec<i32> = (0..140).map(|i| 1 + (i * 7) % 64).collect();
            for ctx in [vec![37i32, 600, 1300], vec![100, 512, 17], many] {
                let b = ctx.len();
                let max_ctx = *ctx.iter().max().unwrap_or(&1) as u32;
                let max_blocks = max_ctx.div_ceil(16) as usize;
                let blocks = b * max_blocks;
                let mut table: Vec<i32> = (0..blocks as i32).collect();
                for i in (1..table.len()).rev() {
                    table.swap(i, rng.random_range(0..=i));
                }
                let cache_len = blocks * kv_heads * 16 * 128;
                let q = rand_f16(rng, b * heads * 128, 1.0);
                let (kc_d, vc_d, kf, vf) = match kv {
                    KvDtype::Fp16 => {
                        let kc = rand_f16(rng, cache_len, 1.0);
                        let vc = rand_f16(rng, cache_len, 1.0);
                        (
                            self.upload(&kc)?,
                            self.upload(&vc)?,
                            to_f32(&kc),
                            to_f32(&vc),
                        )
                    }
                    KvDtype::Int8 => {
                        let kc: Vec<i8> = (0..cache_len)
                            .map(|_| rng.random_range(-127..=127i8))
                            .collect();
                        let vc: Vec<i8> = (0..cache_len)
                            .map(|_| rng.random_range(-127..=127i8))
                            .collect();
                        let deq = |v: &[i8]| {
                            v.iter()
                                .map(|&x| f32::from(x) * INT8_KV_SCALE)
                                .collect::<Vec<f32>>()
                        };
                        (self.upload(&kc)?, self.upload(&vc)?, deq(&kc), deq(&vc))
                    }
                };
                let base = self.decode_part(b as u32, kv_heads as u32, max_ctx);
                let nparts = max_ctx.div_ceil(min_part(base).min(ODD_PART)) as usize;
                let d = DecodeState {
                    key: (kv, heads as u32, kv_heads as u32),
                    kc: kc_d,
                    vc: vc_d,
                    table: self.upload(&table)?,
                    max_blocks: max_blocks as u32,
                    blocks,
                    q: self.upload(&q)?,
                    out: alloc(&self.stream, 2 * b * heads * 128)?,
                    part_o: alloc(&self.stream, 4 * b * heads * nparts * 128)?,
                    part_m: alloc(&self.stream, 4 * b * heads * nparts)?,
                    part_l: alloc(&self.stream, 4 * b * heads * nparts)?,
                };
                let lens = self.upload(&ctx)?;
                let want = cpu::decode_attention(
                    &to_f32(&q),
                    &kf,
                    &vf,
                    &table,
                    &ctx,
                    heads,
                    kv_heads,
                    max_blocks,
                );
                let label = if ctx.len() > 8 {
                    format!("{} contexts of 1..64", ctx.len())
                } else {
                    format!("contexts {ctx:?}")
                };
                // Every kernel at the base partition and half of it; the one-pass kernels also 8x
                // longer and at a size that is no power of two (the sweep tries such sizes).
                let runs = DecodeKernel::for_kv(kv).flat_map(|k| {
                    let long = (k.max_part() > PART).then_some([(k, 8 * base), (k, ODD_PART)]);
                    [(k, base), (k, min_part(base))]
                        .into_iter()
                        .chain(long.into_iter().flatten())
                });
                for (kernel, part) in runs {
                    self.decode(
                        kv,
                        &d,
                        d.table.ptr,
                        d.max_blocks,
                        lens.ptr,
                        heads as u32,
                        kv_heads as u32,
                        b as u32,
                        max_ctx,
                        kernel,
                        part,
                    )?;
                    let y: Vec<f16> = self.dtoh(&d.out, b * heads * 128)?;
                    let size = if part == ODD_PART {
                        ", 3-block partitions"
                    } else if part > base {
                        ", 8x partitions"
                    } else if part < base {
                        ", half partitions"
                    } else {
                        ""
                    };
                    reports.push(cpu::compare(
                        &format!("paged_decode ({}{size}) {kv} KV, {label}", kernel.label()),
                        &to_f32(&y),
                        &want,
                        2e-3,
                        1e-2,
                    ));
                }
            }
        }
        Ok(reports)
    }

    fn check_prefill(&mut self, rng: &mut StdRng) -> Result<CheckReport> {
        let (t, heads, kv_heads) = (200usize, 4usize, 2usize);
        let q = rand_f16(rng, t * heads * 128, 1.0);
        let k = rand_f16(rng, t * kv_heads * 128, 1.0);
        let v = rand_f16(rng, t * kv_heads * 128, 1.0);
        let (qd, kd, vd) = (self.upload(&q)?, self.upload(&k)?, self.upload(&v)?);
        let od = alloc(&self.stream, 2 * t * heads * 128)?;
        self.prefill(
            qd.ptr,
            kd.ptr,
            vd.ptr,
            od.ptr,
            t as u32,
            heads as u32,
            kv_heads as u32,
        )?;
        let y: Vec<f16> = self.dtoh(&od, t * heads * 128)?;
        let want =
            cpu::prefill_attention(&to_f32(&q), &to_f32(&k), &to_f32(&v), t, heads, kv_heads);
        Ok(cpu::compare(
            "prefill_attn T=200 (causal)",
            &to_f32(&y),
            &want,
            2e-3,
            2e-2,
        ))
    }

    fn check_elementwise(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let (t, width) = (5usize, 4104usize);
        let x = rand_f16(rng, t * width, 1.0);
        let r = rand_f16(rng, t * width, 1.0);
        let w = rand_f16(rng, width, 1.0);
        let (xd, rd, wd) = (self.upload(&x)?, self.upload(&r)?, self.upload(&w)?);
        let yd = alloc(&self.stream, 2 * t * width)?;
        self.rmsnorm(xd.ptr, rd.ptr, wd.ptr, yd.ptr, width as u32, t as u32)?;
        let y: Vec<f16> = self.dtoh(&yd, t * width)?;
        let r2: Vec<f16> = self.dtoh(&rd, t * width)?;
        let (want_y, want_r) =
            cpu::rmsnorm_residual(&to_f32(&x), &to_f32(&r), &to_f32(&w), width, 1e-5);
        let mut out = vec![
            cpu::compare(
                "rmsnorm_residual (output)",
                &to_f32(&y),
                &want_y,
                5e-3,
                1e-2,
            ),
            cpu::compare(
                "rmsnorm_residual (residual)",
                &to_f32(&r2),
                &want_r,
                5e-3,
                1e-2,
            ),
        ];
        let input = rand_f16(rng, t * 2 * width, 3.0);
        let id = self.upload(&input)?;
        let od = alloc(&self.stream, 2 * t * width)?;
        self.silu(id.ptr, od.ptr, width as u32, t as u32)?;
        let y: Vec<f16> = self.dtoh(&od, t * width)?;
        out.push(cpu::compare(
            "silu_mul",
            &to_f32(&y),
            &cpu::silu_mul(&to_f32(&input), width),
            5e-3,
            1e-2,
        ));
        Ok(out)
    }
}

impl KernelTimer for CudaTimer {
    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn check(&mut self) -> Result<Vec<CheckReport>> {
        let r = self.check_all()?;
        self.stream.synchronize().gpu("synchronize")?;
        Ok(r)
    }

    fn time(&mut self, job: &Job) -> Result<f64> {
        let began = std::time::Instant::now();
        self.sustain.set(job.sustain_group());
        let ms = match *job {
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
        }
        .map_err(|e| Error::Gpu(format!("timing {job:?}: {e}")))?;
        let _ = &self.ctx;
        if self.debug_timing {
            eprintln!(
                "job {job:?}: {ms:.5} ms, {:.1} ms wall",
                began.elapsed().as_secs_f64() * 1e3
            );
        }
        Ok(ms)
    }

    fn method(&self) -> String {
        let common = format!(
            "random inputs (never all zero), {}; \
             cuBLASLt fp16 GEMM (CUBLAS_COMPUTE_32F) and int8 IMMA GEMM (CUBLAS_COMPUTE_32I), TN, 32 MB workspace, \
             fastest of the top-16 heuristic algorithms per shape and token count (chosen on {SELECT_REPS} short replays each); \
             cublasGemmEx fp16 (torch's F.linear call) with a 32 MB workspace; \
             paged decode: fastest of the kernel variants (fp16 KV: one-pass online-softmax on CUDA cores with 8 warps, 4 warps, 4 and 8 warps + cp.async pipeline, and on tensor cores (mma.sync) with 4 and 8 warps + cp.async pipeline; int8 KV: the CUDA-core ones, two-pass instead of the 4-warp one) x partition sizes (powers of two from half the base one to 8x it, and those that make one or two full waves of the kernel's resident CTAs; one-pass: up to {STREAM_MAX_PART} tokens) per point, chosen on {SELECT_REPS} short replays each and then timed in full, blocks scattered at random over a pool as large as the blocks in use; \
             custom kernels compiled by NVRTC for this GPU",
            if self.fill_stream.cu_stream().is_null() {
                "written on the legacy default stream, as PyTorch writes its tensors (a process that has done so times small GEMMs up to 6% slower)"
            } else {
                "written on the timer's own stream (CARDPLAN_FILL_OWN_STREAM)"
            }
        );
        match self.timing {
            Timing::Isolated => format!(
                "isolated: CUDA events around one call (or fixed call sequence) each; {} warm-up calls, median of {} timings; \
                 before each timed call a {} MB memset evicts the {} MB L2; {common}",
                self.warmup,
                self.reps,
                self.flush.bytes >> 20,
                self.info.l2_bytes >> 20
            ),
            Timing::BackToBack => {
                let r = self.rot.get();
                let capped = if r.capped == 0 {
                    "every input set reached 2x L2".to_string()
                } else {
                    format!(
                        "{} of {} input sets stayed below 2x L2 (the {MAX_COPIES}-copy cap or the preallocated \
                         pool/rows bit; inputs of at most {:.2} MB per call, smallest rotated footprint {:.2} MB, \
                         so part of their reads can hit in L2)",
                        r.capped,
                        r.jobs,
                        r.capped_max_bytes as f64 / 1e6,
                        r.capped_min_footprint as f64 / 1e6
                    )
                };
                format!(
                    "back-to-back: a CUDA graph of R calls (R = {}..{}: at least the number of copies and {MIN_CALLS}, \
                     raised until one replay lasts {SAMPLE_TARGET_MS} ms, at most {MAX_CALLS}, then a whole number of rounds \
                     over the copies) replayed between one \
                     CUDA-event pair after a {} us busy-wait, time = elapsed / R; median of {} replays after \
                     at least {} warm-up calls (each copy once) and one warm-up replay; compute-bound jobs (GEMMs at >= {COMPUTE_BOUND_MIN_TOKENS} tokens, \
                     prefill attention) under sustained load: their replays last >= {SUSTAIN_SAMPLE_MS} ms and follow {} ms of \
                     the job's own graph replayed back to back (once per GEMM shape and token count, shared by its paths; \
                     the job that heats takes its samples over at least {} ms, the clock's swings): the \
                     power-capped clock a GPU serving at capacity runs at, not a burst's boost clock; \
                     other jobs starting within {} ms of such samples first replay their own graph for {} ms \
                     (the clock recovers from the cap); \
                     the calls rotate over S copies of the large inputs \
                     (weights and their scales, KV cache blocks via disjoint block tables, prefill Q/K/V, \
                     elementwise rows) with S x bytes read >= 2x the {} MB L2 (S <= {MAX_COPIES}, <= {} GB of copies): \
                     {capped}; activations (GEMM x, decode q) shared, as L2-resident in a forward pass; \
                     no cache flush; the device copy (copy roof) is launched back to back from the \
                     stream, not a graph (a captured copy runs on a copy engine); {common}",
                    r.min_calls,
                    r.max_calls,
                    SPIN_NS / 1000,
                    self.reps,
                    self.warmup,
                    SUSTAIN_HEAT.as_millis(),
                    SUSTAIN_WINDOW.as_millis(),
                    RECOVER_AFTER.as_millis(),
                    RECOVER_HEAT.as_millis(),
                    self.info.l2_bytes >> 20,
                    MAX_ROTATION_BYTES >> 30
                )
            }
        }
    }

    fn timing(&self) -> Timing {
        self.timing
    }
}

/// Device memory held and never read, to test whether what a process holds moves kernel times
/// (`CARDPLAN_BALLAST_MB=M[xN]`: N allocations of M MB from `cuMemAlloc`, as torch's caching
/// allocator makes one per large tensor). Filled once, so the pages are touched: on the timer's
/// stream, or with `CARDPLAN_BALLAST_LEGACY` by synchronous memsets on the legacy stream (which,
/// with `CARDPLAN_FILL_OWN_STREAM`, moves small GEMMs to a serving process's level from 8
/// allocations on: diag-legacy-h200.md).
struct Ballast(Vec<dsys::CUdeviceptr>);

impl Ballast {
    fn from_env(stream: &Arc<CudaStream>) -> Result<Option<Ballast>> {
        let Ok(v) = std::env::var("CARDPLAN_BALLAST_MB") else {
            return Ok(None);
        };
        let bad = || {
            Error::BadInput(format!(
                "CARDPLAN_BALLAST_MB: expected MB[xCOUNT], got {v:?}"
            ))
        };
        let (mb, count) = v.split_once('x').unwrap_or((v.as_str(), "1"));
        let mb: usize = mb.parse().map_err(|_| bad())?;
        let count: usize = count.parse().map_err(|_| bad())?;
        let bytes = mb << 20;
        let legacy = std::env::var_os("CARDPLAN_BALLAST_LEGACY").is_some();
        let mut b = Ballast(Vec::with_capacity(count));
        for _ in 0..count {
            // SAFETY: a plain allocation, freed once in Drop.
            let p = unsafe { dres::malloc_sync(bytes) }.gpu("ballast allocation")?;
            b.0.push(p);
            // SAFETY: p is a live allocation of `bytes`.
            unsafe {
                if legacy {
                    dres::memset_d8_sync(p, 0x3c, bytes)
                } else {
                    dres::memset_d8_async(p, 0x3c, bytes, stream.cu_stream())
                }
            }
            .gpu("ballast fill")?;
        }
        stream.synchronize().gpu("synchronize")?;
        let on = if legacy { "legacy" } else { "timer's" };
        eprintln!("ballast: {count} x {mb} MB from cuMemAlloc, filled on the {on} stream");
        Ok(Some(b))
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: allocated by malloc_sync in from_env and freed once.
            let _ = unsafe { dres::free_sync(p) };
        }
    }
}

fn alloc(stream: &Arc<CudaStream>, bytes: usize) -> Result<Buf> {
    let bytes = bytes.max(16);
    // SAFETY: the memory is always written (filled or produced by a kernel) before it is read.
    let mem = unsafe { stream.alloc::<u8>(bytes) }.map_err(|e| {
        Error::Gpu(format!(
            "cannot allocate {} MB on the GPU: {e:?}",
            bytes >> 20
        ))
    })?;
    let ptr = {
        let (p, _sync) = mem.device_ptr(stream);
        p
    };
    Ok(Buf {
        _mem: mem,
        ptr,
        bytes,
    })
}

/// A partition of three KV blocks, checked because wave-fitted partitions are multiples of a
/// block but not powers of two.
const ODD_PART: u32 = 48;

/// The smallest decode partition tried: half the base one (more CTAs for small batches), at
/// least two KV blocks.
fn min_part(base: u32) -> u32 {
    (base / 2).max(32)
}

/// Partitions (multiples of a 16-token KV block, at least `floor`) that make `pairs` sequence ×
/// KV-head pairs one or two full waves of `resident` CTAs, where splitting is needed to fill one.
fn wave_parts(pairs: u32, context: u32, resident: u32, floor: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for waves in [1, 2] {
        let nparts = waves * resident / pairs.max(1);
        if nparts < 2 {
            continue;
        }
        let part = context.div_ceil(nparts).next_multiple_of(16).max(floor);
        if part < context && !out.contains(&part) {
            out.push(part);
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[m],
        _ => (v[m - 1] + v[m]) / 2.0,
    }
}

fn rand_f16(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f16> {
    (0..n)
        .map(|_| f16::from_f32(rng.random_range(-scale..scale)))
        .collect()
}

fn to_f32(v: &[f16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// Where the loaded cuBLAS comes from, when the process map says (Linux): the same version
/// number can be a different build (the system toolkit's, or the one torch ships).
fn cublas_origin() -> String {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| {
            maps.lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .find(|p| p.contains("libcublasLt.so"))
                .map(|p| format!(" ({p})"))
        })
        .unwrap_or_default()
}

fn device_info(ctx: &Arc<CudaContext>) -> Result<DeviceInfo> {
    use dsys::CUdevice_attribute as A;
    let name = ctx.name().gpu("device name")?;
    let sm_count = ctx
        .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .gpu("SM count")? as u32;
    let l2_bytes = ctx
        .attribute(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        .gpu("L2 size")? as u64;
    let memory_bytes = ctx.total_mem().gpu("memory size")? as u64;
    let (cc_major, cc_minor) = ctx.compute_capability().gpu("compute capability")?;
    let mut drv = 0i32;
    // SAFETY: plain out-parameter query.
    unsafe { dsys::cuDriverGetVersion(&mut drv) }
        .result()
        .gpu("driver version")?;
    let kernel_module = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .find(|w| {
                    w.split('.').count() >= 2
                        && w.split('.')
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                })
                .map(str::to_string)
        });
    let driver = match kernel_module {
        Some(v) => format!("{v} (CUDA driver API {}.{})", drv / 1000, drv % 1000 / 10),
        None => format!("CUDA driver API {}.{}", drv / 1000, drv % 1000 / 10),
    };
    let (mut maj, mut min) = (0i32, 0i32);
    // SAFETY: plain out-parameter queries.
    let lt_ver = unsafe {
        let _ = cudarc::nvrtc::sys::nvrtcVersion(&mut maj, &mut min);
        ltsys::cublasLtGetVersion()
    };
    Ok(DeviceInfo {
        name,
        sm_count,
        compute_capability: (cc_major as u32, cc_minor as u32),
        driver,
        cuda: format!("NVRTC {maj}.{min}, cuBLASLt {lt_ver}{}", cublas_origin()),
        l2_bytes,
        memory_bytes,
    })
}

/// Calls in one timed graph: enough for `target_ms` at `est_ms` a call (at least the copies and
/// [`MIN_CALLS`], at most [`MAX_CALLS`]), then a whole number of rounds over the `copies`. With a
/// partial round the next replay would start on a copy read only a call or two before; whole
/// rounds give every copy the same reuse distance. (F.linear on an H200 showed no measurable
/// effect of the remainder: benches/gpu-results/diag-calls-h200.md.)
fn replay_calls(est_ms: f64, target_ms: f64, copies: usize) -> usize {
    let copies = copies.clamp(1, MAX_CALLS);
    let by_time = if est_ms > 0.0 {
        (target_ms / est_ms).ceil().min(MAX_CALLS as f64) as usize
    } else {
        MAX_CALLS
    };
    let calls = by_time.max(copies).clamp(MIN_CALLS, MAX_CALLS);
    let rounds = calls.div_ceil(copies);
    if rounds * copies <= MAX_CALLS {
        rounds * copies
    } else {
        (MAX_CALLS / copies) * copies
    }
}

/// Dynamic shared memory of an nf4_mma kernel: two buffers of an A and a B tile, rows padded by
/// 8 halves (kernels/nf4_mma.cu).
fn mma_smem(tile: MmaTile) -> u32 {
    2 * (tile.mt + tile.nt) * (tile.kc + 8) * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_parts_fill_one_and_two_waves() {
        // 16 sequences × 8 KV heads, 4096 tokens, 396 resident CTAs (3 per SM on 132 SMs):
        // 3 and 6 partitions, i.e. 384 and 768 CTAs.
        let parts = wave_parts(128, 4096, 396, 256);
        assert_eq!(parts, vec![1376, 688]);
        for (p, waves) in parts.iter().zip([1, 2]) {
            assert_eq!(p % 16, 0);
            let ctas = 128 * 4096u32.div_ceil(*p);
            assert!(
                ctas <= waves * 396 && ctas > (waves - 1) * 396,
                "{p}: {ctas} CTAs"
            );
        }
    }

    #[test]
    fn replay_calls_are_whole_rounds_over_the_copies() {
        // o_proj at T = 64 on an H200: 4 copies, ~11.4 µs a call, 0.3 ms target: 27 calls by
        // time, rounded up to 28.
        assert_eq!(replay_calls(0.0114, 0.3, 4), 28);
        // qkv at T = 1: 3 copies, 20 by time -> 21.
        assert_eq!(replay_calls(0.0152, 0.3, 3), 21);
        // Rounding up would pass the cap: round down instead (64 by time, 3 copies -> 63).
        assert_eq!(replay_calls(0.001, 0.3, 3), 63);
        // One copy: at least MIN_CALLS.
        assert_eq!(replay_calls(5.0, 0.3, 1), MIN_CALLS);
        // A failed estimate sizes for the cap.
        assert_eq!(replay_calls(0.0, 0.3, 5), 60);
        for copies in 1..=MAX_COPIES {
            for est in [0.0, 0.001, 0.01, 0.05, 0.3, 3.0] {
                let calls = replay_calls(est, 2.0, copies);
                assert_eq!(calls % copies, 0, "{copies} copies, {est} ms: {calls}");
                assert!((MIN_CALLS.max(copies)..=MAX_CALLS).contains(&calls));
            }
        }
    }

    #[test]
    fn wave_parts_respect_the_floor_and_skip_full_grids() {
        // One sequence: the fitted size would be below the floor, which wins.
        assert_eq!(wave_parts(8, 512, 528, 64), vec![64]);
        // Enough pairs to fill the GPU without splitting: nothing to add.
        assert!(wave_parts(2048, 8192, 396, 256).is_empty());
        // A partition as long as the context is no split.
        assert!(wave_parts(128, 16, 396, 16).is_empty());
    }
}
