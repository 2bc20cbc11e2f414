//! Issue 24: the model's own error folded into the plan's interval, and the validation record's
//! error distribution.

use cardplan::catalog::{self, engine::EnginePreset, quant::KvDtype, quant::Quant};
use cardplan::cost::ProfileKind;
use cardplan::deploy::Target;
use cardplan::plan::error_bars::{ErrorRecord, ErrorSample};
use cardplan::plan::model_error::{ModelErrorRequest, Scaled, fold};
use cardplan::plan::planner::{PlanSpec, Planner, Prepare, Window};
use cardplan::plan::search::{SearchOptions, search};
use cardplan::plan::slo::{Slo, slo_stats};
use cardplan::sim::{self, Scenario};
use cardplan::validate::record::{run_datasets, step_record};
use cardplan::validate::stats::{NOMINAL, leave_one_out};

use crate::common::{cardplan, stdout};

/// A small but real search on the RTX 3090 (the record's GPU): short windows, 3 replications.
fn planner() -> Planner {
    let target = Target {
        gpu: catalog::gpu("rtx3090").unwrap(),
        model: catalog::model("llama-3.1-8b").unwrap(),
        quant: Quant::Fp16,
        kv: KvDtype::Fp16,
        tp: 1,
    };
    let spec = PlanSpec {
        scenario: Scenario::load("chat").unwrap(),
        slo: Slo::default(),
        window: Window::Requests(200),
        search: SearchOptions {
            replications: 3,
            base_seed: 11,
            rel_tol: 0.02,
            ..SearchOptions::default()
        },
    };
    match Planner::prepare(target, EnginePreset::builtin("vllm").unwrap(), spec).unwrap() {
        Prepare::Fits(p) => *p,
        Prepare::DoesNotFit(_) => panic!("llama-3.1-8b fp16 fits on an RTX 3090"),
    }
}

/// A record of `n` rows on the plan's own GPU, model and scheme, every one off by `log_error`.
fn uniform_record(log_error: f64, n: usize) -> ModelErrorRequest {
    let samples = (0..n)
        .map(|i| ErrorSample {
            dataset: "synthetic".into(),
            row: format!("row {i}"),
            gpu: "rtx3090".into(),
            profile: ProfileKind::Derived,
            model: "llama-3.1-8b".into(),
            quant: "fp16".into(),
            log_error,
        })
        .collect();
    ModelErrorRequest {
        record: ErrorRecord {
            metric: "step time".into(),
            samples,
        },
        windows: 3,
        ttft_caveat: None,
    }
}

#[test]
fn zero_model_error_gives_todays_interval_exactly() {
    let p = planner();
    let cap = p.capacity().unwrap();
    let i = fold(&p, &cap, &uniform_record(0.0, 5), 5000)
        .unwrap()
        .unwrap();
    assert_eq!((i.low, i.high), (cap.low, cap.high));
    assert_eq!((i.traffic.low, i.traffic.high), (cap.low, cap.high));
    assert_eq!(
        (i.model_error.low, i.model_error.high),
        (cap.estimate, cap.estimate)
    );
    assert!(i.model_error.basis.widening.is_empty());
}

/// Every row says the profile's step times are 25% too long: the model part must be the
/// capacity at step times × 0.8, which a full search over every replication finds directly.
#[test]
fn a_profile_scaled_by_a_known_factor_moves_the_interval_by_the_expected_amount() {
    let p = planner();
    let cap = p.capacity().unwrap();
    let i = fold(&p, &cap, &uniform_record(1.25f64.ln(), 4), 5000)
        .unwrap()
        .unwrap();
    let m = &i.model_error;
    assert!((m.step_scale_at_low - 0.8).abs() < 1e-12, "{m:?}");
    assert!((m.step_scale_at_high - 0.8).abs() < 1e-12, "{m:?}");
    assert_eq!(
        m.low, m.high,
        "no spread in the record, no spread in the model part"
    );
    let scaled = |n: u64, seed: u64| -> cardplan::error::Result<bool> {
        if n == 0 {
            return Ok(true);
        }
        let cost = Scaled {
            inner: &p.deployment.cost,
            k: 0.8,
        };
        let out = sim::run(&cost, &p.config(n, seed))?;
        Ok(p.spec.slo.met_by(&slo_stats(&out.metrics, &p.spec.slo)?))
    };
    let full = search(&scaled, &p.spec.search).unwrap();
    let rel = m.low / full.estimate - 1.0;
    assert!(
        rel.abs() < 0.04,
        "paired {} vs full rerun {}",
        m.low,
        full.estimate
    );
    // faster steps serve more users, and the combined interval moves up with the model part
    assert!(m.low > cap.estimate * 1.1, "{} vs {}", m.low, cap.estimate);
    assert!(i.high >= m.high && i.low <= cap.low);
}

#[test]
fn the_combined_interval_contains_both_parts_with_the_real_record() {
    let p = planner();
    let cap = p.capacity().unwrap();
    let req = ModelErrorRequest {
        record: step_record(&run_datasets().unwrap()),
        windows: 3,
        ttft_caveat: None,
    };
    let i = fold(&p, &cap, &req, 5000).unwrap().unwrap();
    let (m, t) = (&i.model_error, &i.traffic);
    assert!(m.low < cap.estimate && m.high > cap.estimate, "{m:?}");
    assert!(i.low <= m.low && i.low <= t.low, "{i:?}");
    assert!(i.high >= m.high && i.high >= t.high, "{i:?}");
    // both parts reach beyond the estimate on both sides: strictly wider than either
    assert!(
        i.low < m.low.min(t.low) && i.high > m.high.max(t.high),
        "{i:?}"
    );
    assert!(m.basis.gpu_covered && m.basis.widening.is_empty());
}

/// The acceptance check: intervals at the nominal 90%, built without a dataset, cover at least
/// 80% of its step-time rows.
#[test]
fn left_out_datasets_are_covered_at_the_nominal_level() {
    let sets = run_datasets().unwrap();
    let loo = leave_one_out(&sets, NOMINAL);
    let step: Vec<_> = loo.iter().filter(|l| l.metric == "step_time").collect();
    // every dataset with a usable step-time row (not fitted, not overloaded) is left out once
    let usable = sets
        .iter()
        .filter(|d| {
            d.rows.iter().any(|r| {
                r.fitted.is_none()
                    && !r.overloaded
                    && cardplan::validate::record::step_error(r).is_some()
            })
        })
        .count();
    assert_eq!(step.len(), usable, "{loo:?}");
    let rows: usize = step.iter().map(|l| l.rows).sum();
    let covered: usize = step.iter().map(|l| l.covered.unwrap_or(0)).sum();
    assert!(
        covered as f64 >= 0.8 * rows as f64,
        "{covered} of {rows}: {step:?}"
    );
}

fn plan_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "plan",
        "--users",
        "2000",
        "--json",
        "--replications",
        "2",
        "--window-requests",
        "200",
        "--model-error-windows",
        "2",
    ];
    args.extend_from_slice(extra);
    let out = cardplan(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn plan_json_names_the_model_and_traffic_parts_and_the_basis() {
    let v = plan_json(&["--gpu", "rtx3090"]);
    let i = &v["interval"];
    for k in ["low", "high"] {
        assert!(i["model_error"][k].is_number(), "{i}");
        assert!(i["traffic"][k].is_number(), "{i}");
    }
    let b = &i["model_error"]["basis"];
    assert!(b["rows"].as_u64().unwrap() >= 2, "{b}");
    assert_eq!(b["gpu_covered"], true);
    assert_eq!(b["profile"], "derived");
    assert!(
        b["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["gpu"] == "rtx3090")
    );
    let none = plan_json(&["--gpu", "rtx3090", "--no-model-error"]);
    assert!(none["interval"].is_null());
    assert_eq!(none["users_per_card"], v["users_per_card"]);
}

#[test]
fn an_uncovered_gpu_and_scheme_say_so_and_widen() {
    let v = plan_json(&["--gpu", "l4", "--quant", "int8"]);
    let m = &v["interval"]["model_error"];
    let w = m["basis"]["widening"].as_array().unwrap();
    let reasons: Vec<&str> = w.iter().map(|x| x["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("l4")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("int8")), "{reasons:?}");
    let e = &m["error"];
    assert!(e["half_width"].as_f64().unwrap() > e["record_half_width"].as_f64().unwrap());
    let out = cardplan(&[
        "plan",
        "--users",
        "2000",
        "--gpu",
        "l4",
        "--quant",
        "int8",
        "--replications",
        "2",
        "--window-requests",
        "200",
        "--model-error-windows",
        "2",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("widened: no validation row ran on l4"),
        "{text}"
    );
    assert!(
        text.contains("· model error") && text.contains("· traffic"),
        "{text}"
    );
}

#[test]
fn validate_reports_the_error_by_metric_and_leave_one_out() {
    let out = cardplan(&["validate", "--json", "--leave-one-out"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let metrics = v["metrics"].as_array().unwrap();
    let keys: Vec<&str> = metrics
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["tpot", "ttft", "request_tok_s", "throughput", "step_time"]
    );
    let tok = &metrics[2];
    let s = &tok["summary"];
    assert!(s["p05"].as_f64().unwrap() <= s["median"].as_f64().unwrap());
    assert!(s["median"].as_f64().unwrap() <= s["p95"].as_f64().unwrap());
    assert!(!v["leave_one_out"].as_array().unwrap().is_empty());
}

#[test]
fn validate_report_has_a_chart_per_measured_metric() {
    let dir = crate::common::temp_dir("validate-report");
    let out = cardplan(&["validate", "--report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for m in ["mean TTFT", "per-request tok/s", "throughput"] {
        assert!(
            html.contains(&format!("{m}: predicted against measured")),
            "{m}"
        );
    }
    assert!(html.contains("predicted = measured") && html.contains("±25%"));
    assert!(dir.join("predicted_vs_measured_ttft.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
