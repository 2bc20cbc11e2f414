//! The committed H100 and H200 profiles: measured blocks that cover llama-3.1-8b in every
//! measured scheme, merged with the catalog datasheets.

use cardplan::catalog;
use cardplan::catalog::quant::KvDtype;

#[test]
fn committed_hopper_profiles_carry_measurements_for_llama() {
    let llama = catalog::model("llama-3.1-8b").unwrap();
    for (key, device) in [("h100-sxm", "H100"), ("h200", "H200")] {
        let p = catalog::gpu(key).unwrap();
        let m = p
            .measured
            .as_ref()
            .unwrap_or_else(|| panic!("{key}: no measured block"));
        assert!(
            m.provenance.device.contains(device),
            "{key}: {}",
            m.provenance.device
        );
        assert_eq!(m.provenance.sm_count, p.datasheet.sm_count);
        // timed as a serving step pays: the cost model uses these tables uncorrected
        assert_eq!(
            m.provenance.timing,
            cardplan::profile::Timing::BackToBack,
            "{key}"
        );
        // A copy moves each byte twice, so it cannot beat twice the datasheet bandwidth.
        assert!(m.roofs.copy_gbs < 2.0 * p.datasheet.bandwidth_gbs, "{key}");
        assert!(m.roofs.fp16_tflops < p.datasheet.fp16_tflops, "{key}");
        assert!(m.roofs.int8_tops < p.datasheet.int8_tops, "{key}");
        for l in llama.linears() {
            for scheme in ["fp16", "int8", "nf4"] {
                let t = m
                    .gemm
                    .iter()
                    .find(|g| g.scheme == scheme && g.n == l.n && g.k == l.k)
                    .unwrap_or_else(|| panic!("{key}: {scheme} {}", l.name));
                assert_eq!(t.points.first().map(|p| p.0), Some(1));
                assert_eq!(t.points.last().map(|p| p.0), Some(8192));
            }
        }
        assert!(
            m.gemm
                .iter()
                .any(|g| g.scheme == "fp16" && g.n == llama.vocab)
        );
        // fp16 and int8 KV everywhere; fp8 KV where the FP8 run was merged (the H200)
        let kvs: Vec<_> = m.attn_decode.iter().map(|t| t.kv).collect();
        assert!(
            kvs.contains(&KvDtype::Fp16) && kvs.contains(&KvDtype::Int8),
            "{key}: {kvs:?}"
        );
        assert!(!m.attn_prefill.is_empty() && !m.elementwise.is_empty());
    }
}
