//! Correctness checks: every custom kernel (and the library GEMMs as called) against the CPU
//! reference in [`crate::calibrate::reference`], on shapes that leave partial tiles, before any
//! timing.

use half::f16;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::CudaTimer;
use super::attention::{DecodeState, INT8_KV_SCALE, min_part};
use super::cublas::Imma;
use super::device::Buf;
use super::gemm::{I8Weights, Int8Act, Nf4Scratch, Nf4Weights};
use crate::calibrate::bnb::MMA_TILES;
use crate::calibrate::kernels::{CHECK_DECODE_HEADS, CHECK_GEMV_TOKENS, DecodeKernel, PART};
use crate::calibrate::lowbit;
use crate::calibrate::quant::{self, Nf4Tensor};
use crate::calibrate::reference as cpu;
use crate::calibrate::timer::CheckReport;
use crate::catalog::quant::KvDtype;
use crate::error::Result;

/// A partition of three KV blocks, checked because wave-fitted partitions are multiples of a
/// block but not powers of two.
const ODD_PART: u32 = 48;

fn rand_f16(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f16> {
    (0..n)
        .map(|_| f16::from_f32(rng.random_range(-scale..scale)))
        .collect()
}

fn to_f32(v: &[f16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// The linear layer the GEMM checks share: `n × k` weights, up to `tmax` tokens of x, on the
/// host and the device.
struct LinearCase {
    n: usize,
    k: usize,
    tmax: usize,
    wf: Vec<f32>,
    xf: Vec<f32>,
    w_d: Buf,
    x_d: Buf,
    y_d: Buf,
}

impl LinearCase {
    const TOL: (f64, f64) = (5e-3, 1e-2);

    /// The first `t` rows of y read back and compared with x · wrefᵀ on the CPU.
    fn compare(&self, s: &CudaTimer, name: &str, t: usize, wref: &[f32]) -> Result<CheckReport> {
        let y: Vec<f16> = s.dev.dtoh(&self.y_d, t * self.n)?;
        Ok(cpu::compare(
            name,
            &to_f32(&y),
            &cpu::linear(&self.xf, wref, t, self.n, self.k),
            Self::TOL.0,
            Self::TOL.1,
        ))
    }

    fn dims(&self) -> (u32, u32, u32) {
        (self.n as u32, self.k as u32, self.tmax as u32)
    }
}

impl CudaTimer {
    pub(super) fn check_all(&mut self) -> Result<Vec<CheckReport>> {
        let mut rng = StdRng::seed_from_u64(u64::from(self.dev.next_seed()));
        let mut out = Vec::new();
        out.extend(self.check_linear(&mut rng)?);
        out.extend(self.check_decode(&mut rng)?);
        out.push(self.check_prefill(&mut rng)?);
        out.extend(self.check_elementwise(&mut rng)?);
        // MoE paths that fail are turned off one by one inside (their jobs are skipped)
        out.extend(self.check_moe(&mut rng)?);
        // The quantized paths are new and unverified on most GPUs: a failure turns them off
        // (their jobs are skipped with the reason) instead of aborting the whole calibration.
        if self.quant_off.is_none() {
            match self.check_quant(&mut rng) {
                Ok(reports) => {
                    if let Some(bad) = reports.iter().find(|r| !r.passed()) {
                        self.quant_off = Some(format!(
                            "{} failed its check: worst error {:.3}x the bound {} (max abs error {:.3e})",
                            bad.kernel, bad.worst_ratio, bad.bound, bad.max_abs_err
                        ));
                    }
                    out.extend(reports.into_iter().filter(|r| r.passed()));
                }
                Err(e) => self.quant_off = Some(format!("the quantized-path checks failed: {e}")),
            }
        }
        Ok(out)
    }

    /// A CPU-quantized NF4 tensor on the device.
    fn upload_nf4(&self, t: &Nf4Tensor) -> Result<Nf4Weights> {
        Ok(Nf4Weights {
            packed: self.dev.upload(&t.packed)?,
            absmax_q: self.dev.upload(&t.absmax_q)?,
            absmax2: self.dev.upload(&t.absmax2)?,
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
        let x_d = self.dev.upload(&x)?;
        let y_d = self.dev.alloc(2 * t * n)?;
        let mut reports = Vec::new();
        for tile in MMA_TILES {
            self.dev.fill_half(&y_d, 1.0)?; // no output left over from the previous tile
            self.nf4_mma(
                tile, &s, nf4.offset, x_d.ptr, y_d.ptr, n as u32, k as u32, t as u32,
            )?;
            let y: Vec<f16> = self.dev.dtoh(&y_d, t * n)?;
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

    /// The fp16 GEMMs (cuBLASLt and cublasGemmEx), the NF4 paths and the int8 paths on one layer.
    fn check_linear(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let (n, k) = (72usize, 1088usize);
        let tmax = 37usize;
        let w = rand_f16(rng, n * k, 0.05);
        let x = rand_f16(rng, tmax * k, 1.0);
        let c = LinearCase {
            n,
            k,
            tmax,
            wf: to_f32(&w),
            xf: to_f32(&x),
            w_d: self.dev.upload(&w)?,
            x_d: self.dev.upload(&x)?,
            y_d: self.dev.alloc(2 * tmax * n)?,
        };
        let (nu, ku, tu) = c.dims();
        let mut reports = Vec::new();
        let (w_d, x_d, y_d) = (c.w_d.ptr, c.x_d.ptr, c.y_d.ptr);
        // fp16 cuBLASLt.
        let m16 = self.imma_prepare(true, nu, ku, tu, (&[w_d], x_d, y_d))?;
        self.imma_run(&m16, w_d, x_d, y_d)?;
        reports.push(c.compare(self, "fp16 cuBLASLt GEMM", tmax, &c.wf)?);
        // fp16 cublasGemmEx (torch's call).
        self.gemmex_run(w_d, x_d, y_d, nu, ku, tu)?;
        reports.push(c.compare(self, "fp16 cublasGemmEx", tmax, &c.wf)?);
        reports.extend(self.check_nf4_linear(&c, &m16)?);
        reports.extend(self.check_nf4_mma(rng)?);
        reports.extend(self.check_int8_linear(&c)?);
        Ok(reports)
    }

    /// NF4: both dequantize kernels against the CPU's dequantized weights, the fused GEMV, and
    /// dequantize + the cuBLASLt GEMM `m16`.
    fn check_nf4_linear(&mut self, c: &LinearCase, m16: &Imma) -> Result<Vec<CheckReport>> {
        let (n, k, tmax) = (c.n, c.k, c.tmax);
        let (nu, ku, _) = c.dims();
        let nf4 = Nf4Tensor::quantize(&c.wf, n, k);
        let wdq = nf4.dequantize();
        let s = self.upload_nf4(&nf4)?;
        let wdq_d = self.dev.alloc(2 * n * k)?;
        self.nf4_dequant(&s, nf4.offset, wdq_d.ptr, (n * k) as u64)?;
        let dq: Vec<f16> = self.dev.dtoh(&wdq_d, n * k)?;
        let wdq64: Vec<f64> = wdq.iter().map(|&v| f64::from(v)).collect();
        let mut reports = vec![cpu::compare(
            "nf4_dequant",
            &to_f32(&dq),
            &wdq64,
            1e-4,
            1e-3,
        )];
        let blocks = (n * k).div_ceil(64);
        let sc = Nf4Scratch {
            wdq: self.dev.alloc(2 * n * k)?,
            absmax: self.dev.alloc(4 * blocks)?,
            absmax_off: self.dev.alloc(4 * blocks)?,
        };
        self.nf4_bnb_dequant(&s, nf4.offset, &sc, (n * k) as u64)?;
        let dq: Vec<f16> = self.dev.dtoh(&sc.wdq, n * k)?;
        reports.push(cpu::compare(
            "nf4 bitsandbytes dequantize sequence",
            &to_f32(&dq),
            &wdq64,
            1e-4,
            1e-3,
        ));
        for t in CHECK_GEMV_TOKENS.map(|t| t as usize) {
            self.nf4_gemv(&s, nf4.offset, c.x_d.ptr, c.y_d.ptr, nu, ku, t as u32)?;
            reports.push(c.compare(self, &format!("nf4_gemv T={t}"), t, &wdq)?);
        }
        self.imma_run(m16, wdq_d.ptr, c.x_d.ptr, c.y_d.ptr)?;
        reports.push(c.compare(self, "nf4_dequant + cuBLASLt T=37", tmax, &wdq)?);
        Ok(reports)
    }

    /// int8: the W8A16 GEMV, and W8A8 (quantize, IMMA, dequantize) against an exact integer dot.
    fn check_int8_linear(&mut self, c: &LinearCase) -> Result<Vec<CheckReport>> {
        let (n, k, tmax) = (c.n, c.k, c.tmax);
        let (nu, ku, tu) = c.dims();
        let wq = quant::quantize_rows(&c.wf, n, k);
        let wq_f = wq.dequantize(k);
        let st = I8Weights {
            wq: self.dev.upload(&wq.q)?,
            wscale: self.dev.upload(&wq.scale)?,
        };
        let act = Int8Act {
            // Room for T rounded up to 4 (see imma_prepare).
            xq: self.dev.alloc(tmax.next_multiple_of(4) * k)?,
            sx: self.dev.alloc(4 * tmax)?,
            acc: self.dev.alloc(4 * tmax.next_multiple_of(4) * n)?,
        };
        let mut reports = Vec::new();
        for t in CHECK_GEMV_TOKENS.map(|t| t as usize) {
            self.w8a16(&st, c.x_d.ptr, c.y_d.ptr, nu, ku, t as u32)?;
            reports.push(c.compare(self, &format!("w8a16_gemv T={t}"), t, &wq_f)?);
        }
        let m = self.imma_prepare(false, nu, ku, tu, (&[st.wq.ptr], act.xq.ptr, act.acc.ptr))?;
        self.w8a8(&m, &st, &act, c.x_d.ptr, c.y_d.ptr, nu, ku, tu)?;
        let y: Vec<f16> = self.dev.dtoh(&c.y_d, tmax * n)?;
        let xq = quant::quantize_rows(&c.xf, tmax, k);
        let mut want = vec![0f64; tmax * n];
        for ti in 0..tmax {
            for j in 0..n {
                let dot: i64 = (0..k)
                    .map(|i| i64::from(xq.q[ti * k + i]) * i64::from(wq.q[j * k + i]))
                    .sum();
                want[ti * n + j] = dot as f64 * f64::from(xq.scale[ti]) * f64::from(wq.scale[j]);
            }
        }
        reports.push(cpu::compare(
            "w8a8 quantize + IMMA + dequantize T=37",
            &to_f32(&y),
            &want,
            LinearCase::TOL.0,
            LinearCase::TOL.1,
        ));
        Ok(reports)
    }

    /// Paged decode, every kernel variant and both KV dtypes, on split contexts (several
    /// partitions, some empty) and, with 140 short sequences, a grid large enough for the
    /// single-partition path.
    fn check_decode(&mut self, rng: &mut StdRng) -> Result<Vec<CheckReport>> {
        let mut reports = Vec::new();
        for kv in KvDtype::ALL {
            let many: Vec<i32> = (0..140).map(|i| 1 + (i * 7) % 64).collect();
            for ctx in [vec![37i32, 600, 1300], vec![100, 512, 17], many] {
                reports.extend(self.check_decode_case(rng, kv, &ctx)?);
            }
        }
        Ok(reports)
    }

    /// Random K and V caches of `len` elements in `kv`, on the device, and what they hold.
    #[allow(clippy::type_complexity)]
    fn kv_caches(
        &mut self,
        rng: &mut StdRng,
        kv: KvDtype,
        cache_len: usize,
    ) -> Result<(Buf, Buf, Vec<f32>, Vec<f32>)> {
        Ok(match kv {
            KvDtype::Fp16 => {
                let kc = rand_f16(rng, cache_len, 1.0);
                let vc = rand_f16(rng, cache_len, 1.0);
                (
                    self.dev.upload(&kc)?,
                    self.dev.upload(&vc)?,
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
                (
                    self.dev.upload(&kc)?,
                    self.dev.upload(&vc)?,
                    deq(&kc),
                    deq(&vc),
                )
            }
            KvDtype::Fp8 => {
                // random values through the CPU e4m3 encoder; the kernel decodes by hand
                let mut codes = || -> Vec<u8> {
                    (0..cache_len)
                        .map(|_| lowbit::e4m3_encode(rng.random_range(-2.0f32..2.0)))
                        .collect()
                };
                let (kc, vc) = (codes(), codes());
                let deq = |v: &[u8]| v.iter().map(|&b| lowbit::e4m3_decode(b)).collect();
                (
                    self.dev.upload(&kc)?,
                    self.dev.upload(&vc)?,
                    deq(&kc),
                    deq(&vc),
                )
            }
        })
    }

    /// Random KV caches for the contexts `ctx` on the device, in a shuffled block table.
    fn decode_case(
        &mut self,
        rng: &mut StdRng,
        kv: KvDtype,
        ctx: &[i32],
    ) -> Result<(DecodeCase, DecodeState)> {
        let (heads, kv_heads) = (CHECK_DECODE_HEADS.0 as usize, CHECK_DECODE_HEADS.1 as usize);
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
        let (kc_d, vc_d, kf, vf) = self.kv_caches(rng, kv, cache_len)?;
        let base = self.decode_part(b as u32, kv_heads as u32, max_ctx);
        let nparts = max_ctx.div_ceil(min_part(base).min(ODD_PART)) as usize;
        let d = DecodeState {
            key: (kv, heads as u32, kv_heads as u32),
            kc: kc_d,
            vc: vc_d,
            table: self.dev.upload(&table)?,
            max_blocks: max_blocks as u32,
            blocks,
            q: self.dev.upload(&q)?,
            out: self.dev.alloc(2 * b * heads * 128)?,
            part_o: self.dev.alloc(4 * b * heads * nparts * 128)?,
            part_m: self.dev.alloc(4 * b * heads * nparts)?,
            part_l: self.dev.alloc(4 * b * heads * nparts)?,
        };
        let case = DecodeCase {
            q: to_f32(&q),
            kf,
            vf,
            table,
            max_ctx,
            base,
        };
        Ok((case, d))
    }

    /// Every kernel of `kv` at the base partition and half of it; the one-pass kernels also 8x
    /// longer and at a size that is no power of two (the sweep tries such sizes).
    fn check_decode_case(
        &mut self,
        rng: &mut StdRng,
        kv: KvDtype,
        ctx: &[i32],
    ) -> Result<Vec<CheckReport>> {
        let (heads, kv_heads) = (CHECK_DECODE_HEADS.0 as usize, CHECK_DECODE_HEADS.1 as usize);
        let b = ctx.len();
        let (case, d) = self.decode_case(rng, kv, ctx)?;
        let lens = self.dev.upload(ctx)?;
        let want = cpu::decode_attention(
            &case.q,
            &case.kf,
            &case.vf,
            &case.table,
            ctx,
            heads,
            kv_heads,
            d.max_blocks as usize,
        );
        let label = if ctx.len() > 8 {
            format!("{} contexts of 1..64", ctx.len())
        } else {
            format!("contexts {ctx:?}")
        };
        let base = case.base;
        let runs = DecodeKernel::for_kv(kv).flat_map(|k| {
            let long = (k.max_part() > PART).then_some([(k, 8 * base), (k, ODD_PART)]);
            [(k, base), (k, min_part(base))]
                .into_iter()
                .chain(long.into_iter().flatten())
        });
        let mut reports = Vec::new();
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
                case.max_ctx,
                kernel,
                part,
            )?;
            let y: Vec<f16> = self.dev.dtoh(&d.out, b * heads * 128)?;
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
        Ok(reports)
    }

    fn check_prefill(&mut self, rng: &mut StdRng) -> Result<CheckReport> {
        let (t, heads, kv_heads) = (200usize, 4usize, 2usize);
        let q = rand_f16(rng, t * heads * 128, 1.0);
        let k = rand_f16(rng, t * kv_heads * 128, 1.0);
        let v = rand_f16(rng, t * kv_heads * 128, 1.0);
        let (qd, kd, vd) = (
            self.dev.upload(&q)?,
            self.dev.upload(&k)?,
            self.dev.upload(&v)?,
        );
        let od = self.dev.alloc(2 * t * heads * 128)?;
        self.prefill(
            qd.ptr,
            kd.ptr,
            vd.ptr,
            od.ptr,
            t as u32,
            heads as u32,
            kv_heads as u32,
        )?;
        let y: Vec<f16> = self.dev.dtoh(&od, t * heads * 128)?;
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
        let (xd, rd, wd) = (
            self.dev.upload(&x)?,
            self.dev.upload(&r)?,
            self.dev.upload(&w)?,
        );
        let yd = self.dev.alloc(2 * t * width)?;
        self.rmsnorm(xd.ptr, rd.ptr, wd.ptr, yd.ptr, width as u32, t as u32)?;
        let y: Vec<f16> = self.dev.dtoh(&yd, t * width)?;
        let r2: Vec<f16> = self.dev.dtoh(&rd, t * width)?;
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
        let id = self.dev.upload(&input)?;
        let od = self.dev.alloc(2 * t * width)?;
        self.silu(id.ptr, od.ptr, width as u32, t as u32)?;
        let y: Vec<f16> = self.dev.dtoh(&od, t * width)?;
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

/// The host side of one decode check: the query and dequantized caches for the reference, the
/// block table, and the partition sizes the kernels run with.
struct DecodeCase {
    q: Vec<f32>,
    kf: Vec<f32>,
    vf: Vec<f32>,
    table: Vec<i32>,
    max_ctx: u32,
    base: u32,
}
