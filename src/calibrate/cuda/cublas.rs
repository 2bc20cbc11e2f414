//! cuBLAS and cuBLASLt: the handles, the cuBLASLt fp16 and int8 IMMA GEMM with its algorithm
//! chosen by timing, and `cublasGemmEx` as torch's `F.linear` calls it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::sys as bsys;
use cudarc::cublaslt::{result as ltres, sys as ltsys};
use cudarc::driver::CudaStream;

use super::CudaTimer;
use super::device::{Buf, GpuErr, alloc};
use crate::error::{Error, Result};

/// Workspace of cuBLASLt's and cuBLAS's GEMMs, each.
pub(super) const LT_WORKSPACE: usize = 32 << 20;

/// The cuBLASLt and cuBLAS handles (destroyed on drop). cuBLAS (not Lt) is for `cublasGemmEx`,
/// with a workspace of its own so that graph capture never needs an allocation.
pub(super) struct Handles {
    pub(super) lt: ltsys::cublasLtHandle_t,
    pub(super) blas: bsys::cublasHandle_t,
    _blas_ws: Buf,
}

impl Handles {
    pub(super) fn new(stream: &Arc<CudaStream>) -> Result<Handles> {
        let lt = ltres::create_handle().gpu("cuBLASLt init")?;
        let blas_ws = alloc(stream, LT_WORKSPACE)?;
        let blas = cudarc::cublas::result::create_handle().gpu("cuBLAS init")?;
        let h = Handles {
            lt,
            blas,
            _blas_ws: blas_ws,
        };
        // SAFETY: the handle is live; the stream and the workspace outlive it (the workspace is
        // owned by `h`, which destroys the handle in Drop first). Default math mode, as torch
        // leaves it for fp16 (reduced-precision reduction allowed).
        unsafe {
            cudarc::cublas::result::set_stream(blas, stream.cu_stream() as bsys::cudaStream_t)
                .gpu("cuBLAS stream")?;
            bsys::cublasSetWorkspace_v2(blas, h._blas_ws.ptr as *mut _, LT_WORKSPACE)
                .result()
                .gpu("cuBLAS workspace")?;
            bsys::cublasSetMathMode(blas, bsys::cublasMath_t::CUBLAS_DEFAULT_MATH)
                .result()
                .gpu("cuBLAS math mode")?;
        }
        Ok(h)
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: the handles were created in `new` and are destroyed once.
        unsafe {
            let _ = ltres::destroy_handle(self.lt);
            let _ = cudarc::cublas::result::destroy_handle(self.blas);
        }
    }
}

/// The GEMM libraries as the timer uses them: handles, cuBLASLt's workspace and the algorithm
/// chosen per (fp16?, n, k, T).
pub(super) struct Blas {
    pub(super) handles: Handles,
    pub(super) lt_ws: Buf,
    algos: RefCell<HashMap<(bool, u32, u32, u32), ltsys::cublasLtMatmulAlgo_t>>,
}

impl Blas {
    pub(super) fn new(handles: Handles, lt_ws: Buf) -> Blas {
        Blas {
            handles,
            lt_ws,
            algos: Default::default(),
        }
    }
}

/// The cuBLASLt descriptors of one GEMM shape (int8 IMMA or fp16), prepared outside the timed
/// region.
pub(super) struct Imma {
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

impl Imma {
    /// TN descriptors for `n × k` weights at `t` tokens, with a placeholder algorithm.
    fn new(f16: bool, n: u32, k: u32, t: u32) -> Result<Imma> {
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
        // From here on the Imma owns the descriptors (its Drop frees them on every error path).
        Ok(Imma {
            f16,
            desc,
            la,
            lb,
            lc,
            // SAFETY: an all-zero algo is a valid placeholder; it is replaced before use.
            algo: unsafe { std::mem::zeroed() },
        })
    }
}

impl CudaTimer {
    /// cuBLASLt descriptors (int8 IMMA, or fp16 with fp32 accumulation when `f16`) for `n × k`
    /// at `t` tokens, with the fastest of cuBLASLt's top-16
    /// heuristic candidates (timed once on `bufs` = (wq, xq, acc), cached per shape), as
    /// frameworks' autotuners pick. Where cuBLASLt has no kernel for an odd token count the GEMM
    /// runs on `t` rounded up to a multiple of 4 (the extra rows are ignored).
    /// `bufs`: the rotated copies of A (the weights), B and C. The algorithm is chosen by the
    /// same method as the final timing (back to back over the copies), so a choice made on
    /// cached weights cannot win.
    pub(super) fn imma_prepare(
        &self,
        f16: bool,
        n: u32,
        k: u32,
        t: u32,
        bufs: (&[u64], u64, u64),
    ) -> Result<Imma> {
        match self.imma_prepare_exact(f16, n, k, t, bufs) {
            Ok(m) => Ok(m),
            Err(e) if !f16 && t % 4 != 0 && t.next_multiple_of(4) <= self.bounds.max_tokens => self
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
        let mut m = Imma::new(f16, n, k, t)?;
        let candidates = self.heuristic_algos(&m, n, k, t)?;
        if let Some(algo) = self.blas.algos.borrow().get(&(f16, n, k, t)) {
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
        self.blas.algos.borrow_mut().insert((f16, n, k, t), best.1);
        Ok(m)
    }

    /// cuBLASLt's top-16 heuristic algorithms for `m` (those it reports as usable); an error
    /// when there is none.
    fn heuristic_algos(
        &self,
        m: &Imma,
        n: u32,
        k: u32,
        t: u32,
    ) -> Result<Vec<ltsys::cublasLtMatmulAlgo_t>> {
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
                    self.blas.handles.lt,
                    m.desc,
                    m.la,
                    m.lb,
                    m.lc,
                    m.lc,
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
                if m.f16 { "fp16" } else { "int8 IMMA" }
            )));
        }
        Ok(candidates)
    }

    /// `acc[T×n] = xq[T×k] · Wqᵀ` through cuBLASLt (int8 → int32, or fp16 → fp16).
    pub(super) fn imma_run(&self, m: &Imma, wq: u64, xq: u64, acc: u64) -> Result<()> {
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
                self.blas.handles.lt,
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
                self.blas.lt_ws.ptr as *mut _,
                LT_WORKSPACE,
                self.dev.stream.cu_stream() as ltsys::cudaStream_t,
            )
        }
        .gpu("cuBLASLt GEMM")
    }

    /// `y[T×n] = x[T×k] · Wᵀ` through `cublasGemmEx` as torch's `F.linear` calls it for fp16
    /// (at::cuda::blas::gemm<at::Half>): column-major C(n×T) = op(A)·B with A = W seen as k×n
    /// (transposed, lda = k), B = x seen as k×T (ldb = k), fp32 compute, default algorithm.
    pub(super) fn gemmex_run(&self, w: u64, x: u64, y: u64, n: u32, k: u32, t: u32) -> Result<()> {
        self.gemmex_beta(w, x, y, (n, k, t), 0.0)
    }

    /// [`Self::gemmex_run`] accumulating into `y` with `beta` (torch's addmm; 0 overwrites).
    pub(super) fn gemmex_beta(
        &self,
        w: u64,
        x: u64,
        y: u64,
        (n, k, t): (u32, u32, u32),
        beta: f32,
    ) -> Result<()> {
        use bsys::cudaDataType_t as dt;
        let alpha = 1f32;
        let (n, k, t) = (n as i32, k as i32, t as i32);
        // SAFETY: w holds n×k, x T×k and y T×n halves; the handle is bound to our stream.
        unsafe {
            bsys::cublasGemmEx(
                self.blas.handles.blas,
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
}
