//! The device and its memory: GPU 0's context and streams, the kernels of `kernels/*.cu`
//! compiled for it, raw-pointer buffers, and the random inputs written into them.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublaslt::sys as ltsys;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, result as dres, sys as dsys,
};

use super::attention::PREFILL_SMEM;
use super::gemm::mma_smem;
use crate::calibrate::bnb::MMA_TILES;
use crate::calibrate::kernels::QUANT_KERNELS;
use crate::calibrate::kernels::{DecodeKernel, Instances};
use crate::calibrate::nvrtc;
use crate::calibrate::sweep::SweepSpec;
use crate::calibrate::timer::DeviceInfo;
use crate::catalog::quant::KvDtype;
use crate::error::{Error, Result};

const SOURCES: [(&str, &str); 7] = [
    ("util.cu", include_str!("../../../kernels/util.cu")),
    ("nf4.cu", include_str!("../../../kernels/nf4.cu")),
    ("nf4_mma.cu", include_str!("../../../kernels/nf4_mma.cu")),
    ("int8.cu", include_str!("../../../kernels/int8.cu")),
    (
        "attention.cu",
        include_str!("../../../kernels/attention.cu"),
    ),
    (
        "elementwise.cu",
        include_str!("../../../kernels/elementwise.cu"),
    ),
    ("quant.cu", include_str!("../../../kernels/quant.cu")),
];

/// CUDA results as the crate's GPU error, naming what failed.
pub(super) trait GpuErr<T> {
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
pub(super) struct Buf {
    _mem: CudaSlice<u8>,
    pub(super) ptr: u64,
    pub(super) bytes: usize,
}

/// At least 16 bytes on the device, allocated on `stream`, never read before it is written.
pub(super) fn alloc(stream: &Arc<CudaStream>, bytes: usize) -> Result<Buf> {
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

pub(super) fn cfg(grid: (u32, u32, u32), block: u32, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    }
}

/// A 1-D grid of `block`-thread CTAs over `items`, at most `cap` CTAs (kernels loop over the rest).
pub(super) fn grid_for(items: u64, block: u32, cap: u64) -> (u32, u32, u32) {
    (items.div_ceil(u64::from(block)).clamp(1, cap) as u32, 1, 1)
}

/// GPU 0's context, with a stream of its own: the legacy default stream cannot be captured into
/// a graph.
pub(super) fn open() -> Result<(Arc<CudaContext>, Arc<CudaStream>)> {
    let ctx = CudaContext::new(0).map_err(|e| {
        Error::Gpu(format!(
            "cannot calibrate: no usable CUDA GPU ({e:?}); is the NVIDIA driver loaded and a GPU visible?"
        ))
    })?;
    // SAFETY: all work goes to one stream and the timer synchronizes it explicitly before
    // reading results; without per-buffer events a graph capture records only our kernels.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().gpu("stream")?;
    Ok((ctx, stream))
}

pub(super) fn event(ctx: &Arc<CudaContext>) -> Result<CudaEvent> {
    ctx.new_event(Some(dsys::CUevent_flags::CU_EVENT_DEFAULT))
        .gpu("event")
}

/// Every kernel the sweep and the checks need, compiled for this GPU's architecture and loaded,
/// with the dynamic shared memory each asks for allowed.
/// The kernels, and why the quantized paths are off when kernels/quant.cu did not compile (its
/// kernels are new: the rest of a calibration goes on without them).
pub(super) fn load_kernels(
    ctx: &Arc<CudaContext>,
    spec: &SweepSpec,
) -> Result<(HashMap<String, CudaFunction>, Option<String>)> {
    let (major, minor) = ctx.compute_capability().gpu("compute capability")?;
    let mut include_paths = Vec::new();
    if let Ok(home) = std::env::var("CUDA_HOME") {
        include_paths.push(format!("{home}/include"));
    }
    include_paths.push("/usr/local/cuda/include".to_string());
    let inst = Instances::for_spec(spec);
    let images = compile_sources(&inst.prefix(), &include_paths, (major, minor));
    let mut names = inst.kernel_names();
    let mut f = HashMap::new();
    let mut quant_off = None;
    for (file, image) in images {
        if file == "quant.cu"
            && let Err(e) = &image
        {
            quant_off = Some(format!(
                "NVRTC could not compile kernels/quant.cu for sm_{major}{minor}: {e}"
            ));
            names.retain(|n| !QUANT_KERNELS.contains(&n.as_str()));
            continue;
        }
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
    allow_dynamic_smem(&f, &inst)?;
    Ok((f, quant_off))
}

/// Each source compiled on a thread of its own; NVRTC emits SASS for this GPU, so loading needs
/// no JIT.
fn compile_sources(
    prefix: &str,
    include_paths: &[String],
    sm: (i32, i32),
) -> Vec<(&'static str, std::result::Result<Vec<u8>, String>)> {
    std::thread::scope(|sc| {
        let handles: Vec<_> = SOURCES
            .iter()
            .map(|&(file, src)| {
                let h = sc.spawn(move || {
                    nvrtc::compile_cubin(&format!("{prefix}{src}"), file, sm, include_paths)
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
    })
}

/// Kernels that ask for more dynamic shared memory than the default 48 KB may use it.
fn allow_dynamic_smem(f: &HashMap<String, CudaFunction>, inst: &Instances) -> Result<()> {
    let set = |name: &str, bytes: u32, what: &str| -> Result<()> {
        let func = f
            .get(name)
            .ok_or_else(|| Error::Internal(format!("kernel {name} not loaded")))?;
        func.set_attribute(
            dsys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
        .gpu(what)
    };
    set("prefill_attn", PREFILL_SMEM, "prefill shared memory")?;
    for tile in MMA_TILES {
        set(&tile.kernel_name(), mma_smem(tile), "nf4 mma shared memory")?;
    }
    for kv in KvDtype::ALL {
        for k in DecodeKernel::for_kv(kv).filter(|k| k.dyn_smem(kv) > 0) {
            for &g in &inst.groups {
                let name = k.name(kv, g);
                if f.contains_key(&name) {
                    set(&name, k.dyn_smem(kv), "decode shared memory")?;
                }
            }
        }
    }
    Ok(())
}

/// GPU 0 as the timer uses it: its streams, its loaded kernels, and the seed of the random
/// inputs.
pub(super) struct Device {
    /// Held so the context outlives the timer's use of it.
    _ctx: Arc<CudaContext>,
    /// Where everything is launched and timed.
    pub(super) stream: Arc<CudaStream>,
    /// Where inputs are written: the legacy default stream, as a PyTorch process writes its
    /// weights and runs its work. A process that has written several allocations there times
    /// small GEMMs up to 6% slower (o_proj at 1-64 tokens on an H200), whatever stream the timed
    /// graph runs on (docs/ACCURACY.md, "FP16 GEMMs against F.linear"); a serving engine is such
    /// a process.
    pub(super) fill_stream: Arc<CudaStream>,
    kernels: HashMap<String, CudaFunction>,
    pub(super) info: DeviceInfo,
    seed: u32,
}

impl Device {
    pub(super) fn new(
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        kernels: HashMap<String, CudaFunction>,
        info: DeviceInfo,
        seed: u32,
    ) -> Device {
        let fill_stream = ctx.default_stream();
        Device {
            _ctx: ctx,
            stream,
            fill_stream,
            kernels,
            info,
            seed,
        }
    }

    pub(super) fn func(&self, name: &str) -> Result<&CudaFunction> {
        self.kernels
            .get(name)
            .ok_or_else(|| Error::Internal(format!("kernel {name} not loaded")))
    }

    /// The next seed of the random inputs (a PCG step).
    pub(super) fn next_seed(&mut self) -> u32 {
        self.seed = self
            .seed
            .wrapping_mul(747_796_405)
            .wrapping_add(2_891_336_453);
        self.seed
    }

    pub(super) fn alloc(&self, bytes: usize) -> Result<Buf> {
        alloc(&self.stream, bytes)
    }

    /// Copy `data` to `dst` (an allocation of at least its size) and wait for it.
    pub(super) fn htod<T: DeviceRepr>(&self, data: &[T], dst: u64) -> Result<()> {
        // SAFETY: dst is an allocation of at least `size_of_val(data)` (callers size it from
        // `data`).
        unsafe {
            dres::memcpy_htod_async(dst, data, self.stream.cu_stream()).gpu("copy to GPU")?;
        }
        self.stream.synchronize().gpu("synchronize")
    }

    pub(super) fn dtoh<T: DeviceRepr + Default + Clone>(
        &self,
        src: &Buf,
        len: usize,
    ) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        if len * std::mem::size_of::<T>() > src.bytes {
            return Err(Error::Internal(format!(
                "reading {len} values from a {}-byte buffer",
                src.bytes
            )));
        }
        self.stream.synchronize().gpu("synchronize")?;
        // SAFETY: src holds at least len elements of T (checked above).
        unsafe { dres::memcpy_dtoh_sync(&mut out, src.ptr) }.gpu("copy from GPU")?;
        Ok(out)
    }

    pub(super) fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<Buf> {
        let b = self.alloc(std::mem::size_of_val(data).max(16))?;
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

    /// Random halves in `[-scale, scale)`.
    pub(super) fn fill_half(&mut self, b: &Buf, scale: f32) -> Result<()> {
        let n = (b.bytes / 2) as u64;
        let seed = self.next_seed();
        self.on_fill_stream(|| {
            launch!(@on self.fill_stream, self, "fill_half", cfg(grid_for(n, 256, 65_536), 256, 0); b.ptr, n, seed, scale)
        })
    }

    pub(super) fn fill_u8(&mut self, b: &Buf) -> Result<()> {
        let n = b.bytes as u64;
        let seed = self.next_seed();
        self.on_fill_stream(|| {
            launch!(@on self.fill_stream, self, "fill_u8", cfg(grid_for(n, 256, 65_536), 256, 0); b.ptr, n, seed)
        })
    }

    /// Random e4m3 bytes of magnitude 2^-3..2, no NaN codes.
    pub(super) fn fill_e4m3(&mut self, b: &Buf) -> Result<()> {
        let n = b.bytes as u64;
        let seed = self.next_seed();
        self.on_fill_stream(|| {
            launch!(@on self.fill_stream, self, "fill_e4m3", cfg(grid_for(n, 256, 65_536), 256, 0); b.ptr, n, seed)
        })
    }

    pub(super) fn fill_f32(&mut self, b: &Buf, lo: f32, hi: f32) -> Result<()> {
        let n = (b.bytes / 4) as u64;
        let seed = self.next_seed();
        self.on_fill_stream(|| {
            launch!(@on self.fill_stream, self, "fill_f32", cfg(grid_for(n, 256, 65_536), 256, 0); b.ptr, n, seed, lo, hi)
        })
    }

    /// `elems` random halves in `[-scale, scale)`.
    pub(super) fn new_half(&mut self, elems: u64, scale: f32) -> Result<Buf> {
        let b = self.alloc((2 * elems) as usize)?;
        self.fill_half(&b, scale)?;
        Ok(b)
    }
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
                .map(library_origin)
        })
        .unwrap_or_default()
}

/// " (libcublasLt.so.13.1.0.3 of the CUDA toolkit)": which cuBLASLt a run loaded, by file name
/// and kind of install, never by the folder (a profile is shared; the machine's paths are not).
fn library_origin(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let install = if path.contains("site-packages") || path.contains("dist-packages") {
        "a Python wheel"
    } else if path.contains("cuda") {
        "the CUDA toolkit"
    } else {
        "the system"
    };
    format!(" ({file} of {install})")
}

/// The device's name, size and software versions, for the profile's provenance. Called once
/// cuBLASLt is loaded, so that [`cublas_origin`] finds it.
pub(super) fn device_info(ctx: &Arc<CudaContext>) -> Result<DeviceInfo> {
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
    let driver = driver_version()?;
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

/// The kernel module's version (Linux) and the driver API's.
fn driver_version() -> Result<String> {
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
    Ok(match kernel_module {
        Some(v) => format!("{v} (CUDA driver API {}.{})", drv / 1000, drv % 1000 / 10),
        None => format!("CUDA driver API {}.{}", drv / 1000, drv % 1000 / 10),
    })
}

#[cfg(test)]
mod tests {
    use super::library_origin;

    #[test]
    fn the_library_is_named_by_file_and_install_never_by_folder() {
        let toolkit = "/usr/local/cuda-13.0/targets/x86_64-linux/lib/libcublasLt.so.13.1.0.3";
        assert_eq!(
            library_origin(toolkit),
            " (libcublasLt.so.13.1.0.3 of the CUDA toolkit)"
        );
        let wheel = "/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib/libcublasLt.so.12";
        assert_eq!(
            library_origin(wheel),
            " (libcublasLt.so.12 of a Python wheel)"
        );
        assert!(!library_origin("/lib/libcublasLt.so.13").contains('/'));
    }
}
