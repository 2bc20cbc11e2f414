//! The GEMM paths ([`GemmPath`]): their kernels (W8A8, W8A16 GEMV, NF4 GEMV, dequantize and
//! mma.sync stand-ins for bitsandbytes), the weights of one layer in each format, and the timing
//! of each path.

use super::CudaTimer;
use super::cublas::Imma;
use super::device::{Buf, cfg, grid_for};
use super::quant_gemm::QuantState;
use super::timing::MAX_COPIES;
use crate::calibrate::bnb::{self, BnbKernel, MmaTile};
use crate::calibrate::sweep::{GEMV_MAX_TOKENS, GemmPath};
use crate::error::{Error, Result};

/// One layer's weights in each format, in as many copies as the timer rotates over; activations
/// and scratch once.
pub(super) struct GemmState {
    n: u32,
    k: u32,
    w16: Vec<Buf>,
    pub(super) x: Buf,
    pub(super) y: Buf,
    pub(super) int8: Option<(Vec<I8Weights>, Int8Act)>,
    nf4: Option<(Vec<Nf4Weights>, Nf4Scratch)>,
    /// FP8, INT4 and LLM.int8() weights (`quant_gemm.rs`).
    pub(super) quant: Option<QuantState>,
}
/// Scratch rewritten by every NF4 dequantize call (as in bitsandbytes): the fp16 weights, and
/// for bitsandbytes' sequence the fp32 absmax before and after adding the offset.
pub(super) struct Nf4Scratch {
    pub(super) wdq: Buf,
    pub(super) absmax: Buf,
    pub(super) absmax_off: Buf,
}
pub(super) struct I8Weights {
    pub(super) wq: Buf,
    pub(super) wscale: Buf,
}
/// W8A8 activations and scratch: quantized x, its scales, the int32 accumulator.
pub(super) struct Int8Act {
    pub(super) xq: Buf,
    pub(super) sx: Buf,
    pub(super) acc: Buf,
}
pub(super) struct Nf4Weights {
    pub(super) packed: Buf,
    pub(super) absmax_q: Buf,
    pub(super) absmax2: Buf,
}

/// Dynamic shared memory of an nf4_mma kernel: two buffers of an A and a B tile, rows padded by
/// 8 halves (kernels/nf4_mma.cu).
pub(super) fn mma_smem(tile: MmaTile) -> u32 {
    2 * (tile.mt + tile.nt) * (tile.kc + 8) * 2
}

impl CudaTimer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn w8a8(
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
        launch!(self.dev, "quant_per_token", cfg((t, 1, 1), 256, 0); x, a.xq.ptr, a.sx.ptr, k as i32)?;
        self.imma_run(m, w.wq.ptr, a.xq.ptr, a.acc.ptr)?;
        let quads = u64::from(t) * u64::from(n) / 4;
        launch!(self.dev, "dequant_i32", cfg(grid_for(quads, 256, 65_536), 256, 0);
            a.acc.ptr, a.sx.ptr, w.wscale.ptr, y, t as i32, n as i32)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn nf4_gemv(
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
        launch!(self.dev, &name, cfg((n.div_ceil(4), 1, 1), 128, 0);
            s.packed.ptr, s.absmax_q.ptr, s.absmax2.ptr, self.bufs.nf4_code.ptr, offset, x, y,
            n as i32, k as i32)
    }

    pub(super) fn nf4_dequant(
        &self,
        s: &Nf4Weights,
        offset: f32,
        wdq: u64,
        numel: u64,
    ) -> Result<()> {
        let sms = u64::from(self.dev.info.sm_count);
        launch!(self.dev, "nf4_dequant", cfg(grid_for(numel / 8, 256, sms * 32), 256, 0);
            s.packed.ptr, s.absmax_q.ptr, s.absmax2.ptr, self.bufs.nf4_code.ptr, offset, wdq, numel)
    }

    /// bitsandbytes' unfused dequantize (`_dequant_linear_fallback`): three kernels, as it runs them.
    pub(super) fn nf4_bnb_dequant(
        &self,
        s: &Nf4Weights,
        offset: f32,
        sc: &Nf4Scratch,
        numel: u64,
    ) -> Result<()> {
        let sms = u64::from(self.dev.info.sm_count);
        let blocks = numel.div_ceil(64);
        launch!(self.dev, "nf4_absmax_dequant", cfg(grid_for(blocks, 256, sms * 32), 256, 0);
            s.absmax_q.ptr, s.absmax2.ptr, self.bufs.nf4_code.ptr, sc.absmax.ptr, blocks)?;
        launch!(self.dev, "add_scalar_f32", cfg(grid_for(blocks, 256, sms * 32), 256, 0);
            sc.absmax.ptr, offset, sc.absmax_off.ptr, blocks)?;
        let numel = i32::try_from(numel).map_err(|_| {
            Error::BadInput(format!(
                "nf4: {numel} weights in one layer; bitsandbytes' dequantize indexes with int"
            ))
        })?;
        launch!(self.dev, "nf4_dequant_bnb", cfg(((numel as u32).div_ceil(1024), 1, 1), 64, 0);
            s.packed.ptr, sc.absmax_off.ptr, sc.wdq.ptr, 64i32, numel)
    }

    /// cardplan's stand-in for bitsandbytes' mma.sync 4-bit kernel with its `tile`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn nf4_mma(
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
        launch!(self.dev, &name, cfg((t.div_ceil(tile.mt), n.div_ceil(tile.nt), 1), 256, mma_smem(tile));
            x, s.packed.ptr, s.absmax_q.ptr, s.absmax2.ptr, self.bufs.nf4_code.ptr, offset, y,
            t as i32, n as i32, k as i32, 64i32)
    }

    /// The kernel bitsandbytes runs for `t` tokens through an `n × k` layer on this GPU.
    fn bnb_kernel(&self, n: u32, k: u32, t: u32) -> BnbKernel {
        let dev = &self.dev.info;
        bnb::priced(
            dev.compute_capability,
            dev.sm_count,
            t,
            n,
            k,
            GEMV_MAX_TOKENS,
        )
    }

    pub(super) fn w8a16(
        &self,
        s: &I8Weights,
        x: u64,
        y: u64,
        n: u32,
        k: u32,
        t: u32,
    ) -> Result<()> {
        let name = format!("w8a16_gemv_t{t}");
        launch!(self.dev, &name, cfg((n.div_ceil(4), 1, 1), 128, 0);
            s.wq.ptr, s.wscale.ptr, x, y, n as i32, k as i32)
    }

    /// The buffers `path` needs for an `n × k` layer: the fp16 weights and activations (new when
    /// the shape changes), and the int8 or NF4 weights the first time a path asks for them.
    fn gemm_state(&mut self, n: u32, k: u32, path: GemmPath) -> Result<()> {
        let same = matches!(&self.bufs.gemm, Some(g) if g.n == n && g.k == k);
        if !same {
            self.bufs.gemm = None;
            self.bufs.gemm = Some(self.new_gemm_state(n, k)?);
        }
        let need_int8 = matches!(
            path,
            GemmPath::Int8W8a16Gemv
                | GemmPath::Int8W8a8
                | GemmPath::Int8ImmaOnly
                | GemmPath::LlmInt8Bnb
        );
        let need_quant = crate::calibrate::sweep::QUANT_PATHS.contains(&path);
        if need_quant && self.bufs.gemm.as_ref().is_some_and(|g| g.quant.is_none()) {
            let q = self.new_quant(n, k)?;
            if let Some(g) = self.bufs.gemm.as_mut() {
                g.quant = Some(q);
            }
        }
        let need_nf4 = matches!(
            path,
            GemmPath::Nf4Gemv | GemmPath::Nf4DequantCublas | GemmPath::Nf4Bnb
        );
        if need_int8 && self.bufs.gemm.as_ref().is_some_and(|g| g.int8.is_none()) {
            let int8 = self.new_int8(n, k)?;
            if let Some(g) = self.bufs.gemm.as_mut() {
                g.int8 = Some(int8);
            }
        }
        if need_nf4 && self.bufs.gemm.as_ref().is_some_and(|g| g.nf4.is_none()) {
            let nf4 = self.new_nf4(n, k)?;
            if let Some(g) = self.bufs.gemm.as_mut() {
                g.nf4 = Some(nf4);
            }
        }
        Ok(())
    }

    /// Copies of the fp16 weights, the activations (as many rows as the sweep's most tokens) and
    /// the output.
    fn new_gemm_state(&mut self, n: u32, k: u32) -> Result<GemmState> {
        let numel = n as usize * k as usize;
        let copies = self.copies_for(2 * numel as u64, MAX_COPIES);
        let mut w16 = Vec::with_capacity(copies);
        for _ in 0..copies {
            w16.push(self.dev.new_half(numel as u64, 0.05)?);
        }
        let x = self
            .dev
            .new_half(u64::from(self.bounds.max_tokens) * u64::from(k), 1.0)?;
        let y = self
            .dev
            .alloc(2 * self.bounds.max_tokens as usize * n as usize)?;
        Ok(GemmState {
            n,
            k,
            w16,
            x,
            y,
            int8: None,
            nf4: None,
            quant: None,
        })
    }

    /// Copies of the int8 weights and their scales; the W8A8 activations and scratch.
    fn new_int8(&mut self, n: u32, k: u32) -> Result<(Vec<I8Weights>, Int8Act)> {
        let numel = n as usize * k as usize;
        let tmax = self.bounds.max_tokens as usize;
        let copies = self.copies_for((numel + 4 * n as usize) as u64, MAX_COPIES);
        let mut ws = Vec::with_capacity(copies);
        for _ in 0..copies {
            let wq = self.dev.alloc(numel)?;
            self.dev.fill_u8(&wq)?;
            let wscale = self.dev.alloc(4 * n as usize)?;
            self.dev.fill_f32(&wscale, 1e-3, 2e-3)?;
            ws.push(I8Weights { wq, wscale });
        }
        let xq = self.dev.alloc(tmax * k as usize)?;
        self.dev.fill_u8(&xq)?;
        let act = Int8Act {
            xq,
            sx: self.dev.alloc(4 * tmax)?,
            acc: self.dev.alloc(4 * tmax * n as usize)?,
        };
        Ok((ws, act))
    }

    /// Copies of the NF4 weights (packed codes, 8-bit absmax, its fp32 scales); the dequantize
    /// scratch.
    fn new_nf4(&mut self, n: u32, k: u32) -> Result<(Vec<Nf4Weights>, Nf4Scratch)> {
        let numel = n as usize * k as usize;
        let blocks = numel.div_ceil(64);
        let bytes = numel / 2 + blocks + 4 * blocks.div_ceil(256);
        let copies = self.copies_for(bytes as u64, MAX_COPIES);
        let mut ws = Vec::with_capacity(copies);
        for _ in 0..copies {
            let packed = self.dev.alloc(numel / 2)?;
            self.dev.fill_u8(&packed)?;
            let absmax_q = self.dev.alloc(blocks)?;
            self.dev.fill_u8(&absmax_q)?;
            let absmax2 = self.dev.alloc(4 * blocks.div_ceil(256))?;
            self.dev.fill_f32(&absmax2, 0.02, 0.04)?;
            ws.push(Nf4Weights {
                packed,
                absmax_q,
                absmax2,
            });
        }
        let scratch = Nf4Scratch {
            wdq: self.dev.alloc(2 * numel)?,
            absmax: self.dev.alloc(4 * blocks)?,
            absmax_off: self.dev.alloc(4 * blocks)?,
        };
        Ok((ws, scratch))
    }

    pub(super) fn time_gemm(&mut self, path: GemmPath, n: u32, k: u32, t: u32) -> Result<f64> {
        self.gemm_state(n, k, path)?;
        let Some(g) = self.bufs.gemm.take() else {
            return Err(Error::Internal("GEMM buffers missing".into()));
        };
        let r = self.time_gemm_with(&g, path, n, k, t);
        self.bufs.gemm = Some(g);
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
                self.time_bnb(w, sc, offset, (x, y), (n, k, t))
            }
            GemmPath::Fp8Row
            | GemmPath::Fp8Tensor
            | GemmPath::Fp8RowGemmOnly
            | GemmPath::Fp8TensorGemmOnly
            | GemmPath::Int4Mma
            | GemmPath::Int4Gemv
            | GemmPath::Int4DequantCublas
            | GemmPath::LlmInt8Bnb => self.time_quant(g, path, (n, k, t)),
        }
    }

    /// What bitsandbytes runs at this point, by cardplan's stand-in for each of its kernels.
    fn time_bnb(
        &self,
        w: &[Nf4Weights],
        sc: &Nf4Scratch,
        offset: f32,
        (x, y): (u64, u64),
        (n, k, t): (u32, u32, u32),
    ) -> Result<f64> {
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
