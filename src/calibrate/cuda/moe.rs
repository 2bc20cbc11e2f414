//! The grouped MoE GEMM on the GPU ([`crate::calibrate::moe`]): every expert's weights of one
//! linear in one buffer, the touched experts' rows of x in expert order, and three ways to run
//! them (one grouped cuBLAS call, one strided-batched call per equal-row group, a loop of
//! `cublasGemmEx`). Each path is checked against the CPU reference before any timing; a path
//! that fails its check or that cuBLAS refuses is turned off (its jobs are skipped with the
//! reason), the others go on.

use std::collections::HashMap;

use cudarc::cublas::sys as bsys;
use cudarc::driver::{CudaFunction, PushKernelArg};
use half::{bf16, f16};
use rand::RngExt;
use rand::rngs::StdRng;

use super::CudaTimer;
use super::device::{Buf, GpuErr, cfg, grid_for};
use crate::calibrate::moe::{self, MoeDtype, MoeJob, MoePath};
use crate::calibrate::reference as cpu;
use crate::calibrate::timer::CheckReport;
use crate::error::{Error, Result};

/// Random bf16 values in `[-scale, scale)` from a hash of the index (no header needed: the
/// float's top 16 bits, rounded to nearest even).
const FILL_BF16: &str = r#"
extern "C" __global__ void fill_bf16(unsigned short* p, unsigned long long n, unsigned int seed, float scale) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned int h = ((unsigned int)i * 2654435761u) ^ ((unsigned int)(i >> 32) * 40503u) ^ seed;
        h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
        float u = (float)(h >> 8) * (1.0f / 16777216.0f);
        unsigned int b = __float_as_uint((2.0f * u - 1.0f) * scale);
        p[i] = (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    }
}
"#;

/// What the MoE paths need beyond the rest of the timer: the bf16 fill kernel (compiled on
/// first use), the paths turned off and why, and the buffers of the shape being timed.
#[derive(Default)]
pub(super) struct MoeCtx {
    fill: Option<CudaFunction>,
    off: HashMap<(MoePath, MoeDtype), String>,
    state: Option<MoeState>,
}

/// One expert linear's buffers: all `experts` weights, and x, y for the most rows swept.
struct MoeState {
    key: (MoeDtype, u32, u32, u32, u32),
    w: Buf,
    x: Buf,
    y: Buf,
}

/// One grouped call, prepared outside the timed region: the routing, the host arrays the grouped
/// call reads, and per rotated copy the device pointer arrays.
struct Plan {
    dt: bsys::cudaDataType_t,
    n: u32,
    k: u32,
    rows: Vec<u32>,
    groups: Vec<(u32, u32)>,
    /// Bytes of one element (2) times `n·k`: one expert's weights.
    expert_bytes: u64,
    w: u64,
    x: u64,
    y: u64,
    /// Per copy, `[A; D] [B; D] [C; D]` device pointers (grouped path only).
    ptrs: Option<Buf>,
    /// Touched experts per call; copy `i` starts at expert `i·d`.
    d: u32,
}

fn cuda_dtype(d: MoeDtype) -> bsys::cudaDataType_t {
    match d {
        MoeDtype::Bf16 => bsys::cudaDataType_t::CUDA_R_16BF,
        MoeDtype::Fp16 => bsys::cudaDataType_t::CUDA_R_16F,
    }
}

impl Plan {
    fn new(dtype: MoeDtype, (n, k): (u32, u32), rows: Vec<u32>, bufs: (u64, u64, u64)) -> Plan {
        Plan {
            dt: cuda_dtype(dtype),
            n,
            k,
            groups: moe::groups(&rows),
            d: rows.len() as u32,
            rows,
            expert_bytes: 2 * u64::from(n) * u64::from(k),
            w: bufs.0,
            x: bufs.1,
            y: bufs.2,
            ptrs: None,
        }
    }

    /// The A, B, C pointers of every touched expert when the call starts at expert `first`.
    fn pointers(&self, first: u32) -> Vec<u64> {
        let (n, k) = (u64::from(self.n), u64::from(self.k));
        let mut a = Vec::with_capacity(3 * self.rows.len());
        let (mut b, mut c) = (Vec::new(), Vec::new());
        let mut row = 0u64;
        for (j, &r) in self.rows.iter().enumerate() {
            a.push(self.w + (u64::from(first) + j as u64) * self.expert_bytes);
            b.push(self.x + 2 * row * k);
            c.push(self.y + 2 * row * n);
            row += u64::from(r);
        }
        a.extend(b);
        a.extend(c);
        a
    }
}

impl CudaTimer {
    /// Random bf16 in `[-scale, scale)` into `b`, on the fill stream as the other inputs.
    fn fill_bf16(&mut self, b: &Buf, scale: f32) -> Result<()> {
        if self.moe.fill.is_none() {
            let (ma, mi) = self.dev.info.compute_capability;
            let cubin = crate::calibrate::nvrtc::compile_cubin(
                FILL_BF16,
                "moe_fill.cu",
                (ma as i32, mi as i32),
                &[],
            )
            .map_err(|e| Error::Gpu(format!("NVRTC could not compile the bf16 fill: {e}")))?;
            let module = self
                .dev
                .stream
                .context()
                .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
                .gpu("bf16 fill module")?;
            self.moe.fill = Some(module.load_function("fill_bf16").gpu("fill_bf16")?);
        }
        let Some(f) = self.moe.fill.clone() else {
            return Err(Error::Internal("bf16 fill kernel missing".into()));
        };
        let n = (b.bytes / 2) as u64;
        let seed = self.dev.next_seed();
        self.dev.stream.synchronize().gpu("synchronize")?;
        let stream = &self.dev.fill_stream;
        let mut lb = stream.launch_builder(&f);
        lb.arg(&b.ptr).arg(&n).arg(&seed).arg(&scale);
        // SAFETY: b holds n bf16 values; the argument list matches FILL_BF16.
        unsafe { lb.launch(cfg(grid_for(n, 256, 65_536), 256, 0)) }.gpu("fill_bf16")?;
        stream.synchronize().gpu("synchronize")
    }

    fn fill_moe(&mut self, dtype: MoeDtype, b: &Buf, scale: f32) -> Result<()> {
        match dtype {
            MoeDtype::Bf16 => self.fill_bf16(b, scale),
            MoeDtype::Fp16 => self.dev.fill_half(b, scale),
        }
    }

    /// The buffers of `(dtype, experts, top_k, n, k)`, new when the shape changes.
    fn moe_state(&mut self, key: (MoeDtype, u32, u32, u32, u32)) -> Result<()> {
        if self.moe.state.as_ref().is_some_and(|s| s.key == key) {
            return Ok(());
        }
        self.moe.state = None;
        let (dtype, experts, top_k, n, k) = key;
        let rows = self.bounds.max_tokens as usize * top_k as usize;
        let w = self
            .dev
            .alloc(2 * experts as usize * n as usize * k as usize)?;
        let x = self.dev.alloc(2 * rows * k as usize)?;
        let y = self.dev.alloc(2 * rows * n as usize)?;
        self.fill_moe(dtype, &w, 0.05)?;
        self.fill_moe(dtype, &x, 1.0)?;
        self.moe.state = Some(MoeState { key, w, x, y });
        Ok(())
    }

    pub(super) fn time_moe(&mut self, job: MoeJob) -> Result<f64> {
        let MoeJob {
            path,
            dtype,
            experts,
            top_k,
            n,
            k,
            tokens,
        } = job;
        if let Some(why) = self.moe.off.get(&(path, dtype)) {
            return Err(Error::Gpu(format!(
                "{} {} is off: {why}",
                path.key(),
                dtype.key()
            )));
        }
        self.moe_state((dtype, experts, top_k, n, k))?;
        let Some(s) = self.moe.state.take() else {
            return Err(Error::Internal("MoE buffers missing".into()));
        };
        let r = self.time_moe_with(&s, path, dtype, experts, (n, k, tokens, top_k));
        self.moe.state = Some(s);
        r
    }

    fn time_moe_with(
        &self,
        s: &MoeState,
        path: MoePath,
        dtype: MoeDtype,
        experts: u32,
        (n, k, tokens, top_k): (u32, u32, u32, u32),
    ) -> Result<f64> {
        let rows = moe::routing(experts, top_k, tokens);
        let mut plan = Plan::new(dtype, (n, k), rows, (s.w.ptr, s.x.ptr, s.y.ptr));
        // rotate the touched experts over all E: copy i starts at expert i·D
        let room = (experts / plan.d).max(1) as usize;
        let copies = self.copies_for(u64::from(plan.d) * plan.expert_bytes, room);
        if path == MoePath::Grouped {
            let ptrs: Vec<u64> = (0..copies as u32)
                .flat_map(|i| plan.pointers(i * plan.d))
                .collect();
            plan.ptrs = Some(self.dev.upload(&ptrs)?);
        }
        self.bench(copies, &|t, i| t.moe_run(&plan, path, i))
    }

    /// One grouped call of `plan` on rotated copy `copy`.
    fn moe_run(&self, plan: &Plan, path: MoePath, copy: usize) -> Result<()> {
        match path {
            MoePath::Loop => self.moe_loop(plan, copy as u32 * plan.d),
            MoePath::Strided => self.moe_strided(plan, copy as u32 * plan.d),
            MoePath::Grouped => self.moe_grouped(plan, copy),
        }
    }

    fn moe_loop(&self, p: &Plan, first: u32) -> Result<()> {
        let ptrs = p.pointers(first);
        let d = p.rows.len();
        let (alpha, beta) = (1f32, 0f32);
        for (j, &r) in p.rows.iter().enumerate() {
            // SAFETY: the pointers address expert j's weights and its rows of x and y, inside
            // buffers sized for every expert and the sweep's most rows.
            unsafe {
                bsys::cublasGemmEx(
                    self.blas.handles.blas,
                    bsys::cublasOperation_t::CUBLAS_OP_T,
                    bsys::cublasOperation_t::CUBLAS_OP_N,
                    p.n as i32,
                    r as i32,
                    p.k as i32,
                    (&alpha) as *const f32 as *const _,
                    ptrs[j] as *const _,
                    p.dt,
                    p.k as i32,
                    ptrs[d + j] as *const _,
                    p.dt,
                    p.k as i32,
                    (&beta) as *const f32 as *const _,
                    ptrs[2 * d + j] as *mut _,
                    p.dt,
                    p.n as i32,
                    bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                )
            }
            .result()
            .gpu("cublasGemmEx (MoE loop)")?;
        }
        Ok(())
    }

    fn moe_strided(&self, p: &Plan, first: u32) -> Result<()> {
        let (n, k) = (i64::from(p.n), i64::from(p.k));
        let (alpha, beta) = (1f32, 0f32);
        let (mut expert, mut row) = (u64::from(first), 0u64);
        for &(r, count) in &p.groups {
            let a = p.w + expert * p.expert_bytes;
            let b = p.x + 2 * row * p.k as u64;
            let c = p.y + 2 * row * p.n as u64;
            let r64 = i64::from(r);
            // SAFETY: `count` experts from `expert` lie inside w; their rows inside x and y.
            unsafe {
                bsys::cublasGemmStridedBatchedEx(
                    self.blas.handles.blas,
                    bsys::cublasOperation_t::CUBLAS_OP_T,
                    bsys::cublasOperation_t::CUBLAS_OP_N,
                    p.n as i32,
                    r as i32,
                    p.k as i32,
                    (&alpha) as *const f32 as *const _,
                    a as *const _,
                    p.dt,
                    p.k as i32,
                    n * k,
                    b as *const _,
                    p.dt,
                    p.k as i32,
                    r64 * k,
                    (&beta) as *const f32 as *const _,
                    c as *mut _,
                    p.dt,
                    p.n as i32,
                    r64 * n,
                    count as i32,
                    bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                )
            }
            .result()
            .gpu("cublasGemmStridedBatchedEx (MoE)")?;
            expert += u64::from(count);
            row += u64::from(r) * u64::from(count);
        }
        Ok(())
    }

    fn moe_grouped(&self, p: &Plan, copy: usize) -> Result<()> {
        let ptrs = p
            .ptrs
            .as_ref()
            .ok_or_else(|| Error::Internal("grouped MoE call without pointer arrays".into()))?;
        let d = p.rows.len() as u64;
        let base = ptrs.ptr + 8 * 3 * d * copy as u64;
        let g = p.groups.len();
        let ta = vec![bsys::cublasOperation_t::CUBLAS_OP_T; g];
        let tb = vec![bsys::cublasOperation_t::CUBLAS_OP_N; g];
        let m = vec![p.n as i32; g];
        let nn: Vec<i32> = p.groups.iter().map(|&(r, _)| r as i32).collect();
        let kk = vec![p.k as i32; g];
        let sizes: Vec<i32> = p.groups.iter().map(|&(_, c)| c as i32).collect();
        let (alpha, beta) = (vec![1f32; g], vec![0f32; g]);
        // SAFETY: the pointer arrays hold D device pointers each for this copy (uploaded in
        // time_moe_with); the host arrays have one entry per group and outlive the call.
        unsafe {
            bsys::cublasGemmGroupedBatchedEx(
                self.blas.handles.blas,
                ta.as_ptr(),
                tb.as_ptr(),
                m.as_ptr(),
                nn.as_ptr(),
                kk.as_ptr(),
                alpha.as_ptr() as *const _,
                base as *const *const _,
                p.dt,
                kk.as_ptr(),
                (base + 8 * d) as *const *const _,
                p.dt,
                kk.as_ptr(),
                beta.as_ptr() as *const _,
                (base + 16 * d) as *const *mut _,
                p.dt,
                m.as_ptr(),
                g as i32,
                sizes.as_ptr(),
                bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            )
        }
        .result()
        .gpu("cublasGemmGroupedBatchedEx (MoE)")
    }

    /// Every MoE path and dtype against the CPU reference on a small case of two row groups,
    /// starting past the first expert; a path that errs or fails is turned off with the reason.
    /// Returns the reports of the paths that passed.
    pub(super) fn check_moe(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let (experts, top_k, tokens, n, k) = (6u32, 2u32, 4u32, 72usize, 96usize);
        let rows = moe::routing(experts, top_k, tokens);
        let total: usize = rows.iter().map(|&r| r as usize).sum();
        let mut out = Vec::new();
        for dtype in [MoeDtype::Bf16, MoeDtype::Fp16] {
            let w: Vec<f32> = (0..experts as usize * n * k)
                .map(|_| rng.random_range(-0.5f32..0.5))
                .collect();
            let x: Vec<f32> = (0..total * k)
                .map(|_| rng.random_range(-1f32..1.0))
                .collect();
            let (wb, wr) = round_to(dtype, &w);
            let (xb, xr) = round_to(dtype, &x);
            let want = moe::reference(&xr, &wr, (n, k), 1, &rows);
            let wd = self.dev.upload(&wb)?;
            let xd = self.dev.upload(&xb)?;
            let yd = self.dev.alloc(2 * total * n)?;
            let mut plan = Plan::new(
                dtype,
                (n as u32, k as u32),
                rows.clone(),
                (wd.ptr, xd.ptr, yd.ptr),
            );
            plan.ptrs = Some(self.dev.upload(&plan.pointers(1))?);
            for path in MoePath::ALL {
                let name = format!("{} {}", path.key(), dtype.key());
                match self.check_moe_path(&plan, path, &yd, &want, dtype, &name) {
                    Ok(r) if r.passed() => out.push(r),
                    Ok(r) => {
                        self.moe.off.insert(
                            (path, dtype),
                            format!(
                                "failed its check: worst error {:.3}x the bound {} (max abs error {:.3e})",
                                r.worst_ratio, r.bound, r.max_abs_err
                            ),
                        );
                    }
                    Err(e) => {
                        self.moe
                            .off
                            .insert((path, dtype), format!("its check failed: {e}"));
                    }
                }
            }
        }
        Ok(out)
    }

    fn check_moe_path(
        &self,
        plan: &Plan,
        path: MoePath,
        yd: &Buf,
        want: &[f64],
        dtype: MoeDtype,
        name: &str,
    ) -> Result<CheckReport> {
        if path == MoePath::Grouped && !has_grouped_gemm() {
            return Err(Error::Gpu(
                "the loaded cuBLAS has no cublasGemmGroupedBatchedEx (CUDA 12.5 or later)".into(),
            ));
        }
        // poison y (0xffff is a NaN in both types): an unwritten element fails the check
        let poison = vec![0xffffu16; yd.bytes / 2];
        self.dev.htod(&poison, yd.ptr)?;
        // the check's plan starts at expert 1: copy 0 of a plan whose pointers start there
        let first = 1;
        match path {
            MoePath::Loop => self.moe_loop(plan, first)?,
            MoePath::Strided => self.moe_strided(plan, first)?,
            MoePath::Grouped => self.moe_grouped(plan, 0)?,
        }
        let got: Vec<u16> = self.dev.dtoh(yd, want.len())?;
        let got: Vec<f32> = got.iter().map(|&b| from_bits(dtype, b)).collect();
        let (atol, rtol) = match dtype {
            MoeDtype::Bf16 => (2e-2, 2e-2),
            MoeDtype::Fp16 => (5e-3, 1e-2),
        };
        Ok(cpu::compare(name, &got, want, atol, rtol))
    }
}

/// Whether the loaded cuBLAS exports the grouped GEMM (cudarc panics on a missing symbol).
fn has_grouped_gemm() -> bool {
    // SAFETY: only looks the symbol up; the library is the one cuBLAS calls go to.
    unsafe {
        bsys::culib()
            .get::<unsafe extern "C" fn()>(b"cublasGemmGroupedBatchedEx")
            .is_ok()
    }
}

/// `v` rounded to `dtype`: the bits to upload and the values the GPU sees.
fn round_to(dtype: MoeDtype, v: &[f32]) -> (Vec<u16>, Vec<f32>) {
    v.iter()
        .map(|&x| match dtype {
            MoeDtype::Bf16 => {
                let b = bf16::from_f32(x);
                (b.to_bits(), b.to_f32())
            }
            MoeDtype::Fp16 => {
                let h = f16::from_f32(x);
                (h.to_bits(), h.to_f32())
            }
        })
        .unzip()
}

fn from_bits(dtype: MoeDtype, b: u16) -> f32 {
    match dtype {
        MoeDtype::Bf16 => bf16::from_bits(b).to_f32(),
        MoeDtype::Fp16 => f16::from_bits(b).to_f32(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_walk_experts_and_rows_in_order() {
        let p = Plan::new(MoeDtype::Bf16, (3, 4), vec![2, 1], (1000, 5000, 9000));
        // A: expert bytes 2·3·4 = 24, from expert 2; B: 2·k bytes a row; C: 2·n bytes a row
        assert_eq!(p.pointers(2), vec![1048, 1072, 5000, 5016, 9000, 9012]);
        assert_eq!(p.groups, vec![(2, 1), (1, 1)]);
    }

    #[test]
    fn rounding_matches_the_bits_uploaded() {
        let (b, r) = round_to(MoeDtype::Bf16, &[1.0, -0.3]);
        assert_eq!(b[0], 0x3f80);
        assert_eq!(from_bits(MoeDtype::Bf16, b[1]), r[1]);
        let (h, _) = round_to(MoeDtype::Fp16, &[1.0]);
        assert_eq!(h[0], 0x3c00);
    }
}
