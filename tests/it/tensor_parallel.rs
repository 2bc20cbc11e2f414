//! Tensor parallelism: TP 1 is today's single card, larger TPs split the model and add the
//! all-reduces, `--tp auto` picks the fewest GPUs that fit, bad sizes are clear errors.

use crate::common::{cardplan, scratch, stderr, stdout};
use cardplan::catalog;
use cardplan::catalog::engine::EnginePreset;
use cardplan::catalog::quant::{KvDtype, Quant};
use cardplan::catalog::shard::TpChoice;
use cardplan::deploy::{Target, pick_tp};
use cardplan::step::{BatchShape, PrefillChunk, StepTime};

fn target(gpu: &str, model: &str, tp: u32) -> Target {
    Target {
        gpu: catalog::gpu(gpu).unwrap(),
        model: catalog::model(model).unwrap(),
        quant: Quant::Fp16,
        kv: KvDtype::Fp16,
        tp,
    }
}

fn vllm() -> EnginePreset {
    EnginePreset::builtin("vllm").unwrap()
}

fn shapes() -> Vec<(u32, u64, u32)> {
    // (decoding sequences, their context sum, prefill tokens)
    vec![
        (1, 512, 0),
        (64, 64 * 2048, 0),
        (16, 16 * 1000, 1500),
        (0, 0, 2048),
    ]
}

fn step(cost: &impl StepTime, (b, ctx, p): (u32, u64, u32)) -> f64 {
    let chunks = [PrefillChunk {
        new_tokens: p,
        cached_tokens: 0,
    }];
    cost.step_seconds(&BatchShape {
        decode_seqs: b,
        decode_context_tokens: ctx,
        prefills: if p > 0 { &chunks } else { &[] },
    })
}

#[test]
fn tp_one_prices_and_fits_exactly_as_one_card() {
    let t = target("rtx3090", "llama-3.1-8b", 1);
    let basis = cardplan::cost::PricingBasis::resolve(&t.gpu, catalog::measured_gpus().unwrap());
    let plain =
        cardplan::cost::StepCost::new(&basis, &t.model, t.quant, t.kv, &vllm()).expect("cost");
    let via_target = t.step_cost(&vllm()).expect("cost");
    for s in shapes() {
        assert_eq!(step(&plain, s).to_bits(), step(&via_target, s).to_bits());
    }
    let one = cardplan::fit::fit(
        &t.gpu,
        &t.model,
        t.quant,
        &cardplan::fit::FitOptions::for_engine(&vllm(), t.kv),
    );
    let fit = t.fit(&vllm());
    assert_eq!(
        (one.kv_blocks, one.weights_bytes),
        (fit.kv_blocks, fit.weights_bytes)
    );
}

#[test]
fn a_split_model_runs_the_engines_host_time_as_its_tp_overlap_says() {
    // vllm-0.15 runs host time after the GPU step on one card and beside it at TP > 1.
    let engine = EnginePreset::builtin("vllm-0.15").unwrap();
    assert_eq!(engine.tp_cpu_overlap, Some(1.0));
    let place = |tp| {
        cardplan::deploy::Deployment::require(
            target("h100-sxm", "codellama-34b", tp),
            engine.clone(),
            None,
        )
        .unwrap()
        .engine
        .cpu_overlap
    };
    assert_eq!(place(1), 0.0);
    assert_eq!(place(2), 1.0);
    // A preset without the field keeps its overlap at every TP.
    let v = vllm();
    assert_eq!(v.tp_cpu_overlap, None);
    assert_eq!(v.clone().for_tp(4).cpu_overlap, v.cpu_overlap);
}

#[test]
fn more_gpus_hold_less_each_and_talk_more() {
    let mut last_weights = u64::MAX;
    let mut last_tokens = 0;
    for tp in [2, 4, 8] {
        let t = target("h100-sxm", "llama-3.1-70b", tp);
        let f = t.fit(&vllm());
        assert!(f.fits, "70B fits at TP {tp}");
        assert!(f.weights_bytes < last_weights && f.kv_tokens > last_tokens);
        last_weights = f.weights_bytes;
        last_tokens = f.kv_tokens;
        let b = t.step_cost(&vllm()).unwrap().breakdown(&BatchShape {
            decode_seqs: 32,
            decode_context_tokens: 32 * 1024,
            prefills: &[],
        });
        assert!(b.comm > 0.0, "TP {tp} pays communication");
    }
    // one card: none
    let b = target("h100-sxm", "llama-3.1-8b", 1)
        .step_cost(&vllm())
        .unwrap()
        .breakdown(&BatchShape {
            decode_seqs: 32,
            decode_context_tokens: 32 * 1024,
            prefills: &[],
        });
    assert_eq!(b.comm, 0.0);
}

#[test]
fn communication_grows_with_tokens_and_gpus() {
    let comm = |tp: u32, tokens: u32| {
        let t = target("rtx4090", "llama-3.1-8b", tp);
        let chunks = [PrefillChunk {
            new_tokens: tokens,
            cached_tokens: 0,
        }];
        t.step_cost(&vllm())
            .unwrap()
            .breakdown(&BatchShape {
                decode_seqs: 0,
                decode_context_tokens: 0,
                prefills: &chunks,
            })
            .comm
    };
    for tp in [2, 4, 8] {
        assert!(comm(tp, 1) < comm(tp, 256) && comm(tp, 256) < comm(tp, 2048));
    }
    for tokens in [1, 256, 2048] {
        assert!(comm(2, tokens) < comm(4, tokens) && comm(4, tokens) < comm(8, tokens));
    }
}

#[test]
fn auto_picks_the_fewest_gpus_that_fit() {
    // 70B fp16 (about 131 GiB) does not fit on two L40S (48 GB each) but fits on four
    let t = target("l40s", "llama-3.1-70b", 1);
    assert!(!Target { tp: 2, ..t.clone() }.fit(&vllm()).fits);
    assert!(Target { tp: 4, ..t.clone() }.fit(&vllm()).fits);
    let pick = pick_tp(&t, &vllm(), TpChoice::Auto).unwrap();
    assert_eq!(pick.tp, 4, "{}", pick.reason);
    // an 8B model fits one RTX 3090 with room to spare: TP 1
    let pick = pick_tp(
        &target("rtx3090", "llama-3.1-8b", 1),
        &vllm(),
        TpChoice::Auto,
    )
    .unwrap();
    assert_eq!(pick.tp, 1, "{}", pick.reason);
}

#[test]
fn bad_sizes_are_clear_errors() {
    for bad in ["3", "16", "x"] {
        let o = cardplan(&["fit", "--gpu", "h100-sxm", "--tp", bad]);
        assert_eq!(o.status.code(), Some(2), "--tp {bad}");
        assert!(stderr(&o).contains("1, 2, 4, 8 or auto"), "{}", stderr(&o));
    }
    // 12 attention heads do not split over 8 GPUs
    let o = cardplan(&[
        "step",
        "--gpu",
        "h100-sxm",
        "--model",
        "qwen2.5-1.5b",
        "--tp",
        "8",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("--tp 8") && stderr(&o).contains("attention heads"));
    // a GPU file without an interconnect block cannot run TP > 1
    let yaml = std::fs::read_to_string("profiles/gpus/rtx4090.yaml").unwrap();
    let cut = yaml.find("interconnect:").unwrap();
    let path = scratch("no-link.yaml");
    std::fs::write(&path, &yaml[..cut]).unwrap();
    let p = path.to_str().unwrap();
    let o = cardplan(&["step", "--gpu", p, "--tp", "2"]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("no interconnect"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    // more GPUs than the server links
    let o = cardplan(&[
        "fit",
        "--gpu",
        "rtx3090",
        "--model",
        "llama-3.1-70b",
        "--tp",
        "8",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("at most 4 GPUs"), "{}", stderr(&o));
}

#[test]
fn plan_answers_per_server_and_counts_cards() {
    let o = cardplan(&[
        "plan",
        "--users",
        "5000",
        "--model",
        "llama-3.1-70b",
        "--gpu",
        "h100-sxm",
        "--json",
        "--replications",
        "2",
        "--window-requests",
        "200",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let tp = v["tp"].as_u64().unwrap();
    assert!(tp >= 2, "70B fp16 needs more than one H100");
    let server = &v["server"];
    let servers = server["servers_needed"].as_u64().unwrap();
    assert_eq!(v["cards_needed"].as_u64().unwrap(), servers * tp);
    let per_server = server["users_per_server"]["estimate"].as_u64().unwrap();
    assert_eq!(
        v["users_per_card"]["estimate"].as_u64().unwrap(),
        per_server / tp
    );
    assert!(v["tp_reason"].as_str().unwrap().contains("auto"));
}

#[test]
fn allreduce_calibration_fills_the_table_the_step_then_uses() {
    // one GPU: nothing to time, nothing written
    let out = scratch("ar-h200.yaml");
    let o = cardplan(&[
        "calibrate",
        "--allreduce",
        "--gpu",
        "h200",
        "--mock-gpus",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("no all-reduce to time"));
    assert!(!out.exists());
    // two or more (a CPU stand-in): tables for TP 2 and 4, priced by `step`
    let o = cardplan(&[
        "calibrate",
        "--allreduce",
        "--gpu",
        "h200",
        "--mock-gpus",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let p = out.to_str().unwrap();
    let step = |tp: &str| {
        let o = cardplan(&[
            "step",
            "--gpu",
            p,
            "--model",
            "llama-3.1-70b",
            "--tp",
            tp,
            "--batch",
            "8",
            "--context",
            "1000",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    assert!(
        step("2")["comm"]
            .as_str()
            .unwrap()
            .contains("measured on h200 at TP 2")
    );
    // no TP 8 table: the published-figure model
    assert!(step("8")["comm"].as_str().unwrap().contains("modelled"));
    let _ = std::fs::remove_file(&out);
}
