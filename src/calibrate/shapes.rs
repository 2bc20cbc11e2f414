//! What the models of a sweep ask to time (linear shapes, attention heads, elementwise widths),
//! before the sweep chooses sizes: kept apart so the sweep's size rules read on their own.

use crate::catalog::model::ModelArch;
use crate::profile::ElementwiseKind;

use super::sweep::{HEAD_DIM, MAX_GQA_GROUP};

/// What the models ask to time, before the sizes are chosen.
#[derive(Default)]
pub(crate) struct ModelShapes {
    pub shapes: Vec<(u32, u32, String)>,
    pub fp16_only: Vec<(u32, u32, String)>,
    pub attn: Vec<(u32, u32)>,
    pub elementwise: Vec<(ElementwiseKind, u32)>,
    pub skipped: Vec<String>,
}

impl ModelShapes {
    /// `m`'s linear shapes (its LM head in fp16 only, unless `quick`), attention configuration
    /// and elementwise widths; what the kernels cannot run goes to `skipped`, with why.
    pub fn add(&mut self, m: &ModelArch, quick: bool) {
        for l in m.linears() {
            push_unique(&mut self.shapes, l.n, l.k, format!("{} {}", m.key, l.name));
        }
        if !quick {
            push_unique(
                &mut self.fp16_only,
                m.vocab,
                m.hidden,
                format!("{} lm_head", m.key),
            );
        }
        let group = m.heads / m.kv_heads.max(1);
        if m.head_dim != HEAD_DIM || m.heads % m.kv_heads.max(1) != 0 || group > MAX_GQA_GROUP {
            self.skipped.push(format!(
                "{}: attention not timed (kernels are built for head_dim {HEAD_DIM} and at most {MAX_GQA_GROUP} query heads per KV head; model has head_dim {}, {} / {} heads)",
                m.key, m.head_dim, m.heads, m.kv_heads
            ));
        } else if !self.attn.contains(&(m.heads, m.kv_heads)) {
            self.attn.push((m.heads, m.kv_heads));
        }
        for e in [
            (ElementwiseKind::RmsnormResidual, m.hidden),
            (ElementwiseKind::SiluMul, m.intermediate),
        ] {
            if e.1 % 8 != 0 {
                self.skipped.push(format!(
                    "{}: {:?} width {} not timed (needs a multiple of 8)",
                    m.key, e.0, e.1
                ));
            } else if !self.elementwise.contains(&e) {
                self.elementwise.push(e);
            }
        }
    }
}

pub(crate) fn push_unique(v: &mut Vec<(u32, u32, String)>, n: u32, k: u32, label: String) {
    if !v.iter().any(|(a, b, _)| *a == n && *b == k) {
        v.push((n, k, label));
    }
}
