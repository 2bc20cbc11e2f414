//! FP8 and INT4 schemes: exact bytes against hand computation, the e4m3 and int4 references
//! against known vectors, and the checkpoint's quantization_config picking the scheme.

use std::path::Path;

use cardplan::calibrate::lowbit::{
    AWQ_ORDER, E4M3_MAX, GROUP, Int4Groups, awq_pack, awq_unpack, e4m3_decode, e4m3_encode,
    e4m3_quantize_rows, gptq_pack, gptq_unpack,
};
use cardplan::catalog::{self, hf_quant, quant::Quant};

use crate::common::{cardplan, stderr, stdout};

/// Per fused linear (qkv, o, gate_up or fc1, down or fc2), by hand:
/// fp8 = n·k + 4n (fp32 per-channel scales); fp8-tensor = n·k + 8 (fp32 weight and input
/// scale); AWQ = n·k/2 (qweight) + n·k/256 (qzeros, 4 bits per group of 128) + n·k/64 (fp16
/// scales per group of 128); GPTQ = AWQ + 4k (int32 g_idx). E.g. llama qkv, n = 6144, k = 4096:
/// 25,165,824 + 24,576 = 25,190,400; 12,582,912 + 98,304 + 393,216 = 13,074,432.
const BY_HAND: [(&str, [[u64; 4]; 4]); 3] = [
    (
        "llama-3.1-8b",
        [
            [25_190_400, 16_793_600, 117_555_200, 58_736_640],
            [25_165_832, 16_777_224, 117_440_520, 58_720_264],
            [13_074_432, 8_716_288, 61_014_016, 30_507_008],
            [13_090_816, 8_732_672, 61_030_400, 30_564_352],
        ],
    ),
    (
        "qwen2.5-7b",
        [
            [16_533_504, 12_859_392, 135_942_144, 67_909_632],
            [16_515_080, 12_845_064, 135_790_600, 67_895_304],
            [8_580_096, 6_673_408, 70_547_456, 35_273_728],
            [8_594_432, 6_687_744, 70_561_792, 35_349_504],
        ],
    ),
    (
        "phi-2",
        [
            [19_691_520, 6_563_840, 26_255_360, 26_224_640],
            [19_660_808, 6_553_608, 26_214_408, 26_214_408],
            [10_214_400, 3_404_800, 13_619_200, 13_619_200],
            [10_224_640, 3_415_040, 13_629_440, 13_660_160],
        ],
    ),
];

const SCHEMES: [Quant; 4] = [Quant::Fp8, Quant::Fp8Tensor, Quant::Int4, Quant::Int4Gptq];

#[test]
fn linear_bytes_match_hand_computation_for_three_models() {
    for (key, table) in BY_HAND {
        let m = catalog::model(key).unwrap();
        let linears = m.linears();
        for (q, want) in SCHEMES.iter().zip(table) {
            let got: Vec<u64> = linears
                .iter()
                .map(|l| q.linear_bytes(u64::from(l.n), u64::from(l.k)))
                .collect();
            assert_eq!(got, want, "{key} {q}");
            // embeddings, LM head, norms and biases stay 16-bit
            let p = m.params();
            let total = want.iter().sum::<u64>() * u64::from(m.layers)
                + 2 * (p.embedding + p.lm_head + p.small);
            assert_eq!(q.weight_bytes(&m), total, "{key} {q}");
        }
    }
    // llama-3.1-8b in full: 32 layers of fp8 linears + 2 × (2 × 128256 × 4096 + 32 × 2 × 4096 + 4096)
    let llama = catalog::model("llama-3.1-8b").unwrap();
    assert_eq!(
        Quant::Fp8.weight_bytes(&llama),
        6_984_826_880 + 2_101_878_784
    );
    assert_eq!(
        Quant::Int4.weight_bytes(&llama),
        3_625_975_808 + 2_101_878_784
    );
}

#[test]
fn packed_checkpoint_tensors_have_the_counted_bytes() {
    let (n, k) = (24, 384);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
        .collect();
    let q = Int4Groups::quantize(&w, n, k, false);
    let (qw, qz) = awq_pack(&q);
    let scales = k / GROUP * n;
    assert_eq!(
        (4 * (qw.len() + qz.len()) + 2 * scales) as u64,
        Quant::Int4.linear_bytes(n as u64, k as u64)
    );
    let (qw, qz, g_idx) = gptq_pack(&q);
    assert_eq!(
        (4 * (qw.len() + qz.len() + g_idx.len()) + 2 * scales) as u64,
        Quant::Int4Gptq.linear_bytes(n as u64, k as u64)
    );
}

#[test]
fn e4m3_known_bit_patterns() {
    for (x, bits) in [
        (0.0f32, 0x00u8),
        (1.0, 0x38),
        (-2.0, 0xc0),
        (0.5, 0x30),
        (448.0, 0x7e),
        (240.0, 0x77),
        (2f32.powi(-6), 0x08),         // smallest normal
        (2f32.powi(-9), 0x01),         // smallest subnormal
        (0.875 * 2f32.powi(-6), 0x07), // largest subnormal
        (1.0625, 0x38),                // halfway between 1 and 1.125: ties to even (mantissa 0)
        (1.1875, 0x3a),                // halfway between 1.125 and 1.25: ties to even (mantissa 2)
        (1000.0, 0x7e),                // saturates
        (-1e30, 0xfe),
        (460.0, 0x7e), // above 448 rounds to 448, never to the NaN code
    ] {
        assert_eq!(e4m3_encode(x), bits, "{x}");
    }
    assert_eq!(E4M3_MAX, e4m3_decode(0x7e));
    assert!(e4m3_decode(0x7f).is_nan() && e4m3_decode(0xff).is_nan());
    assert_eq!(e4m3_encode(f32::NAN), 0x7f);
    assert_eq!(e4m3_decode(0x01), 2f32.powi(-9));
    assert_eq!(e4m3_decode(0xb8), -1.0);
}

#[test]
fn e4m3_rows_scale_the_absmax_to_448() {
    let x = [1.0f32, -3.0, 0.5, 2.0, 0.0, 0.0, 0.0, 0.25];
    let (codes, scales) = e4m3_quantize_rows(&x, 2, 4);
    assert_eq!(scales, vec![3.0 / 448.0, 0.25 / 448.0]);
    assert_eq!(codes[1], 0xfe); // -3 → -448
    assert_eq!(codes[7], 0x7e); // 0.25 → 448
    for (i, &c) in codes.iter().enumerate() {
        let back = e4m3_decode(c) * scales[i / 4];
        // 3 mantissa bits: within 1/16 relative
        assert!(
            (back - x[i]).abs() <= x[i].abs() / 16.0 + 1e-7,
            "{i}: {back} vs {}",
            x[i]
        );
    }
}

#[test]
fn awq_and_gptq_pack_known_words_and_round_trip() {
    // 8 columns of one input channel, codes 0..7: AWQ puts column ORDER[i] in nibble i
    let (n, k) = (8, GROUP);
    let mut q = Int4Groups {
        n,
        k,
        q: vec![0; n * k],
        scales: vec![1.0; n],
        zeros: vec![8; n],
    };
    for row in 0..n {
        q.q[row * k] = row as u8;
    }
    let (qw, qz) = awq_pack(&q);
    assert_eq!(AWQ_ORDER, [0, 2, 4, 6, 1, 3, 5, 7]);
    assert_eq!(qw[0], 0x7531_6420);
    assert_eq!(qz[0], 0x8888_8888);
    // GPTQ: eight consecutive input channels per word; zeros stored minus one (8 → 7)
    let (gw, gz, g_idx) = gptq_pack(&q);
    assert_eq!(gz[0], 0x7777_7777);
    assert_eq!(gw[3], 3); // output row 3: code 3 at channel 0, zeros elsewhere
    assert_eq!((g_idx[0], g_idx[127]), (0, 0));
    // random weights, both layouts, both grids: unpack gives the codes and zeros back
    let (n, k) = (16, 256);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    for sym in [false, true] {
        let q = Int4Groups::quantize(&w, n, k, sym);
        let (qw, qz) = awq_pack(&q);
        assert_eq!(awq_unpack(&qw, &qz, n, k), (q.q.clone(), q.zeros.clone()));
        let (gw, gz, _) = gptq_pack(&q);
        assert_eq!(gptq_unpack(&gw, &gz, n, k), (q.q.clone(), q.zeros.clone()));
        // dequantized weights within half a step of the originals
        for row in 0..n {
            for col in 0..k {
                let s = q.scales[(col / GROUP) * n + row];
                let err = (q.dequant(row, col) - w[row * k + col]).abs();
                assert!(
                    err <= 0.5 * s + 1e-6,
                    "sym {sym} ({row},{col}): {err} > {s}/2"
                );
            }
        }
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/quant-configs/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn each_quantization_config_kind_picks_its_scheme() {
    for (file, want) in [
        ("fp8-dynamic.json", Quant::Fp8),
        ("fp8-static-ct.json", Quant::Fp8Tensor),
        ("fp8.json", Quant::Fp8Tensor),
        ("w4a16-ct.json", Quant::Int4Gptq),
        ("awq.json", Quant::Int4),
        ("gptq.json", Quant::Int4Gptq),
        ("bnb-nf4.json", Quant::Nf4),
        ("bnb-int8.json", Quant::LlmInt8),
    ] {
        let got = hf_quant::for_model_arg(&fixture(file))
            .unwrap()
            .map(|c| c.quant);
        assert_eq!(got, Some(want), "{file}");
    }
    // a config.json without quantization_config, and catalog keys: nothing
    let plain = r#"{"model_type": "llama"}"#;
    let v = serde_json::from_str(plain).unwrap();
    assert_eq!(
        hf_quant::from_config(&v, Path::new("c.json")).unwrap(),
        None
    );
    assert_eq!(hf_quant::for_model_arg("llama-3.1-8b").unwrap(), None);
}

#[test]
fn unsupported_or_malformed_quantization_config_names_the_field() {
    for (file, field) in [
        ("bad-method.json", "quantization_config.quant_method"),
        ("bad-awq-bits.json", "quantization_config.bits"),
        ("bad-gptq-group.json", "quantization_config.group_size"),
        ("bad-not-object.json", "quantization_config"),
        (
            "bad-ct-strategy.json",
            "quantization_config.config_groups.group_0.weights.strategy",
        ),
        (
            "bad-bnb-fp4.json",
            "quantization_config.bnb_4bit_quant_type",
        ),
        (
            "bad-missing-method.json",
            "quantization_config.quant_method",
        ),
    ] {
        let e = hf_quant::for_model_arg(&fixture(file))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("`{field}")), "{file}: {e}");
        assert!(e.contains(file), "{file}: the error names the file: {e}");
        // and the CLI exits 3 with that one line
        let o = cardplan(&["fit", "--gpu", "h100-sxm", "--model", &fixture(file)]);
        assert_eq!(o.status.code(), Some(3), "{file}: {}", stderr(&o));
        assert!(stderr(&o).contains(field), "{file}: {}", stderr(&o));
    }
}

#[test]
fn the_checkpoint_scheme_is_used_and_quant_overrides_it_with_a_note() {
    let awq = fixture("awq.json");
    let o = cardplan(&["fit", "--gpu", "rtx3090", "--model", &awq, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("scheme int4 from the checkpoint's quantization_config"));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let llama = catalog::model("llama-3.1-8b").unwrap();
    assert_eq!(
        v["weights_bytes"].as_u64(),
        Some(Quant::Int4.weight_bytes(&llama))
    );
    let o = cardplan(&[
        "fit", "--gpu", "rtx3090", "--model", &awq, "--quant", "fp8", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--quant fp8 overrides the checkpoint's quantization_config"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["weights_bytes"].as_u64(),
        Some(Quant::Fp8.weight_bytes(&llama))
    );
}

#[test]
fn fp8_on_ampere_says_it_runs_weight_only() {
    let o = cardplan(&[
        "step", "--gpu", "a100-80g", "--quant", "fp8", "--batch", "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("no FP8 tensor cores"), "{}", stdout(&o));
    assert!(stdout(&o).contains("W8A16"), "{}", stdout(&o));
    let o = cardplan(&[
        "step", "--gpu", "h100-sxm", "--quant", "fp8", "--batch", "8",
    ]);
    assert!(
        !stdout(&o).contains("no FP8 tensor cores"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn fp8_vs_fp16_step_time_ratios_match_vllm_on_the_h100() {
    // acceptance: median |error| of the fp8/fp16 step-time ratio <= 10% over the 40 vLLM rows
    let rows = cardplan::validate::quant_ratio::run_all().unwrap();
    assert_eq!(rows.len(), 40);
    let s = cardplan::validate::quant_ratio::summary(&rows);
    assert!(s.median_abs_error <= 0.10, "{s:?}");
    // the weights-and-KV fp8 rows at one sequence: a weight stream of half the bytes
    let b1 = rows
        .iter()
        .find(|r| r.quant == Quant::Fp8Tensor && r.name.ends_with("B=1 L=128"))
        .unwrap();
    assert!((0.7..0.85).contains(&b1.predicted_ratio), "{b1:?}");
}
