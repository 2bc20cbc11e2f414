//! Issue 22: gpt-oss's MXFP4 experts: exact bytes, the checkpoint's `quantization_config`, and
//! the pricing (a W4A16 path without FP4 tensor cores, the FP4 rate on Blackwell).

use std::path::Path;

use cardplan::catalog::engine::EnginePreset;
use cardplan::catalog::moe::ExpertFormat;
use cardplan::catalog::quant::{KvDtype, Quant};
use cardplan::catalog::{self, hf_quant, mxfp4};
use cardplan::cost::{PricingBasis, StepCost};
use cardplan::fit::weight_bytes;
use cardplan::profile::GpuProfile;
use cardplan::step::BatchShape;

use crate::common::{cardplan, stderr, stdout};

fn fixture(name: &str) -> String {
    format!("{}/tests/quant-configs/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn gpt_oss_experts_take_exactly_four_and_a_quarter_bits() {
    let m = catalog::model("gpt-oss-120b").unwrap();
    assert_eq!(
        m.moe.as_ref().unwrap().expert_format,
        Some(ExpertFormat::Mxfp4)
    );
    let mut bf16 = m.clone();
    if let Some(moe) = bf16.moe.as_mut() {
        moe.expert_format = None;
    }
    // by hand: 36 layers × 128 experts × (gate/up 5760×2880 + down 2880×2880), 17 bytes per 32
    let params = 36u64 * 128 * (5760 * 2880 + 2880 * 2880);
    let mx = 36u64 * 128 * (5760 * 90 * 17 + 2880 * 90 * 17);
    assert_eq!(mx * 32, params * 17);
    assert_eq!(mx, 60_914_073_600);
    assert_eq!(
        weight_bytes(&bf16, Quant::Fp16) - weight_bytes(&m, Quant::Fp16),
        2 * params - mx
    );
    // the format's bytes are the reference quantizer's stored bytes
    let w: Vec<f32> = (0..64 * 96)
        .map(|i| ((i % 13) as f32 - 6.0) * 0.01)
        .collect();
    let t = mxfp4::Mxfp4Tensor::quantize(&w, 64, 96).unwrap();
    assert_eq!(t.stored_bytes(), ExpertFormat::Mxfp4.bytes(64, 96));
}

#[test]
fn mxfp4_checkpoint_config_is_read() {
    let c = hf_quant::for_model_arg(&fixture("mxfp4-gpt-oss-20b.json"))
        .unwrap()
        .unwrap();
    // everything outside the experts stays bf16: the scheme is fp16
    assert_eq!(c.quant, Quant::Fp16);
    assert!(c.summary.starts_with("mxfp4"), "{}", c.summary);
    // the import records the experts' format, as the catalog entry has it
    let imported = catalog::model(&fixture("mxfp4-gpt-oss-20b.json")).unwrap();
    let cat = catalog::model("gpt-oss-20b").unwrap();
    assert_eq!(imported.moe, cat.moe);
    assert_eq!(
        weight_bytes(&imported, Quant::Fp16),
        weight_bytes(&cat, Quant::Fp16)
    );
    let o = cardplan(&[
        "fit",
        "--model",
        &fixture("mxfp4-gpt-oss-20b.json"),
        "--gpu",
        "h200",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("mxfp4"), "{}", stdout(&o));
}

#[test]
fn mxfp4_on_a_model_without_gpt_oss_experts_names_the_field() {
    let e = hf_quant::for_model_arg(&fixture("bad-mxfp4-llama.json")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("quantization_config.quant_method"), "{msg}");
    assert!(msg.contains("gpt_oss"), "{msg}");
    let bad = r#"{"model_type":"gpt_oss","quantization_config":{"quant_method":"mxfp4","modules_to_not_convert":"lm_head"}}"#;
    let v = serde_json::from_str(bad).unwrap();
    let e = hf_quant::from_config(&v, Path::new("c.json")).unwrap_err();
    assert!(
        e.to_string()
            .contains("quantization_config.modules_to_not_convert"),
        "{e}"
    );
}

#[test]
fn a_model_file_contradicting_its_format_is_refused() {
    let text = std::fs::read_to_string(format!(
        "{}/profiles/models/gpt-oss-20b.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace(
        "expert_format: mxfp4",
        "expert_format: mxfp4\n  expert_weight_bits: 4.0",
    );
    let dir = std::env::temp_dir().join(format!("cardplan-mxfp4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, text).unwrap();
    let e = catalog::model(path.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("moe.expert_weight_bits") && e.contains("moe.expert_format"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn experts_time(gpu: &GpuProfile, batch: u32) -> f64 {
    let engine = EnginePreset::builtin("vllm").unwrap();
    let basis = PricingBasis::resolve(gpu, catalog::measured_gpus().unwrap());
    let m = catalog::model("gpt-oss-120b").unwrap();
    StepCost::new(&basis, &m, Quant::Fp16, KvDtype::Fp16, &engine)
        .unwrap()
        .breakdown(&BatchShape {
            decode_seqs: batch,
            decode_context_tokens: u64::from(batch) * 256,
            prefills: &[],
        })
        .linear
}

#[test]
fn blackwell_multiplies_mxfp4_at_its_fp4_rate() {
    let b200 = catalog::gpu("b200").unwrap();
    let mut no_fp4 = b200.clone();
    no_fp4.datasheet.fp4_tflops = None;
    // memory-bound decode at batch 1: the same weight bytes either way
    let (a, b) = (experts_time(&b200, 1), experts_time(&no_fp4, 1));
    assert!((a / b - 1.0).abs() < 0.02, "{a} {b}");
    // 8192 tokens: every expert gets 256 rows, compute-bound as W4A16; FP4 is faster
    let (a, b) = (experts_time(&b200, 8192), experts_time(&no_fp4, 8192));
    assert!(a < 0.8 * b, "{a} {b}");
    // step says which
    let o = cardplan(&[
        "step",
        "--gpu",
        "b200",
        "--model",
        "gpt-oss-20b",
        "--batch",
        "8",
    ]);
    assert!(stdout(&o).contains("FP4 tensor rate"), "{}", stdout(&o));
    let o = cardplan(&[
        "step",
        "--gpu",
        "h200",
        "--model",
        "gpt-oss-20b",
        "--batch",
        "8",
    ]);
    assert!(
        stdout(&o).contains("a W4A16 path on this GPU without FP4"),
        "{}",
        stdout(&o)
    );
}
