//! Correctness of the FP8, INT4 and LLM.int8() paths against the CPU references
//! ([`crate::calibrate::lowbit`], [`crate::calibrate::reference`]) before any timing.

use half::{bf16, f16};
use rand::RngExt;
use rand::rngs::StdRng;

use super::CudaTimer;
use super::device::Buf;
use super::gemm::{I8Weights, Int8Act};
use super::llm_int8::BnbInt8;
use super::quant_gemm::{FP8_TENSOR_INV_SCALE, Fp8Lt, GEMV_MAX_T};
use crate::calibrate::lowbit::{self, Int4Groups};
use crate::calibrate::quant;
use crate::calibrate::reference as cpu;
use crate::calibrate::timer::CheckReport;
use crate::error::Result;

/// Layer of the checks: 2 blocks of 64 columns, 4 groups of 128 channels; up to 61 tokens.
const N: usize = 128;
const K: usize = 512;
const TMAX: usize = 64;

fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn halves(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

/// Decoded e4m3 codes of `[rows][K]` times their row scales.
fn dec(codes: &[u8], scales: &[f32]) -> Vec<f32> {
    codes
        .iter()
        .enumerate()
        .map(|(i, &c)| lowbit::e4m3_decode(c) * scales[i / K])
        .collect()
}

fn f32s(v: &[f16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

impl CudaTimer {
    pub(super) fn check_quant(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let x = halves(&rand_vec(rng, TMAX * K, 1.0));
        let w = rand_vec(rng, N * K, 0.05);
        let mut out = self.check_fp8(&x, &w)?;
        out.extend(self.check_int4(&x, &w)?);
        out.extend(self.check_llm_int8(rng, &w)?);
        Ok(out)
    }

    /// The e4m3 quantize kernels (bit for bit against the CPU encoder, as decoded values) and
    /// cuBLASLt FP8 with row-wise and tensor-wise scales, at 37 tokens (cuBLASLt may pad to 48).
    fn check_fp8(&mut self, x: &[f16], w: &[f32]) -> Result<Vec<CheckReport>> {
        let t = 37usize;
        let xf = f32s(x);
        let x_d = self.dev.upload(x)?;
        let xq_d = self.dev.alloc(TMAX * K)?;
        let sx_d = self.dev.alloc(4 * TMAX)?;
        let mut reports = Vec::new();
        for rowwise in [true, false] {
            let what = if rowwise { "row-wise" } else { "tensor-wise" };
            self.fp8_quant(rowwise, (x_d.ptr, xq_d.ptr, sx_d.ptr), K as u32, t as u32)?;
            let gq: Vec<u8> = self.dev.dtoh(&xq_d, t * K)?;
            let (cq, cs) = if rowwise {
                lowbit::e4m3_quantize_rows(&xf[..t * K], t, K)
            } else {
                let codes = xf[..t * K]
                    .iter()
                    .map(|v| lowbit::e4m3_encode(v * FP8_TENSOR_INV_SCALE))
                    .collect();
                (codes, vec![1.0 / FP8_TENSOR_INV_SCALE; t])
            };
            let want: Vec<f64> = dec(&cq, &cs).iter().map(|&v| f64::from(v)).collect();
            // at most one e4m3 step (1/8 of the value) apart: a value within float rounding of a
            // tie may take the neighbouring code on the GPU (fused multiply, fast reciprocal)
            reports.push(cpu::compare(
                &format!("quant_fp8 {what} T={t}"),
                &dec(&gq, &cs),
                &want,
                1e-6,
                0.126,
            ));
            reports.push(self.check_fp8_gemm(rowwise, w, (&cq, &cs))?);
        }
        Ok(reports)
    }

    /// cuBLASLt FP8 on CPU-quantized operands (`x` codes and per-row scales), against the CPU
    /// product of the decoded values. cuBLASLt may run the rows rounded up to 16: the operands are
    /// padded with zero rows of scale 1.
    fn check_fp8_gemm(
        &mut self,
        rowwise: bool,
        w: &[f32],
        (cq, cs): (&[u8], &[f32]),
    ) -> Result<CheckReport> {
        let t = cs.len();
        let tp = t.next_multiple_of(16);
        let mut cq_pad = cq.to_vec();
        cq_pad.resize(tp * K, 0);
        let mut cs_pad = cs.to_vec();
        cs_pad.resize(tp, 1.0);
        let (mut wq, mut ws) = lowbit::e4m3_quantize_rows(w, N, K);
        let (ws_d, sx_d) = if rowwise {
            (self.dev.upload(&ws)?, self.dev.upload(&cs_pad)?)
        } else {
            // one scale for the tensor: the weights requantized to the largest row scale
            let wmax = ws.iter().fold(0f32, |a, &b| a.max(b));
            wq = w.iter().map(|v| lowbit::e4m3_encode(v / wmax)).collect();
            ws = vec![wmax; N];
            (self.dev.upload(&[wmax])?, self.dev.upload(&[cs[0]])?)
        };
        let w_d = self.dev.upload(&wq)?;
        let x_d = self.dev.upload(&cq_pad)?;
        let y_d = self.dev.alloc(2 * tp * N)?;
        let m = Fp8Lt::new(rowwise, N as u32, K as u32, tp as u32, ws_d.ptr, sx_d.ptr)?;
        m.algo.set(self.fp8_algos(&m)?[0]);
        self.fp8_run(&m, w_d.ptr, x_d.ptr, y_d.ptr)?;
        let y: Vec<bf16> = self.dev.dtoh(&y_d, t * N)?;
        let yf: Vec<f32> = y.iter().map(|v| v.to_f32()).collect();
        Ok(cpu::compare(
            &format!(
                "cuBLASLt FP8 {} scales T={t}",
                if rowwise { "row-wise" } else { "tensor-wise" }
            ),
            &yf,
            &cpu::linear(&dec(cq, cs), &dec(&wq, &ws), t, N, K),
            1e-2,
            1e-2,
        ))
    }

    /// The W4A16 kernel at 1, 2 and 4 m-tiles, with and without the split over k, and the
    /// dequantize kernel + cublasGemmEx.
    fn check_int4(&mut self, x: &[f16], w: &[f32]) -> Result<Vec<CheckReport>> {
        let mut q = Int4Groups::quantize(w, N, K, true);
        // the kernel reads fp16 scales
        for s in &mut q.scales {
            *s = f16::from_f32(*s).to_f32();
        }
        let (words, scales) = lowbit::mma_pack(&q);
        let wp = self.dev.upload(&words)?;
        let sp = self.dev.upload(&halves(&scales))?;
        let x_d = self.dev.upload(x)?;
        let y_d = self.dev.alloc(2 * TMAX * N)?;
        let acc = self.dev.alloc(4 * TMAX * N)?;
        let xf = f32s(x);
        let wdq: Vec<f32> = (0..N * K).map(|i| q.dequant(i / K, i % K)).collect();
        let (n, k) = (N as u32, K as u32);
        let mut reports = Vec::new();
        for t in [1usize, 7, 29, 61] {
            for splits in [1, 4] {
                self.dev.fill_half(&y_d, 1.0)?;
                self.w4a16_split(
                    splits,
                    (wp.ptr, sp.ptr, acc.ptr, x_d.ptr, y_d.ptr),
                    (n, k, t as u32),
                )?;
                let y: Vec<f16> = self.dev.dtoh(&y_d, t * N)?;
                reports.push(cpu::compare(
                    &format!("w4a16_mma T={t} split {splits}"),
                    &f32s(&y),
                    &cpu::linear(&xf, &wdq, t, N, K),
                    5e-3,
                    1e-2,
                ));
            }
        }
        reports.extend(self.check_int4_gemv((&wp, &sp, &x_d, &y_d), &xf, &wdq)?);
        let wdq_d = self.dev.alloc(2 * N * K)?;
        self.w4_dequant(wp.ptr, sp.ptr, wdq_d.ptr, n, k)?;
        let g: Vec<f16> = self.dev.dtoh(&wdq_d, N * K)?;
        let want: Vec<f64> = wdq.iter().map(|&v| f64::from(v)).collect();
        reports.push(cpu::compare("w4_dequant", &f32s(&g), &want, 1e-4, 1e-3));
        self.gemmex_run(wdq_d.ptr, x_d.ptr, y_d.ptr, n, k, 61)?;
        let y: Vec<f16> = self.dev.dtoh(&y_d, 61 * N)?;
        reports.push(cpu::compare(
            "w4_dequant + cublasGemmEx T=61",
            &f32s(&y),
            &cpu::linear(&xf, &wdq, 61, N, K),
            5e-3,
            1e-2,
        ));
        Ok(reports)
    }

    /// The W4A16 GEMV at 1, 7, 16, 29 and 61 tokens (each m-tile count), in one CTA along k and
    /// split 4 and 2 ways (uneven), each twice: the second call checks that the first left its
    /// split-k sums and counters zeroed.
    fn check_int4_gemv(
        &mut self,
        (wp, sp, x_d, y_d): (&Buf, &Buf, &Buf, &Buf),
        xf: &[f32],
        wdq: &[f32],
    ) -> Result<Vec<CheckReport>> {
        let acc = self.dev.alloc(4 * GEMV_MAX_T as usize * N)?;
        let cnt = self.dev.alloc(4 * N / 64)?;
        self.zero_words(&acc)?;
        self.zero_words(&cnt)?;
        let (n, k) = (N as u32, K as u32);
        let mut reports = Vec::new();
        for t in [1usize, 7, 16, 29, 61] {
            // groups per CTA: all 4 (one CTA), 1 (four), 3 (two: 3 + 1)
            for gps in [4u32, 1, 3] {
                let plan = (gps, (K as u32 / 128).div_ceil(gps));
                for call in 0..2 {
                    self.dev.fill_half(y_d, 1.0)?;
                    self.w4a16_gemv(
                        plan,
                        (wp.ptr, sp.ptr, acc.ptr, cnt.ptr),
                        (x_d.ptr, y_d.ptr),
                        (n, k, t as u32),
                    )?;
                    let y: Vec<f16> = self.dev.dtoh(y_d, t * N)?;
                    reports.push(cpu::compare(
                        &format!("w4a16_gemv T={t} {} split(s) call {}", plan.1, call + 1),
                        &f32s(&y),
                        &cpu::linear(xf, wdq, t, N, K),
                        5e-3,
                        1e-2,
                    ));
                }
            }
        }
        Ok(reports)
    }

    /// LLM.int8() as bitsandbytes runs it, at 1 and 37 tokens: x with outlier columns (|x| = 8,
    /// over the threshold 6) that the kernels must find; the int8 part on the other columns
    /// (exact integer dot, dequantized) plus the outlier columns in fp16.
    fn check_llm_int8(&mut self, rng: &mut StdRng, w: &[f32]) -> Result<Vec<CheckReport>> {
        let cols: Vec<i32> = vec![3, 130, 131, 400];
        let mut xf = rand_vec(rng, TMAX * K, 1.0);
        for r in 0..TMAX {
            for &c in &cols {
                xf[r * K + c as usize] = if (r + c as usize) % 2 == 0 { 8.0 } else { -8.0 };
            }
        }
        let x = halves(&xf);
        let xf = f32s(&x);
        let wq = quant::quantize_rows(w, N, K);
        let st = I8Weights {
            wq: self.dev.upload(&wq.q)?,
            wscale: self.dev.upload(&wq.scale)?,
        };
        let act = Int8Act {
            xq: self.dev.alloc(TMAX * K)?,
            sx: self.dev.alloc(4 * TMAX)?,
            acc: self.dev.alloc(4 * TMAX * N)?,
        };
        let s = BnbInt8::new(&mut self.dev, TMAX as u32, N as u32, K as u32, &[])?;
        let x_d = self.dev.upload(&x)?;
        let y_d = self.dev.alloc(2 * TMAX * N)?;
        let (n, k) = (N as u32, K as u32);
        let mut reports = Vec::new();
        for t in [1usize, 37] {
            let m = self.imma_prepare(
                false,
                n,
                k,
                t as u32,
                (&[st.wq.ptr], act.xq.ptr, act.acc.ptr),
            )?;
            let out = self.llm_int8_bnb(&m, &st, &act, &s, (x_d.ptr, y_d.ptr), (n, k, t as u32))?;
            let buf = if out == y_d.ptr { &y_d } else { &s.y2 };
            let y: Vec<f16> = self.dev.dtoh(buf, t * N)?;
            reports.push(cpu::compare(
                &format!("llm-int8 (bitsandbytes sequence, outliers found on the GPU) T={t}"),
                &f32s(&y),
                &llm_int8_ref(&xf[..t * K], &wq, t),
                1e-2,
                1e-2,
            ));
        }
        Ok(reports)
    }
}

/// The CPU reference of LLM.int8() with threshold 6: columns holding any |x| >= 6 go through
/// fp16 (x times the dequantized int8 weight), the rest through the row-wise int8 product.
fn llm_int8_ref(xf: &[f32], wq: &quant::Int8Rows, t: usize) -> Vec<f64> {
    let outlier: Vec<bool> = (0..K)
        .map(|i| (0..t).any(|r| xf[r * K + i].abs() >= 6.0))
        .collect();
    let mut want = vec![0f64; t * N];
    for r in 0..t {
        let row = &xf[r * K..(r + 1) * K];
        let absmax = row
            .iter()
            .enumerate()
            .filter(|(i, _)| !outlier[*i])
            .fold(0f32, |a, (_, v)| a.max(v.abs()));
        let s = if absmax > 0.0 { absmax / 127.0 } else { 1.0 };
        for j in 0..N {
            let mut dot = 0i64;
            let mut outl = 0f64;
            for i in 0..K {
                let wv = i64::from(wq.q[j * K + i]);
                if outlier[i] {
                    outl += f64::from(row[i]) * wv as f64 * f64::from(wq.scale[j]);
                } else {
                    let xq = (row[i] / s).round().clamp(-127.0, 127.0) as i64;
                    dot += xq * wv;
                }
            }
            want[r * N + j] = dot as f64 * f64::from(s) * f64::from(wq.scale[j]) + outl;
        }
    }
    want
}
