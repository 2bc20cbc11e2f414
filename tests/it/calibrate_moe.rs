//! Issue 22: the grouped MoE GEMM through the mock timer: which jobs a `--moe-only` run times,
//! the `moe_gemm` tables, the merge into a measured profile, and the cost model pricing the
//! routed experts from them (`step` saying so).

use cardplan::calibrate::moe::{MoeDtype, MoePath, routing};
use cardplan::calibrate::sweep::{Job, SweepSpec};
use cardplan::calibrate::timer::MockTimer;
use cardplan::catalog::engine::EnginePreset;
use cardplan::catalog::{self, quant::KvDtype, quant::Quant};
use cardplan::cost::{PricingBasis, StepCost};
use cardplan::profile::GpuProfile;
use cardplan::step::BatchShape;

use crate::common::{cardplan, stderr, stdout, temp_dir};

const MODELS: &str = "mixtral-8x7b,qwen3-30b-a3b,gpt-oss-20b,gpt-oss-120b";

fn spec() -> SweepSpec {
    let models: Vec<_> = MODELS
        .split(',')
        .map(|m| catalog::model(m).unwrap())
        .collect();
    SweepSpec::new(&models, false, true).moe_only()
}

#[test]
fn moe_only_times_every_expert_shape_at_powers_of_two_and_the_roofs() {
    let s = spec();
    let jobs = s.jobs();
    let moe: Vec<_> = jobs
        .iter()
        .filter_map(|j| match *j {
            Job::Moe(m) => Some((m.path, m.dtype, m.experts, m.n, m.k, m.tokens)),
            _ => None,
        })
        .collect();
    // 8 expert linears (gpt-oss-20b and -120b share shapes, not E) × 14 token counts × 4
    assert_eq!(moe.len(), 8 * 14 * 4);
    assert!(moe.iter().all(|m| m.5.is_power_of_two() && m.5 <= 8192));
    for p in MoePath::ALL {
        assert!(moe.iter().any(|m| m.0 == p && m.1 == MoeDtype::Bf16));
    }
    assert!(moe.iter().any(|m| m.1 == MoeDtype::Fp16));
    // nothing else but the copy and the three roof GEMMs a profile needs
    let others = jobs.iter().filter(|j| !matches!(j, Job::Moe(_))).count();
    assert_eq!(others, 4, "{jobs:?}");
    // a dense model has no expert shapes, and --quant-only never times MoE
    let dense = SweepSpec::new(&[catalog::model("llama-3.1-8b").unwrap()], false, true);
    assert!(dense.moe.is_empty());
    let q = SweepSpec::new(&[catalog::model("mixtral-8x7b").unwrap()], false, true).quant_only();
    assert!(!q.jobs().iter().any(|j| matches!(j, Job::Moe(_))));
}

#[test]
fn moe_tables_take_the_fastest_path_per_point() {
    let mut timer = MockTimer::new("Mock");
    let base = catalog::gpu("h200").unwrap();
    let cal =
        cardplan::calibrate::calibrate(&mut timer, &spec(), base, "test", |_, _, _| {}).unwrap();
    let m = cal.profile.measured.unwrap();
    // per (dtype, E, k, n, K): bf16 for 8 shapes, fp16 (grouped only) for 8
    assert_eq!(m.moe_gemm.len(), 16);
    let t = m
        .moe_gemm
        .iter()
        .find(|t| t.dtype == "bf16" && t.experts == 128 && t.top_k == 8 && t.n == 1536)
        .unwrap();
    assert_eq!(t.points.len(), 14);
    for &(tokens, ms) in &t.points {
        let mine: Vec<f64> = cal
            .timed
            .iter()
            .filter(|x| {
                matches!(x.job, Job::Moe(m) if m.dtype == MoeDtype::Bf16 && m.experts == 128 && m.top_k == 8 && m.n == 1536 && m.tokens == tokens)
            })
            .map(|x| x.ms)
            .collect();
        assert_eq!(mine.len(), 3);
        assert_eq!(ms, mine.iter().copied().fold(f64::INFINITY, f64::min));
    }
    // the mock charges the loop a launch per expert: the grouped call wins at many experts
    assert!(
        m.provenance
            .notes
            .iter()
            .any(|n| n.starts_with("moe_gemm = "))
    );
    assert!(
        m.provenance
            .notes
            .iter()
            .any(|n| n.starts_with("moe_gemm bf16: path moe-grouped was fastest"))
    );
    // time grows with tokens once every expert is touched
    let last = t.points.len() - 1;
    assert!(t.points[last].1 > t.points[last - 3].1);
}

fn decode(batch: u32) -> BatchShape<'static> {
    BatchShape {
        decode_seqs: batch,
        decode_context_tokens: u64::from(batch) * 1024,
        prefills: &[],
    }
}

#[test]
fn moe_only_run_merges_and_the_cost_model_prices_experts_from_it() {
    let dir = temp_dir("moe-only");
    let out = dir.join("h200.yaml");
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--moe-only",
        "--models",
        MODELS,
        "--gpu",
        "h200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = GpuProfile::read(&out).unwrap();
    let before = catalog::gpu("h200").unwrap();
    let (mm, mb) = (
        merged.measured.clone().unwrap(),
        before.measured.clone().unwrap(),
    );
    assert_eq!(mm.gemm, mb.gemm);
    assert_eq!(mm.attn_decode, mb.attn_decode);
    assert_eq!(mm.roofs, mb.roofs);
    assert_eq!(mm.moe_gemm.len(), 16);
    assert!(
        mm.provenance
            .notes
            .iter()
            .any(|n| n.starts_with("moe tables merged from"))
    );

    // the routed experts of qwen3-30b-a3b now come from the table; the mock's grouped call is a
    // roofline, so the two pricings differ
    let model = catalog::model("qwen3-30b-a3b").unwrap();
    let engine = EnginePreset::builtin("vllm").unwrap();
    let measured = catalog::measured_gpus().unwrap();
    let cost = |p: &GpuProfile| {
        let basis = PricingBasis::resolve(p, measured);
        StepCost::new(&basis, &model, Quant::Fp16, KvDtype::Fp16, &engine).unwrap()
    };
    let (with, without) = (cost(&merged), cost(&before));
    for b in [1, 64, 1024] {
        let (a, z) = (
            with.breakdown(&decode(b)).linear,
            without.breakdown(&decode(b)).linear,
        );
        assert!(a > 0.0 && z > 0.0 && a != z, "batch {b}: {a} vs {z}");
    }
    // step says where the MoE time comes from
    let o = cardplan(&[
        "step",
        "--gpu",
        out.to_str().unwrap(),
        "--model",
        "qwen3-30b-a3b",
        "--batch",
        "64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("moe experts: grouped MoE GEMM from the profile's moe_gemm table"),
        "{}",
        stdout(&o)
    );
    let o = cardplan(&[
        "step",
        "--gpu",
        "h100-sxm",
        "--model",
        "qwen3-30b-a3b",
        "--batch",
        "64",
    ]);
    assert!(
        stdout(&o).contains("the profile has no moe_gemm table"),
        "{}",
        stdout(&o)
    );
    // gpt-oss keeps its MXFP4 experts on the weight-only path
    let o = cardplan(&[
        "step",
        "--gpu",
        out.to_str().unwrap(),
        "--model",
        "gpt-oss-20b",
        "--batch",
        "8",
    ]);
    assert!(
        stdout(&o).contains("checkpoint's own low-bit format"),
        "{}",
        stdout(&o)
    );
    // a dense model list is refused with the flag named
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--moe-only",
        "--models",
        "llama-3.1-8b",
        "--gpu",
        "h200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--moe-only needs a mixture-of-experts model"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn derived_profiles_scale_the_moe_tables() {
    let dir = temp_dir("moe-derive");
    let out = dir.join("h200.yaml");
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--moe-only",
        "--models",
        "qwen3-30b-a3b",
        "--gpu",
        "h200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let source = GpuProfile::read(&out).unwrap();
    let target = catalog::gpu("l40s").unwrap();
    let d = cardplan::cost::transfer::derive(&source, &target).unwrap();
    let (ms, md) = (source.measured.unwrap(), d.measured.unwrap());
    assert_eq!(ms.moe_gemm.len(), md.moe_gemm.len());
    // an L40S has about a sixth of the H200's bandwidth: memory-bound points grow
    let (a, b) = (ms.moe_gemm[0].points[0].1, md.moe_gemm[0].points[0].1);
    assert!(b > 2.0 * a, "{a} -> {b}");
    let _ = std::fs::remove_dir_all(&dir);
    // routing used by both: one row per expert at one token
    assert_eq!(routing(128, 8, 1), vec![1; 8]);
}

#[test]
fn moe_raw_timings_merge_offline_into_a_profile() {
    let dir = temp_dir("moe-reassemble");
    let (first, raw, again) = (
        dir.join("a.yaml"),
        dir.join("moe-raw.json"),
        dir.join("b.yaml"),
    );
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--moe-only",
        "--models",
        "mixtral-8x7b",
        "--gpu",
        "h200",
        "--out",
        first.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cardplan(&[
        "calibrate",
        "--moe-only",
        "--gpu",
        "h200",
        "--reassemble",
        raw.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (
        GpuProfile::read(&first).unwrap(),
        GpuProfile::read(&again).unwrap(),
    );
    let (ma, mb) = (a.measured.unwrap(), b.measured.unwrap());
    assert_eq!(ma.moe_gemm, mb.moe_gemm);
    assert_eq!(
        mb.gemm,
        catalog::gpu("h200").unwrap().measured.unwrap().gemm
    );
    assert!(
        mb.provenance
            .notes
            .iter()
            .any(|n| n.contains("a --moe-only run on Mock GPU (no device)")),
        "{:?}",
        mb.provenance.notes
    );
    // raw timings without MoE jobs are refused, naming the file
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--quick",
        "--gpu",
        "h200",
        "--out",
        dir.join("q.yaml").to_str().unwrap(),
        "--raw",
        dir.join("q.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cardplan(&[
        "calibrate",
        "--moe-only",
        "--gpu",
        "h200",
        "--reassemble",
        dir.join("q.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds no MoE timings"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
