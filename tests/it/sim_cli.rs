//! `cardplan simulate` end to end: exit codes, error locations, determinism.

use crate::common::{cardplan, scratch, stderr};
use std::path::PathBuf;

/// `name` in a folder of its own: tests run in parallel, and `scratch` empties the folder.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = scratch(&format!("sim-cli-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The `line:column` right after `path` in an error message (`path: L:C` or `path:L:C`).
fn position_after(e: &str, path: &std::path::Path) -> Option<(u32, u32)> {
    let p = path.display().to_string();
    let rest = &e[e.find(&p)? + p.len()..];
    let rest = rest.trim_start_matches([':', ' ']);
    let mut it = rest.split(':');
    let line = it.next()?.trim().parse().ok()?;
    let col = it.next()?.trim().parse().ok()?;
    Some((line, col))
}

const SMALL: [&str; 8] = [
    "simulate",
    "--gpu",
    "rtx3090",
    "--quant",
    "int8",
    "--scenario",
    "sharegpt",
    "--json",
];

#[test]
fn same_seed_same_json_and_other_seed_differs() {
    let run = |seed: &str| {
        let mut a = SMALL.to_vec();
        a.extend(["--rate", "4", "--requests", "150", "--seed", seed]);
        let o = cardplan(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let (a, b, c) = (run("7"), run("7"), run("8"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    for key in [
        "requests",
        "output_tokens",
        "duration_s",
        "ttft_ms",
        "tpot_ms",
        "itl_ms",
        "e2e_s",
        "request_tok_s",
        "output_tok_s",
        "requests_per_s",
        "preemptions",
        "kv_peak_util",
        "rejected",
        "gpu",
        "model",
        "quant",
        "engine",
        "load",
        "scenario",
        "seed",
        "profile",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    for key in ["mean", "p50", "p90", "p95", "p99"] {
        assert!(v["ttft_ms"][key].is_number(), "ttft_ms.{key}");
    }
    for key in ["mean", "p50", "p05", "p01"] {
        assert!(v["request_tok_s"][key].is_number(), "request_tok_s.{key}");
    }
    assert_eq!(
        v["requests"].as_u64().unwrap() + v["rejected"].as_u64().unwrap(),
        150
    );
}

#[test]
fn malformed_scenario_yaml_names_file_line_and_column() {
    let p = temp_file("broken.yaml", "key: x\ndescription: [unclosed\nslo: 3\n");
    let mut a = SMALL.to_vec();
    a[6] = p.to_str().unwrap();
    a.extend(["--concurrency", "2"]);
    let o = cardplan(&a);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(position_after(&e, &p).map(|p| p.0), Some(2), "{e}");
}

#[test]
fn semantic_scenario_error_names_file_and_field() {
    let text =
        include_str!("../../scenarios/chat.yaml").replace("active_share: 0.1", "active_share: 2");
    let p = temp_file("share.yaml", &text);
    let mut a = SMALL.to_vec();
    a[6] = p.to_str().unwrap();
    a.extend(["--users", "100"]);
    let o = cardplan(&a);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(
        e.contains("share.yaml") && e.contains("session.active_share"),
        "{e}"
    );
}

#[test]
fn bad_trace_line_names_file_line_and_reason() {
    let p = temp_file(
        "trace.jsonl",
        "{\"arrival_s\": 0.0, \"prompt_tokens\": 10, \"output_tokens\": 5}\n\
         {\"arrival_s\": 0.5, \"prompt_tokens\": 10, \"outputs\": 5}\n",
    );
    let mut a = SMALL.to_vec();
    a.extend(["--trace", p.to_str().unwrap()]);
    let o = cardplan(&a);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert_eq!(position_after(&e, &p).map(|p| p.0), Some(2), "{e}");
    assert!(e.contains("outputs"), "{e}");
}

#[test]
fn good_trace_replays_every_line() {
    let p = temp_file(
        "ok.jsonl",
        "{\"arrival_s\": 0.0, \"prompt_tokens\": 10, \"output_tokens\": 5}\n\
         {\"arrival_s\": 0.5, \"prompt_tokens\": 300, \"output_tokens\": 50}\n\
         {\"arrival_s\": 0.25, \"prompt_tokens\": 20, \"output_tokens\": 1}\n",
    );
    let mut a = SMALL.to_vec();
    a.extend(["--trace", p.to_str().unwrap()]);
    let o = cardplan(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["requests"], 3);
    assert_eq!(v["output_tokens"], 56);
}

#[test]
fn model_that_does_not_fit_is_exit_3_with_the_reason() {
    let o = cardplan(&[
        "simulate",
        "--gpu",
        "rtx3090",
        "--model",
        "llama-3.1-70b",
        "--quant",
        "fp16",
        "--concurrency",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("does not fit"), "{}", stderr(&o));
}

#[test]
fn load_is_required_and_exclusive() {
    let o = cardplan(&["simulate", "--gpu", "rtx3090"]);
    assert_eq!(o.status.code(), Some(2));
    let o = cardplan(&[
        "simulate", "--gpu", "rtx3090", "--rate", "1", "--users", "5",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn list_scenarios_shows_every_key() {
    let o = cardplan(&["list", "scenarios"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for k in [
        "chat",
        "backprop-short",
        "backprop-long",
        "sharegpt",
        "rag-long",
        "code-assist",
    ] {
        assert!(out.contains(k), "{k} missing from {out}");
    }
}
