//! Turning timed jobs into the profile's tables: per scheme the fastest path at each token count
//! (as engines pick), roofs, and provenance notes that say which path won where.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::{GemmPath, Job};
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
    let mut copy_gbs: f64 = 0.0;
    let mut fp16_tflops: f64 = 0.0;
    let mut int8_tops: f64 = 0.0;
    // (scheme, n, k) -> tokens -> (ms, path)
    type Best = BTreeMap<(&'static str, u32, u32), BTreeMap<u32, (f64, GemmPath)>>;
    let mut best: Best = BTreeMap::new();
    let mut decode: Groups<(KvDtype, u32, u32), DecodePoint> = Vec::new();
    let mut prefill: BTreeMap<(u32, u32), Vec<(u32, f64)>> = BTreeMap::new();
    let mut elem: Groups<(ElementwiseKind, u32), (u32, f64)> = Vec::new();
    for t in timed {
        match t.job {
            Job::Copy { bytes } => copy_gbs = copy_gbs.max(2.0 * bytes as f64 / (t.ms * 1e6)),
            Job::Gemm { path, n, k, tokens } => {
                let rate = 2.0 * f64::from(tokens) * f64::from(n) * f64::from(k) / (t.ms * 1e9);
                if path.is_fp16_gemm() {
                    fp16_tflops = fp16_tflops.max(rate);
                } else if path == GemmPath::Int8ImmaOnly {
                    int8_tops = int8_tops.max(rate);
                }
                for &scheme in path.schemes() {
                    let e = best
                        .entry((scheme, n, k))
                        .or_default()
                        .entry(tokens)
                        .or_insert((t.ms, path));
                    if t.ms < e.0 {
                        *e = (t.ms, path);
                    }
                }
            }
            Job::Decode {
                kv,
                heads,
                kv_heads,
                batch,
                context,
            } => group(&mut decode, (kv, heads, kv_heads)).push(DecodePoint {
                batch,
                context,
                ms: t.ms,
            }),
            Job::Prefill {
                heads,
                kv_heads,
                tokens,
            } => prefill
                .entry((heads, kv_heads))
                .or_default()
                .push((tokens, t.ms)),
            Job::Elementwise {
                kind,
                width,
                tokens,
            } => group(&mut elem, (kind, width)).push((tokens, t.ms)),
        }
    }
    if !(copy_gbs > 0.0 && fp16_tflops > 0.0 && int8_tops > 0.0) {
        return Err(Error::Internal(
            "calibration produced no copy, fp16 or int8 roof (the sweep lacks a roof job)".into(),
        ));
    }
    // Which path won, per scheme, as ranges of token counts.
    let mut wins: BTreeMap<(&str, GemmPath), Vec<u32>> = BTreeMap::new();
    let mut gemm = Vec::new();
    for ((scheme, n, k), pts) in &best {
        for (&tok, &(_, path)) in pts {
            wins.entry((scheme, path)).or_default().push(tok);
        }
        gemm.push(GemmTable {
            scheme: (*scheme).to_string(),
            n: *n,
            k: *k,
            points: pts.iter().map(|(&tok, &(ms, _))| (tok, ms)).collect(),
        });
    }
    for ((scheme, path), mut toks) in wins {
        toks.sort_unstable();
        toks.dedup();
        provenance.notes.push(format!(
            "{scheme}: path {} was fastest at some shape for token counts {}",
            path.key(),
            ranges(&toks)
        ));
    }
    let sorted = |mut v: Vec<(u32, f64)>| {
        v.sort_by_key(|p| p.0);
        v.dedup_by_key(|p| p.0);
        v
    };
    let attn_prefill = prefill
        .into_iter()
        .map(|((heads, kv_heads), pts)| PrefillAttnTable {
            heads,
            kv_heads,
            head_dim: super::plan::HEAD_DIM,
            points: sorted(pts),
        })
        .collect();
    let elementwise = elem
        .into_iter()
        .map(|((kind, width), pts)| ElementwiseTable {
            kind,
            width,
            points: sorted(pts),
        })
        .collect();
    let attn_decode = decode
        .into_iter()
        .map(|((kv, heads, kv_heads), mut pts)| {
            pts.sort_by_key(|p| (p.batch, p.context));
            DecodeAttnTable {
                kv,
                heads,
                kv_heads,
                head_dim: super::plan::HEAD_DIM,
                block_size: super::plan::BLOCK_SIZE,
                points: pts,
            }
        })
        .collect();
    Ok(Measured {
        provenance,
        roofs: MeasuredRoofs {
            copy_gbs,
            fp16_tflops,
            int8_tops,
        },
        gemm,
        attn_prefill,
        attn_decode,
        elementwise,
    })
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
    let sweep = super::plan::token_sweep(u32::MAX / 4);
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
