//! LLM.int8() as bitsandbytes 0.50.2's `Linear8bitLt` forward runs it (threshold 6.0, int8
//! weights with row scales, no bias), launch for launch, with the two host synchronisations its
//! outlier search forces: `outliers.any()` read as a Python bool and `argwhere`'s count of
//! nonzeros. Those syncs rule out a CUDA graph, so a call is timed with the host wall clock
//! around whole calls, each ending in a sync, as bitsandbytes pays it. What Python adds on top
//! (dispatching ~20 torch ops per call) is not in this time: the reference script measures it
//! apart (scripts/gpu/quant_ref.py, `host_us_per_call`).

use std::time::Instant;

use cudarc::driver::result as dres;

use super::CudaTimer;
use super::cublas::Imma;
use super::device::{Buf, Device, GpuErr, cfg, grid_for};
use super::gemm::{I8Weights, Int8Act};
use super::timing::Op;
use crate::error::{Error, Result};

/// bitsandbytes' default outlier threshold (`Linear8bitLt(threshold=6.0)`).
pub(super) const THRESHOLD: f32 = 6.0;
/// Outlier columns the buffers hold at most: k / 16 (the timing plants 0.5% of k).
const MAX_OUTLIER_SHARE_DIV: u32 = 16;
/// Rows of x per block of the column-wise `any` (a slice per block, OR-ed into the result).
const ANY_DIM0_ROWS: u32 = 64;

/// The buffers of one layer's LLM.int8() call: x with its planted outlier columns, and what
/// bitsandbytes allocates per call (|x|, the outlier mask, the reductions, the outlier columns'
/// indices, the gathered weights and activations, the addmm result).
pub(super) struct BnbInt8 {
    /// `[tmax][k]` fp16 input with outlier columns.
    pub(super) x: Buf,
    xa: Buf,
    mask: Buf,
    part: Buf,
    counter: Buf,
    flag: Buf,
    colany: Buf,
    count: Buf,
    cols: Buf,
    o8: Buf,
    wf: Buf,
    ws: Buf,
    xs: Buf,
    /// `[tmax][n]` fp16: `output.addmm(subA, subB)`'s result.
    pub(super) y2: Buf,
    cap: u32,
}

impl BnbInt8 {
    /// Buffers for up to `tmax` tokens of an `n × k` layer; `x` random in ±1 with every
    /// `k / nc`-th of `nc` columns set to ±8 (`nc` = 0: no outliers).
    pub(super) fn new(
        dev: &mut Device,
        tmax: u32,
        n: u32,
        k: u32,
        cols: &[i32],
    ) -> Result<BnbInt8> {
        let (t, nu, ku) = (tmax as usize, n as usize, k as usize);
        let cap = (k / MAX_OUTLIER_SHARE_DIV).max(cols.len() as u32).max(1) as usize;
        let x = dev.alloc(2 * t * ku)?;
        dev.fill_half(&x, 1.0)?;
        let s = BnbInt8 {
            xa: dev.alloc(2 * t * ku)?,
            mask: dev.alloc(t * ku)?,
            part: dev.alloc(4 * 1024)?,
            counter: dev.upload(&[0u32; 4])?,
            flag: dev.alloc(16)?,
            colany: dev.alloc(4 * ku)?,
            count: dev.alloc(16)?,
            cols: dev.alloc(4 * ku)?,
            o8: dev.alloc(nu * cap)?,
            wf: dev.alloc(4 * nu * cap)?,
            ws: dev.alloc(2 * nu * cap)?,
            xs: dev.alloc(2 * t * cap)?,
            y2: dev.alloc(2 * t * nu)?,
            cap: cap as u32,
            x,
        };
        if !cols.is_empty() {
            let c = dev.upload(cols)?;
            let nc = cols.len() as u32;
            launch!(dev, "bnb_plant_outliers", cfg(grid_for(u64::from(tmax * nc), 256, 65_536), 256, 0);
                s.x.ptr, c.ptr, tmax as i32, k as i32, nc as i32)?;
            dev.stream.synchronize().gpu("synchronize")?;
        }
        Ok(s)
    }
}

/// One value of type `T` read back to the host: a stream sync and a copy, as `.item()` does.
fn read_one<T: cudarc::driver::DeviceRepr + Default + Clone + Copy>(
    dev: &Device,
    b: &Buf,
) -> Result<T> {
    Ok(dev.dtoh::<T>(b, 1)?[0])
}

impl CudaTimer {
    /// `int8_vectorwise_quant(x, 6.0)`: the outlier search (two reads back to the host), the
    /// row-wise quantize, and for `t > 1` the outlier columns zeroed. Returns the number of
    /// outlier columns (their indices in `s.cols`).
    fn bnb_quant(&self, a: &Int8Act, s: &BnbInt8, x: u64, (k, t): (u32, u32)) -> Result<u32> {
        let tk = u64::from(t) * u64::from(k);
        launch!(self.dev, "bnb_abs", cfg(grid_for(tk / 2, 256, 65_536), 256, 0); x, s.xa.ptr, tk / 2)?;
        launch!(self.dev, "bnb_ge", cfg(grid_for(tk, 256, 65_536), 256, 0); s.xa.ptr, s.mask.ptr, THRESHOLD, tk)?;
        let blocks = grid_for(tk.div_ceil(8), 256, 1024);
        launch!(self.dev, "bnb_any", cfg(blocks, 256, 0);
            s.mask.ptr, tk, s.part.ptr, s.counter.ptr, s.flag.ptr)?;
        let mut nc = 0u32;
        if read_one::<u8>(&self.dev, &s.flag)? != 0 {
            launch!(self.dev, "zero_f32", cfg(grid_for(u64::from(k), 256, 65_536), 256, 0); s.colany.ptr, u64::from(k))?;
            let grid = (k.div_ceil(256), t.div_ceil(ANY_DIM0_ROWS), 1);
            launch!(self.dev, "bnb_any_dim0", cfg(grid, 256, 0);
                s.mask.ptr, s.colany.ptr, t as i32, k as i32, ANY_DIM0_ROWS as i32)?;
            launch!(self.dev, "bnb_count", cfg((1, 1, 1), 1024, 0); s.colany.ptr, k as i32, s.count.ptr)?;
            nc = read_one::<u32>(&self.dev, &s.count)?;
            if nc > s.cap {
                return Err(Error::Gpu(format!(
                    "llm-int8: {nc} outlier columns, more than the {} the buffers hold",
                    s.cap
                )));
            }
            launch!(self.dev, "bnb_select", cfg((1, 1, 1), 1024, 0); s.colany.ptr, k as i32, s.cols.ptr)?;
        }
        launch!(self.dev, "bnb_vector_quant", cfg((t, 1, 1), 256, 0);
            x, a.xq.ptr, a.sx.ptr, THRESHOLD, k as i32)?;
        if t > 1 && nc > 0 {
            launch!(self.dev, "bnb_zero_cols", cfg(grid_for(u64::from(t * nc), 256, 65_536), 256, 0);
                a.xq.ptr, s.cols.ptr, t as i32, k as i32, nc as i32)?;
        }
        Ok(nc)
    }

    /// One `Linear8bitLt` forward of x (`s.x`, or `x`): quantize with the outlier search, int8
    /// GEMM, dequantize into `y`; with outliers, subB = (CB[:, cols] · SCB · 1/127) in fp16,
    /// subA = x[:, cols], then `y.addmm(subA, subB)` (a copy and a GEMM with beta 1). Returns
    /// the buffer holding the output (`y`, or the addmm result). cardplan's int8 weights carry
    /// SCB / 127 as their scale, so the `* 1/127` kernel runs with 1.
    pub(super) fn llm_int8_bnb(
        &self,
        m: &Imma,
        w: &I8Weights,
        a: &Int8Act,
        s: &BnbInt8,
        (x, y): (u64, u64),
        (n, k, t): (u32, u32, u32),
    ) -> Result<u64> {
        let nc = self.bnb_quant(a, s, x, (k, t))?;
        self.imma_run(m, w.wq.ptr, a.xq.ptr, a.acc.ptr)?;
        let quads = u64::from(t) * u64::from(n) / 4;
        launch!(self.dev, "dequant_i32", cfg(grid_for(quads, 256, 65_536), 256, 0);
            a.acc.ptr, a.sx.ptr, w.wscale.ptr, y, t as i32, n as i32)?;
        if nc == 0 {
            return Ok(y);
        }
        let nn = u64::from(n) * u64::from(nc);
        let g = cfg(grid_for(nn, 256, 65_536), 256, 0);
        launch!(self.dev, "bnb_gather_i8", g; w.wq.ptr, s.cols.ptr, s.o8.ptr, n as i32, k as i32, nc as i32)?;
        launch!(self.dev, "bnb_mul_rows", g; s.o8.ptr, w.wscale.ptr, s.wf.ptr, n as i32, nc as i32)?;
        launch!(self.dev, "bnb_scale", g; s.wf.ptr, 1.0f32, nn)?;
        launch!(self.dev, "f32_to_f16", g; s.wf.ptr, s.ws.ptr, nn)?;
        launch!(self.dev, "gather_cols", cfg(grid_for(u64::from(t * nc), 256, 65_536), 256, 0);
            x, s.cols.ptr, s.xs.ptr, t as i32, k as i32, nc as i32)?;
        let bytes = 2 * t as usize * n as usize;
        // SAFETY: y and y2 each hold at least t × n halves.
        unsafe { dres::memcpy_dtod_async(s.y2.ptr, y, bytes, self.dev.stream.cu_stream()) }
            .gpu("addmm copy")?;
        self.gemmex_beta(s.ws.ptr, s.xs.ptr, s.y2.ptr, (n, nc, t), 1.0)?;
        Ok(s.y2.ptr)
    }

    /// Median host wall time of one call of `op` (which synchronises with the device on its
    /// own), over `reps` rounds of `copies` calls (at least 8), each round ended by a stream
    /// sync: what a caller waiting on the device mid-call pays, launch overheads included.
    pub(super) fn bench_host(&self, copies: usize, op: Op) -> Result<f64> {
        let copies = copies.max(1);
        for i in 0..copies.max(self.bench.warmup) {
            op(self, i % copies)?;
        }
        self.dev.stream.synchronize().gpu("synchronize")?;
        let calls = copies.max(8);
        let mut times = Vec::with_capacity(self.bench.reps);
        for _ in 0..self.bench.reps {
            let t0 = Instant::now();
            for i in 0..calls {
                op(self, i % copies)?;
            }
            self.dev.stream.synchronize().gpu("synchronize")?;
            times.push(t0.elapsed().as_secs_f64() * 1e3 / calls as f64);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}
