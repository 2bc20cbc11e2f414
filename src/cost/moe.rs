//! The feed-forward block of a mixture-of-experts model: router, routed experts, shared experts,
//! and the dense MLP of any layer that is not MoE.
//!
//! A step of `T` tokens sends `T·k` token-rows to `E` experts. Assuming uniform routing (each token
//! picks `k` distinct experts, all equally likely, independently of the others), the expected
//! number of distinct experts touched is `E·(1 − (1 − k/E)^T)`: `k` at `T = 1`, `E` as `T` grows.
//! Each touched expert runs its up/gate and down GEMMs over `T·k / distinct` rows on average and
//! reads its weights once; untouched experts cost nothing. So decode at small batch reads about
//! the active parameters, and a large batch reads every expert.
//!
//! Real routing is not uniform: popular experts get more rows and some experts none, so fewer
//! distinct experts are touched (fewer weight bytes) while the busiest expert's GEMM, which the
//! grouped kernel waits on, is longer. Uniform routing is the stated assumption on both counts.
//!
//! The grouped expert GEMM is priced from the profile's measured `moe_gemm` table (one grouped
//! call over the touched experts, timed by `calibrate --moe-only` under the same uniform, even
//! routing) where the profile has one and the experts run in 16 bits; otherwise from the
//! scheme's dense GEMM tables, as one kernel over all touched experts (a fused MoE kernel
//! launches once and streams every touched expert's weights).

use super::interp::{Curve, rescale};
use super::roofline::{Rate, Work};
use super::tables::{Flags, KernelSet, Priced};
use crate::catalog::model::ModelArch;
use crate::catalog::moe::ExpertFormat;
use crate::catalog::quant::Quant;
use crate::profile::{ElementwiseKind, MoeGemmTable};

/// Roofline work of the grouped expert GEMM of one linear (`experts` of `n × k`, `top_k` per
/// token) at `tokens` tokens in 16 bits: the expected distinct experts' weights read once, the
/// `T·k` rows' activations read and written.
pub fn grouped_work(n: f64, k: f64, experts: f64, top_k: f64, tokens: f64) -> Work {
    let d = expected_distinct(experts, top_k, tokens).max(1.0);
    let rows = tokens * top_k;
    Work {
        bytes: 2.0 * d * n * k + 2.0 * rows * (n + k),
        flops: 2.0 * rows * n * k,
        rate: Rate::Fp16,
    }
}

/// Each point of `tables` through `scale(ms, work)` (a derived GPU's roofline scaling).
pub(super) fn scale_tables(tables: &mut [MoeGemmTable], scale: &dyn Fn(f64, Work) -> f64) {
    for t in tables {
        let (e, k) = (f64::from(t.experts), f64::from(t.top_k));
        let (n, kk) = (f64::from(t.n), f64::from(t.k));
        for p in &mut t.points {
            p.1 = scale(p.1, grouped_work(n, kk, e, k, f64::from(p.0)));
        }
    }
}

/// One measured `moe_gemm` table, ready to price.
#[derive(Debug, Clone)]
pub struct MoeCurve {
    bf16: bool,
    experts: f64,
    top_k: f64,
    n: f64,
    k: f64,
    curve: Curve,
}

/// The profile's `moe_gemm` tables (invalid ones ignored).
pub(super) fn curves(tables: &[MoeGemmTable]) -> Vec<MoeCurve> {
    tables
        .iter()
        .filter_map(|t| {
            let pts = t.points.iter().map(|&(x, ms)| (f64::from(x), ms * 1e-3));
            Some(MoeCurve {
                bf16: t.dtype == "bf16",
                experts: f64::from(t.experts),
                top_k: f64::from(t.top_k),
                n: f64::from(t.n),
                k: f64::from(t.k),
                curve: Curve::new(pts)?,
            })
        })
        .collect()
}

impl KernelSet {
    /// The measured table nearest to (`experts`, `top_k`, `n × k`): the same routing first
    /// (experts and top-k), then log size and log aspect ratio as for dense GEMMs, bf16 before
    /// fp16 at equal distance (MoE checkpoints are bf16).
    fn nearest_moe(&self, experts: f64, top_k: f64, n: f64, k: f64) -> Option<&MoeCurve> {
        let d = |c: &MoeCurve| {
            10.0 * ((c.experts.ln() - experts.ln()).abs() + (c.top_k.ln() - top_k.ln()).abs())
                + ((c.n * c.k).ln() - (n * k).ln()).abs()
                + ((c.n / c.k).ln() - (n / k).ln()).abs()
                + if c.bf16 { 0.0 } else { 1e-6 }
        };
        self.moe.iter().min_by(|a, b| d(a).total_cmp(&d(b)))
    }

    /// The grouped expert GEMM of one linear from the measured `moe_gemm` tables, the nearest
    /// table scaled by roofline where the shape differs; `None` without tables.
    pub fn moe_gemm(
        &self,
        (n, k): (f64, f64),
        experts: f64,
        top_k: f64,
        tokens: f64,
    ) -> Option<Priced> {
        let c = self.nearest_moe(experts, top_k, n, k)?;
        let r = self.roofs();
        let fixed = self.fixed_s();
        let work = grouped_work(n, k, experts, top_k, tokens);
        let roof = |x: f64| grouped_work(c.n, c.k, c.experts, c.top_k, x).seconds(r);
        let (t, side) = c.curve.eval(tokens, roof, fixed);
        let mut flags = Flags::MOE_TABLE
            | match side {
                super::interp::Side::Inside => Flags::default(),
                super::interp::Side::Below => Flags::BELOW,
                super::interp::Side::Above => Flags::ABOVE,
            };
        if (c.n, c.k, c.experts, c.top_k) != (n, k, experts, top_k) {
            flags |= Flags::SHAPE;
        }
        let iso = rescale(t, fixed, work.seconds(r) / roof(tokens));
        Some(Priced {
            s: self.composition().in_graph(iso, &work),
            flags,
        })
    }
}

/// Expected number of distinct experts touched when each of `tokens` tokens picks `top_k` of
/// `experts` uniformly at random: `E·(1 − (1 − k/E)^T)`.
pub fn expected_distinct(experts: f64, top_k: f64, tokens: f64) -> f64 {
    if experts <= 0.0 || tokens <= 0.0 {
        return 0.0;
    }
    let miss = (1.0 - top_k / experts).clamp(0.0, 1.0);
    experts * (1.0 - miss.powf(tokens))
}

/// The MoE numbers a step needs, as floats, resolved once per [`super::StepCost`].
#[derive(Debug, Clone)]
pub(super) struct MoeShape {
    moe_layers: f64,
    dense_layers: f64,
    experts: f64,
    top_k: f64,
    hidden: f64,
    /// `(n, k)` of one routed expert's gate/up and down GEMMs.
    expert: Vec<(f64, f64)>,
    /// Shared experts and shared gate, priced like the scheme's other linears.
    shared: Vec<(f64, f64)>,
    /// `(n, k)` of the router (16-bit).
    router: (f64, f64),
    /// `(n, k)` of the dense MLP of the non-MoE layers.
    dense: Vec<(f64, f64)>,
    /// Bits per expert weight where the checkpoint fixes them whatever the scheme (gpt-oss's
    /// MXFP4): the experts are then priced as a weight-only path, see [`MoeShape::experts_step`].
    expert_bits: Option<f64>,
    /// The checkpoint's own expert format (gpt-oss: MXFP4), multiplied at the GPU's FP4 rate
    /// where it has FP4 tensor cores.
    format: Option<ExpertFormat>,
}

impl MoeShape {
    /// `None` for a dense model.
    pub(super) fn new(model: &ModelArch) -> Option<MoeShape> {
        let m = model.moe.as_ref()?;
        let nk = |l: &crate::catalog::model::Linear| (f64::from(l.n), f64::from(l.k));
        let side = model.moe_side_linears();
        let router = side
            .iter()
            .find(|l| l.name == "router")
            .map_or((f64::from(m.experts), f64::from(model.hidden)), nk);
        let dense =
            crate::catalog::moe::gated_mlp("gate_up", "down", model.hidden, model.intermediate);
        let moe_layers = f64::from(model.moe_layers());
        Some(MoeShape {
            moe_layers,
            dense_layers: f64::from(model.layers) - moe_layers,
            experts: f64::from(m.experts),
            top_k: f64::from(m.top_k),
            hidden: f64::from(model.hidden),
            expert: model.expert_linears().iter().map(nk).collect(),
            shared: side.iter().filter(|l| l.name != "router").map(nk).collect(),
            router,
            dense: dense.iter().map(nk).collect(),
            expert_bits: m.expert_bits().filter(|&b| b < 16.0),
            format: m.expert_format,
        })
    }

    /// The MoE stack's linears and the combine of expert outputs, all layers, at `t` tokens.
    pub(super) fn price(&self, kernels: &KernelSet, quant: Quant, t: f64) -> Priced {
        let mut out = Priced {
            s: 0.0,
            flags: Flags::default(),
        };
        if t <= 0.0 {
            return out;
        }
        let mut add = |p: Priced, times: f64| {
            out.s += p.s * times;
            out.flags |= p.flags;
        };
        add(self.experts_step(kernels, quant, t), self.moe_layers);
        for &(n, k) in &self.shared {
            add(kernels.gemm(quant, n, k, t), self.moe_layers);
        }
        add(
            kernels.gemm(Quant::Fp16, self.router.0, self.router.1, t),
            self.moe_layers,
        );
        // dispatch, as vLLM's fused MoE runs it before the expert GEMMs: a top-k softmax over
        // each token's router logits, then the t·k assignments sorted into expert order (the
        // rows gathered per expert): two small kernels a dense FFN does not launch
        for bytes in [4.0 * t * self.experts, 2.0 * t * self.top_k * self.hidden] {
            add(
                kernels.elementwise_like(ElementwiseKind::RmsnormResidual, self.hidden, t, bytes),
                self.moe_layers,
            );
        }
        // combine: read k expert outputs per token (fp16), write one row
        let combine_bytes = 2.0 * t * self.hidden * (self.top_k + 1.0);
        add(
            kernels.elementwise_like(
                ElementwiseKind::RmsnormResidual,
                self.hidden,
                t,
                combine_bytes,
            ),
            self.moe_layers,
        );
        for &(n, k) in &self.dense {
            add(kernels.gemm(quant, n, k, t), self.dense_layers);
        }
        out
    }

    /// One MoE layer's routed experts at `t` tokens: the expected distinct experts, each running
    /// its GEMMs over its share of the `t·k` rows, as one grouped kernel. The group is priced as
    /// one GEMM of the expert's output width whose reduction dimension is the touched experts'
    /// side by side (`n × (k·distinct)` at `rows` tokens): the same FLOPs and weight bytes, and the
    /// efficiency of a kernel that streams every touched expert's weights at once, which is what
    /// a fused MoE kernel does. Pricing each expert as its own small GEMM instead would charge
    /// every expert the poor efficiency (and launch) of a lone small kernel.
    ///
    /// Experts the checkpoint stores in `b < 16` bits whatever the scheme (gpt-oss's MXFP4 on a
    /// GPU without fp4 tensor cores: a W4A16 path, dequantizing in the kernel) are priced from the
    /// fp16 tables at the shape with the same weight bytes and the same FLOPs: reduction
    /// dimension × b/16 and tokens × 16/b. That is a weight-only kernel as efficient as cuBLAS at
    /// the same arithmetic intensity, with the dequantization itself free (an optimistic stated
    /// assumption until a measured MXFP4 kernel exists). On a GPU with FP4 tensor cores
    /// (Blackwell) MXFP4 experts multiply at its datasheet FP4 rate: tokens also ÷ (fp4 / fp16
    /// rate), the same weight bytes and the FLOPs' time at the FP4 roof.
    fn experts_step(&self, kernels: &KernelSet, quant: Quant, t: f64) -> Priced {
        if self.uses_table(kernels, quant) {
            let mut out = Priced {
                s: 0.0,
                flags: Flags::default(),
            };
            for &nk in &self.expert {
                if let Some(p) = kernels.moe_gemm(nk, self.experts, self.top_k, t) {
                    out.s += p.s;
                    out.flags |= p.flags;
                }
            }
            return out;
        }
        let distinct = expected_distinct(self.experts, self.top_k, t).max(1.0);
        let rows = t * self.top_k / distinct;
        let (q, shrink, fast) = match self.expert_bits {
            Some(b) => (Quant::Fp16, b / 16.0, self.fp4_speedup(kernels)),
            None => (quant, 1.0, 1.0),
        };
        let mut out = Priced {
            s: 0.0,
            flags: Flags::default(),
        };
        for &(n, k) in &self.expert {
            let p = kernels.gemm(q, n, k * distinct * shrink, rows / shrink / fast);
            out.s += p.s;
            out.flags |= p.flags;
        }
        out
    }

    /// FP4 ÷ fp16 tensor rate for MXFP4 experts on a GPU with FP4 tensor cores; 1 elsewhere
    /// (the W4A16 path multiplies in fp16).
    fn fp4_speedup(&self, kernels: &KernelSet) -> f64 {
        let r = kernels.roofs();
        match (self.format, r.fp4) {
            (Some(ExpertFormat::Mxfp4), Some(fp4)) => (fp4 / r.fp16).max(1.0),
            _ => 1.0,
        }
    }

    /// Whether the routed experts are priced from the measured `moe_gemm` tables: the profile
    /// has one, and the experts run in 16 bits (the table's own type; quantized experts keep
    /// the dense tables of their scheme).
    fn uses_table(&self, kernels: &KernelSet, quant: Quant) -> bool {
        !kernels.moe.is_empty() && self.expert_bits.is_none() && quant.priced_as() == Quant::Fp16
    }

    /// Where the routed experts' time comes from at `t` tokens, for `step`'s notes.
    pub(super) fn source_note(&self, kernels: &KernelSet, quant: Quant, t: f64) -> String {
        let distinct = expected_distinct(self.experts, self.top_k, t);
        let routing = format!(
            "{t} tokens × top-{} over {} experts: {distinct:.1} distinct expected (uniform routing)",
            self.top_k, self.experts
        );
        if self.uses_table(kernels, quant) {
            let p = self.experts_step(kernels, quant, t);
            let how = if p.flags.has(Flags::SHAPE) {
                "the nearest measured table scaled by roofline (this expert shape or routing was not measured)"
            } else if p.flags.has(Flags::ABOVE) || p.flags.has(Flags::BELOW) {
                "the measured table extrapolated by roofline (token count outside its range)"
            } else {
                "the measured table"
            };
            return format!(
                "moe experts: grouped MoE GEMM from the profile's moe_gemm table, {how}; {routing}"
            );
        }
        if let Some(f) = self.format {
            let how = if self.fp4_speedup(kernels) > 1.0 {
                "multiplied at this GPU's FP4 tensor rate (datasheet)".to_string()
            } else {
                "a W4A16 path on this GPU without FP4 tensor cores: dequantized in the kernel, fp16 \
                 tensor cores, priced from the fp16 tables at the same weight bytes and FLOPs"
                    .to_string()
            };
            return format!(
                "moe experts: the checkpoint's own low-bit format {} ({} bits a weight), {how}; {routing}",
                f.key(),
                f.bits()
            );
        }
        let why = if self.expert_bits.is_some() {
            "the experts keep the checkpoint's own low-bit format (weight-only path)"
        } else if kernels.moe.is_empty() {
            "the profile has no moe_gemm table"
        } else {
            "the moe_gemm tables are 16-bit and the experts are quantized"
        };
        format!(
            "moe experts: priced from the dense {} GEMM tables as one kernel over the touched experts ({why}); {routing}",
            if self.expert_bits.is_some() {
                Quant::Fp16
            } else {
                quant
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_touches_top_k_experts() {
        for (e, k) in [(8.0, 2.0), (128.0, 8.0), (16.0, 1.0), (32.0, 4.0)] {
            assert!((expected_distinct(e, k, 1.0) - k).abs() < 1e-9, "{e} {k}");
        }
    }

    #[test]
    fn many_tokens_touch_every_expert() {
        let d = expected_distinct(128.0, 8.0, 4096.0);
        assert!((d - 128.0).abs() < 1e-6, "{d}");
        // monotone, never above E
        let mut last = 0.0;
        for t in [1.0, 2.0, 4.0, 16.0, 64.0, 256.0] {
            let d = expected_distinct(128.0, 8.0, t);
            assert!(d > last && d <= 128.0, "{t}: {d}");
            last = d;
        }
        // about 36 tokens touch 90% of Qwen3-30B-A3B's 128 experts with top-8
        let d36 = expected_distinct(128.0, 8.0, 36.0);
        assert!((0.9..0.92).contains(&(d36 / 128.0)), "{d36}");
    }

    #[test]
    fn all_experts_routed_touches_all() {
        assert!((expected_distinct(8.0, 8.0, 1.0) - 8.0).abs() < 1e-12);
        assert_eq!(expected_distinct(8.0, 2.0, 0.0), 0.0);
    }
}
