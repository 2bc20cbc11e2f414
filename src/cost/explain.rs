//! The caveats behind a step's breakdown: what was extrapolated, scaled from another shape or
//! priced at the default efficiency set. Off the hot path: only `cardplan step` and reports ask.

use super::StepBreakdown;
use super::defaults;
use super::step_cost::StepCost;
use super::tables::{Flags, KernelSet};
use crate::step::BatchShape;

impl StepCost {
    /// The step's time by component, with its caveats.
    pub fn breakdown(&self, batch: &BatchShape<'_>) -> StepBreakdown {
        let [linear, attention, lm_head, elementwise, overhead, comm] = self.components(batch);
        let mut out = StepBreakdown {
            linear,
            attention,
            lm_head,
            elementwise,
            overhead,
            comm,
            notes: Vec::new(),
        };
        let t = batch.tokens();
        if t == 0 {
            out.notes.push("empty step: no tokens".into());
            return out;
        }
        let t = u32::try_from(t).unwrap_or(u32::MAX);
        let notes = &mut out.notes;
        self.explain_linear(t, notes);
        if let Some(moe) = &self.shape.moe {
            notes.push(moe.source_note(&self.kernels, self.shape.quant, f64::from(t)));
        }
        self.explain_lm_head(batch, notes);
        if batch.decode_seqs > 0 {
            self.explain_decode(batch, notes);
        }
        self.explain_prefill(batch, notes);
        self.explain_elementwise(t, notes);
        self.explain_composition(notes);
        out
    }

    /// What the scheme runs as on this GPU where that is not what its name says (FP8 without
    /// FP8 tensor cores), for every output that prices it.
    pub fn scheme_notes(&self) -> Vec<String> {
        let roofs = self.kernels.roofs();
        self.shape
            .quant
            .hardware_note(&self.profile_info().gpu, roofs.fp8_native)
            .into_iter()
            .collect()
    }

    fn explain_linear(&self, t: u32, notes: &mut Vec<String>) {
        notes.extend(self.scheme_notes());
        let s = &self.shape;
        let lin = self.price_linear(t);
        let q = s.quant;
        if lin.flags.has(Flags::DEFAULT) {
            notes.push(format!(
                "linear: no measured {q} GEMM table; default efficiency set (src/cost/defaults.rs)"
            ));
            return;
        }
        if lin.flags.has(Flags::ABOVE) || lin.flags.has(Flags::BELOW) {
            let range = s
                .linears
                .first()
                .and_then(|&(n, k)| self.kernels.gemm_range(q, n, k))
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

    fn explain_lm_head(&self, batch: &BatchShape<'_>, notes: &mut Vec<String>) {
        let lm = self.price_lm_head(batch.seqs());
        if lm.flags.has(Flags::DEFAULT) {
            notes.push("lm_head: no measured fp16 GEMM table; default efficiency set".into());
        } else if lm.flags.has(Flags::SHAPE) {
            notes.push(
                "lm_head: vocab × hidden shape not measured; nearest fp16 shape scaled by roofline"
                    .into(),
            );
        }
    }

    fn explain_decode(&self, batch: &BatchShape<'_>, notes: &mut Vec<String>) {
        let s = &self.shape;
        let d = self.decode_attn(batch);
        let c = batch.decode_context_tokens as f64 / f64::from(batch.decode_seqs);
        if d.flags.has(Flags::DEFAULT) {
            notes.push(format!(
                "decode attention: no measured table; default efficiency set ({} KV bytes read)",
                s.kv
            ));
            return;
        }
        if d.flags.has(Flags::ABOVE) || d.flags.has(Flags::BELOW) {
            let range = self
                .kernels
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

    fn explain_prefill(&self, batch: &BatchShape<'_>, notes: &mut Vec<String>) {
        let (pairs, _, new_tokens) = Self::prefill_sums(batch);
        if new_tokens <= 0.0 {
            return;
        }
        let p = self.prefill_attn(batch);
        let p_eq = KernelSet::equivalent_tokens(pairs);
        if p.flags.has(Flags::DEFAULT) {
            notes.push("prefill attention: no measured table; default efficiency set".into());
            return;
        }
        if p.flags.has(Flags::ABOVE) || p.flags.has(Flags::BELOW) {
            let range = self
                .kernels
                .prefill_range(self.shape.heads)
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

    fn explain_elementwise(&self, t: u32, notes: &mut Vec<String>) {
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
    }

    fn explain_composition(&self, notes: &mut Vec<String>) {
        let k = &self.kernels;
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
