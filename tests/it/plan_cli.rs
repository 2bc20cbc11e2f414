//! `cardplan plan` and `cardplan whatif` as a user runs them.

use crate::common::cardplan;

const FAST: [&str; 4] = ["--window-s", "40", "--replications", "2"];

fn json(args: &[&str]) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(FAST);
    all.push("--json");
    let out = cardplan(&all);
    assert!(
        out.status.success(),
        "{:?}: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn plan_json_has_the_promised_keys() {
    let v = json(&["plan", "--users", "5000", "--gpu", "rtx3090"]);
    for k in ["estimate", "low", "high"] {
        assert!(v["users_per_card"][k].is_u64(), "users_per_card.{k}: {v}");
    }
    let u = &v["users_per_card"];
    assert!(u["low"].as_u64() <= u["estimate"].as_u64());
    assert!(u["estimate"].as_u64() <= u["high"].as_u64());
    assert!(v["cards_needed"].is_u64());
    assert!(v["slo"]["tok_s"].is_f64() && v["slo"]["ttft_s"].is_f64());
    assert!(v["at_load"]["metrics"]["request_tok_s"]["p05"].is_f64());
    assert!(v["cost"]["per_month"].is_f64() && v["cost"]["per_user_month"].is_f64());
    assert!(
        v["cost"]["price_source"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(v["assumptions"]["active_share"].is_f64());
    assert!(v["profile"]["kind"].is_string());
    assert_eq!(v["sensitivity"].as_array().map(|a| a.len()), Some(2));
}

#[test]
fn plan_prints_a_verdict_with_units() {
    let mut args = vec!["plan", "--users", "5000", "--gpu", "rtx3090"];
    args.extend(FAST);
    let out = cardplan(&args);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "users per card",
        "cards needed",
        "/month",
        "tok/s",
        "per user per month",
    ] {
        assert!(text.contains(s), "missing {s:?} in\n{text}");
    }
}

#[test]
fn not_fitting_is_an_answer_with_exit_0() {
    let v = json(&[
        "plan",
        "--users",
        "100",
        "--gpu",
        "t4",
        "--model",
        "llama-3.1-70b",
    ]);
    assert_eq!(v["fits"], false);
    assert!(v["cards_needed"].is_null());
    assert!(v["fit"]["weights_bytes"].as_u64() > v["fit"]["usable_bytes"].as_u64());
}

#[test]
fn bad_flags_are_refused() {
    // any quantile the simulator does not report gets the same message and exit code
    for q in ["0.97", "0.4", "0.999"] {
        let out = cardplan(&[
            "plan",
            "--users",
            "5000",
            "--gpu",
            "rtx3090",
            "--slo-quantile",
            q,
        ]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{q}: {e}");
        assert!(
            e.contains("--slo-quantile must be one of 0.5, 0.9, 0.95, 0.99"),
            "{q}: {e}"
        );
    }
    let out = cardplan(&["plan", "--users", "0", "--gpu", "rtx3090"]);
    assert_eq!(out.status.code(), Some(3));
    let out = cardplan(&["plan", "--users", "10", "--gpu", "no-such-gpu"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn whatif_compares_and_marks_what_does_not_fit() {
    let v = json(&[
        "whatif",
        "--users",
        "5000",
        "--gpu",
        "rtx3090,l4",
        "--quant",
        "fp16,nf4",
        "--model",
        "qwen2.5-14b",
        "--tp",
        "1",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    // Qwen2.5-14B in fp16 (~29.5 GB) fits neither 24 GB card.
    for r in rows {
        if r["quant"] == "fp16" {
            assert_eq!(r["fits"], false, "{r}");
            assert!(r["cards_needed"].is_null());
        } else {
            assert_eq!(r["fits"], true, "{r}");
            assert!(r["users_per_card"].is_u64());
        }
    }
    // The best users-per-card row is a fitting one, and it has the largest value.
    let best = v["best"]["users_per_card"].as_array().unwrap();
    assert!(!best.is_empty());
    let top = rows
        .iter()
        .filter_map(|r| r["users_per_card"].as_u64())
        .max();
    for i in best {
        let r = &rows[i.as_u64().unwrap() as usize];
        assert_eq!(r["users_per_card"].as_u64(), top);
    }
}
