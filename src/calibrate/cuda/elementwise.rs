//! Elementwise kernels (RMSNorm with residual, SiLU-and-multiply) and the device copy that sets
//! the copy roof.

use cudarc::driver::result as dres;

use super::CudaTimer;
use super::device::{Buf, GpuErr, cfg, grid_for};
use super::timing::MIN_CALLS;
use crate::error::{Error, Result};
use crate::profile::{ElementwiseKind, Timing};

/// Rows of one elementwise kernel's inputs and output for the sweep's most tokens: `a` (x, or
/// SiLU's gate and up halves), `b` (the residual), `w` (the norm weight), `y`.
pub(super) struct ElemState {
    key: (ElementwiseKind, u32),
    a: Buf,
    b: Buf,
    w: Buf,
    y: Buf,
}

impl CudaTimer {
    pub(super) fn rmsnorm(
        &self,
        x: u64,
        res: u64,
        w: u64,
        y: u64,
        width: u32,
        t: u32,
    ) -> Result<()> {
        launch!(self.dev, "rmsnorm_residual", cfg((t, 1, 1), 256, 0); x, res, w, y, width as i32, 1e-5f32)
    }

    pub(super) fn silu(&self, input: u64, out: u64, width: u32, t: u32) -> Result<()> {
        let total = u64::from(t) * u64::from(width) / 8;
        let sms = u64::from(self.dev.info.sm_count);
        launch!(self.dev, "silu_mul", cfg(grid_for(total, 256, sms * 16), 256, 0);
            input, out, width as i32, u64::from(t))
    }

    /// The buffers of `kind` at `width`, kept while the key stays.
    fn elem_state(&mut self, kind: ElementwiseKind, width: u32) -> Result<()> {
        let key = (kind, width);
        if matches!(&self.bufs.elem, Some(e) if e.key == key) {
            return Ok(());
        }
        self.bufs.elem = None;
        let rows = u64::from(self.bounds.max_tokens);
        let w = u64::from(width);
        let st = match kind {
            ElementwiseKind::RmsnormResidual => ElemState {
                key,
                a: self.dev.new_half(rows * w, 0.1)?,
                b: self.dev.new_half(rows * w, 1.0)?,
                w: self.dev.new_half(w, 1.0)?,
                y: self.dev.alloc((2 * rows * w) as usize)?,
            },
            ElementwiseKind::SiluMul => ElemState {
                key,
                a: self.dev.new_half(2 * rows * w, 2.0)?,
                b: self.dev.alloc(16)?,
                w: self.dev.alloc(16)?,
                y: self.dev.alloc((2 * rows * w) as usize)?,
            },
        };
        self.bufs.elem = Some(st);
        Ok(())
    }

    pub(super) fn time_elementwise(
        &mut self,
        kind: ElementwiseKind,
        width: u32,
        t: u32,
    ) -> Result<f64> {
        self.elem_state(kind, width)?;
        let e = self
            .bufs
            .elem
            .as_ref()
            .ok_or_else(|| Error::Internal("elementwise buffers".into()))?;
        // Rotated copies are consecutive stretches of `t` rows of the preallocated buffers.
        let row = 2 * u64::from(width);
        let room = (self.bounds.max_tokens / t.max(1)) as usize;
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

    pub(super) fn time_copy(&mut self, bytes: u64) -> Result<f64> {
        let a = self.dev.alloc(bytes as usize)?;
        self.dev.fill_u8(&a)?;
        let b = self.dev.alloc(bytes as usize)?;
        let op = |s: &Self, _: usize| {
            // SAFETY: both buffers hold `bytes`.
            unsafe {
                dres::memcpy_dtod_async(b.ptr, a.ptr, bytes as usize, s.dev.stream.cu_stream())
            }
            .gpu("device copy")
        };
        match self.bench.timing {
            Timing::Isolated => self.bench(1, &op),
            // Not in a graph: a captured copy becomes a copy-engine node, slower than the SM copy
            // kernel a stream copy runs (2.4 vs 3.0 TB/s on the H100); the copy roof is the
            // latter. The sweep's copy reads far more than 2 × L2 and lasts long enough that
            // launching from the host keeps up.
            Timing::BackToBack => self.bench_stream(MIN_CALLS.max(4), &op),
        }
    }
}
