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
