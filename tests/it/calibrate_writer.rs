//! The profile writer through the mock timer: a valid profile, merged into the datasheet,
//! written atomically, and no file when anything fails.

use std::process::Command;

use cardplan::calibrate::sweep::SweepSpec;
use cardplan::calibrate::timer::MockTimer;
use cardplan::calibrate::{self};
use cardplan::catalog;
use cardplan::error::Error;
use cardplan::profile::{GpuProfile, Timing};

fn llama_spec(quick: bool) -> SweepSpec {
    SweepSpec::new(&[catalog::model("llama-3.1-8b").unwrap()], quick, true)
}

#[test]
fn mock_calibration_gives_a_valid_profile_with_every_table() {
    let spec = llama_spec(false);
    let base = catalog::gpu("h100-sxm").unwrap();
    let mut t = MockTimer::new("NVIDIA H100 80GB HBM3");
    let mut calls = 0;
    let cal =
        calibrate::calibrate(&mut t, &spec, base.clone(), "abc123", |_, _, _| calls += 1).unwrap();
    assert_eq!(calls, spec.jobs().len());
    let p = &cal.profile;
    p.validate("test").unwrap();
    assert_eq!(p.datasheet, base.datasheet, "datasheet block kept");
    let m = p.measured.as_ref().unwrap();
    assert_eq!(m.provenance.git_rev, "abc123");
    assert_eq!(m.provenance.device, "NVIDIA H100 80GB HBM3");
    let llama = catalog::model("llama-3.1-8b").unwrap();
    for l in llama.linears() {
        for scheme in ["fp16", "int8", "nf4", "nf4-fused"] {
            let tab = m
                .gemm
                .iter()
                .find(|g| g.scheme == scheme && g.n == l.n && g.k == l.k)
                .unwrap_or_else(|| panic!("{scheme} {}", l.name));
            let toks: Vec<u32> = tab.points.iter().map(|p| p.0).collect();
            assert_eq!(toks, spec.tokens);
        }
    }
    // The int8 scheme takes the faster path per token count.
    let l = llama.linears()[0];
    let ms = |path: &str, t: u32| {
        cal.timed
            .iter()
            .find(|x| {
                matches!(x.job, cardplan::calibrate::sweep::Job::Gemm { path: p, n, k, tokens }
                    if p.key() == path && n == l.n && k == l.k && tokens == t)
            })
            .map(|x| x.ms)
    };
    let int8 = m
        .gemm
        .iter()
        .find(|g| g.scheme == "int8" && g.n == l.n && g.k == l.k)
        .unwrap();
    for &(t, v) in &int8.points {
        let best = [ms("int8-w8a8-imma", t), ms("int8-w8a16-gemv", t)]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
        assert_eq!(v, best, "T={t}");
    }
    let table = |scheme: &str| {
        m.gemm
            .iter()
            .find(|g| g.scheme == scheme && g.n == l.n && g.k == l.k)
            .unwrap()
    };
    let fastest = |paths: &[&str], t: u32| {
        paths
            .iter()
            .filter_map(|p| ms(p, t))
            .fold(f64::INFINITY, f64::min)
    };
    // fp16: cublasGemmEx, what torch's F.linear runs, even where cuBLASLt was faster.
    for &(t, v) in &table("fp16").points {
        assert_eq!(Some(v), ms("fp16-cublas-gemmex", t), "fp16 T={t}");
    }
    // nf4 is bitsandbytes' dispatch alone, never cardplan's faster paths.
    for &(t, v) in &table("nf4").points {
        assert_eq!(Some(v), ms("nf4-bnb", t), "nf4 T={t}");
    }
    // nf4-fused: cardplan's faster path (GEMV or its one-kernel dequantize + GEMM).
    for &(t, v) in &table("nf4-fused").points {
        assert_eq!(
            v,
            fastest(&["nf4-gemv", "nf4-dequant-cublas"], t),
            "nf4-fused T={t}"
        );
        assert!(v <= table("nf4").points.iter().find(|p| p.0 == t).unwrap().1);
    }
    assert!(m.roofs.copy_gbs > 0.0 && m.roofs.fp16_tflops > 0.0 && m.roofs.int8_tops > 0.0);
    assert_eq!(
        m.attn_decode.len(),
        cardplan::catalog::quant::KvDtype::ALL.len()
    );
    assert_eq!(m.attn_prefill.len(), 1);
    assert_eq!(m.elementwise.len(), 2);
}

#[test]
fn timing_method_is_recorded_and_old_profiles_read_as_isolated() {
    let spec = llama_spec(true);
    let base = catalog::gpu("h100-sxm").unwrap();
    for timing in [Timing::Isolated, Timing::BackToBack] {
        let mut t = MockTimer::new("x");
        t.timing = timing;
        let cal = calibrate::calibrate(&mut t, &spec, base.clone(), "r", |_, _, _| {}).unwrap();
        let m = cal.profile.measured.as_ref().unwrap();
        assert_eq!(m.provenance.timing, timing);
        assert!(
            m.provenance.method.contains(timing.key()),
            "{}",
            m.provenance.method
        );
    }
    // a profile written before the field existed: the line removed, it reads as isolated
    let mut t = MockTimer::new("x");
    t.timing = Timing::BackToBack;
    let cal = calibrate::calibrate(&mut t, &spec, base, "r", |_, _, _| {}).unwrap();
    let d = tmpdir("old");
    let path = d.join("old.yaml");
    cal.profile.write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("timing: back-to-back"));
    let old: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("timing:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, old).unwrap();
    let p = GpuProfile::read(&path).unwrap();
    assert_eq!(p.measured.unwrap().provenance.timing, Timing::Isolated);
}

#[test]
fn failures_are_errors_naming_the_problem() {
    let spec = llama_spec(true);
    let base = catalog::gpu("h100-sxm").unwrap();
    let mut t = MockTimer::new("x");
    t.fail_check = true;
    let e = calibrate::calibrate(&mut t, &spec, base.clone(), "r", |_, _, _| {}).unwrap_err();
    assert!(matches!(e, Error::Gpu(_)), "{e}");
    // a job the profile cannot lack (quantized-path jobs are skipped instead)
    let i = spec
        .jobs()
        .iter()
        .position(|j| !j.optional() && i_gt0(j))
        .unwrap();
    let mut t = MockTimer::new("x");
    t.fail_at = Some(i);
    let e = calibrate::calibrate(&mut t, &spec, base, "r", |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains(&format!("job {i}")), "{e}");
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    crate::common::temp_dir(&format!("calib-{name}"))
}

#[test]
fn cli_writes_profile_that_reads_back() {
    let d = tmpdir("cli");
    let out = d.join("h100.yaml");
    let raw = d.join("raw.json");
    let st = Command::new(env!("CARGO_BIN_EXE_cardplan"))
        .args([
            "calibrate",
            "--mock-timer",
            "--quick",
            "--gpu",
            "h100-sxm",
            "--git-rev",
            "deadbeef",
            "--json",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--raw")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let p = GpuProfile::read(&out).unwrap();
    assert_eq!(p.key, "h100-sxm");
    let prov = &p.measured.as_ref().unwrap().provenance;
    assert_eq!(prov.git_rev, "deadbeef");
    // back-to-back is the default method, written to the file and read back
    assert_eq!(prov.timing, Timing::BackToBack);
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("timing: back-to-back")
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&raw).unwrap()).unwrap();
    assert!(v["timed"].as_array().unwrap().len() > 10);
    let summary: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(summary["key"], "h100-sxm");
    assert_eq!(summary["timing"], "back-to-back");
    // Only the two output files: the temporary file of the atomic write is gone.
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2);
}

#[test]
fn cli_rejects_bad_flags_without_writing() {
    let d = tmpdir("bad");
    let out = d.join("x.yaml");
    for extra in [
        &["--reps", "5"][..],
        &["--models", "no-such-model"][..],
        &["--gpu", "no-such-gpu"][..],
        &["--timing", "sometimes"][..],
    ] {
        let st = Command::new(env!("CARGO_BIN_EXE_cardplan"))
            .args(["calibrate", "--mock-timer", "--quick"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            st.status.code(),
            Some(2),
            "{extra:?}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert!(!out.exists());
    }
}

#[test]
fn cli_without_gpu_exits_4_and_writes_nothing() {
    // Only meaningful where CUDA is absent (CI, the build machine).
    // SAFETY: only tries to dlopen libcuda.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        return;
    }
    let d = tmpdir("nogpu");
    let out = d.join("x.yaml");
    let st = Command::new(env!("CARGO_BIN_EXE_cardplan"))
        .args(["calibrate", "--quick", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        st.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("CUDA") || err.contains("GPU"), "{err}");
    assert!(!out.exists());
}

/// `--reassemble` rebuilds the tables from a raw timings file without a GPU, keeps the run's
/// provenance and says so in a note; a raw file that is not one is a file error, not a panic.
#[test]
fn reassemble_rebuilds_tables_from_raw_timings() {
    let dir = std::env::temp_dir().join(format!("cardplan-reassemble-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (raw, first, second) = (
        dir.join("raw.json"),
        dir.join("first.yaml"),
        dir.join("second.yaml"),
    );
    let bin = env!("CARGO_BIN_EXE_cardplan");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let out = run(&[
        "calibrate",
        "--mock-timer",
        "--quick",
        "--gpu",
        "h100-sxm",
        "--out",
        first.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "calibrate",
        "--gpu",
        first.to_str().unwrap(),
        "--reassemble",
        raw.to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = cardplan::profile::GpuProfile::read(&first)
        .unwrap()
        .measured
        .unwrap();
    let b = cardplan::profile::GpuProfile::read(&second)
        .unwrap()
        .measured
        .unwrap();
    // Equal up to the last bit JSON parsing may lose.
    assert_eq!(a.gemm.len(), b.gemm.len());
    for (x, y) in a.gemm.iter().zip(&b.gemm) {
        assert_eq!(
            (&x.scheme, x.n, x.k, x.points.len()),
            (&y.scheme, y.n, y.k, y.points.len())
        );
        for (p, q) in x.points.iter().zip(&y.points) {
            assert_eq!(p.0, q.0);
            assert!(
                (p.1 - q.1).abs() <= 1e-12 * p.1,
                "{} {}: {} vs {}",
                x.scheme,
                p.0,
                p.1,
                q.1
            );
        }
    }
    assert_eq!(a.attn_decode.len(), b.attn_decode.len());
    assert_eq!(
        a.provenance.date, b.provenance.date,
        "the run's own date is kept"
    );
    assert!(
        b.provenance
            .notes
            .iter()
            .any(|n| n.contains("re-assembled"))
    );

    std::fs::write(&raw, "{ \"timed\": 3 }").unwrap();
    let out = run(&[
        "calibrate",
        "--gpu",
        first.to_str().unwrap(),
        "--reassemble",
        raw.to_str().unwrap(),
        "--out",
        dir.join("third.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("raw.json:1:"));
    assert!(!dir.join("third.yaml").exists());
}

/// `--reassemble a.json,b.json` takes the median per point of several runs of one sweep and says
/// so; runs of different sweeps are refused (exit 3, nothing written).
#[test]
fn reassemble_merges_runs_of_one_sweep() {
    let dir = std::env::temp_dir().join(format!("cardplan-merge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bin = env!("CARGO_BIN_EXE_cardplan");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    for (raw, quick) in [("a.json", true), ("full.json", false)] {
        let mut args = vec!["calibrate", "--mock-timer", "--gpu", "h100-sxm"];
        if quick {
            args.push("--quick");
        }
        let (out, rawp) = (p(&format!("{raw}.yaml")), p(raw));
        args.extend(["--out", &out, "--raw", &rawp]);
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let base = p("a.json.yaml");
    let reassemble = |raws: &[&str], out: &str, extra: &[&str]| {
        let raws = raws.iter().map(|r| p(r)).collect::<Vec<_>>().join(",");
        let out = p(out);
        let mut args = vec![
            "calibrate",
            "--gpu",
            &base,
            "--reassemble",
            &raws,
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    // Three runs: the median per point, also in the merged raw file (--raw).
    let raw_of = |path: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(path)).unwrap()).unwrap()
    };
    let scaled = |f: f64, name: &str| {
        let mut run = raw_of("a.json");
        for t in run["timed"].as_array_mut().unwrap() {
            t["ms"] = serde_json::json!(t["ms"].as_f64().unwrap() * f);
        }
        std::fs::write(dir.join(name), run.to_string()).unwrap();
    };
    scaled(2.0, "b.json");
    scaled(0.25, "c.json");
    let med_raw = p("med.json");
    let o = reassemble(
        &["a.json", "b.json", "c.json"],
        "med.yaml",
        &["--raw", &med_raw],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, med) = (raw_of("a.json"), raw_of("med.json"));
    let (ta, tm) = (
        a["timed"].as_array().unwrap(),
        med["timed"].as_array().unwrap(),
    );
    assert_eq!(ta.len(), tm.len());
    for (x, y) in ta.iter().zip(tm) {
        let (x, y) = (x["ms"].as_f64().unwrap(), y["ms"].as_f64().unwrap());
        assert!(
            (x - y).abs() <= 1e-9 * x,
            "median of x, 2x, x/4 is x: {x} {y}"
        );
    }
    assert_eq!(med["merged_from"].as_array().unwrap().len(), 3);
    assert_eq!(med["device"], a["device"]);
    // The same raw file twice: the median is the run itself.
    let o = reassemble(&["a.json", "a.json"], "merged.yaml", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one = cardplan::profile::GpuProfile::read(&dir.join("a.json.yaml"))
        .unwrap()
        .measured
        .unwrap();
    let merged = cardplan::profile::GpuProfile::read(&dir.join("merged.yaml"))
        .unwrap()
        .measured
        .unwrap();
    assert_eq!(one.gemm.len(), merged.gemm.len());
    for (x, y) in one.gemm.iter().zip(&merged.gemm) {
        for (a, b) in x.points.iter().zip(&y.points) {
            assert!((a.1 - b.1).abs() <= 1e-12 * a.1, "{} {}", a.1, b.1);
        }
    }
    assert!(
        merged
            .provenance
            .notes
            .iter()
            .any(|n| n.contains("median per point of 2 runs"))
    );
    // A quick and a full sweep are different jobs: refused, nothing written.
    let o = reassemble(&["a.json", "full.json"], "mixed.yaml", &[]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("same jobs"));
    assert!(!dir.join("mixed.yaml").exists());
}

#[test]
fn the_profile_says_which_bitsandbytes_kernel_each_nf4_point_prices() {
    let spec = llama_spec(true);
    let base = catalog::gpu("h100-sxm").unwrap();
    let mut t = MockTimer::new("NVIDIA H100 80GB HBM3"); // sm90, 132 SMs
    let cal = calibrate::calibrate(&mut t, &spec, base, "abc123", |_, _, _| {}).unwrap();
    let notes = &cal.profile.measured.as_ref().unwrap().provenance.notes;
    let nf4 = notes
        .iter()
        .find(|n| n.starts_with("nf4 = "))
        .expect("nf4 note");
    // The quick sweep's tokens are 1, 8, 64, 512, 4096: gate_up keeps bitsandbytes' mma kernel
    // (its tile changing with the token count) up to 64 tokens, o_proj dequantizes from 8.
    assert!(
        nf4.contains(
            "28672x4096: simt T=1, mma-32x256x128 T=8, mma-64x64x64 T=64, dequant-linear T=512, 4096"
        ),
        "{nf4}"
    );
    assert!(
        nf4.contains("4096x4096: simt T=1, dequant-linear T=8, 64, 512, 4096"),
        "{nf4}"
    );
    assert!(nf4.contains("ported for sm90"), "{nf4}");
}

/// Not the copy job (the first): a GEMM, attention or elementwise job.
fn i_gt0(j: &cardplan::calibrate::sweep::Job) -> bool {
    !matches!(j, cardplan::calibrate::sweep::Job::Copy { .. })
}
