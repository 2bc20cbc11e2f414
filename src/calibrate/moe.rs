//! The grouped mixture-of-experts GEMM: which expert GEMMs one step of `T` tokens runs, the paths
//! that time them, and the `moe_gemm` tables they fill.
//!
//! A step sends `T·k` token-rows to `E` experts. The calibrator routes them as the cost model
//! prices them (src/cost/moe.rs): `D = round(E·(1 − (1 − k/E)^T))` distinct experts, clamped to
//! `[k, min(E, T·k)]`, the `T·k` rows split as evenly as whole rows allow (the first
//! `T·k mod D` experts get one more). Uniform routing, no imbalance: real routers send more rows
//! to popular experts, which this table does not see (stated in the profile's notes). With at
//! most two row counts the touched experts form at most two groups of equal-shape GEMMs, which
//! is what cuBLAS's grouped and strided-batched calls take.

use serde::{Deserialize, Serialize};

use super::assemble::Timed;
use super::sweep::Job;
use crate::catalog::model::ModelArch;
use crate::error::{Error, Result};
use crate::profile::{GpuProfile, MoeGemmTable};

/// How the expert GEMMs of one MoE layer's linear are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoePath {
    /// One `cublasGemmGroupedBatchedEx` call over every touched expert (at most two groups of
    /// equal row counts): the grouped GEMM.
    Grouped,
    /// One `cublasGemmStridedBatchedEx` call per equal-row group (at most two): the touched
    /// experts are adjacent in memory, so one stride reaches each.
    Strided,
    /// One `cublasGemmEx` per touched expert, as a loop of `F.linear` over the experts runs
    /// (the documented fallback, and the PyTorch reference's own shape).
    Loop,
}

impl MoePath {
    pub const ALL: [MoePath; 3] = [MoePath::Grouped, MoePath::Strided, MoePath::Loop];

    pub fn key(self) -> &'static str {
        match self {
            MoePath::Grouped => "moe-grouped",
            MoePath::Strided => "moe-strided",
            MoePath::Loop => "moe-loop",
        }
    }
}

/// The 16-bit type of weights and activations (fp32 accumulate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoeDtype {
    Bf16,
    Fp16,
}

impl MoeDtype {
    pub fn key(self) -> &'static str {
        match self {
            MoeDtype::Bf16 => "bf16",
            MoeDtype::Fp16 => "fp16",
        }
    }
}

/// One timed grouped call: one MoE layer's expert linear at `tokens` tokens by `path`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MoeJob {
    pub path: MoePath,
    pub dtype: MoeDtype,
    pub experts: u32,
    pub top_k: u32,
    pub n: u32,
    pub k: u32,
    pub tokens: u32,
}

impl MoeJob {
    /// Compute-bound when the experts' average rows are (as the tokens of a dense GEMM are).
    pub fn compute_bound(&self) -> bool {
        let d = distinct_experts(self.experts, self.top_k, self.tokens);
        self.tokens * self.top_k / d.max(1) >= super::sweep::COMPUTE_BOUND_MIN_TOKENS
    }

    /// Every path and dtype of one point share a heat-up.
    pub fn sustain_group(self) -> MoeJob {
        MoeJob {
            path: MoePath::Grouped,
            dtype: MoeDtype::Bf16,
            ..self
        }
    }

    pub fn label(&self) -> String {
        format!(
            "{} {} E={} k={} {}x{} T={}",
            self.path.key(),
            self.dtype.key(),
            self.experts,
            self.top_k,
            self.n,
            self.k,
            self.tokens
        )
    }
}

impl super::sweep::SweepSpec {
    /// The grouped MoE GEMMs alone, at powers of two (the roof jobs stay: a profile needs
    /// them): what a `--moe-only` run merges into a measured profile.
    pub fn moe_only(mut self) -> Self {
        self.moe_only = true;
        self.shapes.clear();
        self.fp16_only_shapes.clear();
        self.attn.clear();
        self.elementwise.clear();
        self.imma_only_tokens.clear();
        self.prefill_tokens.clear();
        self.tokens.retain(|t| t.is_power_of_two());
        self
    }
}

/// One expert linear of one model: `E` experts of `n × k` weights, `top_k` per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeCase {
    pub experts: u32,
    pub top_k: u32,
    pub n: u32,
    pub k: u32,
}

/// The expert linears of `models` (gate/up and down of each MoE model), each shape once.
pub fn cases(models: &[ModelArch]) -> Vec<MoeCase> {
    let mut v: Vec<MoeCase> = Vec::new();
    for m in models {
        let Some(moe) = &m.moe else { continue };
        for l in m.expert_linears() {
            let c = MoeCase {
                experts: moe.experts,
                top_k: moe.top_k,
                n: l.n,
                k: l.k,
            };
            if !v.contains(&c) {
                v.push(c);
            }
        }
    }
    v
}

/// Distinct experts a step of `tokens` touches as the calibrator routes it (module docs).
pub fn distinct_experts(experts: u32, top_k: u32, tokens: u32) -> u32 {
    let rows = u64::from(tokens) * u64::from(top_k);
    let expected = crate::cost::moe::expected_distinct(
        f64::from(experts),
        f64::from(top_k),
        f64::from(tokens),
    );
    let hi = u64::from(experts).min(rows).max(1);
    let lo = u64::from(top_k).min(hi);
    (expected.round() as u64).clamp(lo, hi) as u32
}

/// Rows per touched expert, in expert order: `T·k` split evenly over [`distinct_experts`].
pub fn routing(experts: u32, top_k: u32, tokens: u32) -> Vec<u32> {
    let d = distinct_experts(experts, top_k, tokens);
    let rows = tokens * top_k;
    let (base, extra) = (rows / d, rows % d);
    (0..d).map(|i| base + u32::from(i < extra)).collect()
}

/// The equal-row groups of a routing: `(rows, experts)` per group, larger rows first, no empty
/// group (a routing has at most two).
pub fn groups(rows: &[u32]) -> Vec<(u32, u32)> {
    let mut g: Vec<(u32, u32)> = Vec::new();
    for &r in rows {
        match g.last_mut() {
            Some((gr, count)) if *gr == r => *count += 1,
            _ => g.push((r, 1)),
        }
    }
    g
}

/// The MoE jobs of `cases` at `tokens`: bf16 by every path (MoE checkpoints are bf16), then
/// the grouped path in fp16 too; one dtype's jobs of a case adjacent, so its buffers are filled
/// once.
pub fn jobs(cases: &[MoeCase], tokens: &[u32]) -> Vec<Job> {
    let mut v = Vec::new();
    let runs: [(MoeDtype, &[MoePath]); 2] = [
        (MoeDtype::Bf16, &MoePath::ALL),
        (MoeDtype::Fp16, &[MoePath::Grouped]),
    ];
    for c in cases {
        for (dtype, paths) in runs {
            for &t in tokens {
                for &path in paths {
                    v.push(Job::Moe(MoeJob {
                        path,
                        dtype,
                        experts: c.experts,
                        top_k: c.top_k,
                        n: c.n,
                        k: c.k,
                        tokens: t,
                    }));
                }
            }
        }
    }
    v
}

/// One table per (dtype, E, k, n, K): the fastest path at each token count, and a note per
/// dtype and path saying where it won.
pub fn tables(timed: &[Timed], notes: &mut Vec<String>) -> Vec<MoeGemmTable> {
    type Key = (MoeDtype, u32, u32, u32, u32);
    let mut best: std::collections::BTreeMap<Key, std::collections::BTreeMap<u32, (f64, MoePath)>> =
        Default::default();
    for t in timed {
        let Job::Moe(MoeJob {
            path,
            dtype,
            experts,
            top_k,
            n,
            k,
            tokens,
        }) = t.job
        else {
            continue;
        };
        let e = best
            .entry((dtype, experts, top_k, n, k))
            .or_default()
            .entry(tokens)
            .or_insert((t.ms, path));
        if t.ms < e.0 {
            *e = (t.ms, path);
        }
    }
    let mut wins: std::collections::BTreeMap<(MoeDtype, MoePath), Vec<u32>> = Default::default();
    let mut out = Vec::new();
    for ((dtype, experts, top_k, n, k), pts) in best {
        for (&tok, &(_, path)) in &pts {
            wins.entry((dtype, path)).or_default().push(tok);
        }
        out.push(MoeGemmTable {
            dtype: dtype.key().to_string(),
            experts,
            top_k,
            n,
            k,
            points: pts.iter().map(|(&tok, &(ms, _))| (tok, ms)).collect(),
        });
    }
    for ((dtype, path), mut toks) in wins {
        toks.sort_unstable();
        toks.dedup();
        notes.push(format!(
            "moe_gemm {}: path {} was fastest at some shape for token counts {}",
            dtype.key(),
            path.key(),
            super::assemble::ranges(&toks)
        ));
    }
    out
}

/// How the `moe_gemm` tables are formed (a provenance note).
pub const MOE_NOTE: &str = "moe_gemm = the routed experts' GEMMs of one MoE layer's linear at T \
     tokens (y[rows×n] = x[rows×k]·W_eᵀ per touched expert, fp32 accumulate), as one call: min of \
     cublasGemmGroupedBatchedEx (one grouped call), cublasGemmStridedBatchedEx (one call per \
     equal-row group) and a loop of cublasGemmEx per expert (as a loop of F.linear runs); routing \
     uniform and even: round(E·(1-(1-k/E)^T)) distinct experts (at least k), the T·k rows split \
     evenly over them (no imbalance); the touched experts rotate over all E so their weights come \
     from DRAM; x already permuted into expert order (the gather/scatter around it not timed)";

/// `base` (a measured profile) with the `moe_gemm` tables of `fresh` (a `--moe-only` run)
/// replacing its own, everything else as it was measured.
pub fn merge_moe(base: GpuProfile, fresh: &crate::profile::Measured) -> Result<GpuProfile> {
    let mut out = base;
    let key = out.key.clone();
    let m = out.measured.as_mut().ok_or_else(|| {
        Error::BadInput(format!(
            "--moe-only merges into a measured profile; {key} has no measured block (calibrate it in full first)"
        ))
    })?;
    m.moe_gemm = fresh.moe_gemm.clone();
    let p = &fresh.provenance;
    m.provenance
        .notes
        .retain(|n| !n.starts_with("moe tables merged from") && !n.starts_with("moe-only: "));
    let what = format!(
        "moe tables merged from a --moe-only run ({} moe_gemm tables)",
        fresh.moe_gemm.len()
    );
    m.provenance
        .notes
        .push(super::merge::merged_from(&what, p, "moe-only"));
    m.provenance
        .notes
        .extend(p.notes.iter().map(|n| format!("moe-only: {n}")));
    out.validate("merged profile")
        .map_err(|e| Error::Internal(format!("merging produced an invalid profile: {e}")))?;
    Ok(out)
}

/// `base` (a measured profile) with its `moe_gemm` tables rebuilt from the MoE jobs of `timed`
/// (a `--moe-only` run's raw timings, on `device`), everything else kept: for merging a GPU run
/// into a profile that changed since the binary was built. Nothing is re-measured.
pub fn reassemble(
    base: GpuProfile,
    timed: &[Timed],
    source: &str,
    device: &str,
) -> Result<GpuProfile> {
    let mut out = base;
    let key = out.key.clone();
    let m = out.measured.as_mut().ok_or_else(|| {
        Error::BadInput(format!(
            "--moe-only --reassemble merges into a measured profile; {key} has no measured block"
        ))
    })?;
    let mut notes = Vec::new();
    let tables = tables(timed, &mut notes);
    if tables.is_empty() {
        return Err(Error::BadInput(format!(
            "{source} holds no MoE timings (write them with `calibrate --moe-only --raw`)"
        )));
    }
    m.moe_gemm = tables;
    m.provenance
        .notes
        .retain(|n| !n.starts_with("moe tables merged from") && !n.starts_with("moe-only: "));
    m.provenance.notes.push(format!(
        "moe tables merged from {source} (a --moe-only run on {device}) on {} by cardplan {}; the tables' notes \
         follow, prefixed 'moe-only:'",
        super::now_rfc3339(),
        env!("CARGO_PKG_VERSION")
    ));
    notes.push(MOE_NOTE.into());
    m.provenance
        .notes
        .extend(notes.iter().map(|n| format!("moe-only: {n}")));
    out.validate("merged profile")
        .map_err(|e| Error::Internal(format!("merging produced an invalid profile: {e}")))?;
    Ok(out)
}

/// CPU reference of one grouped call: for each touched expert `j` (weights `w[e_j]`, row-major
/// `n × k`, `e_j = first + j`), its rows of `x` (expert order, row-major `· × k`) times
/// `w[e_j]ᵀ`; output row-major `rows × n`, f64 accumulation.
pub fn reference(
    x: &[f32],
    w: &[f32],
    (n, k): (usize, usize),
    first: usize,
    rows: &[u32],
) -> Vec<f64> {
    let total: usize = rows.iter().map(|&r| r as usize).sum();
    let mut y = vec![0f64; total * n];
    let mut row = 0usize;
    for (j, &r) in rows.iter().enumerate() {
        let we = &w[(first + j) * n * k..(first + j + 1) * n * k];
        for t in row..row + r as usize {
            let xr = &x[t * k..(t + 1) * k];
            for c in 0..n {
                let wr = &we[c * k..(c + 1) * k];
                let s: f64 = xr
                    .iter()
                    .zip(wr)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                y[t * n + c] = s;
            }
        }
        row += r as usize;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_touches_top_k_experts_one_row_each() {
        assert_eq!(routing(128, 8, 1), vec![1; 8]);
        assert_eq!(routing(8, 2, 1), vec![1, 1]);
    }

    #[test]
    fn many_tokens_touch_every_expert_evenly() {
        // Qwen3-30B-A3B at 8192 tokens: all 128 experts, 512 rows each
        assert_eq!(routing(128, 8, 8192), vec![512; 128]);
        // Mixtral at 3 tokens: E(1-(3/4)^3) = 4.6 -> 5 experts over 6 rows
        let r = routing(8, 2, 3);
        assert_eq!(r, vec![2, 1, 1, 1, 1]);
        assert_eq!(groups(&r), vec![(2, 1), (1, 4)]);
    }

    #[test]
    fn routing_conserves_rows_and_never_gives_an_expert_more_than_every_token() {
        for (e, k) in [(8, 2), (32, 4), (128, 4), (128, 8)] {
            for t in [1, 2, 3, 5, 16, 100, 1024, 8192] {
                let r = routing(e, k, t);
                assert_eq!(r.iter().sum::<u32>(), t * k, "{e} {k} {t}");
                assert!(r.len() as u32 <= e && r.len() as u32 >= k.min(t * k));
                assert!(r.iter().all(|&x| x >= 1 && x <= t), "{e} {k} {t}: {r:?}");
                assert!(groups(&r).len() <= 2);
            }
        }
    }

    #[test]
    fn cases_take_each_expert_shape_once() {
        let models: Vec<ModelArch> = [
            "mixtral-8x7b",
            "gpt-oss-20b",
            "gpt-oss-120b",
            "llama-3.1-8b",
        ]
        .iter()
        .map(|m| crate::catalog::model(m).unwrap())
        .collect();
        let c = cases(&models);
        // mixtral gate_up, down; gpt-oss-20b and -120b share shapes but not E
        assert_eq!(c.len(), 6, "{c:?}");
        assert!(c.contains(&MoeCase {
            experts: 8,
            top_k: 2,
            n: 2 * 14336,
            k: 4096
        }));
        assert!(c.contains(&MoeCase {
            experts: 32,
            top_k: 4,
            n: 2880,
            k: 2880
        }));
    }

    #[test]
    fn reference_multiplies_each_experts_rows_by_its_own_weights() {
        // 3 experts of 2x2 weights: e0 = I, e1 = 2I, e2 = [[0,1],[1,0]]; touch e1, e2 (first 1)
        let w = [1., 0., 0., 1., 2., 0., 0., 2., 0., 1., 1., 0.];
        let x = [1., 2., 3., 4., 5., 6.];
        let y = reference(&x, &w, (2, 2), 1, &[2, 1]);
        assert_eq!(y, vec![2., 4., 6., 8., 6., 5.]);
    }
}
