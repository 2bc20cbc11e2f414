//! The FP8, INT4 and LLM.int8() GEMM paths: cuBLASLt e4m3 × e4m3 → bf16 with tensor-wise or
//! row-wise (outer-vector) scales, the W4A16 kernel of kernels/quant.cu and its dequantize +
//! cuBLAS alternative, and bitsandbytes' LLM.int8() sequence. Their weights live in
//! [`QuantState`], made the first time a path of a shape asks.

use std::cell::Cell;

use cudarc::cublas::sys as bsys;
use cudarc::cublaslt::{result as ltres, sys as ltsys};

use super::CudaTimer;
use super::cublas::LT_WORKSPACE;
use super::device::{Buf, GpuErr, cfg, grid_for};
use super::gemm::GemmState;
use super::llm_int8::BnbInt8;
use super::timing::MAX_COPIES;
use crate::calibrate::sweep::{GemmPath, LLM_INT8_OUTLIER_SHARE};
use crate::error::{Error, Result};

/// Most tokens the W4A16 GEMV takes (4 m16 tiles).
pub(super) const GEMV_MAX_T: u32 = 64;

/// `(groups of 128 channels per CTA, CTAs along k)` of the W4A16 GEMV for an `n × k` layer on
/// `sms` SMs: 4 groups a CTA (one 4 KB load burst per warp), more per CTA only where that would
/// make over 8 CTAs per SM (each CTA pays its reduction and launch), so that every layer puts
/// several 16 KB bursts in flight on every SM.
pub fn w4_gemv_plan(n: u32, k: u32, sms: u32) -> (u32, u32) {
    let groups = (k / 128).max(1);
    let units = (n / 64) * groups.div_ceil(4);
    let rounds = (units / (8 * sms.max(1))).max(1);
    let gps = (4 * rounds).min(groups);
    (gps, groups.div_ceil(gps))
}

/// Static activation scale of the per-tensor FP8 path (x uniform in ±1, so ±448 · 1/448).
pub(super) const FP8_TENSOR_INV_SCALE: f32 = 448.0;

/// One shape's weights in the FP8, INT4 and int8-with-outliers formats, rotated copies of each;
/// the activations and scratch once.
pub(super) struct QuantState {
    /// e4m3 weights `[n][k]`, copies.
    fp8_w: Vec<Buf>,
    /// Per-channel scales `[n]` (f32) and the per-tensor scalar (f32), shared by the copies.
    fp8_wscale_row: Buf,
    fp8_wscale_t: Buf,
    /// Quantized activations `[tmax][k]`, their per-token scales `[tmax]` and the per-tensor one.
    fp8_x: Buf,
    fp8_sx: Buf,
    fp8_sx_t: Buf,
    /// W4A16 packed weights and permuted scales (lowbit::mma_pack layout), copies.
    int4: Vec<(Buf, Buf)>,
    /// Split-k accumulator `[tmax][n]` f32 and the dequantized weights `[n][k]` f16.
    acc: Buf,
    wdq: Buf,
    /// The GEMV's split-k sums `[GEMV_MAX_T][n]` f32 and its counters `[n/64]`: zeroed once,
    /// left zeroed by every call.
    gv_acc: Buf,
    gv_cnt: Buf,
    bnb: BnbInt8,
}

/// cuBLASLt descriptors of one FP8 GEMM (TN, e4m3 in, bf16 out, fp32 accumulate).
pub(super) struct Fp8Lt {
    desc: ltsys::cublasLtMatmulDesc_t,
    la: ltsys::cublasLtMatrixLayout_t,
    lb: ltsys::cublasLtMatrixLayout_t,
    lc: ltsys::cublasLtMatrixLayout_t,
    pub(super) algo: Cell<ltsys::cublasLtMatmulAlgo_t>,
}

impl Drop for Fp8Lt {
    fn drop(&mut self) {
        // SAFETY: created by Fp8Lt::new and destroyed once.
        unsafe {
            let _ = ltres::destroy_matrix_layout(self.la);
            let _ = ltres::destroy_matrix_layout(self.lb);
            let _ = ltres::destroy_matrix_layout(self.lc);
            let _ = ltres::destroy_matmul_desc(self.desc);
        }
    }
}

/// Set one matmul-descriptor attribute from a plain value.
///
/// # Safety
/// `desc` is live and `T` is the attribute's type.
unsafe fn set_attr<T>(
    desc: ltsys::cublasLtMatmulDesc_t,
    attr: ltsys::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> Result<()> {
    // SAFETY: per the function's contract.
    unsafe {
        ltres::set_matmul_desc_attribute(
            desc,
            attr,
            v as *const T as *const _,
            std::mem::size_of::<T>(),
        )
    }
    .gpu("cuBLASLt FP8 attribute")
}

impl Fp8Lt {
    /// `rowwise`: outer-vector scales (`wscale[n]`, `sx[t]`); else scalar scale pointers.
    pub(super) fn new(
        rowwise: bool,
        n: u32,
        k: u32,
        t: u32,
        wscale: u64,
        sx: u64,
    ) -> Result<Fp8Lt> {
        use ltsys::cublasLtMatmulDescAttributes_t as at;
        use ltsys::cudaDataType_t as dt;
        let desc = ltres::create_matmul_desc(
            ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            dt::CUDA_R_32F,
        )
        .gpu("cuBLASLt FP8 desc")?;
        let mk = |ty, rows: u32, cols: u32| {
            ltres::create_matrix_layout(ty, u64::from(rows), u64::from(cols), i64::from(rows))
                .gpu("cuBLASLt FP8 layout")
        };
        let m = Fp8Lt {
            desc,
            la: mk(dt::CUDA_R_8F_E4M3, k, n)?,
            lb: mk(dt::CUDA_R_8F_E4M3, k, t)?,
            lc: mk(dt::CUDA_R_16BF, n, t)?,
            // SAFETY: an all-zero algo is a placeholder, replaced before use.
            algo: Cell::new(unsafe { std::mem::zeroed() }),
        };
        let trans = bsys::cublasOperation_t::CUBLAS_OP_T;
        // SAFETY: desc is live; each value has its attribute's type (operation, device
        // pointer, scale mode as i32).
        unsafe {
            set_attr(m.desc, at::CUBLASLT_MATMUL_DESC_TRANSA, &trans)?;
            set_attr(m.desc, at::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wscale)?;
            set_attr(m.desc, at::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx)?;
            if rowwise {
                let mode =
                    ltsys::cublasLtMatmulMatrixScale_t::CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F
                        as i32;
                set_attr(m.desc, at::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode)?;
                set_attr(m.desc, at::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode)?;
            }
        }
        Ok(m)
    }
}

impl CudaTimer {
    /// The FP8 GEMM for `n × k` at `t` tokens (or `t` rounded up to a multiple of 16 where
    /// cuBLASLt has no kernel for `t`), with the fastest of its top-16 heuristic algorithms.
    fn fp8_prepare(&self, rowwise: bool, q: &QuantState, n: u32, k: u32, t: u32) -> Result<Fp8Lt> {
        let (ws, sx) = if rowwise {
            (q.fp8_wscale_row.ptr, q.fp8_sx.ptr)
        } else {
            (q.fp8_wscale_t.ptr, q.fp8_sx_t.ptr)
        };
        let mut last = None;
        for tt in [t, t.next_multiple_of(16)] {
            if tt > self.bounds.max_tokens.max(16) {
                break;
            }
            let m = Fp8Lt::new(rowwise, n, k, tt, ws, sx)?;
            match self.fp8_algos(&m) {
                Ok(algos) => {
                    let mut best = (f64::INFINITY, algos[0]);
                    for a in algos {
                        m.algo.set(a);
                        let op = |s: &Self, i: usize| {
                            s.fp8_run(&m, q.fp8_w[i].ptr, q.fp8_x.ptr, q.acc.ptr)
                        };
                        if let Ok(ms) = self.bench_select(q.fp8_w.len(), &op)
                            && ms < best.0
                        {
                            best = (ms, a);
                        }
                    }
                    m.algo.set(best.1);
                    return Ok(m);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Gpu(format!("no FP8 GEMM for n={n} k={k} T={t}"))))
    }

    pub(super) fn fp8_algos(&self, m: &Fp8Lt) -> Result<Vec<ltsys::cublasLtMatmulAlgo_t>> {
        let pref = ltres::create_matmul_pref().gpu("cuBLASLt preference")?;
        let ws = LT_WORKSPACE as u64;
        // SAFETY: plain C structs filled by cuBLASLt.
        let mut results: [ltsys::cublasLtMatmulHeuristicResult_t; 16] =
            unsafe { std::mem::zeroed() };
        let mut count = 0i32;
        // SAFETY: descriptors are live; pref is destroyed right after the query.
        let status = unsafe {
            let r = ltres::set_matmul_pref_attribute(
                pref,
                ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws) as *const u64 as *const _,
                8,
            )
            .and_then(|_| {
                ltsys::cublasLtMatmulAlgoGetHeuristic(
                    self.blas.handles.lt, m.desc, m.la, m.lb, m.lc, m.lc, pref,
                    results.len() as i32, results.as_mut_ptr(), &mut count,
                )
                .result()
            });
            let _ = ltres::destroy_matmul_pref(pref);
            r
        };
        let v: Vec<_> = results
            .iter()
            .take(count.max(0) as usize)
            .filter(|r| r.state.result().is_ok())
            .map(|r| r.algo)
            .collect();
        if status.is_err() || v.is_empty() {
            return Err(Error::Gpu(format!(
                "cuBLASLt has no FP8 algorithm ({status:?})"
            )));
        }
        Ok(v)
    }

    /// `y[T×n] (bf16) = (xq · sx) · (W · ws)ᵀ` through cuBLASLt.
    pub(super) fn fp8_run(&self, m: &Fp8Lt, w: u64, xq: u64, y: u64) -> Result<()> {
        let (alpha, beta) = (1f32, 0f32);
        // SAFETY: descriptors match the buffers (prepared for this shape).
        unsafe {
            ltres::matmul(
                self.blas.handles.lt,
                m.desc,
                (&alpha) as *const f32 as *const _,
                (&beta) as *const f32 as *const _,
                w as *const _,
                m.la,
                xq as *const _,
                m.lb,
                y as *const _,
                m.lc,
                y as *mut _,
                m.lc,
                &m.algo.get(),
                self.blas.lt_ws.ptr as *mut _,
                LT_WORKSPACE,
                self.dev.stream.cu_stream() as ltsys::cudaStream_t,
            )
        }
        .gpu("cuBLASLt FP8 GEMM")
    }

    /// FP8 activation quantization of `t` rows of x into `(xq, sx)`: per token (dynamic,
    /// scales to `sx`) or per tensor (static scale 1/448).
    pub(super) fn fp8_quant(
        &self,
        rowwise: bool,
        (x, xq, sx): (u64, u64, u64),
        k: u32,
        t: u32,
    ) -> Result<()> {
        if rowwise {
            launch!(self.dev, "quant_fp8_per_token", cfg((t, 1, 1), 256, 0); x, xq, sx, k as i32)
        } else {
            let n8 = u64::from(t) * u64::from(k);
            launch!(self.dev, "quant_fp8_tensor", cfg(grid_for(n8 / 8, 256, 65_536), 256, 0);
                x, xq, FP8_TENSOR_INV_SCALE, n8)
        }
    }

    /// Split over k so that small token counts still put ~4 CTAs on every SM (a weight stream
    /// needs many loads in flight), but none where the layer alone gives 2 per SM: a split costs
    /// two small kernels (zero the fp32 sums, convert them), a few µs against the 12 µs weight
    /// read of a 28672 × 4096 layer. Each warp keeps at least 4 steps of 16 channels.
    pub(super) fn w4_splits(&self, n: u32, k: u32, t: u32) -> u32 {
        let mt = if t <= 16 {
            1
        } else if t <= 32 {
            2
        } else {
            4
        };
        let ctas = (n / 64) * t.div_ceil(16 * mt);
        let sms = self.dev.info.sm_count;
        if ctas >= 2 * sms {
            return 1;
        }
        let want = (4 * sms).div_ceil(ctas.max(1));
        want.clamp(1, (k / 16 / 16).max(1))
    }

    /// W4A16 by the kernel of kernels/quant.cu: `y[T×n] = x · Wᵀ`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn w4a16(
        &self,
        wp: u64,
        sp: u64,
        acc: u64,
        x: u64,
        y: u64,
        n: u32,
        k: u32,
        t: u32,
    ) -> Result<()> {
        self.w4a16_split(self.w4_splits(n, k, t), (wp, sp, acc, x, y), (n, k, t))
    }

    /// [`Self::w4a16`] split over `splits` CTAs along k.
    pub(super) fn w4a16_split(
        &self,
        splits: u32,
        (wp, sp, acc, x, y): (u64, u64, u64, u64, u64),
        (n, k, t): (u32, u32, u32),
    ) -> Result<()> {
        let mt = if t <= 16 {
            1
        } else if t <= 32 {
            2
        } else {
            4
        };
        let steps = (k / 16).div_ceil(splits);
        let (tn, kn) = (u64::from(t) * u64::from(n), k as i32);
        if splits > 1 {
            launch!(self.dev, "zero_f32", cfg(grid_for(tn, 256, 65_536), 256, 0); acc, tn)?;
        }
        let name = format!("w4a16_mma_m{mt}");
        launch!(self.dev, &name, cfg((n / 64, t.div_ceil(16 * mt), splits), 128, 0);
            x, wp, sp, y, acc, t as i32, n as i32, kn, steps as i32)?;
        if splits > 1 {
            launch!(self.dev, "f32_to_f16", cfg(grid_for(tn, 256, 65_536), 256, 0); acc, y, tn)?;
        }
        Ok(())
    }

    /// The packed weights to fp16 `[n][k]`: one CTA per 64 columns × 128 channels.
    pub(super) fn w4_dequant(&self, wp: u64, sp: u64, wdq: u64, n: u32, k: u32) -> Result<()> {
        launch!(self.dev, "w4_dequant", cfg((n / 64, k / 128, 1), 256, 0); wp, sp, wdq, n as i32, k as i32)
    }

    /// W4A16 by the GEMV kernel (`t <= GEMV_MAX_T`): `y[T×n] = x · Wᵀ` in one launch; `acc`
    /// and `cnt` zeroed (and left so).
    pub(super) fn w4a16_gemv(
        &self,
        (gps, splits): (u32, u32),
        (wp, sp, acc, cnt): (u64, u64, u64, u64),
        (x, y): (u64, u64),
        (n, k, t): (u32, u32, u32),
    ) -> Result<()> {
        let mt = match t {
            0 => return Err(Error::Internal("W4A16 GEMV at 0 tokens".into())),
            1..=16 => 1,
            17..=32 => 2,
            33..=GEMV_MAX_T => 4,
            _ => return Err(Error::Internal(format!("W4A16 GEMV at {t} tokens"))),
        };
        let name = format!("w4a16_gemv_m{mt}");
        launch!(self.dev, &name, cfg((n / 64, splits, 1), 128, 0);
            x, wp, sp, y, acc, cnt, t as i32, n as i32, k as i32, gps as i32)
    }

    /// Zero a buffer of 32-bit words.
    pub(super) fn zero_words(&self, b: &Buf) -> Result<()> {
        let words = (b.bytes / 4) as u64;
        launch!(self.dev, "zero_f32", cfg(grid_for(words, 256, 65_536), 256, 0); b.ptr, words)?;
        self.dev.stream.synchronize().gpu("synchronize")
    }

    /// The quantized weights of an `n × k` layer, in as many copies as the timer rotates over.
    pub(super) fn new_quant(&mut self, n: u32, k: u32) -> Result<QuantState> {
        let (nu, ku) = (n as usize, k as usize);
        let numel = nu * ku;
        let tmax = self.bounds.max_tokens as usize;
        let copies = self.copies_for(numel as u64, MAX_COPIES);
        let mut fp8_w = Vec::with_capacity(copies);
        for _ in 0..copies {
            let b = self.dev.alloc(numel)?;
            self.dev.fill_e4m3(&b)?;
            fp8_w.push(b);
        }
        let fp8_wscale_row = self.dev.alloc(4 * nu)?;
        self.dev.fill_f32(&fp8_wscale_row, 1e-3, 2e-3)?;
        let fp8_wscale_t = self.dev.upload(&[1.5e-3f32])?;
        let fp8_sx_t = self.dev.upload(&[1.0 / FP8_TENSOR_INV_SCALE])?;
        let fp8_x = self.dev.alloc(tmax * ku)?;
        self.dev.fill_e4m3(&fp8_x)?;
        let fp8_sx = self.dev.alloc(4 * tmax)?;
        self.dev.fill_f32(&fp8_sx, 1e-3, 3e-3)?;
        let mut int4 = Vec::new();
        if crate::calibrate::sweep::int4_shape_ok(n, k) {
            let c4 = self.copies_for((numel / 2 + numel / 64) as u64, MAX_COPIES);
            for _ in 0..c4 {
                let wp = self.dev.alloc(numel / 2)?;
                self.dev.fill_u8(&wp)?;
                let sp = self.dev.alloc(2 * numel / 128)?;
                self.dev.fill_half(&sp, 0.02)?;
                int4.push((wp, sp));
            }
        }
        let nc = ((f64::from(k) * LLM_INT8_OUTLIER_SHARE).round() as u32).max(1);
        // outlier columns spread over x (every k/nc-th column), as the paper's feature dims are
        let cols: Vec<i32> = (0..nc).map(|i| (i * (k / nc)) as i32).collect();
        let bnb = BnbInt8::new(&mut self.dev, tmax as u32, n, k, &cols)?;
        let gv_acc = self.dev.alloc(4 * GEMV_MAX_T as usize * nu)?;
        let gv_cnt = self.dev.alloc(4 * nu / 64)?;
        self.zero_words(&gv_acc)?;
        self.zero_words(&gv_cnt)?;
        Ok(QuantState {
            fp8_w,
            fp8_wscale_row,
            fp8_wscale_t,
            fp8_x,
            fp8_sx,
            fp8_sx_t,
            int4,
            acc: self.dev.alloc(4 * tmax * nu)?,
            wdq: self.dev.alloc(2 * numel)?,
            gv_acc,
            gv_cnt,
            bnb,
        })
    }

    /// Time one of the FP8, INT4 or LLM.int8() paths on `g`'s buffers.
    pub(super) fn time_quant(
        &self,
        g: &GemmState,
        path: GemmPath,
        (n, k, t): (u32, u32, u32),
    ) -> Result<f64> {
        if let Some(why) = &self.quant_off {
            return Err(Error::Gpu(format!("quantized paths off: {why}")));
        }
        let missing = || Error::Internal("quantized weights missing".into());
        let q = g.quant.as_ref().ok_or_else(missing)?;
        let (x, y) = (g.x.ptr, g.y.ptr);
        match path {
            GemmPath::Fp8Row
            | GemmPath::Fp8Tensor
            | GemmPath::Fp8RowGemmOnly
            | GemmPath::Fp8TensorGemmOnly => {
                let rowwise = matches!(path, GemmPath::Fp8Row | GemmPath::Fp8RowGemmOnly);
                let with_quant = matches!(path, GemmPath::Fp8Row | GemmPath::Fp8Tensor);
                let m = self.fp8_prepare(rowwise, q, n, k, t)?;
                self.bench(q.fp8_w.len(), &|s, i| {
                    if with_quant {
                        s.fp8_quant(rowwise, (x, q.fp8_x.ptr, q.fp8_sx.ptr), k, t)?;
                    }
                    s.fp8_run(&m, q.fp8_w[i].ptr, q.fp8_x.ptr, y)
                })
            }
            GemmPath::Int4Mma => {
                if q.int4.is_empty() {
                    return Err(missing());
                }
                self.bench(q.int4.len(), &|s, i| {
                    let (wp, sp) = &q.int4[i];
                    s.w4a16(wp.ptr, sp.ptr, q.acc.ptr, x, y, n, k, t)
                })
            }
            GemmPath::Int4DequantCublas => {
                if q.int4.is_empty() {
                    return Err(missing());
                }
                self.bench(q.int4.len(), &|s, i| {
                    let (wp, sp) = &q.int4[i];
                    s.w4_dequant(wp.ptr, sp.ptr, q.wdq.ptr, n, k)?;
                    s.gemmex_run(q.wdq.ptr, x, y, n, k, t)
                })
            }
            GemmPath::Int4Gemv => {
                if q.int4.is_empty() || t > GEMV_MAX_T {
                    return Err(missing());
                }
                self.bench(q.int4.len(), &|s, i| {
                    let (wp, sp) = &q.int4[i];
                    let plan = w4_gemv_plan(n, k, s.dev.info.sm_count);
                    s.w4a16_gemv(
                        plan,
                        (wp.ptr, sp.ptr, q.gv_acc.ptr, q.gv_cnt.ptr),
                        (x, y),
                        (n, k, t),
                    )
                })
            }
            GemmPath::LlmInt8Bnb => {
                let (w, a) = g.int8.as_ref().ok_or_else(missing)?;
                let ws: Vec<u64> = w.iter().map(|b| b.wq.ptr).collect();
                let m = self.imma_prepare(false, n, k, t, (&ws, a.xq.ptr, a.acc.ptr))?;
                let xb = q.bnb.x.ptr;
                self.bench_host(w.len(), &|s, i| {
                    s.llm_int8_bnb(&m, &w[i], a, &q.bnb, (xb, y), (n, k, t))
                        .map(|_| ())
                })
            }
            other => Err(Error::Internal(format!(
                "{} is not a quantized path",
                other.key()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::w4_gemv_plan;

    #[test]
    fn gemv_plan_covers_every_group_with_several_ctas_per_sm() {
        // llama-3.1-8b shapes on 132 SMs: (n, k) -> (groups per CTA, CTAs along k)
        assert_eq!(w4_gemv_plan(4096, 4096, 132), (4, 8));
        assert_eq!(w4_gemv_plan(6144, 4096, 132), (4, 8));
        assert_eq!(w4_gemv_plan(28672, 4096, 132), (12, 3));
        assert_eq!(w4_gemv_plan(4096, 14336, 132), (4, 28));
        for (n, k) in [(64, 128), (128, 512), (8192, 28672), (1024, 384)] {
            let (gps, splits) = w4_gemv_plan(n, k, 132);
            assert!(
                gps * splits >= k / 128 && gps * (splits - 1) < k / 128,
                "{n}x{k}"
            );
        }
    }
}
