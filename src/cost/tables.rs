//! The kernel tables of one GPU, ready to price any shape: measured (or derived) curves where
//! they exist, the nearest measured shape scaled by roofline where the exact shape was not timed,
//! and the default efficiency set where a whole kernel class is missing.

use super::defaults;
use super::graph::{self, Composition};
use super::interp::{Curve, Grid, Side, rescale};
use super::roofline::{self, Heads, Roofs};
use crate::catalog::quant::{KvDtype, Quant};
use crate::profile::{ElementwiseKind, Measured, Timing};

/// How a price was obtained, as bits (no allocation on the hot path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    /// Below the smallest measured size.
    pub const BELOW: Flags = Flags(1);
    /// Above the largest measured size.
    pub const ABOVE: Flags = Flags(2);
    /// The exact shape was not measured: nearest measured shape scaled by roofline.
    pub const SHAPE: Flags = Flags(4);
    /// No table for this kernel class: default efficiency set.
    pub const DEFAULT: Flags = Flags(8);
    /// Decode table of the other KV dtype, scaled by bytes.
    pub const OTHER_KV: Flags = Flags(16);
    /// The measured prefill table was slower than the FlashAttention-based default, which won.
    pub const FA_DEFAULT: Flags = Flags(32);
    /// Priced from a measured grouped MoE GEMM table.
    pub const MOE_TABLE: Flags = Flags(64);

    pub fn has(self, f: Flags) -> bool {
        self.0 & f.0 != 0
    }

    fn side(s: Side) -> Flags {
        match s {
            Side::Inside => Flags(0),
            Side::Below => Flags::BELOW,
            Side::Above => Flags::ABOVE,
        }
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, o: Flags) {
        self.0 |= o.0;
    }
}

/// A price in seconds and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priced {
    pub s: f64,
    pub flags: Flags,
}

#[derive(Debug, Clone)]
struct GemmCurve {
    quant: Quant,
    n: f64,
    k: f64,
    curve: Curve,
    /// Host time per call the table does not hold (its `host_us_per_call`), s.
    host_s: f64,
}

#[derive(Debug, Clone)]
struct PrefillCurve {
    heads: Heads,
    curve: Curve,
}

#[derive(Debug, Clone)]
struct DecodeGrid {
    kv: KvDtype,
    heads: Heads,
    block: f64,
    grid: Grid,
    /// Non-scaling part of this table's times ([`graph::decode_fixed_s`]).
    fixed: f64,
}

#[derive(Debug, Clone)]
struct ElemCurve {
    kind: ElementwiseKind,
    width: f64,
    curve: Curve,
}

/// Prices kernels on one GPU (the roofs are that GPU's datasheet).
#[derive(Debug, Clone)]
pub struct KernelSet {
    roofs: Roofs,
    /// Fixed (non-scaling) part of the tables' isolated times, seconds.
    fixed: f64,
    /// Isolated → in-graph correction (none for back-to-back tables).
    comp: Composition,
    /// How the tables were timed (`None`: no tables, default efficiency set).
    timing: Option<Timing>,
    /// Cap prefill attention at the FlashAttention-based default (off: tables as measured).
    fa_cap: bool,
    gemm: Vec<GemmCurve>,
    prefill: Vec<PrefillCurve>,
    decode: Vec<DecodeGrid>,
    elem: Vec<ElemCurve>,
    /// Grouped MoE GEMM tables ([`super::moe`]).
    pub(super) moe: Vec<super::moe::MoeCurve>,
}

/// Tables in profiles are milliseconds; the cost model works in seconds.
fn to_s(points: &[(u32, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points.iter().map(|&(x, ms)| (f64::from(x), ms * 1e-3))
}

impl KernelSet {
    /// Tables of `measured` (already on this GPU: measured here or derived for it), priced against
    /// `roofs`, in-graph ([`graph`]); `measured_l2_bytes` is the L2 of the GPU the tables were
    /// measured on. Tables of unknown schemes or with invalid points are ignored.
    pub fn new(measured: Option<&Measured>, roofs: Roofs, measured_l2_bytes: f64) -> KernelSet {
        let mut set = KernelSet {
            roofs,
            fixed: defaults::LAUNCH_FLOOR_S,
            comp: Composition::isolated(),
            timing: None,
            fa_cap: true,
            gemm: Vec::new(),
            prefill: Vec::new(),
            decode: Vec::new(),
            elem: Vec::new(),
            moe: Vec::new(),
        };
        let Some(m) = measured else {
            return set;
        };
        set.fixed = graph::isolated_fixed_s(m);
        // applies the correction only to tables timed in isolation
        set.comp = Composition::for_profile(m, measured_l2_bytes);
        set.timing = Some(m.provenance.timing);
        set.moe = super::moe::curves(&m.moe_gemm);
        for t in &m.gemm {
            let (Ok(quant), Some(curve)) = (t.scheme.parse::<Quant>(), Curve::new(to_s(&t.points)))
            else {
                continue;
            };
            let host_s = t
                .host_us_per_call
                .filter(|us| us.is_finite() && *us > 0.0)
                .map_or(0.0, |us| us * 1e-6);
            set.gemm.push(GemmCurve {
                quant,
                n: f64::from(t.n),
                k: f64::from(t.k),
                curve,
                host_s,
            });
        }
        for t in &m.attn_prefill {
            if let Some(curve) = Curve::new(to_s(&t.points)) {
                set.prefill.push(PrefillCurve {
                    heads: heads(t.heads, t.kv_heads, t.head_dim),
                    curve,
                });
            }
        }
        for t in &m.attn_decode {
            let pts = t
                .points
                .iter()
                .map(|p| (f64::from(p.batch), f64::from(p.context), p.ms * 1e-3));
            if let Some(grid) = Grid::new(pts) {
                set.decode.push(DecodeGrid {
                    kv: t.kv,
                    heads: heads(t.heads, t.kv_heads, t.head_dim),
                    block: f64::from(t.block_size),
                    grid,
                    fixed: graph::decode_fixed_s(t, set.fixed),
                });
            }
        }
        for t in &m.elementwise {
            if let Some(curve) = Curve::new(to_s(&t.points)) {
                set.elem.push(ElemCurve {
                    kind: t.kind,
                    width: f64::from(t.width),
                    curve,
                });
            }
        }
        set
    }

    pub fn roofs(&self) -> &Roofs {
        &self.roofs
    }

    /// Fixed (non-scaling) part of the tables' isolated times, seconds.
    pub(super) fn fixed_s(&self) -> f64 {
        self.fixed
    }

    /// Price kernels as the tables measured them, one call at a time: no CUDA-graph correction,
    /// no FlashAttention cap on prefill attention.
    pub fn isolated(mut self) -> KernelSet {
        self.comp = Composition::isolated();
        self.fa_cap = false;
        self
    }

    /// The isolated → in-graph correction in use.
    pub fn composition(&self) -> Composition {
        self.comp
    }

    /// How the tables were timed (`None` when there are no tables).
    pub fn timing(&self) -> Option<Timing> {
        self.timing
    }

    /// Whether a table exists for this scheme's linear layers.
    pub fn has_gemm(&self, quant: Quant) -> bool {
        self.gemm.iter().any(|g| g.quant == quant.priced_as())
    }

    /// Measured token range of the scheme's nearest table for `(n, k)`.
    pub fn gemm_range(&self, quant: Quant, n: f64, k: f64) -> Option<(f64, f64)> {
        self.nearest_gemm(quant, n, k).map(|g| g.curve.range())
    }

    fn nearest_gemm(&self, quant: Quant, n: f64, k: f64) -> Option<&GemmCurve> {
        // distance in log size and log aspect ratio: a 4096×14336 layer is closer to 4096×16384
        // than to 14336×4096. A table of one or two points (the calibrator's 8192³ roof job) is a
        // last resort: it says little about other token counts.
        let d = |g: &GemmCurve| {
            let sparse = if g.curve.len() < 3 { 100.0 } else { 0.0 };
            sparse
                + ((g.n * g.k).ln() - (n * k).ln()).abs()
                + ((g.n / g.k).ln() - (n / k).ln()).abs()
        };
        let quant = quant.priced_as();
        self.gemm
            .iter()
            .filter(|g| g.quant == quant)
            .min_by(|a, b| d(a).total_cmp(&d(b)))
    }

    /// One linear layer `y[T×n] = x[T×k]·Wᵀ` under `quant`.
    pub fn gemm(&self, quant: Quant, n: f64, k: f64, tokens: f64) -> Priced {
        let r = &self.roofs;
        let want = roofline::gemm(quant, n, k, tokens).seconds(r);
        let Some(g) = self.nearest_gemm(quant, n, k) else {
            let s = defaults::seconds(
                &roofline::gemm(quant, n, k, tokens),
                defaults::gemm_eff(quant, tokens, r),
                r,
            );
            return Priced {
                s,
                flags: Flags::DEFAULT,
            };
        };
        let roof = |x: f64| roofline::gemm(quant, g.n, g.k, x).seconds(r);
        let (t, side) = g.curve.eval(tokens, roof, self.fixed);
        let mut flags = Flags::side(side);
        if g.n != n || g.k != k {
            flags |= Flags::SHAPE;
        }
        let iso = rescale(t, self.fixed, want / roof(tokens));
        Priced {
            s: self
                .comp
                .in_graph(iso, &roofline::gemm(quant, n, k, tokens))
                + g.host_s,
            flags,
        }
    }

    /// Measured prompt-length range of the nearest prefill table.
    pub fn prefill_range(&self, h: Heads) -> Option<(f64, f64)> {
        self.nearest_prefill(h).map(|p| p.curve.range())
    }

    fn nearest_prefill(&self, h: Heads) -> Option<&PrefillCurve> {
        self.nearest_prefill_index(h).map(|i| &self.prefill[i])
    }

    /// Index of the prefill table nearest to `h` (resolve once, then use [`Self::prefill_attn_at`]).
    pub fn nearest_prefill_index(&self, h: Heads) -> Option<usize> {
        let d = |p: &PrefillCurve| {
            ((p.heads.heads * p.heads.head_dim).ln() - (h.heads * h.head_dim).ln()).abs()
                + ((p.heads.kv_heads / p.heads.heads).ln() - (h.kv_heads / h.heads).ln()).abs()
        };
        (0..self.prefill.len()).min_by(|&a, &b| d(&self.prefill[a]).total_cmp(&d(&self.prefill[b])))
    }

    /// Prompt length with the same attention FLOPs as chunks summing to `causal_pairs`.
    pub fn equivalent_tokens(causal_pairs: f64) -> f64 {
        (2.0 * causal_pairs).sqrt()
    }

    /// Causal prefill attention over all prefill chunks of a step, run as one varlen kernel as
    /// vLLM does: `causal_pairs = Σ p(q + p/2)`, `kv_tokens = Σ (q + p)`, `new_tokens = Σ p`.
    /// Priced at the single prompt with the same FLOPs, scaled by the roofline ratio (which
    /// accounts for reading a long cached prefix).
    pub fn prefill_attn(
        &self,
        h: Heads,
        causal_pairs: f64,
        kv_tokens: f64,
        new_tokens: f64,
    ) -> Priced {
        self.prefill_attn_at(
            self.nearest_prefill_index(h),
            h,
            causal_pairs,
            kv_tokens,
            new_tokens,
        )
    }

    /// [`Self::prefill_attn`] with the table already chosen (`None`: default efficiency set).
    pub fn prefill_attn_at(
        &self,
        table: Option<usize>,
        h: Heads,
        causal_pairs: f64,
        kv_tokens: f64,
        new_tokens: f64,
    ) -> Priced {
        let r = &self.roofs;
        let work = roofline::prefill_attn(h, causal_pairs, kv_tokens, new_tokens);
        let p_eq = Self::equivalent_tokens(causal_pairs);
        let Some(p) = table.and_then(|i| self.prefill.get(i)) else {
            return Priced {
                s: defaults::seconds(&work, defaults::prefill_attn_eff(p_eq), r),
                flags: Flags::DEFAULT,
            };
        };
        let roof = |x: f64| roofline::prefill_attn(p.heads, x * x / 2.0, x, x).seconds(r);
        let (t, side) = p.curve.eval(p_eq, roof, self.fixed);
        let mut flags = Flags::side(side);
        if p.heads != h {
            flags |= Flags::SHAPE;
        }
        let iso = rescale(t, self.fixed, work.seconds(r) / roof(p_eq));
        let measured = self.comp.in_graph(iso, &work);
        // vLLM runs FlashAttention; a profile may time a slower kernel of its own (cardplan's
        // calibrator does, and says its table is an upper bound). Price no higher than the
        // FlashAttention-based default.
        let fa = defaults::seconds(&work, defaults::prefill_attn_eff(p_eq), r);
        if !self.fa_cap {
            return Priced { s: measured, flags };
        }
        if fa < measured {
            flags |= Flags::FA_DEFAULT;
        }
        Priced {
            s: measured.min(fa),
            flags,
        }
    }

    fn nearest_decode(&self, kv: KvDtype, h: Heads) -> Option<&DecodeGrid> {
        self.nearest_decode_index(kv, h).map(|i| &self.decode[i])
    }

    /// Index of the decode table nearest to (`kv`, `h`): same KV dtype first.
    pub fn nearest_decode_index(&self, kv: KvDtype, h: Heads) -> Option<usize> {
        let d = |g: &DecodeGrid| {
            // another dtype of the same width (int8 for fp8) reads the same bytes: second best
            let kv_penalty = if g.kv == kv {
                0.0
            } else if g.kv.bytes() == kv.bytes() {
                50.0
            } else {
                100.0
            };
            kv_penalty
                + ((g.heads.kv_heads * g.heads.head_dim).ln() - (h.kv_heads * h.head_dim).ln())
                    .abs()
                + ((g.heads.heads / g.heads.kv_heads).ln() - (h.heads / h.kv_heads).ln()).abs()
        };
        (0..self.decode.len()).min_by(|&a, &b| d(&self.decode[a]).total_cmp(&d(&self.decode[b])))
    }

    /// Measured (batch, context) ranges of the nearest decode table.
    pub fn decode_range(&self, kv: KvDtype, h: Heads) -> Option<((f64, f64), (f64, f64))> {
        self.nearest_decode(kv, h)
            .map(|g| (g.grid.row_range(), g.grid.col_range()))
    }

    /// Decode attention of `batch` sequences at mean context `context`.
    pub fn decode_attn(
        &self,
        kv: KvDtype,
        h: Heads,
        block: f64,
        batch: f64,
        context: f64,
    ) -> Priced {
        self.decode_attn_at(
            self.nearest_decode_index(kv, h),
            kv,
            h,
            block,
            batch,
            context,
        )
    }

    /// [`Self::decode_attn`] with the table already chosen (`None`: default efficiency set).
    pub fn decode_attn_at(
        &self,
        table: Option<usize>,
        kv: KvDtype,
        h: Heads,
        block: f64,
        batch: f64,
        context: f64,
    ) -> Priced {
        let r = &self.roofs;
        let kvb = kv.bytes() as f64;
        let work = roofline::decode_attn(h, kvb, block, batch, context);
        let Some(g) = table.and_then(|i| self.decode.get(i)) else {
            return Priced {
                s: defaults::seconds(&work, defaults::decode_attn_eff(), r),
                flags: Flags::DEFAULT,
            };
        };
        let gkvb = g.kv.bytes() as f64;
        let roof = |b: f64, c: f64| roofline::decode_attn(g.heads, gkvb, g.block, b, c).seconds(r);
        let (t, sb, sc) = g.grid.eval(batch, context, roof, g.fixed);
        let mut flags = Flags::side(sb) | Flags::side(sc);
        if g.heads != h || g.block != block {
            flags |= Flags::SHAPE;
        }
        if g.kv != kv {
            flags |= Flags::OTHER_KV;
        }
        let iso = rescale(t, g.fixed, work.seconds(r) / roof(batch, context));
        Priced {
            s: self.comp.in_graph(iso, &work),
            flags,
        }
    }

    /// An elementwise kernel of the profile contract.
    pub fn elementwise(&self, kind: ElementwiseKind, width: f64, tokens: f64) -> Priced {
        let work = roofline::elementwise(kind, width, tokens);
        self.elementwise_like(kind, width, tokens, work.bytes)
    }

    /// Another memory-bound elementwise pass of `bytes` over `tokens` rows (rotary, KV-cache write,
    /// embedding gather), priced at the efficiency of the measured `kind` kernel of `width`.
    pub fn elementwise_like(
        &self,
        kind: ElementwiseKind,
        width: f64,
        tokens: f64,
        bytes: f64,
    ) -> Priced {
        let r = &self.roofs;
        let work = roofline::Work::bytes(bytes);
        let d = |e: &ElemCurve| (e.width.ln() - width.ln()).abs();
        let Some(e) = self
            .elem
            .iter()
            .filter(|e| e.kind == kind)
            .min_by(|a, b| d(a).total_cmp(&d(b)))
        else {
            return Priced {
                s: defaults::seconds(&work, defaults::elementwise_eff(), r),
                flags: Flags::DEFAULT,
            };
        };
        let roof = |x: f64| roofline::elementwise(kind, e.width, x).seconds(r);
        let (t, side) = e.curve.eval(tokens, roof, self.fixed);
        let mut flags = Flags::side(side);
        if e.width != width {
            flags |= Flags::SHAPE;
        }
        let iso = rescale(t, self.fixed, work.seconds(r) / roof(tokens));
        Priced {
            s: self.comp.in_graph(iso, &work),
            flags,
        }
    }
}

pub fn heads(heads: u32, kv_heads: u32, head_dim: u32) -> Heads {
    Heads {
        heads: f64::from(heads),
        kv_heads: f64::from(kv_heads),
        head_dim: f64::from(head_dim),
    }
}
