//! Turning timed jobs into the profile's tables: per scheme the fastest path at each token count
//! (as engines pick), roofs, and provenance notes that say which path won where.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sweep::{GemmPath, Job};
use crate::catalog::quant::KvDtype;
use crate::error::{Error, Result};
use crate::profile::{
    DecodeAttnTable, DecodePoint, ElementwiseKind, ElementwiseTable, GemmTable, Measured,
    MeasuredRoofs, PrefillAttnTable, Provenance,
};

/// One timed job and its median time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    #[serde(flatten)]
    pub job: Job,
    pub ms: f64,
}

/// Build the measured block from timed jobs. Errors if a roof could not be derived.
pub fn measured(timed: &[Timed], provenance: Provenance) -> Result<Measured> {
    let mut provenance = provenance;
    let tally = Tally::of(timed);
    if !(tally.roofs.copy_gbs > 0.0 && tally.roofs.fp16_tflops > 0.0 && tally.roofs.int8_tops > 0.0)
    {
        return Err(Error::Internal(
            "calibration produced no copy, fp16 or int8 roof (the sweep lacks a roof job)".into(),
        ));
    }
    let gemm = gemm_tables(&tally.best, &mut provenance.notes);
    let moe_gemm = super::moe::tables(timed, &mut provenance.notes);
    if !moe_gemm.is_empty() {
        provenance.notes.push(super::moe::MOE_NOTE.into());
    }
    Ok(Measured {
        allreduce: vec![],
        moe_gemm,
        provenance,
        roofs: tally.roofs,
        gemm,
        attn_prefill: prefill_tables(tally.prefill),
        attn_decode: decode_tables(tally.decode),
        elementwise: elementwise_tables(tally.elem),
    })
}

/// Per (scheme, n, k), per token count: the fastest time and the path that ran it.
type Best = BTreeMap<(&'static str, u32, u32), BTreeMap<u32, (f64, GemmPath)>>;

/// The timed jobs sorted by table: the roofs so far, each scheme's fastest path per point, and
/// the attention and elementwise points.
struct Tally {
    roofs: MeasuredRoofs,
    best: Best,
    decode: Groups<(KvDtype, u32, u32), DecodePoint>,
    prefill: BTreeMap<(u32, u32), Vec<(u32, f64)>>,
    elem: Groups<(ElementwiseKind, u32), (u32, f64)>,
}

impl Tally {
    fn of(timed: &[Timed]) -> Tally {
        let mut t = Tally {
            roofs: MeasuredRoofs {
                copy_gbs: 0.0,
                fp16_tflops: 0.0,
                int8_tops: 0.0,
            },
            best: BTreeMap::new(),
            decode: Vec::new(),
            prefill: BTreeMap::new(),
            elem: Vec::new(),
        };
        for x in timed {
            t.add(x);
        }
        t
    }

    fn add(&mut self, t: &Timed) {
        match t.job {
            Job::Copy { bytes } => {
                self.roofs.copy_gbs = self.roofs.copy_gbs.max(2.0 * bytes as f64 / (t.ms * 1e6));
            }
            Job::Gemm { path, n, k, tokens } => self.add_gemm(path, n, k, tokens, t.ms),
            Job::Decode {
                kv,
                heads,
                kv_heads,
                batch,
                context,
            } => group(&mut self.decode, (kv, heads, kv_heads)).push(DecodePoint {
                batch,
                context,
                ms: t.ms,
            }),
            Job::Prefill {
                heads,
                kv_heads,
                tokens,
            } => self
                .prefill
                .entry((heads, kv_heads))
                .or_default()
                .push((tokens, t.ms)),
            Job::Elementwise {
                kind,
                width,
                tokens,
            } => group(&mut self.elem, (kind, width)).push((tokens, t.ms)),
            // tabled by `moe::tables`
            Job::Moe(_) => {}
        }
    }

    /// A GEMM's rate towards its roof, and its time as a candidate of each scheme it serves.
    fn add_gemm(&mut self, path: GemmPath, n: u32, k: u32, tokens: u32, ms: f64) {
        let rate = 2.0 * f64::from(tokens) * f64::from(n) * f64::from(k) / (ms * 1e9);
        if path.is_fp16_gemm() {
            self.roofs.fp16_tflops = self.roofs.fp16_tflops.max(rate);
        } else if path == GemmPath::Int8ImmaOnly {
            self.roofs.int8_tops = self.roofs.int8_tops.max(rate);
        }
        for &scheme in path.schemes() {
            let e = self
                .best
                .entry((scheme, n, k))
                .or_default()
                .entry(tokens)
                .or_insert((ms, path));
            if ms < e.0 {
                *e = (ms, path);
            }
        }
    }
}

/// One table per (scheme, n, k) of the fastest times, and a note per scheme and path saying at
/// which token counts that path won.
fn gemm_tables(best: &Best, notes: &mut Vec<String>) -> Vec<GemmTable> {
    let mut wins: BTreeMap<(&str, GemmPath), Vec<u32>> = BTreeMap::new();
    let mut gemm = Vec::new();
    for ((scheme, n, k), pts) in best {
        for (&tok, &(_, path)) in pts {
            wins.entry((scheme, path)).or_default().push(tok);
        }
        gemm.push(GemmTable {
            scheme: (*scheme).to_string(),
            n: *n,
            k: *k,
            host_us_per_call: None,
            points: pts.iter().map(|(&tok, &(ms, _))| (tok, ms)).collect(),
        });
    }
    for ((scheme, path), mut toks) in wins {
        toks.sort_unstable();
        toks.dedup();
        notes.push(format!(
            "{scheme}: path {} was fastest at some shape for token counts {}",
            path.key(),
            ranges(&toks)
        ));
    }
    gemm
}

/// Points sorted by token count, one per count.
fn sorted(mut v: Vec<(u32, f64)>) -> Vec<(u32, f64)> {
    v.sort_by_key(|p| p.0);
    v.dedup_by_key(|p| p.0);
    v
}

fn prefill_tables(prefill: BTreeMap<(u32, u32), Vec<(u32, f64)>>) -> Vec<PrefillAttnTable> {
    prefill
        .into_iter()
        .map(|((heads, kv_heads), pts)| PrefillAttnTable {
            heads,
            kv_heads,
            head_dim: super::sweep::HEAD_DIM,
            points: sorted(pts),
        })
        .collect()
}

fn elementwise_tables(elem: Groups<(ElementwiseKind, u32), (u32, f64)>) -> Vec<ElementwiseTable> {
    elem.into_iter()
        .map(|((kind, width), pts)| ElementwiseTable {
            kind,
            width,
            points: sorted(pts),
        })
        .collect()
}

fn decode_tables(decode: Groups<(KvDtype, u32, u32), DecodePoint>) -> Vec<DecodeAttnTable> {
    decode
        .into_iter()
        .map(|((kv, heads, kv_heads), mut pts)| {
            pts.sort_by_key(|p| (p.batch, p.context));
            DecodeAttnTable {
                kv,
                heads,
                kv_heads,
                head_dim: super::sweep::HEAD_DIM,
                block_size: super::sweep::BLOCK_SIZE,
                points: pts,
            }
        })
        .collect()
}

/// Values grouped by a key that needs only equality, in first-seen order.
type Groups<K, V> = Vec<(K, Vec<V>)>;

/// The values under `key`, inserted empty if new (keys need only equality, and keep first-seen order).
fn group<K: PartialEq, V>(v: &mut Groups<K, V>, key: K) -> &mut Vec<V> {
    let i = match v.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            v.push((key, Vec::new()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

/// `1-16, 24, 64-128` style summary of sorted token counts from the sweep.
pub(super) fn ranges(toks: &[u32]) -> String {
    let sweep = super::sweep::token_sweep(u32::MAX / 4);
    let idx = |t: u32| sweep.iter().position(|&s| s == t);
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let mut j = i;
        while j + 1 < toks.len()
            && matches!((idx(toks[j]), idx(toks[j + 1])), (Some(a), Some(b)) if b == a + 1)
        {
            j += 1;
        }
        parts.push(if i == j {
            toks[i].to_string()
        } else {
            format!("{}-{}", toks[i], toks[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn ranges_merge_adjacent_sweep_points() {
        assert_eq!(ranges(&[1, 2, 3, 4, 8, 12]), "1-4, 8-12");
        assert_eq!(ranges(&[16]), "16");
    }
}
