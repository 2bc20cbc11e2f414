//! Answers a buyer can't misread: inputs beyond what a model or a card can do are refused with
//! one clear line, not answered.

use crate::common::{cardplan, stderr};

fn refused(args: &[&str], needle: &str) {
    let o = cardplan(args);
    assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(needle), "{args:?}: {e}");
    assert_eq!(e.trim().lines().count(), 1, "{args:?}: one line, got {e}");
    assert!(o.stdout.is_empty(), "{args:?}: nothing printed on stdout");
}

#[test]
fn a_context_beyond_the_model_is_refused() {
    refused(
        &[
            "fit",
            "--gpu",
            "rtx3090",
            "--model",
            "llama-3-8b",
            "--context",
            "100000",
        ],
        "8192",
    );
    // the default context is capped to a short model's own
    let o = cardplan(&["fit", "--gpu", "rtx3090", "--model", "phi-2"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_max_model_len_beyond_the_model_or_the_cache_is_refused() {
    fn sim<'a>(len: &'a str, model: &'a str) -> Vec<&'a str> {
        vec![
            "simulate",
            "--gpu",
            "rtx3090",
            "--model",
            model,
            "--rate",
            "1",
            "--requests",
            "5",
            "--max-model-len",
            len,
        ]
    }
    refused(&sim("20000", "llama-3-8b"), "8192");
    refused(&sim("131072", "llama-3.1-8b"), "KV cache");
}

#[test]
fn more_kv_blocks_than_the_card_holds_are_refused() {
    refused(
        &[
            "simulate",
            "--gpu",
            "rtx3090",
            "--rate",
            "1",
            "--requests",
            "5",
            "--kv-blocks",
            "18446744073709551615",
        ],
        "kv_blocks",
    );
}

#[test]
fn an_unwritable_report_folder_is_refused_before_any_work() {
    let blocker = crate::common::temp_dir("report-blocker").join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let dir = blocker.join("report");
    let o = cardplan(&[
        "plan",
        "--users",
        "5000",
        "--gpu",
        "rtx3090",
        "--report",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "no answer computed for nowhere");
    assert!(stderr(&o).contains("report"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(blocker.parent().unwrap());
}

fn plan_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "plan",
        "--window-requests",
        "100",
        "--replications",
        "2",
        "--json",
    ];
    all.extend(args);
    let o = cardplan(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

#[test]
fn the_limit_named_is_what_the_simulation_saw() {
    // every prompt (2-8k tokens) is longer than phi-2's 2,048-token context: not latency
    let v = plan_json(&[
        "--users",
        "1000",
        "--gpu",
        "rtx3090",
        "--model",
        "phi-2",
        "--scenario",
        "rag-long",
    ]);
    assert_eq!(v["limit"]["cause"], "requests_too_long", "{}", v["limit"]);
    let notes = v["notes"].to_string();
    assert!(!notes.contains("latency"), "{notes}");
    // a card that serves users names the SLO limit it hit first
    let v = plan_json(&["--users", "5000", "--gpu", "rtx3090"]);
    let cause = v["limit"]["cause"].as_str().unwrap_or_default().to_string();
    assert!(
        [
            "ttft",
            "streaming_rate",
            "ttft_and_streaming_rate",
            "kv_capacity"
        ]
        .contains(&cause.as_str()),
        "{cause}"
    );
}

#[test]
fn the_interval_holds_a_rerun_and_the_conservative_figure_is_its_low_end() {
    let runs: Vec<serde_json::Value> = ["1", "2", "3", "4"]
        .iter()
        .map(|seed| {
            let mut all = vec!["plan", "--window-requests", "500", "--replications", "6"];
            all.extend([
                "--json", "--users", "5000", "--gpu", "rtx3090", "--seed", seed,
            ]);
            let o = cardplan(&all);
            assert!(o.status.success(), "{}", stderr(&o));
            serde_json::from_slice(&o.stdout).expect("JSON")
        })
        .collect();
    let u = |v: &serde_json::Value, k: &str| v["users_per_card"][k].as_f64().unwrap();
    for a in &runs {
        for b in &runs {
            let e = u(b, "estimate");
            assert!(
                u(a, "low") <= e && e <= u(a, "high"),
                "estimate {e} outside {}–{}",
                u(a, "low"),
                u(a, "high")
            );
        }
        let conservative = a["cards_range"][1].as_u64().unwrap();
        assert_eq!(conservative, (5000f64 / u(a, "low")).ceil() as u64);
        assert!(conservative >= a["cards_needed"].as_u64().unwrap());
    }
}

#[test]
fn code_completions_on_a_24_gb_card_serve_users_limited_by_latency_under_load() {
    // The embedded code-assist scenario (prompts within a 1,024-token client budget, TTFT p95
    // <= 1 s): an RTX 3090 serves some users, and the limit named is a latency under load.
    let v = plan_json(&[
        "--users",
        "1000",
        "--gpu",
        "rtx3090",
        "--scenario",
        "code-assist",
    ]);
    let served = v["users_per_card"]["estimate"].as_u64().unwrap();
    assert!(served > 0, "{}", v["limit"]);
    let cause = v["limit"]["cause"].as_str().unwrap_or_default();
    assert!(
        ["ttft", "streaming_rate", "ttft_and_streaming_rate"].contains(&cause),
        "{}",
        v["limit"]
    );
}

#[test]
fn short_answers_are_judged_on_their_streaming_rate() {
    // 8-token answers after a 3,000-token prompt: ~7 tok/s end to end on an RTX 3090 (TTFT weighs
    // on them), ~45 tok/s once streaming; the SLO's ">= 10 tok/s each" is the streaming rate
    let dir = crate::common::temp_dir("short-answers");
    let path = dir.join("short.yaml");
    let chat = include_str!("../../scenarios/chat.yaml");
    let text = chat
        .lines()
        .map(|l| {
            if l.starts_with("key:") {
                "key: short-answers".to_string()
            } else if l.starts_with("prompt_tokens:") {
                "prompt_tokens: { dist: fixed, value: 3000 }".to_string()
            } else if l.starts_with("output_tokens:") {
                "output_tokens: { dist: fixed, value: 8 }".to_string()
            } else if l.trim_start().starts_with("context_growth:") {
                "  context_growth: false".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, text).unwrap();
    let scenario = path.to_str().unwrap();
    let v = plan_json(&[
        "--users",
        "1000",
        "--gpu",
        "rtx3090",
        "--scenario",
        scenario,
    ]);
    let served = v["users_per_card"]["estimate"].as_u64().unwrap();
    assert!(served > 0, "{}", v["limit"]);
    assert_eq!(v["slo"]["rate"], "streaming");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn nothing_completed_gives_no_latency_numbers_and_says_overloaded() {
    let args = [
        "simulate",
        "--gpu",
        "rtx3090",
        "--users",
        "1000000",
        "--duration",
        "60",
    ];
    let o = cardplan(&[&args[..], &["--json"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["requests"], 0);
    assert_eq!(v["overloaded"], true);
    for k in [
        "ttft_ms",
        "tpot_ms",
        "itl_ms",
        "e2e_s",
        "request_tok_s",
        "stream_tok_s",
    ] {
        assert!(v[k].is_null(), "{k}: {}", v[k]);
    }
    let o = cardplan(&args);
    assert!(crate::common::stdout(&o).contains("OVERLOADED"));
}

#[test]
fn a_rate_whose_requests_outlive_the_clock_is_refused() {
    refused(
        &["simulate", "--gpu", "rtx3090", "--rate", "1e-9"],
        "--rate",
    );
}

#[test]
fn a_comparison_names_each_target_once_and_says_why_one_serves_nobody() {
    let o = cardplan(&[
        "whatif",
        "--users",
        "1000",
        "--gpu",
        "rtx3090,rtx3090",
        "--quant",
        "fp16,fp16",
        "--model",
        "phi-2",
        "--scenario",
        "rag-long",
        "--window-requests",
        "50",
        "--replications",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = crate::common::stdout(&o);
    assert_eq!(text.matches("rtx3090 ┆ fp16").count(), 1, "{text}");
    assert!(!text.contains("0 (0)"), "{text}");
    assert!(text.contains("refused"), "{text}");
}

#[test]
fn sizes_are_in_one_unit_and_a_config_is_named_after_its_checkpoint() {
    let o = cardplan(&["fit", "--gpu", "rtx3090"]);
    let text = crate::common::stdout(&o);
    assert!(text.contains(" GiB") && !text.contains(" GB "), "{text}");
    let dir = crate::common::temp_dir("named-config").join("some-folder");
    std::fs::create_dir_all(&dir).unwrap();
    let config = r#"{"_name_or_path": "acme/Tiny-1B", "model_type": "llama", "hidden_size": 2048,
        "num_attention_heads": 16, "num_key_value_heads": 8, "num_hidden_layers": 16,
        "intermediate_size": 8192, "vocab_size": 32000, "max_position_embeddings": 4096}"#;
    let path = dir.join("config.json");
    std::fs::write(&path, config).unwrap();
    let o = cardplan(&[
        "fit",
        "--gpu",
        "rtx3090",
        "--model",
        path.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"], "Tiny-1B");
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}
