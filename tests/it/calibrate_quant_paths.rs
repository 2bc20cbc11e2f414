//! The FP8, INT4 and LLM.int8() calibration paths through the mock timer: which jobs a
//! `--quant-only` run times, how their tables are assembled, and the merge into a measured profile.

use std::collections::BTreeSet;

use cardplan::calibrate::sweep::{GemmPath, Job, QUANT_PATHS, SweepSpec, int4_shape_ok};
use cardplan::calibrate::timer::MockTimer;
use cardplan::catalog::{self, quant::KvDtype};
use cardplan::profile::GpuProfile;

use crate::common::{cardplan, stderr, stdout, temp_dir};

fn spec() -> SweepSpec {
    let m = catalog::model("llama-3.1-8b").unwrap();
    SweepSpec::new(&[m], false, true).quant_only()
}

#[test]
fn quant_only_times_the_quantized_paths_fp16_beside_them_and_fp8_kv_decode() {
    let s = spec();
    let jobs = s.jobs();
    let mut paths = BTreeSet::new();
    for j in &jobs {
        match *j {
            Job::Gemm { path, n, k, tokens } => {
                paths.insert(path);
                if n == 8192 && k == 8192 && tokens == 8192 {
                    continue; // the roofs
                }
                assert!(tokens.is_power_of_two(), "{j:?}");
                assert!(
                    path == GemmPath::Fp16CublasGemmEx || QUANT_PATHS.contains(&path),
                    "{j:?}"
                );
            }
            Job::Decode { kv, .. } => assert_eq!(kv, KvDtype::Fp8),
            Job::Copy { .. } => {}
            other => panic!("not a quant-only job: {other:?}"),
        }
    }
    for p in QUANT_PATHS {
        assert!(paths.contains(&p), "{p:?} never timed");
    }
    // 4 llama shapes x (14 token counts x (7 quantized paths + fp16) + the GEMV at 1..64)
    let gemms = jobs
        .iter()
        .filter(|j| matches!(j, Job::Gemm { .. }))
        .count();
    assert_eq!(gemms, 4 * (14 * 8 + 7) + 3);
    assert!(jobs.iter().all(|j| match *j {
        Job::Gemm {
            path: GemmPath::Int4Gemv,
            tokens,
            ..
        } => tokens <= 64,
        _ => true,
    }));
    assert_eq!(
        jobs.iter()
            .filter(|j| matches!(j, Job::Decode { .. }))
            .count(),
        5 * 3
    );
    assert!(jobs.iter().all(|j| match j {
        Job::Gemm { path, .. } => !QUANT_PATHS.contains(path) || j.optional(),
        _ => true,
    }));
}

#[test]
fn int4_needs_64_column_blocks_and_128_channel_groups() {
    assert!(int4_shape_ok(6144, 4096) && int4_shape_ok(4096, 14336));
    assert!(!int4_shape_ok(4100, 4096) && !int4_shape_ok(4096, 4160));
}

#[test]
fn mock_calibration_assembles_quant_tables_and_int4_takes_the_faster_path() {
    let mut t = MockTimer::new("mock H200");
    let base = catalog::gpu("h200").unwrap();
    let cal = cardplan::calibrate::calibrate(&mut t, &spec(), base, "test", |_, _, _| {}).unwrap();
    let m = cal.profile.measured.as_ref().unwrap();
    for scheme in ["fp8", "fp8-tensor", "int4", "llm-int8"] {
        assert_eq!(
            m.gemm.iter().filter(|g| g.scheme == scheme).count(),
            4,
            "{scheme}: one table per llama shape"
        );
    }
    assert!(m.attn_decode.iter().any(|d| d.kv == KvDtype::Fp8));
    // int4 = min(W4A16 kernel, dequantize + cuBLAS) at each token count
    let (n, k) = (28672, 4096);
    let table = m
        .gemm
        .iter()
        .find(|g| g.scheme == "int4" && g.n == n && g.k == k)
        .unwrap();
    for &(tokens, ms) in &table.points {
        let time = |path| {
            cal.timed
                .iter()
                .find(|x| x.job == Job::Gemm { path, n, k, tokens })
                .map(|x| x.ms)
                .unwrap()
        };
        let mut want = time(GemmPath::Int4Mma).min(time(GemmPath::Int4DequantCublas));
        if tokens <= 64 {
            want = want.min(time(GemmPath::Int4Gemv));
        }
        assert_eq!(ms, want, "T={tokens}");
    }
    let notes = m.provenance.notes.join("\n");
    assert!(notes.contains("llm-int8 = bitsandbytes 0.50"), "{notes}");
    assert!(!notes.contains("llm-int8 not measured"));
}

#[test]
fn a_failing_quantized_job_is_skipped_with_a_note_not_fatal() {
    let mut t = MockTimer::new("mock H200");
    let s = spec();
    let first = s.jobs().iter().position(|j| j.optional()).unwrap();
    t.fail_at = Some(first);
    let cal = cardplan::calibrate::calibrate(
        &mut t,
        &s,
        catalog::gpu("h200").unwrap(),
        "t",
        |_, _, _| {},
    )
    .unwrap();
    let notes = cal.profile.measured.unwrap().provenance.notes.join("\n");
    assert!(
        notes.contains("1 quantized-path jobs failed and were skipped"),
        "{notes}"
    );
    // a failure of a job the profile cannot lack still aborts
    let mut t = MockTimer::new("mock H200");
    t.fail_at = Some(0);
    assert!(
        cardplan::calibrate::calibrate(
            &mut t,
            &s,
            catalog::gpu("h200").unwrap(),
            "t",
            |_, _, _| {}
        )
        .is_err()
    );
}

#[test]
fn quant_only_run_merges_into_the_measured_profile_and_prices_int4_from_it() {
    let dir = temp_dir("quant-only");
    let out = dir.join("h200.yaml");
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--quant-only",
        "--gpu",
        "h200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = GpuProfile::read(&out).unwrap();
    let before = catalog::gpu("h200").unwrap();
    let (mm, mb) = (merged.measured.unwrap(), before.measured.unwrap());
    // every table the run did not provide is the shipped one, unchanged
    for t in mb
        .gemm
        .iter()
        .filter(|t| !["fp8", "fp8-tensor", "int4", "llm-int8"].contains(&t.scheme.as_str()))
    {
        assert!(mm.gemm.contains(t), "{} {}x{} changed", t.scheme, t.n, t.k);
    }
    assert_eq!(mm.attn_prefill, mb.attn_prefill);
    assert_eq!(mm.elementwise, mb.elementwise);
    assert_eq!(mm.roofs, mb.roofs);
    assert!(mm.gemm.iter().any(|t| t.scheme == "int4"));
    assert!(mm.attn_decode.iter().any(|t| t.kv == KvDtype::Fp8));
    assert_eq!(mm.provenance.date, mb.provenance.date);
    assert!(
        mm.provenance
            .notes
            .iter()
            .any(|n| n.starts_with("quantized tables merged from"))
    );
    // the cost model now prices int4 and fp8 from tables
    for q in ["int4", "fp8"] {
        let o = cardplan(&[
            "step",
            "--gpu",
            out.to_str().unwrap(),
            "--quant",
            q,
            "--batch",
            "8",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            !stdout(&o).contains(&format!("no measured {q} GEMM table")),
            "{}",
            stdout(&o)
        );
    }
    // a datasheet-only GPU has nothing to merge into
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--quant-only",
        "--gpu",
        "l4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no measured block"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quant_schemes_run_times_only_int4_and_llm_int8_and_keeps_the_other_tables() {
    let mut s = spec();
    s.quant_schemes = vec!["int4".into(), "llm-int8".into()];
    for j in s.jobs() {
        match j {
            Job::Gemm { path, n, k, tokens } if !(n == 8192 && k == 8192 && tokens == 8192) => {
                let ok = path == GemmPath::Fp16CublasGemmEx
                    || path.schemes().contains(&"int4")
                    || path.schemes().contains(&"llm-int8");
                assert!(ok, "{j:?}");
            }
            Job::Decode { .. } => panic!("fp8-kv not asked for: {j:?}"),
            _ => {}
        }
    }
    let dir = temp_dir("quant-schemes");
    let out = dir.join("h200.yaml");
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--quant-only",
        "--quant-schemes",
        "int4,llm-int8",
        "--gpu",
        "h200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (mm, mb) = (
        GpuProfile::read(&out).unwrap().measured.unwrap(),
        catalog::gpu("h200").unwrap().measured.unwrap(),
    );
    // fp8 tables and fp8-KV decode stay as shipped; int4 and llm-int8 come from this run
    for t in mb
        .gemm
        .iter()
        .filter(|t| t.scheme != "int4" && t.scheme != "llm-int8")
    {
        assert!(mm.gemm.contains(t), "{} {}x{} changed", t.scheme, t.n, t.k);
    }
    assert_eq!(mm.attn_decode, mb.attn_decode);
    for q in ["int4", "llm-int8"] {
        assert_eq!(mm.gemm.iter().filter(|t| t.scheme == q).count(), 4, "{q}");
    }
    let o = cardplan(&[
        "calibrate",
        "--mock-timer",
        "--quant-only",
        "--quant-schemes",
        "int3",
        "--gpu",
        "h200",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--quant-schemes: unknown scheme 'int3'"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
