//! Cost model: the time of one serving step, from measured kernel tables (or tables derived
//! from a measured GPU for one you don't own).
//!
//! [`StepCost`] prices a step from a profile's tables. Modules: [`roofline`]
//! (bytes and FLOPs per kernel), [`interp`] (table interpolation), [`tables`] (pricing any shape
//! from a profile), [`graph`] (kernels timed one at a time → kernels replayed in a CUDA graph),
//! [`transfer`] (deriving a profile for a GPU you don't own), [`defaults`] (efficiencies used
//! where nothing was measured). What a step is made of, and the trait the simulator prices it
//! through, live in [`crate::step`].

pub mod defaults;
pub mod graph;
pub mod interp;
pub mod roofline;
pub mod tables;
pub mod transfer;

use std::sync::OnceLock;

use serde::Serialize;

use crate::catalog::engine::EnginePreset;
use crate::catalog::model::{MlpKind, ModelArch};
use crate::catalog::quant::{KvDtype, Quant};
use crate::error::{Error, Result};
use crate::profile::{ElementwiseKind, GpuProfile};
use crate::step::{BatchShape, StepTime};
use roofline::{Heads, Roofs};
use tables::{Flags, KernelSet, Priced, heads};

/// Which profile a prediction rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileInfo {
    /// GPU key of the target.
    pub gpu: String,
    /// `measured`, `derived` or `datasheet-roofline`.
    pub kind: String,
    /// What it was measured on / derived from, in words.
    pub source: String,
}

/// Time of one step, split by component (seconds).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StepBreakdown {
    pub linear: f64,
    pub attention: f64,
    pub lm_head: f64,
    pub elementwise: f64,
    pub overhead: f64,
    /// Caveats, e.g. "prefill of 20000 tokens beyond the measured range (16384)".
    pub notes: Vec<String>,
}

impl StepBreakdown {
    pub fn total(&self) -> f64 {
        self.linear + self.attention + self.lm_head + self.elementwise + self.overhead
    }
}

/// Step-time model for one (GPU, model, scheme, KV dtype, engine).
///
/// Built once (tables resolved, profile derived, per-token-count costs precomputed), then priced
/// millions of times by the simulator: [`StepTime::step_seconds`] does no allocation, no string
/// work and no table search for the linear layers, elementwise kernels and LM head.
#[derive(Debug, Clone)]
pub struct StepCost {
    kernels: KernelSet,
    shape: Shape,
    /// Seconds per step by token count `T` (index), for `T ≤ dense_max`: all linear layers, all
    /// elementwise passes.
    dense_linear: Vec<f64>,
    dense_elementwise: Vec<f64>,
    /// LM head by number of logit rows.
    dense_lm_head: Vec<f64>,
    /// Attention tables chosen once for this model (`None`: default efficiency set).
    decode_table: Option<usize>,
    prefill_table: Option<usize>,
    step_overhead: f64,
    per_seq_overhead: f64,
    info: ProfileInfo,
    /// The profile the tables came from (measured, or derived for this GPU); `None` when the
    /// default efficiency set prices everything.
    profile: Option<GpuProfile>,
}

/// Precompute up to this many tokens per step even when the engine allows more (`hf-static` has
/// no token budget); larger steps are priced directly (same numbers, a little slower).
const DENSE_MAX_TOKENS: u32 = 16_384;

/// The model numbers the step needs, as floats.
#[derive(Debug, Clone)]
struct Shape {
    quant: Quant,
    kv: KvDtype,
    layers: f64,
    linears: Vec<(f64, f64)>,
    hidden: f64,
    intermediate: f64,
    vocab: f64,
    mlp: MlpKind,
    norms_per_layer: f64,
    heads: Heads,
    q_width: f64,
    kv_width: f64,
    block: f64,
}

impl Shape {
    fn new(model: &ModelArch, quant: Quant, kv: KvDtype, block: u32) -> Shape {
        Shape {
            quant,
            kv,
            layers: f64::from(model.layers),
            linears: model
                .linears()
                .iter()
                .map(|l| (f64::from(l.n), f64::from(l.k)))
                .collect(),
            hidden: f64::from(model.hidden),
            intermediate: f64::from(model.intermediate),
            vocab: f64::from(model.vocab),
            mlp: model.mlp,
            norms_per_layer: f64::from(model.norms_per_layer),
            heads: heads(model.heads, model.kv_heads, model.head_dim),
            q_width: model.q_width() as f64,
            kv_width: model.kv_width() as f64,
            block: f64::from(block),
        }
    }
}

/// Measured profiles of the embedded catalog, parsed once per process.
fn measured_catalog() -> Result<&'static [GpuProfile]> {
    static MEASURED: OnceLock<std::result::Result<Vec<GpuProfile>, String>> = OnceLock::new();
    MEASURED
        .get_or_init(|| {
            crate::catalog::gpus()
                .map(|v| v.into_iter().filter(|g| g.measured.is_some()).collect())
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(|e| Error::Internal(format!("embedded GPU catalog: {e}")))
}

/// Bytes of L2 of a GPU given in MB (10^6 bytes) on its datasheet.
fn l2_bytes(gpu: &GpuProfile) -> f64 {
    gpu.datasheet.l2_mb * 1e6
}

/// L2 of the GPU a derived profile's tables were measured on, from its "derived for X from Y"
/// note; the profile's own L2 when the note or the source is unknown.
fn source_l2_bytes(gpu: &GpuProfile, note: &str) -> f64 {
    note.split(" from ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|key| crate::catalog::gpu(key).ok())
        .map(|src| l2_bytes(&src))
        .unwrap_or_else(|| l2_bytes(gpu))
}

/// The profile to price `gpu` with (its own measurements, else derived from the nearest measured
/// GPU, else none: the default efficiency set), what to call it, and the L2 size of the GPU its
/// tables were measured on.
fn resolve_profile(gpu: &GpuProfile) -> Result<(Option<GpuProfile>, ProfileInfo, f64)> {
    if let Some(m) = &gpu.measured {
        let p = &m.provenance;
        let derived_note = p.notes.iter().find(|n| n.starts_with("derived for "));
        let (kind, source, l2) = match derived_note {
            Some(n) => ("derived", n.clone(), source_l2_bytes(gpu, n)),
            None => (
                "measured",
                format!(
                    "measured on {} ({} SMs, driver {}, CUDA {}) at {}, cardplan {} {}",
                    p.device, p.sm_count, p.driver, p.cuda, p.date, p.cardplan_version, p.git_rev
                ),
                l2_bytes(gpu),
            ),
        };
        let info = ProfileInfo {
            gpu: gpu.key.clone(),
            kind: kind.into(),
            source,
        };
        return Ok((Some(gpu.clone()), info, l2));
    }
    let catalog = measured_catalog()?;
    if let Some(src) = transfer::pick_source(gpu, catalog)
        && let Some(derived) = transfer::derive(src, gpu)
    {
        let source = derived
            .measured
            .as_ref()
            .and_then(|m| m.provenance.notes.last().cloned())
            .unwrap_or_else(|| format!("derived from {}", src.key));
        let kind = if src.key == gpu.key && src.datasheet == gpu.datasheet {
            "measured"
        } else {
            "derived"
        };
        let info = ProfileInfo {
            gpu: gpu.key.clone(),
            kind: kind.into(),
            source,
        };
        return Ok((Some(derived), info, l2_bytes(src)));
    }
    Ok((
        None,
        ProfileInfo {
            gpu: gpu.key.clone(),
            kind: "datasheet-roofline".into(),
            source: format!(
                "no measured profile in the catalog: {}'s datasheet ({} GB/s, {} fp16 TFLOP/s) at the \
                 default efficiency set (src/cost/defaults.rs)",
                gpu.key, gpu.datasheet.bandwidth_gbs, gpu.datasheet.fp16_tflops
            ),
        },
        l2_bytes(gpu),
    ))
}

impl StepCost {
    pub fn new(
        gpu: &GpuProfile,
        model: &ModelArch,
        quant: Quant,
        kv: KvDtype,
        engine: &EnginePreset,
    ) -> Result<StepCost> {
        if engine.block_size == 0 {
            return Err(Error::BadInput(format!(
                "engine '{}': block_size must be positive",
                engine.key
            )));
        }
        for (what, v) in [
            ("step_overhead_s", engine.step_overhead_s),
            ("per_seq_overhead_s", engine.per_seq_overhead_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::BadInput(format!(
                    "engine '{}': {what} must be a non-negative number, got {v}",
                    engine.key
                )));
            }
        }
        let (profile, info, measured_l2) = resolve_profile(gpu)?;
        let roofs = Roofs::from_datasheet(&gpu.datasheet);
        let kernels = KernelSet::new(
            profile.as_ref().and_then(|p| p.measured.as_ref()),
            roofs,
            measured_l2,
        );
        let profile = profile.filter(|p| p.key != gpu.key || p.measured != gpu.measured);
        let shape = Shape::new(model, quant, kv, engine.block_size);
        let mut cost = StepCost {
            decode_table: kernels.nearest_decode_index(kv, shape.heads),
            prefill_table: kernels.nearest_prefill_index(shape.heads),
            kernels,
            shape,
            dense_linear: Vec::new(),
            dense_elementwise: Vec::new(),
            dense_lm_head: Vec::new(),
            step_overhead: engine.step_overhead_s,
            per_seq_overhead: engine.per_seq_overhead_s,
            info,
            profile,
        };
        let max = engine
            .max_num_batched_tokens
            .max(engine.max_num_seqs)
            .min(DENSE_MAX_TOKENS);
        cost.dense_linear = (0..=max).map(|t| cost.price_linear(t).s).collect();
        cost.dense_elementwise = (0..=max).map(|t| cost.price_elementwise(t).s).collect();
        cost.dense_lm_head = (0..=max).map(|r| cost.price_lm_head(r).s).collect();
        Ok(cost)
    }

    pub fn profile_info(&self) -> &ProfileInfo {
        &self.info
    }

    /// The profile derived for this GPU from a measured one (`None` when the GPU's own
    /// measurements or the default efficiency set are used), e.g. to write it out for inspection.
    pub fn derived_profile(&self) -> Option<&GpuProfile> {
        self.profile.as_ref()
    }

    /// All linear layers of all decoder layers at `t` tokens.
    fn price_linear(&self, t: u32) -> Priced {
        let s = &self.shape;
        let mut out = Priced {
            s: 0.0,
            flags: Flags::default(),
        };
        if t == 0 {
            return out;
        }
        for &(n, k) in &s.linears {
            let p = self.kernels.gemm(s.quant, n, k, f64::from(t));
            out.s += p.s;
            out.flags |= p.flags;
        }
        out.s *= s.layers;
        out
    }

    /// Elementwise passes at `t` tokens: per layer the norms, the MLP activation, rotary and the
    /// KV-cache write; per step the embedding gather and the final norm.
    fn price_elementwise(&self, t: u32) -> Priced {
        let s = &self.shape;
        let k = &self.kernels;
        if t == 0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let tf = f64::from(t);
        let norm = k.elementwise(ElementwiseKind::RmsnormResidual, s.hidden, tf);
        let act = match s.mlp {
            MlpKind::GatedSilu | MlpKind::GatedGelu => {
                k.elementwise(ElementwiseKind::SiluMul, s.intermediate, tf)
            }
            // plain GELU: read and write one [T, intermediate] tensor
            MlpKind::Gelu => k.elementwise_like(
                ElementwiseKind::SiluMul,
                s.intermediate,
                tf,
                4.0 * tf * s.intermediate,
            ),
        };
        let like_norm =
            |bytes: f64| k.elementwise_like(ElementwiseKind::RmsnormResidual, s.hidden, tf, bytes);
        // rotary: read and write q and k in fp16
        let rope = like_norm(4.0 * tf * (s.q_width + s.kv_width));
        // KV-cache write: read new k, v (fp16), write them in the cache dtype
        let kv_write = like_norm(tf * 2.0 * s.kv_width * (2.0 + s.kv.bytes() as f64));
        let per_layer = s.norms_per_layer * norm.s + act.s + rope.s + kv_write.s;
        // embedding gather (read a row, write it) and the final norm, once per step
        let embed = like_norm(4.0 * tf * s.hidden);
        Priced {
            s: s.layers * per_layer + embed.s + norm.s,
            flags: norm.flags | act.flags | rope.flags | kv_write.flags | embed.flags,
        }
    }

    /// LM head for `rows` logit rows (kept in 16 bits by every scheme).
    fn price_lm_head(&self, rows: u32) -> Priced {
        if rows == 0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let s = &self.shape;
        self.kernels
            .gemm(Quant::Fp16, s.vocab, s.hidden, f64::from(rows))
    }

    fn decode_attn(&self, batch: &BatchShape<'_>) -> Priced {
        let s = &self.shape;
        if batch.decode_seqs == 0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let b = f64::from(batch.decode_seqs);
        // the simulator gives the context sum; decode attention is linear in Σ c, so the mean
        // context at the real batch reproduces it
        let c = (batch.decode_context_tokens as f64 / b).max(1.0);
        let p = self
            .kernels
            .decode_attn_at(self.decode_table, s.kv, s.heads, s.block, b, c);
        Priced {
            s: s.layers * p.s,
            flags: p.flags,
        }
    }

    /// `(Σ p(q + p/2), Σ (q + p), Σ p)` over the prefill chunks.
    fn prefill_sums(batch: &BatchShape<'_>) -> (f64, f64, f64) {
        let mut sums = (0.0, 0.0, 0.0);
        for c in batch.prefills {
            let (p, q) = (f64::from(c.new_tokens), f64::from(c.cached_tokens));
            sums.0 += p * (q + p / 2.0);
            sums.1 += q + p;
            sums.2 += p;
        }
        sums
    }

    fn prefill_attn(&self, batch: &BatchShape<'_>) -> Priced {
        let s = &self.shape;
        let (pairs, kv_tokens, new_tokens) = Self::prefill_sums(batch);
        if new_tokens == 0.0 {
            return Priced {
                s: 0.0,
                flags: Flags::default(),
            };
        }
        let p =
            self.kernels
                .prefill_attn_at(self.prefill_table, s.heads, pairs, kv_tokens, new_tokens);
        Priced {
            s: s.layers * p.s,
            flags: p.flags,
        }
    }

    fn lookup(&self, dense: &[f64], x: u64, slow: impl Fn(u32) -> Priced) -> f64 {
        match dense.get(x as usize) {
            Some(&v) => v,
            None => slow(u32::try_from(x).unwrap_or(u32::MAX)).s,
        }
    }

    /// The components in [`StepBreakdown`] order, without notes (the hot path).
    fn components(&self, batch: &BatchShape<'_>) -> [f64; 5] {
        let t = batch.tokens();
        if t == 0 {
            return [0.0; 5];
        }
        let rows = u64::from(batch.seqs());
        let linear = self.lookup(&self.dense_linear, t, |t| self.price_linear(t));
        let elementwise = self.lookup(&self.dense_elementwise, t, |t| self.price_elementwise(t));
        let lm_head = self.lookup(&self.dense_lm_head, rows, |r| self.price_lm_head(r));
        let attention = self.decode_attn(batch).s + self.prefill_attn(batch).s;
        let overhead = self.step_overhead + self.per_seq_overhead * rows as f64;
        [linear, attention, lm_head, elementwise, overhead]
    }

    pub fn breakdown(&self, batch: &BatchShape<'_>) -> StepBreakdown {
        let [linear, attention, lm_head, elementwise, overhead] = self.components(batch);
        let mut out = StepBreakdown {
            linear,
            attention,
            lm_head,
            elementwise,
            overhead,
            notes: Vec::new(),
        };
        let t = batch.tokens();
        if t == 0 {
            out.notes.push("empty step: no tokens".into());
            return out;
        }
        let tt = u32::try_from(t).unwrap_or(u32::MAX);
        self.explain(batch, tt, &mut out.notes);
        out
    }

    /// Caveats for a step: what was extrapolated, scaled from another shape, or defaulted.
    fn explain(&self, batch: &BatchShape<'_>, t: u32, notes: &mut Vec<String>) {
        let s = &self.shape;
        let k = &self.kernels;
        let lin = self.price_linear(t);
        let q = s.quant;
        if lin.flags.has(Flags::DEFAULT) {
            notes.push(format!(
                "linear: no measured {q} GEMM table; default efficiency set (src/cost/defaults.rs)"
            ));
        } else {
            if lin.flags.has(Flags::ABOVE) || lin.flags.has(Flags::BELOW) {
                let range = s
                    .linears
                    .first()
                    .and_then(|&(n, kk)| k.gemm_range(q, n, kk))
                    .map(|(a, b)| format!("{a}–{b}"))
                    .unwrap_or_default();
                notes.push(format!(
                    "linear: {t} tokens beyond the measured range ({range} tokens); roofline \
                     extrapolation at the edge point's efficiency"
                ));
            }
            if lin.flags.has(Flags::SHAPE) {
                notes.push(
                    "linear: some layer shapes not measured; nearest measured shape scaled by roofline"
                        .into(),
                );
            }
        }
        let lm = self.price_lm_head(batch.seqs());
        if lm.flags.has(Flags::DEFAULT) {
            notes.push("lm_head: no measured fp16 GEMM table; default efficiency set".into());
        } else if lm.flags.has(Flags::SHAPE) {
            notes.push(
                "lm_head: vocab × hidden shape not measured; nearest fp16 shape scaled by roofline"
                    .into(),
            );
        }
        if batch.decode_seqs > 0 {
            let d = self.decode_attn(batch);
            let c = batch.decode_context_tokens as f64 / f64::from(batch.decode_seqs);
            if d.flags.has(Flags::DEFAULT) {
                notes.push(format!(
                    "decode attention: no measured table; default efficiency set ({} KV bytes read)",
                    s.kv
                ));
            } else {
                if d.flags.has(Flags::ABOVE) || d.flags.has(Flags::BELOW) {
                    let range = k
                        .decode_range(s.kv, s.heads)
                        .map(|((b0, b1), (c0, c1))| format!("batch {b0}–{b1}, context {c0}–{c1}"))
                        .unwrap_or_default();
                    notes.push(format!(
                        "decode attention: batch {} × mean context {c:.0} beyond the measured range \
                         ({range}); roofline extrapolation",
                        batch.decode_seqs
                    ));
                }
                if d.flags.has(Flags::OTHER_KV) {
                    notes.push(format!(
                        "decode attention: no {} KV table; the other KV dtype scaled by bytes read",
                        s.kv
                    ));
                }
                if d.flags.has(Flags::SHAPE) {
                    notes.push(
                        "decode attention: head configuration not measured; nearest scaled by KV bytes"
                            .into(),
                    );
                }
            }
        }
        let (pairs, _, new_tokens) = Self::prefill_sums(batch);
        if new_tokens > 0.0 {
            let p = self.prefill_attn(batch);
            let p_eq = KernelSet::equivalent_tokens(pairs);
            if p.flags.has(Flags::DEFAULT) {
                notes.push("prefill attention: no measured table; default efficiency set".into());
            } else {
                if p.flags.has(Flags::ABOVE) || p.flags.has(Flags::BELOW) {
                    let range = k
                        .prefill_range(s.heads)
                        .map(|(a, b)| format!("{a}–{b}"))
                        .unwrap_or_default();
                    notes.push(format!(
                        "prefill attention: FLOP-equivalent prompt of {p_eq:.0} tokens beyond the \
                         measured range ({range} tokens); roofline extrapolation"
                    ));
                }
                if p.flags.has(Flags::SHAPE) {
                    notes.push(
                        "prefill attention: head configuration not measured; nearest scaled by roofline"
                            .into(),
                    );
                }
                if p.flags.has(Flags::FA_DEFAULT) {
                    notes.push(
                        "prefill attention: the measured kernel is slower than FlashAttention (what \
                         vLLM runs); priced at the FlashAttention-based default instead"
                            .into(),
                    );
                }
            }
        }
        let el = self.price_elementwise(t);
        if el.flags.has(Flags::DEFAULT) {
            notes.push("elementwise: no measured table; default efficiency set".into());
        } else if el.flags.has(Flags::ABOVE) {
            notes.push(format!(
                "elementwise: {t} tokens beyond the measured range; roofline extrapolation"
            ));
        }
        notes.push(
            "elementwise includes rotary, KV-cache write and embedding gather, priced at the \
             RMSNorm kernel's efficiency (not timed themselves)"
                .into(),
        );
        let comp = k.composition();
        if comp.copy_bw.is_finite() {
            notes.push(format!(
                "kernel times measured one at a time, composed as in a CUDA graph: less {:.1} µs \
                 fixed cost per kernel and the L2 write-back of memory-bound kernels, never below \
                 {:.0} µs + bytes at the measured copy bandwidth (src/cost/graph.rs)",
                comp.fixed_excess_s * 1e6,
                defaults::LAUNCH_FLOOR_S * 1e6
            ));
        } else if k.timing() == Some(crate::profile::Timing::BackToBack) {
            notes.push(
                "kernel times measured back to back in CUDA graphs over rotated inputs (profile \
                 timing: back-to-back): priced as measured, no in-graph correction"
                    .into(),
            );
        }
    }
}

impl StepTime for StepCost {
    fn step_seconds(&self, batch: &BatchShape<'_>) -> f64 {
        let [a, b, c, d, e] = self.components(batch);
        a + b + c + d + e
    }
}
