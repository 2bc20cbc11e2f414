//! `cardplan step`: JSON contract and errors.

use crate::common::cardplan;

fn step(args: &[&str]) -> std::process::Output {
    let mut all = vec!["step"];
    all.extend(args);
    cardplan(&all)
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = step(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn json_has_step_breakdown_and_profile() {
    let v = json(&[
        "--gpu",
        "rtx3090",
        "--batch",
        "8",
        "--context",
        "512",
        "--json",
    ]);
    let step_ms = v["step_ms"].as_f64().expect("step_ms");
    let b = &v["breakdown"];
    let sum: f64 = ["linear", "attention", "lm_head", "elementwise", "overhead"]
        .iter()
        .map(|k| b[*k].as_f64().expect("component"))
        .sum();
    assert!((sum - step_ms).abs() < 1e-9 * step_ms, "{sum} vs {step_ms}");
    assert!(v["gpu_ms"].as_f64().expect("gpu_ms") < step_ms);
    for k in ["gpu", "kind", "source"] {
        assert!(
            v["profile"][k].as_str().is_some_and(|s| !s.is_empty()),
            "profile.{k}"
        );
    }
}

#[test]
fn pure_prefill_step() {
    let small = json(&[
        "--gpu",
        "l40s",
        "--batch",
        "0",
        "--context",
        "0",
        "--prefill-tokens",
        "512",
        "--json",
    ]);
    let big = json(&[
        "--gpu",
        "l40s",
        "--batch",
        "0",
        "--context",
        "0",
        "--prefill-tokens",
        "4096",
        "--json",
    ]);
    assert_eq!(small["tokens"], 512);
    assert!(big["gpu_ms"].as_f64() > small["gpu_ms"].as_f64());
}

#[test]
fn zero_token_step_is_refused() {
    let out = step(&["--gpu", "rtx3090", "--batch", "0", "--context", "0"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prefill-tokens"));
    assert!(out.stdout.is_empty());
}

#[test]
fn decode_without_context_is_refused() {
    let out = step(&["--gpu", "rtx3090", "--batch", "4", "--context", "0"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn unknown_gpu_is_a_usage_error() {
    let out = step(&["--gpu", "rtx309", "--batch", "1", "--context", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rtx3090"));
}

#[test]
fn written_derived_profile_prices_the_same_when_read_back() {
    let path = std::env::temp_dir().join(format!("cardplan-derived-{}.yaml", std::process::id()));
    let p = path.to_str().expect("utf-8 temp path");
    let args = [
        "--batch",
        "8",
        "--context",
        "700",
        "--prefill-tokens",
        "300",
        "--json",
    ];
    let mut first = vec!["--gpu", "rtx3090", "--write-profile", p];
    first.extend(args);
    let out = step(&first);
    if !out.status.success() {
        // no measured profile in the catalog: nothing is derived, and the command says so
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing derived"));
        return;
    }
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut second = vec!["--gpu", p];
    second.extend(args);
    let b = json(&second);
    let _ = std::fs::remove_file(&path);
    assert_eq!(a["step_ms"], b["step_ms"]);
    assert_eq!(b["profile"]["kind"], "derived");
}
