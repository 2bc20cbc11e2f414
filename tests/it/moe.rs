//! Issue 22: mixture-of-experts models (parameter counts, import, memory, step cost) and the
//! 2025–26 catalog.

use crate::common::{cardplan, scratch, stderr, stdout};
use cardplan::catalog::quant::{KvDtype, Quant};
use cardplan::catalog::{self, engine::EnginePreset, hf, model::ModelArch};
use cardplan::cost::moe::expected_distinct;
use cardplan::cost::{PricingBasis, StepCost};
use cardplan::fit::{FitOptions, fit, weight_bytes};
use cardplan::step::BatchShape;

/// A published figure checked at the precision it was published to: `12 900 000 000` ("12.9B")
/// is met by anything that rounds or truncates to it, i.e. within one unit of its last digit.
fn matches_published(computed: u64, published: u64) -> bool {
    let mut unit = 1u64;
    while published % (unit * 10) == 0 && unit < published {
        unit *= 10;
    }
    computed.abs_diff(published) < unit
}

#[test]
fn published_precision_rule() {
    assert!(matches_published(12_879_925_248, 12_900_000_000));
    assert!(matches_published(3_353_032_704, 3_300_000_000)); // truncated on the model card
    assert!(!matches_published(3_453_032_704, 3_300_000_000));
    assert!(matches_published(46_702_792_704, 46_702_792_704));
    assert!(!matches_published(46_702_792_705, 46_702_792_704));
}

/// What the authors call active: everything a token multiplies by, minus the input embedding
/// where their convention leaves it out.
fn active_as_published(m: &ModelArch) -> u64 {
    let embedding = if m.published_active_excludes_embedding {
        m.params().embedding
    } else {
        0
    };
    m.active_params() - embedding
}

#[test]
fn moe_parameter_counts_equal_the_published_ones() {
    // (model, total, active as published)
    for (key, total, active) in [
        ("qwen3-30b-a3b", 30_532_122_624u64, 3_300_000_000u64),
        ("gpt-oss-120b", 116_829_156_672, 5_130_000_000),
        ("mixtral-8x7b", 46_702_792_704, 12_900_000_000),
    ] {
        let m = catalog::model(key).unwrap();
        assert_eq!(m.params().total(), total, "{key} total");
        let a = active_as_published(&m);
        assert!(
            matches_published(a, active),
            "{key}: active {a} vs {active}"
        );
        assert!(m.active_params() < m.params().total() / 3, "{key}");
    }
    // by hand: Mixtral's 8 experts of 3 × 4096 × 14336, 2 active, in 32 layers
    let m = catalog::model("mixtral-8x7b").unwrap();
    let expert = 3 * 4096 * 14336u64;
    assert_eq!(m.params().total() - m.active_params(), 32 * 6 * expert);
}

#[test]
fn every_published_active_count_is_met() {
    for m in catalog::models().unwrap() {
        match (&m.moe, m.published_active_params) {
            (Some(_), Some(p)) => {
                let a = active_as_published(&m);
                assert!(matches_published(a, p), "{}: active {a} vs {p}", m.key);
            }
            (Some(_), None) => panic!("{}: a MoE model states its active count", m.key),
            (None, _) => assert_eq!(m.active_params(), m.params().total(), "{}", m.key),
        }
    }
}

#[test]
fn the_new_catalog_entries_are_listed() {
    let out = cardplan(&["list", "models"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for key in [
        "llama-3.3-70b",
        "qwen3-8b",
        "qwen3-32b",
        "qwen3-30b-a3b",
        "qwen3-235b-a22b",
        "gpt-oss-20b",
        "gpt-oss-120b",
        "mixtral-8x7b",
        "llama-4-scout",
        "gemma-3-27b",
        "mistral-small-24b",
        "codellama-34b",
        "llama-2-70b",
    ] {
        assert!(text.contains(key), "missing model {key}");
    }
    assert!(text.contains("30.53 B (3.35 B active)"), "{text}");
    let gpus = stdout(&cardplan(&["list", "gpus"]));
    for key in [
        "b200",
        "rtx5090",
        "rtx-pro-6000",
        "l40",
        "a40",
        "rtx-a5000",
        "rtx-a6000",
        "rtx-6000-ada",
        "h100-nvl",
        "h200-nvl",
    ] {
        assert!(gpus.contains(key), "missing GPU {key}");
        let g = catalog::gpu(key).unwrap();
        assert!(g.interconnect.is_some(), "{key} states its interconnect");
    }
    // fp4 only where the chip has it
    for (key, fp4) in [
        ("b200", true),
        ("rtx5090", true),
        ("rtx-pro-6000", true),
        ("h200-nvl", false),
        ("l40", false),
    ] {
        assert_eq!(
            catalog::gpu(key).unwrap().datasheet.fp4_tflops.is_some(),
            fp4,
            "{key}"
        );
    }
}

#[test]
fn expected_distinct_experts_is_k_at_one_token_and_tends_to_e() {
    for (e, k) in [(8.0, 2.0), (128.0, 8.0), (128.0, 4.0), (16.0, 1.0)] {
        assert!((expected_distinct(e, k, 1.0) - k).abs() < 1e-9);
        assert!(expected_distinct(e, k, 2.0) > k);
        assert!((expected_distinct(e, k, 10_000.0) - e).abs() < 1e-6);
    }
}

/// Weight memory holds every expert: fp16 weights are 2 bytes × every parameter.
#[test]
fn weights_hold_every_expert() {
    let m = catalog::model("qwen3-30b-a3b").unwrap();
    assert_eq!(weight_bytes(&m, Quant::Fp16), 2 * m.params().total());
    // gpt-oss keeps its experts in MXFP4 (4.25 bits): OpenAI's checkpoint of gpt-oss-120b is
    // 60.8 GiB (65.3 GB); with attention and embeddings in bf16 we land within 1% of it.
    let g = catalog::model("gpt-oss-120b").unwrap();
    let bytes = weight_bytes(&g, Quant::Fp16) as f64;
    assert!((bytes / 65.3e9 - 1.0).abs() < 0.01, "{bytes}");
    // and an int8 scheme does not re-store them in 8 bits
    assert!(weight_bytes(&g, Quant::Int8) < weight_bytes(&g, Quant::Fp16));
    let gpu = catalog::gpu("h200").unwrap();
    let engine = EnginePreset::builtin("vllm").unwrap();
    let r = fit(
        &gpu,
        &g,
        Quant::Fp16,
        &FitOptions::for_engine(&engine, KvDtype::Fp16),
    );
    assert!(r.fits && r.weights_bytes == bytes as u64);
    let moe = r.moe.expect("MoE summary");
    assert_eq!(moe.total_params, g.params().total());
    assert!(
        moe.note
            .contains("116.83 B parameters in total, 5.71 B active"),
        "{}",
        moe.note
    );
}

/// `model` with its experts replaced by one dense MLP `width` wide (same attention, embeddings).
fn dense_twin(model: &ModelArch, width: u32) -> ModelArch {
    let mut d = model.clone();
    d.moe = None;
    d.intermediate = width;
    d.key = format!("{}-dense-{width}", model.key);
    d
}

fn decode_one() -> BatchShape<'static> {
    BatchShape {
        decode_seqs: 1,
        decode_context_tokens: 512,
        prefills: &[],
    }
}

#[test]
fn moe_decode_at_batch_one_costs_between_its_active_and_total_size() {
    let engine = EnginePreset::builtin("vllm").unwrap();
    let measured = catalog::measured_gpus().unwrap();
    for gpu in ["h200", "rtx4090", "a100-80g"] {
        let g = catalog::gpu(gpu).unwrap();
        let basis = PricingBasis::resolve(&g, measured);
        for key in ["qwen3-30b-a3b", "mixtral-8x7b"] {
            let m = catalog::model(key).unwrap();
            let moe = m.moe.clone().unwrap();
            // same total size: every expert side by side; same active size: the k routed ones
            let total = dense_twin(&m, moe.experts * moe.expert_intermediate);
            let active = dense_twin(&m, moe.top_k * moe.expert_intermediate);
            let near = |a: u64, b: u64| a.abs_diff(b) < b / 100; // the router aside
            assert!(near(total.params().total(), m.params().total()), "{key}");
            assert!(near(active.params().total(), m.active_params()), "{key}");
            let t = |x: &ModelArch| {
                StepCost::new(&basis, x, Quant::Fp16, KvDtype::Fp16, &engine)
                    .unwrap()
                    .breakdown(&decode_one())
                    .linear
            };
            let (t_moe, t_total, t_active) = (t(&m), t(&total), t(&active));
            assert!(
                t_active < t_moe && t_moe < 0.6 * t_total,
                "{gpu} {key}: active {t_active} moe {t_moe} total {t_total}"
            );
        }
    }
}

#[test]
fn moe_step_reads_all_experts_at_large_batch() {
    // at 256 tokens every expert is touched, each by 64 rows: the experts cost about what the
    // dense twin of the same total size costs at 64 tokens (same weight bytes, same FLOPs)
    let engine = EnginePreset::builtin("vllm").unwrap();
    let g = catalog::gpu("h200").unwrap();
    let basis = PricingBasis::resolve(&g, catalog::measured_gpus().unwrap());
    let m = catalog::model("mixtral-8x7b").unwrap();
    let t = |x: &ModelArch, b: u32| {
        let batch = BatchShape {
            decode_seqs: b,
            decode_context_tokens: u64::from(b) * 512,
            prefills: &[],
        };
        StepCost::new(&basis, x, Quant::Fp16, KvDtype::Fp16, &engine)
            .unwrap()
            .breakdown(&batch)
            .linear
    };
    let total = dense_twin(&m, 8 * 14336);
    let (small, large) = (t(&m, 1), t(&m, 256));
    assert!(large > 2.0 * small, "{small} {large}");
    let ratio = large / t(&total, 64);
    assert!((0.7..1.3).contains(&ratio), "{ratio}");
}

/// Minimal config.json texts of each MoE family, with the published numbers.
const CONFIGS: &[(&str, &str)] = &[
    (
        "mixtral-8x7b",
        r#"{"model_type":"mixtral","hidden_size":4096,"intermediate_size":14336,
        "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":32000,
        "max_position_embeddings":32768,"num_local_experts":8,"num_experts_per_tok":2,
        "tie_word_embeddings":false}"#,
    ),
    (
        "qwen3-30b-a3b",
        r#"{"model_type":"qwen3_moe","hidden_size":2048,"intermediate_size":6144,
        "moe_intermediate_size":768,"num_hidden_layers":48,"num_attention_heads":32,
        "num_key_value_heads":4,"head_dim":128,"vocab_size":151936,"max_position_embeddings":40960,
        "num_experts":128,"num_experts_per_tok":8,"decoder_sparse_step":1,"mlp_only_layers":[],
        "tie_word_embeddings":false}"#,
    ),
    (
        "gpt-oss-120b",
        r#"{"model_type":"gpt_oss","hidden_size":2880,"intermediate_size":2880,
        "num_hidden_layers":36,"num_attention_heads":64,"num_key_value_heads":8,"head_dim":64,
        "vocab_size":201088,"max_position_embeddings":131072,"num_local_experts":128,
        "num_experts_per_tok":4,"attention_bias":true,"tie_word_embeddings":false,
        "quantization_config":{"quant_method":"mxfp4"}}"#,
    ),
    (
        "llama-4-scout",
        r#"{"model_type":"llama4","_name_or_path":"meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "text_config":{"model_type":"llama4_text","hidden_size":5120,"intermediate_size":8192,
        "intermediate_size_mlp":16384,"num_hidden_layers":48,"num_attention_heads":40,
        "num_key_value_heads":8,"head_dim":128,"vocab_size":202048,
        "max_position_embeddings":10485760,"num_local_experts":16,"num_experts_per_tok":1,
        "interleave_moe_layer_step":1,"tie_word_embeddings":false}}"#,
    ),
    (
        "gemma-3-27b",
        r#"{"model_type":"gemma3","text_config":{"model_type":"gemma3_text","hidden_size":5376,
        "intermediate_size":21504,"num_hidden_layers":62,"num_attention_heads":32,
        "num_key_value_heads":16,"head_dim":128,"vocab_size":262208,
        "max_position_embeddings":131072}}"#,
    ),
    (
        "qwen3-8b",
        r#"{"model_type":"qwen3","hidden_size":4096,"intermediate_size":12288,
        "num_hidden_layers":36,"num_attention_heads":32,"num_key_value_heads":8,"head_dim":128,
        "vocab_size":151936,"max_position_embeddings":40960,"tie_word_embeddings":false}"#,
    ),
];

#[test]
fn hf_import_of_each_family_matches_the_catalog() {
    for (key, json) in CONFIGS {
        let imported = hf::from_json(json, std::path::Path::new("config.json"))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let cat = catalog::model(key).unwrap();
        assert_eq!(imported.params(), cat.params(), "{key}");
        assert_eq!(imported.active_params(), cat.active_params(), "{key}");
        assert_eq!(imported.moe, cat.moe, "{key}");
        assert_eq!(
            weight_bytes(&imported, Quant::Fp16),
            weight_bytes(&cat, Quant::Fp16)
        );
    }
}

#[test]
fn qwen2_moe_import_has_its_shared_expert_and_gate() {
    // Qwen1.5-MoE-A2.7B: 60 experts top-4 of 1408, one shared expert of 5632 with a sigmoid gate
    let json = r#"{"model_type":"qwen2_moe","hidden_size":2048,"intermediate_size":5632,
        "moe_intermediate_size":1408,"shared_expert_intermediate_size":5632,
        "num_hidden_layers":24,"num_attention_heads":16,"num_key_value_heads":16,
        "vocab_size":151936,"max_position_embeddings":8192,"num_experts":60,
        "num_experts_per_tok":4,"decoder_sparse_step":1,"tie_word_embeddings":false}"#;
    let m = hf::from_json(json, std::path::Path::new("config.json")).unwrap();
    let moe = m.moe.clone().unwrap();
    assert_eq!(
        (moe.shared_experts, moe.shared_intermediate, moe.shared_gate),
        (1, 5632, true)
    );
    // published: 14.3B total, 2.7B activated (Qwen1.5-MoE-A2.7B model card)
    assert!(
        matches_published(m.params().total(), 14_300_000_000),
        "{}",
        m.params().total()
    );
    assert!(
        matches_published(m.active_params(), 2_700_000_000),
        "{}",
        m.active_params()
    );
}

#[test]
fn malformed_moe_configs_are_rejected_with_the_file_named() {
    let dir = scratch("moe-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("config.json");
    std::fs::write(
        &bad,
        r#"{"model_type":"mixtral","hidden_size":4096,"intermediate_size":14336,
        "num_hidden_layers":32,"num_attention_heads":32,"vocab_size":32000,
        "max_position_embeddings":32768,"num_local_experts":2,"num_experts_per_tok":4}"#,
    )
    .unwrap();
    let out = cardplan(&["fit", "--gpu", "h200", "--model", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("top_k") && stderr(&out).contains("config.json"),
        "{}",
        stderr(&out)
    );
    let yaml = dir.join("m.yaml");
    let text = catalog::MODELS
        .iter()
        .find(|(k, _)| *k == "qwen3-30b-a3b")
        .unwrap()
        .1
        .replace("  experts: 128\n", "  experts: 128\n  step: 0\n");
    std::fs::write(&yaml, text).unwrap();
    let out = cardplan(&["fit", "--gpu", "h200", "--model", yaml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("moe.step"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fit_says_total_versus_active_for_moe_only() {
    let out = cardplan(&[
        "fit",
        "--model",
        "qwen3-30b-a3b",
        "--gpu",
        "rtx4090",
        "--quant",
        "nf4",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("30.53 B parameters in total, 3.35 B active"),
        "{text}"
    );
    assert!(text.contains("fits: yes"), "{text}");
    let dense = stdout(&cardplan(&["fit", "--model", "qwen3-32b", "--gpu", "h200"]));
    assert!(!dense.contains("active"), "{dense}");
    let json = cardplan(&["fit", "--model", "mixtral-8x7b", "--gpu", "h200", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["moe"]["total_params"], 46_702_792_704u64);
    assert_eq!(v["moe"]["top_k"], 2);
}

#[test]
fn a_plan_for_gpt_oss_names_its_expert_format_beside_the_scheme() {
    let o = cardplan(&[
        "plan",
        "--users",
        "5000",
        "--model",
        "gpt-oss-120b",
        "--gpu",
        "h200",
        "--window-requests",
        "100",
        "--replications",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let head = out.lines().next().unwrap_or_default();
    assert!(head.contains("gpt-oss-120b fp16, experts mxfp4"), "{head}");
    assert!(out.contains("tensor parallel: TP"), "{out}");
}
