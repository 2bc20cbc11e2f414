//! Attention: paged decode (every kernel variant of `attention.cu` at several partition sizes,
//! the fastest timed in full) and causal prefill, with the KV cache and block tables they read.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::CudaTimer;
use super::device::{Buf, GpuErr, cfg};
use crate::calibrate::kernels::{DecodeKernel, PART};
use crate::catalog::quant::KvDtype;
use crate::error::{Error, Result};

/// Dynamic shared memory of `prefill_attn` (see attention.cu).
pub(super) const PREFILL_SMEM: u32 = (64 + 128) * 136 * 2 + 4 * 16 * 68 * 4 + 4 * 16 * 72 * 2;
/// The scale of int8 KV values (one per cache, as the checks' reference assumes).
pub(super) const INT8_KV_SCALE: f32 = 1.0 / 64.0;

/// A paged KV cache for one (KV dtype, heads, KV heads), sized for the sweep's largest batch and
/// context, with the query, output and partition buffers.
pub(super) struct DecodeState {
    pub(super) key: (KvDtype, u32, u32),
    pub(super) kc: Buf,
    pub(super) vc: Buf,
    pub(super) table: Buf,
    pub(super) max_blocks: u32,
    /// Blocks in the pool (each job scatters its blocks over the first ones it needs).
    pub(super) blocks: usize,
    pub(super) q: Buf,
    pub(super) out: Buf,
    pub(super) part_o: Buf,
    pub(super) part_m: Buf,
    pub(super) part_l: Buf,
}

/// Q, K, V and O of the sweep's longest prompt for one (heads, KV heads).
pub(super) struct PrefillState {
    key: (u32, u32),
    q: Buf,
    k: Buf,
    v: Buf,
    o: Buf,
}

/// One point of the decode sweep.
#[derive(Clone, Copy)]
struct DecodePoint {
    kv: KvDtype,
    heads: u32,
    kv_heads: u32,
    batch: u32,
    context: u32,
}

/// Bytes of one KV value.
fn kv_elem(kv: KvDtype) -> usize {
    kv.bytes() as usize
}

/// The smallest decode partition tried: half the base one (more CTAs for small batches), at
/// least two KV blocks.
pub(super) fn min_part(base: u32) -> u32 {
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

impl CudaTimer {
    /// Tokens per decode partition: 512, halved (down to 64) while the grid would not fill the
    /// GPU twice over, as flash-decoding splits long contexts for small batches.
    pub(super) fn decode_part(&self, batch: u32, kv_heads: u32, max_ctx: u32) -> u32 {
        let target = 2 * self.dev.info.sm_count;
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
            .dev
            .func(&name)?
            .occupancy_max_active_blocks_per_multiprocessor(
                kernel.threads(),
                kernel.dyn_smem(kv) as usize,
                None,
            )
            .gpu(&name)?;
        Ok(per_sm.max(1) * self.dev.info.sm_count)
    }

    /// Paged decode: one query per sequence; partitions of the context, then a reduce. `table`
    /// holds `stride` block ids per sequence.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode(
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
            // e4m3 values of magnitude 2^-3..2 (fill_e4m3): the per-tensor scale is 1
            KvDtype::Fp8 => 1.0,
        };
        let name = kernel.name(kv, heads / kv_heads);
        launch!(self.dev, &name, cfg((kv_heads, batch, nparts), kernel.threads(), kernel.dyn_smem(kv));
            d.q.ptr, d.kc.ptr, d.vc.ptr, table, ctx_lens, d.out.ptr, d.part_o.ptr,
            d.part_m.ptr, d.part_l.ptr, scale, kv_scale, heads as i32, kv_heads as i32,
            stride as i32, part as i32)?;
        if nparts > 1 {
            launch!(self.dev, "paged_decode_reduce", cfg((heads, batch, 1), 128, 0);
                d.part_o.ptr, d.part_m.ptr, d.part_l.ptr, d.out.ptr, heads as i32, nparts as i32)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn prefill(
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
        launch!(self.dev, "prefill_attn", cfg((t.div_ceil(64), heads, 1), 128, PREFILL_SMEM);
            q, k, v, o, t as i32, heads as i32, kv_heads as i32, scale_log2)
    }

    /// The KV pool and the decode buffers for (kv, heads, kv_heads), kept while the key stays.
    fn decode_state(&mut self, kv: KvDtype, heads: u32, kv_heads: u32) -> Result<()> {
        let key = (kv, heads, kv_heads);
        if matches!(&self.bufs.decode, Some(d) if d.key == key) {
            return Ok(());
        }
        self.bufs.decode = None;
        let max_blocks = self.bounds.max_context.div_ceil(16);
        let blocks = (self.bounds.max_batch * max_blocks) as usize;
        let cache_bytes = blocks * kv_heads as usize * 16 * 128 * kv_elem(kv);
        let kc = self.dev.alloc(cache_bytes)?;
        let vc = self.dev.alloc(cache_bytes)?;
        for c in [&kc, &vc] {
            match kv {
                KvDtype::Fp16 => self.dev.fill_half(c, 1.0)?,
                KvDtype::Int8 => self.dev.fill_u8(c)?,
                KvDtype::Fp8 => self.dev.fill_e4m3(c)?,
            }
        }
        let qn = u64::from(self.bounds.max_batch) * u64::from(heads) * 128;
        // Largest batch × partitions over the sweep (at the smallest partition tried).
        let nparts = self
            .bounds
            .decode_grid
            .iter()
            .map(|&(b, c)| {
                b as usize * c.div_ceil(min_part(self.decode_part(b, kv_heads, c))) as usize
            })
            .max()
            .unwrap_or(1);
        let bh = heads as usize;
        self.bufs.decode = Some(DecodeState {
            key,
            q: self.dev.new_half(qn, 1.0)?,
            out: self.dev.alloc(2 * qn as usize)?,
            part_o: self.dev.alloc(4 * bh * nparts * 128)?,
            part_m: self.dev.alloc(4 * bh * nparts)?,
            part_l: self.dev.alloc(4 * bh * nparts)?,
            kc,
            vc,
            table: self.dev.alloc(16)?,
            max_blocks,
            blocks,
        });
        Ok(())
    }

    pub(super) fn time_decode(
        &mut self,
        kv: KvDtype,
        heads: u32,
        kv_heads: u32,
        batch: u32,
        context: u32,
    ) -> Result<f64> {
        self.decode_state(kv, heads, kv_heads)?;
        let p = DecodePoint {
            kv,
            heads,
            kv_heads,
            batch,
            context,
        };
        let lens = self.dev.upload(&vec![context as i32; batch as usize])?;
        let d = self
            .bufs
            .decode
            .as_ref()
            .ok_or_else(|| Error::Internal("decode buffers".into()))?;
        // Each rotated copy is a block table over its own stretch of the (shuffled) pool, so the
        // copies read disjoint KV blocks; q and the outputs are shared.
        let stride = context.div_ceil(16);
        let per_copy = batch as usize * stride as usize;
        let kv_bytes = 2
            * u64::from(batch)
            * u64::from(context)
            * u64::from(kv_heads)
            * 128
            * kv_elem(kv) as u64;
        let copies = self.copies_for(kv_bytes, d.blocks / per_copy.max(1));
        let table = self.block_tables(d, &p, copies * per_copy)?;
        let copy_table = |i: usize| table.ptr + (4 * i * per_copy) as u64;
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
        // Every candidate on short samples; the fastest is what an autotuned engine would run,
        // and is then timed in full.
        let mut best: Option<(f64, DecodeKernel, u32)> = None;
        for (part, kernel) in self.decode_candidates(&p)? {
            let ms = self.bench_select(copies, &|s, i| run(s, i, kernel, part))?;
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

    /// The `n` blocks in use, scattered at random over a span exactly as large as they are: a
    /// full, fragmented cache (vLLM sizes each layer's cache to the memory left), the same for
    /// every point whatever the largest point of the sweep is.
    fn block_tables(&self, d: &DecodeState, p: &DecodePoint, n: usize) -> Result<Buf> {
        if n > d.blocks {
            return Err(Error::Internal(format!(
                "decode batch {} × context {} needs more blocks than the pool holds",
                p.batch, p.context
            )));
        }
        let mut ids: Vec<i32> = (0..n as i32).collect();
        let mut rng = StdRng::seed_from_u64(u64::from(p.batch) << 32 | u64::from(p.context));
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.random_range(0..=i));
        }
        self.dev.upload(&ids)
    }

    /// Every kernel variant at up to five power-of-two partition sizes (half the base one to 8x,
    /// up to the whole context) and the wave-fitted ones, as (partition, kernel), by partition
    /// and then kernel: each size's variants are sampled under the same load.
    fn decode_candidates(&self, p: &DecodePoint) -> Result<Vec<(u32, DecodeKernel)>> {
        let base = self.decode_part(p.batch, p.kv_heads, p.context);
        let mut parts = vec![min_part(base)];
        for scale in [1u32, 2, 4, 8] {
            if scale > 1 && base * scale / 2 >= p.context {
                break; // the previous size already covered the context in one partition
            }
            parts.push(base * scale);
        }
        parts.dedup();
        // Per kernel, also the partitions that fill the CTAs the GPU holds at once (one or two
        // full waves): powers of two can leave a last wave mostly idle (e.g. 2.6 waves).
        let pairs = p.batch * p.kv_heads;
        let mut runs = Vec::new();
        for (order, kernel) in DecodeKernel::for_kv(p.kv).enumerate() {
            let resident = self.decode_resident(kernel, p.kv, p.heads / p.kv_heads)?;
            let mut own = parts.clone();
            own.extend(wave_parts(pairs, p.context, resident, min_part(base)));
            own.sort_unstable();
            own.dedup();
            runs.extend(
                own.into_iter()
                    .filter(|&part| part <= kernel.max_part())
                    .map(|part| (part, order, kernel)),
            );
        }
        runs.sort_by_key(|&(part, order, _)| (part, order));
        Ok(runs
            .into_iter()
            .map(|(part, _, kernel)| (part, kernel))
            .collect())
    }

    pub(super) fn time_prefill(&mut self, heads: u32, kv_heads: u32, t: u32) -> Result<f64> {
        let key = (heads, kv_heads);
        if !matches!(&self.bufs.prefill, Some(p) if p.key == key) {
            self.bufs.prefill = None;
            let tm = u64::from(self.bounds.max_prefill);
            self.bufs.prefill = Some(PrefillState {
                key,
                q: self.dev.new_half(tm * u64::from(heads) * 128, 1.0)?,
                k: self.dev.new_half(tm * u64::from(kv_heads) * 128, 1.0)?,
                v: self.dev.new_half(tm * u64::from(kv_heads) * 128, 1.0)?,
                o: self.dev.alloc((2 * tm * u64::from(heads) * 128) as usize)?,
            });
        }
        let p = self
            .bufs
            .prefill
            .as_ref()
            .ok_or_else(|| Error::Internal("prefill buffers".into()))?;
        // Rotated copies are consecutive stretches of `t` tokens of the preallocated buffers.
        let (qrow, kvrow) = (256 * u64::from(heads), 256 * u64::from(kv_heads));
        let tt = u64::from(t);
        let copies = self.copies_for(
            tt * (qrow + 2 * kvrow),
            (self.bounds.max_prefill / t.max(1)) as usize,
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
    fn wave_parts_respect_the_floor_and_skip_full_grids() {
        // One sequence: the fitted size would be below the floor, which wins.
        assert_eq!(wave_parts(8, 512, 528, 64), vec![64]);
        // Enough pairs to fill the GPU without splitting: nothing to add.
        assert!(wave_parts(2048, 8192, 396, 256).is_empty());
        // A partition as long as the context is no split.
        assert!(wave_parts(128, 16, 396, 16).is_empty());
    }
}
