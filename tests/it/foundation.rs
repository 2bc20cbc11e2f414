//! Issue 2: catalogs, fit, errors.

use crate::common::{cardplan, stderr, stdout, temp_dir};
use cardplan::catalog::engine::EnginePreset;
use cardplan::catalog::{
    self,
    quant::{KvDtype, Quant},
};
use cardplan::fit::{FitOptions, fit};

#[test]
fn parameter_counts_match_published() {
    for m in catalog::models().unwrap() {
        let published = m
            .published_params
            .expect("every catalog model has a published count");
        // a multimodal checkpoint's count includes the vision encoder cardplan does not cost
        assert_eq!(
            m.params().total() + m.published_unmodeled_params,
            published,
            "{}",
            m.key
        );
    }
    let llama = catalog::model("llama-3.1-8b").unwrap();
    assert_eq!(llama.params().total(), 8_030_261_248);
}

#[test]
fn every_gpu_in_the_reference_is_in_the_catalog() {
    let keys: Vec<String> = catalog::gpus()
        .unwrap()
        .into_iter()
        .map(|g| g.key)
        .collect();
    for k in [
        "rtx3090",
        "rtx4090",
        "rtx-a4000",
        "t4",
        "a10g",
        "l4",
        "l40s",
        "a100-40g",
        "a100-80g",
        "h100-pcie",
        "h100-sxm",
        "h200",
    ] {
        assert!(keys.iter().any(|x| x == k), "missing {k}");
    }
}

#[test]
fn llama_8b_fp16_fits_on_rtx3090_by_hand_computation() {
    let gpu = catalog::gpu("rtx3090").unwrap();
    let model = catalog::model("llama-3.1-8b").unwrap();
    let engine = EnginePreset::builtin("vllm").unwrap();
    let opts = FitOptions::for_engine(&engine, KvDtype::Fp16);
    let r = fit(&gpu, &model, Quant::Fp16, &opts);
    assert!(r.fits);
    // 8,030,261,248 parameters × 2 bytes.
    assert_eq!(r.weights_bytes, 16_060_522_496);
    assert_eq!(format!("{:.2}", r.weights_bytes as f64 / 1e9), "16.06");
    // 2 (K,V) × 32 layers × 8 KV heads × 128 dims × 2 bytes.
    assert_eq!(r.kv_bytes_per_token, 131_072);
    // 24 GiB × 0.9 − weights − reserve, in whole 16-token blocks.
    let usable = (24.0 * 1024.0 * 1024.0 * 1024.0 * 0.9) as u64;
    let expected_blocks = (usable - r.weights_bytes - r.reserve_bytes) / (16 * 131_072);
    assert_eq!(r.kv_blocks, expected_blocks);
    assert_eq!(r.kv_tokens, expected_blocks * 16);
    assert!(r.kv_tokens > 10_000, "{}", r.kv_tokens);
}

#[test]
fn llama_70b_fp16_does_not_fit_on_rtx3090() {
    let out = cardplan(&[
        "fit",
        "--gpu",
        "rtx3090",
        "--model",
        "llama-3.1-70b",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["fits"], false);
    assert_eq!(v["kv_tokens"], 0);
    assert!(v["shortfall_bytes"].as_u64().unwrap() > 100_000_000_000);
    assert!(v["reason"].as_str().unwrap().contains("exceed"));
    let text = cardplan(&["fit", "--gpu", "rtx3090", "--model", "llama-3.1-70b"]);
    assert_eq!(text.status.code(), Some(0));
    assert!(stdout(&text).contains("fits: NO"));
}

#[test]
fn fit_json_has_the_promised_keys() {
    let out = cardplan(&[
        "fit", "--gpu", "h100-sxm", "--quant", "int8", "--kv", "int8", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for key in ["fits", "weights_bytes", "kv_bytes_per_token", "kv_tokens"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["kv_bytes_per_token"], 65_536);
}

/// The bitsandbytes NF4 storage: 4-bit codes, an 8-bit absmax per 64 weights, an fp32 absmax per
/// 256 blocks; everything outside the linear layers in 16 bits.
#[test]
fn nf4_weight_bytes_within_one_percent_of_bitsandbytes_formula() {
    for key in [
        "llama-3.1-8b",
        "llama-3.1-70b",
        "qwen2.5-7b",
        "phi-2",
        "gemma-2-9b",
    ] {
        let m = catalog::model(key).unwrap();
        let p = m.params();
        let linear = p.linear as f64;
        let formula = linear * 0.5
            + linear / 64.0
            + linear / 64.0 / 256.0 * 4.0
            + 2.0 * (p.embedding + p.lm_head + p.small) as f64;
        let ours = Quant::Nf4.weight_bytes(&m) as f64;
        let err = (ours - formula).abs() / formula;
        assert!(err < 0.01, "{key}: ours {ours} formula {formula} err {err}");
    }
}

#[test]
fn quantized_weights_shrink_in_order() {
    let m = catalog::model("llama-3.1-8b").unwrap();
    let fp16 = Quant::Fp16.weight_bytes(&m);
    let int8 = Quant::Int8.weight_bytes(&m);
    let nf4 = Quant::Nf4.weight_bytes(&m);
    assert!(nf4 < int8 && int8 < fp16);
    // Embedding and LM head stay 16-bit: 2 × 525,336,576 params × 2 bytes.
    assert!(nf4 > 2 * 2 * 525_336_576);
}

#[test]
fn malformed_model_yaml_reports_line_and_column() {
    let dir = temp_dir("bad-model");
    let path = dir.join("model.yaml");
    std::fs::write(&path, "key: x\nsource: y\nlayers: 32\nhidden: [oops\n").unwrap();
    let out = cardplan(&["fit", "--gpu", "rtx3090", "--model", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("model.yaml:4:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&path, "key: x\nsource: y\nlayers: 32\nhiden: 4\n").unwrap();
    let out = cardplan(&["fit", "--gpu", "rtx3090", "--model", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("4:1"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hiden"), "{}", stderr(&out));
}

#[test]
fn missing_files_are_bad_input() {
    let out = cardplan(&[
        "fit",
        "--gpu",
        "rtx3090",
        "--model",
        "/nonexistent/model.yaml",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("/nonexistent/model.yaml"));
}

#[test]
fn bad_flag_values_never_panic() {
    let cases: &[&[&str]] = &[
        &["--gpu-memory-utilization", "NaN"],
        &["--gpu-memory-utilization", "-0.5"],
        &["--gpu-memory-utilization", "0"],
        &["--gpu-memory-utilization", "1e308"],
        &["--gpu-memory-utilization", "inf"],
        &["--context", "0"],
        &["--context", "-5"],
        &["--context", "99999999999999"],
        &["--max-num-batched-tokens", "0"],
        &["--max-num-batched-tokens", "4294967295"],
        &["--kv", "int4"],
        &["--quant", "nf3"],
        &["--engine", "tgi"],
    ];
    for extra in cases {
        let mut args = vec!["fit", "--gpu", "rtx3090"];
        args.extend_from_slice(extra);
        let out = cardplan(&args);
        let code = out.status.code();
        assert!(
            matches!(code, Some(2) | Some(3)),
            "{extra:?}: {code:?} {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "{extra:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{extra:?} printed partial output");
    }
}

#[test]
fn unknown_names_list_valid_ones_and_suggest() {
    let out = cardplan(&["fit", "--gpu", "rtx-3090"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("did you mean 'rtx3090'"), "{err}");
    assert!(err.contains("h100-sxm"), "{err}");
    let out = cardplan(&["fit", "--gpu", "rtx3090", "--model", "lama-3.1-8b"]);
    assert!(
        stderr(&out).contains("did you mean 'llama-3.1-8b'"),
        "{}",
        stderr(&out)
    );
    let out = cardplan(&["fit", "--gpu", "rtx3090", "--quant", "nf-4"]);
    assert!(
        stderr(&out).contains("did you mean 'nf4'"),
        "{}",
        stderr(&out)
    );
}

const LLAMA_CONFIG: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
  "max_position_embeddings": 131072, "tie_word_embeddings": false, "rms_norm_eps": 1e-05
}"#;

#[test]
fn hugging_face_config_import() {
    let dir = temp_dir("hf");
    let path = dir.join("config.json");
    std::fs::write(&path, LLAMA_CONFIG).unwrap();
    let m = catalog::model(path.to_str().unwrap()).unwrap();
    assert_eq!(m.params().total(), 8_030_261_248);
    assert_eq!(m.head_dim, 128);

    std::fs::write(&path, LLAMA_CONFIG.replace("\"vocab_size\": 128256,", "")).unwrap();
    let out = cardplan(&["fit", "--gpu", "rtx3090", "--model", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("vocab_size"), "{}", stderr(&out));

    std::fs::write(&path, LLAMA_CONFIG.replace("\"llama\"", "\"mamba\"")).unwrap();
    let out = cardplan(&["fit", "--gpu", "rtx3090", "--model", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("unsupported architecture 'mamba'"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&path, "{ not json").unwrap();
    let out = cardplan(&["fit", "--gpu", "rtx3090", "--model", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("config.json:1:"), "{}", stderr(&out));
}

#[test]
fn list_commands_work() {
    for what in ["gpus", "models", "quants", "scenarios"] {
        let out = cardplan(&["list", what]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let out = cardplan(&["list", what, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let _: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    }
    let models = stdout(&cardplan(&["list", "models"]));
    assert!(models.contains("gemma-2-9b") && models.contains("8.03 B"));
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in [
        "plan",
        "simulate",
        "whatif",
        "step",
        "calibrate",
        "validate",
        "fit",
        "list",
    ] {
        let out = cardplan(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub}");
        assert!(
            stdout(&out).contains("cardplan "),
            "{sub} help has no example"
        );
    }
}
