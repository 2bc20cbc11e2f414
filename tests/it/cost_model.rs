//! Cost-model behaviour: measured tables reproduced, transfer, breakdown, and physical trends.

use cardplan::catalog::quant::{KvDtype, Quant};
use cardplan::catalog::{self, engine::EnginePreset, model::ModelArch};
use cardplan::cost::roofline::Roofs;
use cardplan::cost::tables::{KernelSet, heads};
use cardplan::cost::{PricingBasis, ProfileKind, StepCost, transfer};
use cardplan::profile::{
    DecodeAttnTable, DecodePoint, ElementwiseKind, ElementwiseTable, GemmTable, GpuProfile,
    Measured, MeasuredRoofs, PrefillAttnTable, Provenance, Timing,
};
use cardplan::step::{BatchShape, PrefillChunk, StepTime};

/// What `gpu` is priced with: its own tables, or tables derived from the catalog's measured GPUs.
fn basis(gpu: &GpuProfile) -> PricingBasis {
    PricingBasis::resolve(gpu, catalog::measured_gpus().expect("catalog"))
}

fn llama() -> ModelArch {
    catalog::model("llama-3.1-8b").expect("catalog model")
}

fn vllm() -> EnginePreset {
    EnginePreset::builtin("vllm").expect("preset")
}

/// A measured block for `gpu` with llama-3.1-8b's shapes. The times are made up (a smooth
/// function with a floor and a roofline-like body, plus a wiggle so they are not a roofline),
/// which is all these tests need: they check how tables are used, not what the GPU does.
fn synthetic_measured(gpu: &GpuProfile) -> Measured {
    let m = llama();
    let bw = gpu.datasheet.bandwidth_gbs * 1e9 * 0.8;
    let fl = gpu.datasheet.fp16_tflops * 1e12 * 0.7;
    let tokens = [
        1u32, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
    ];
    // a slowly growing factor: times are not a pure roofline, and stay monotone in tokens
    let wiggle = |i: usize| 1.0 + 0.02 * i as f64;
    let mut gemm = Vec::new();
    for (scheme, wbytes) in [("fp16", 2.0), ("int8", 1.0), ("nf4", 0.56)] {
        let shapes: Vec<(u32, u32)> = m.linears().iter().map(|l| (l.n, l.k)).collect();
        let shapes = if scheme == "fp16" {
            let mut s = shapes;
            s.push((m.vocab, m.hidden));
            s
        } else {
            shapes
        };
        for (n, k) in shapes {
            let points = tokens
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let (nf, kf, tf) = (f64::from(n), f64::from(k), f64::from(t));
                    let s = 4e-6 + (wbytes * nf * kf / bw).max(2.0 * tf * nf * kf / fl);
                    (t, s * 1e3 * wiggle(i))
                })
                .collect();
            gemm.push(GemmTable {
                scheme: scheme.into(),
                n,
                k,
                host_us_per_call: None,
                points,
            });
        }
    }
    let prefill = PrefillAttnTable {
        heads: m.heads,
        kv_heads: m.kv_heads,
        head_dim: m.head_dim,
        points: [128u32, 256, 512, 1024, 2048, 4096, 8192]
            .iter()
            .map(|&p| {
                let pf = f64::from(p);
                (
                    p,
                    (5e-6 + 4.0 * 32.0 * 128.0 * pf * pf / 2.0 / (fl * 0.5)) * 1e3,
                )
            })
            .collect(),
    };
    let decode = |kv: KvDtype| DecodeAttnTable {
        kv,
        heads: m.heads,
        kv_heads: m.kv_heads,
        head_dim: m.head_dim,
        block_size: 16,
        points: [1u32, 4, 16, 64, 256]
            .iter()
            .flat_map(|&b| {
                [256u32, 1024, 4096].into_iter().map(move |c| DecodePoint {
                    batch: b,
                    context: c,
                    ms: (6e-6
                        + f64::from(b) * f64::from(c) * 2.0 * 8.0 * 128.0 * kv.bytes() as f64
                            / (bw * 0.9))
                        * 1e3,
                })
            })
            .collect(),
    };
    let elem = |kind, width: u32| ElementwiseTable {
        kind,
        width,
        points: tokens
            .iter()
            .map(|&t| (t, (3e-6 + 8.0 * f64::from(t) * f64::from(width) / bw) * 1e3))
            .collect(),
    };
    Measured {
        allreduce: vec![],
        moe_gemm: vec![],
        provenance: Provenance {
            device: format!("synthetic {}", gpu.name),
            sm_count: gpu.datasheet.sm_count,
            driver: "test".into(),
            cuda: "test".into(),
            date: "2026-01-01T00:00:00Z".into(),
            cardplan_version: "test".into(),
            git_rev: "test".into(),
            method: "synthetic".into(),
            // timed like the pre-back-to-back calibrator: the cost model corrects these tables
            timing: Timing::Isolated,
            derived_from: None,
            notes: Vec::new(),
        },
        roofs: MeasuredRoofs {
            copy_gbs: gpu.datasheet.bandwidth_gbs * 0.9,
            fp16_tflops: gpu.datasheet.fp16_tflops * 0.75,
            int8_tops: gpu.datasheet.int8_tops * 0.7,
        },
        gemm,
        attn_prefill: vec![prefill],
        attn_decode: vec![decode(KvDtype::Fp16), decode(KvDtype::Int8)],
        elementwise: vec![
            elem(ElementwiseKind::RmsnormResidual, m.hidden),
            elem(ElementwiseKind::SiluMul, m.intermediate),
        ],
    }
}

fn measured_h100() -> GpuProfile {
    let mut g = catalog::gpu("h100-sxm").expect("catalog gpu");
    g.measured = Some(synthetic_measured(&g));
    g.validate("synthetic").expect("valid synthetic profile");
    g
}

fn decode(b: u32, c: u32) -> BatchShape<'static> {
    BatchShape {
        decode_seqs: b,
        decode_context_tokens: u64::from(b) * u64::from(c),
        prefills: &[],
    }
}

#[test]
fn measured_gemm_points_are_reproduced_exactly() {
    let g = measured_h100();
    let m = g.measured.as_ref().expect("measured");
    // as measured (one kernel at a time), without the CUDA-graph composition
    let set = KernelSet::new(Some(m), Roofs::from_datasheet(&g.datasheet), 50e6).isolated();
    for t in &m.gemm {
        let q: Quant = t.scheme.parse().expect("scheme");
        for &(tok, ms) in &t.points {
            let p = set.gemm(q, f64::from(t.n), f64::from(t.k), f64::from(tok));
            assert_eq!(p.s, ms * 1e-3, "{} {}x{} at {tok}", t.scheme, t.n, t.k);
        }
    }
    let d = &m.attn_decode[0];
    for p in &d.points {
        let got = set.decode_attn(
            d.kv,
            heads(32, 8, 128),
            16.0,
            f64::from(p.batch),
            f64::from(p.context),
        );
        assert_eq!(got.s, p.ms * 1e-3, "decode {} {}", p.batch, p.context);
    }
    for &(tok, ms) in &m.attn_prefill[0].points {
        let x = f64::from(tok);
        let got = set.prefill_attn(heads(32, 8, 128), x * x / 2.0, x, x);
        assert_eq!(got.s, ms * 1e-3, "prefill {tok}");
    }
}

#[test]
fn gemm_interpolation_is_monotone_between_measured_points() {
    let g = measured_h100();
    let set = KernelSet::new(
        g.measured.as_ref(),
        Roofs::from_datasheet(&g.datasheet),
        50e6,
    );
    for q in [Quant::Fp16, Quant::Int8] {
        let mut prev = 0.0;
        for t in 1..=8192u32 {
            let s = set.gemm(q, 6144.0, 4096.0, f64::from(t)).s;
            assert!(s >= prev, "{q} not monotone at {t}");
            prev = s;
        }
    }
}

#[test]
fn profile_transferred_to_itself_is_unchanged() {
    let src = measured_h100();
    // same datasheet under another key: the general derivation path, not a shortcut
    let mut twin = src.clone();
    twin.key = "h100-twin".into();
    twin.measured = None;
    let d = transfer::derive(&src, &twin).expect("derived");
    let (a, b) = (
        src.measured.as_ref().expect("m"),
        d.measured.as_ref().expect("m"),
    );
    assert_eq!(a.gemm, b.gemm);
    assert_eq!(a.attn_prefill, b.attn_prefill);
    assert_eq!(a.attn_decode, b.attn_decode);
    assert_eq!(a.elementwise, b.elementwise);
    assert_eq!(a.roofs, b.roofs);
    assert_eq!(d.key, "h100-twin");
    assert!(
        b.provenance
            .notes
            .iter()
            .any(|n| n.contains("from h100-sxm")),
        "{:?}",
        b.provenance.notes
    );
}

#[test]
fn back_to_back_tables_are_priced_as_measured_and_the_method_survives_transfer() {
    let mut g = measured_h100();
    if let Some(m) = g.measured.as_mut() {
        m.provenance.timing = Timing::BackToBack;
    }
    let m = g.measured.as_ref().expect("measured");
    let roofs = Roofs::from_datasheet(&g.datasheet);
    // the in-graph pricing (no `.isolated()`) returns the measured points unchanged
    let set = KernelSet::new(Some(m), roofs, 50e6);
    for t in &m.gemm {
        let q: Quant = t.scheme.parse().expect("scheme");
        for &(tok, ms) in &t.points {
            let p = set.gemm(q, f64::from(t.n), f64::from(t.k), f64::from(tok));
            assert_eq!(p.s, ms * 1e-3, "{} {}x{} at {tok}", t.scheme, t.n, t.k);
        }
    }
    for p in &m.attn_decode[0].points {
        let got = set.decode_attn(
            m.attn_decode[0].kv,
            heads(32, 8, 128),
            16.0,
            f64::from(p.batch),
            f64::from(p.context),
        );
        assert_eq!(got.s, p.ms * 1e-3, "decode {} {}", p.batch, p.context);
    }
    // the same tables timed in isolation are corrected downwards
    let iso = measured_h100();
    let iso_set = KernelSet::new(iso.measured.as_ref(), roofs, 50e6);
    let t = &m.gemm[0];
    let (tok, ms) = t.points[0];
    let q: Quant = t.scheme.parse().expect("scheme");
    assert!(
        iso_set
            .gemm(q, f64::from(t.n), f64::from(t.k), f64::from(tok))
            .s
            < ms * 1e-3
    );
    // a profile derived from a back-to-back one is back-to-back too, and priced uncorrected
    let mut fast = g.clone();
    fast.key = "h100-2x-bw".into();
    fast.datasheet.bandwidth_gbs *= 2.0;
    fast.measured = None;
    let d = transfer::derive(&g, &fast).expect("derived");
    let dm = d.measured.as_ref().expect("m");
    assert_eq!(dm.provenance.timing, Timing::BackToBack);
    assert!(
        dm.provenance
            .notes
            .last()
            .is_some_and(|n| n.contains("timing back-to-back")),
        "{:?}",
        dm.provenance.notes
    );
    let dset = KernelSet::new(Some(dm), Roofs::from_datasheet(&fast.datasheet), 50e6);
    let dt = &dm.gemm[0];
    let (dtok, dms) = dt.points[0];
    assert_eq!(
        dset.gemm(q, f64::from(dt.n), f64::from(dt.k), f64::from(dtok))
            .s,
        dms * 1e-3
    );
}

#[test]
fn doubling_bandwidth_halves_memory_bound_kernels_above_the_floor() {
    let src = measured_h100();
    let mut fast = src.clone();
    fast.key = "h100-2x-bw".into();
    fast.datasheet.bandwidth_gbs *= 2.0;
    let d = transfer::derive(&src, &fast).expect("derived");
    let floor_ms = cardplan::cost::graph::isolated_fixed_s(src.measured.as_ref().expect("m")) * 1e3;
    let (a, b) = (
        src.measured.as_ref().expect("m"),
        d.measured.as_ref().expect("m"),
    );
    // one-token fp16 GEMV of a large layer and long-context decode attention are memory-bound
    let gemv = |m: &Measured| {
        m.gemm
            .iter()
            .find(|t| t.scheme == "fp16" && t.n == 28672)
            .expect("gate_up")
            .points[0]
            .1
    };
    let (s, t) = (gemv(a), gemv(b));
    assert!(
        ((t - floor_ms) / (s - floor_ms) - 0.5).abs() < 1e-9,
        "{s} -> {t}"
    );
    // decode attention keeps its own (latency) floor, the smallest time of its table
    let decode_floor_ms =
        cardplan::cost::graph::decode_fixed_s(&a.attn_decode[0], floor_ms * 1e-3) * 1e3;
    let last = |m: &Measured| m.attn_decode[0].points.last().expect("pt").ms;
    let (s, t) = (last(a), last(b));
    assert!(
        ((t - decode_floor_ms) / (s - decode_floor_ms) - 0.5).abs() < 1e-9,
        "{s} -> {t}"
    );
    // compute-bound large prefill attention does not change
    let pre = |m: &Measured| m.attn_prefill[0].points.last().expect("pt").1;
    assert_eq!(pre(a), pre(b));
}

#[test]
fn source_selection_prefers_same_family_then_nearest() {
    let h100 = measured_h100();
    let mut a100 = catalog::gpu("a100-80g").expect("gpu");
    a100.measured = Some(synthetic_measured(&a100));
    let rtx3090 = catalog::gpu("rtx3090").expect("gpu");
    let l40s = catalog::gpu("l40s").expect("gpu");
    let h200 = catalog::gpu("h200").expect("gpu");
    let both = [h100.clone(), a100.clone()];
    assert_eq!(
        transfer::pick_source(&rtx3090, &both).map(|p| p.key.as_str()),
        Some("a100-80g")
    );
    assert_eq!(
        transfer::pick_source(&h200, &both).map(|p| p.key.as_str()),
        Some("h100-sxm")
    );
    // Ada has no measured sibling: the closer datasheet wins
    assert!(transfer::pick_source(&l40s, &both).is_some());
    assert!(transfer::pick_source(&rtx3090, std::slice::from_ref(&rtx3090)).is_none());
}

#[test]
fn measured_profile_is_used_and_named() {
    let g = measured_h100();
    let c = StepCost::new(&basis(&g), &llama(), Quant::Fp16, KvDtype::Fp16, &vllm()).expect("cost");
    assert_eq!(c.profile_info().kind, ProfileKind::Measured);
    assert!(
        c.profile_info().source.contains("synthetic"),
        "{}",
        c.profile_info().source
    );
    let b = c.breakdown(&decode(8, 1024));
    assert!(
        !b.notes.iter().any(|n| n.contains("default efficiency")),
        "{:?}",
        b.notes
    );
}

#[test]
fn derived_profile_names_its_source() {
    let src = measured_h100();
    let target = catalog::gpu("rtx3090").expect("gpu");
    let derived = transfer::derive(&src, &target).expect("derived");
    let c = StepCost::new(
        &basis(&derived),
        &llama(),
        Quant::Fp16,
        KvDtype::Fp16,
        &vllm(),
    )
    .expect("cost");
    assert_eq!(c.profile_info().kind, ProfileKind::Derived);
    assert!(
        c.profile_info().source.contains("h100-sxm"),
        "{}",
        c.profile_info().source
    );
    // a 3090 is slower than the H100 it was derived from
    let h =
        StepCost::new(&basis(&src), &llama(), Quant::Fp16, KvDtype::Fp16, &vllm()).expect("cost");
    assert!(c.step_seconds(&decode(1, 512)) > 2.5 * h.step_seconds(&decode(1, 512)) - 0.01);
}

#[test]
fn breakdown_sums_to_the_total() {
    let chunks = [
        PrefillChunk {
            new_tokens: 500,
            cached_tokens: 0,
        },
        PrefillChunk {
            new_tokens: 37,
            cached_tokens: 2000,
        },
    ];
    for g in [measured_h100(), catalog::gpu("rtx3090").expect("gpu")] {
        for q in Quant::ALL {
            let c = StepCost::new(&basis(&g), &llama(), q, KvDtype::Fp16, &vllm()).expect("cost");
            for b in [
                decode(1, 100),
                decode(256, 3000),
                BatchShape {
                    decode_seqs: 40,
                    decode_context_tokens: 40 * 700,
                    prefills: &chunks,
                },
                BatchShape {
                    decode_seqs: 0,
                    decode_context_tokens: 0,
                    prefills: &chunks[..1],
                },
            ] {
                let br = c.breakdown(&b);
                let total = c.step_seconds(&b);
                assert_eq!(br.total(), total, "{} {q}", g.key);
                assert!(br.linear > 0.0 && br.attention > 0.0 && br.lm_head > 0.0);
                assert!(br.elementwise > 0.0 && br.overhead > 0.0);
            }
        }
    }
}

#[test]
fn zero_token_step_costs_nothing() {
    let c = StepCost::new(
        &basis(&measured_h100()),
        &llama(),
        Quant::Fp16,
        KvDtype::Fp16,
        &vllm(),
    )
    .expect("cost");
    assert_eq!(c.step_seconds(&decode(0, 0)), 0.0);
}

#[test]
fn quantized_weights_decode_faster_at_batch_one_on_a_memory_bound_gpu() {
    let g = catalog::gpu("rtx3090").expect("gpu");
    let t = |q| {
        StepCost::new(&basis(&g), &llama(), q, KvDtype::Fp16, &vllm())
            .expect("cost")
            .breakdown(&decode(1, 512))
            .linear
    };
    let (fp16, int8, nf4) = (t(Quant::Fp16), t(Quant::Int8), t(Quant::Nf4));
    assert!(
        int8 < fp16 && nf4 < fp16,
        "fp16 {fp16} int8 {int8} nf4 {nf4}"
    );
    // also from a transferred measured profile
    let derived = transfer::derive(&measured_h100(), &g).expect("derived");
    let t = |q| {
        StepCost::new(&basis(&derived), &llama(), q, KvDtype::Fp16, &vllm())
            .expect("cost")
            .step_seconds(&decode(1, 512))
    };
    assert!(t(Quant::Int8) < t(Quant::Fp16) && t(Quant::Nf4) < t(Quant::Fp16));
}

#[test]
fn prefill_step_time_grows_with_tokens() {
    // The synthetic profile's tables are smooth: strictly growing. The L4 is derived from the
    // catalog's real back-to-back tables, which are not monotone in T where cuBLAS switches
    // tiles (H100 down_proj: 49.1 µs at 96 tokens, 44.6 µs at 128; gate_up_proj: 87.4 µs at 32,
    // 85.4 µs at 64): there the step may dip by at most 2%, also over a doubling of the prompt.
    for (g, dip) in [
        (measured_h100(), 0.0),
        (catalog::gpu("l4").expect("gpu"), 0.02),
    ] {
        let c =
            StepCost::new(&basis(&g), &llama(), Quant::Fp16, KvDtype::Fp16, &vllm()).expect("cost");
        let time = |p: u32| {
            let chunk = [PrefillChunk {
                new_tokens: p,
                cached_tokens: 0,
            }];
            c.step_seconds(&BatchShape {
                decode_seqs: 0,
                decode_context_tokens: 0,
                prefills: &chunk,
            })
        };
        let mut prev = 0.0;
        for p in (16..=16384).step_by(16) {
            let s = time(p);
            if dip == 0.0 {
                assert!(s > prev, "{} at {p}: {s} <= {prev}", g.key);
            } else {
                assert!(s > prev * (1.0 - dip), "{} at {p}: {s} vs {prev}", g.key);
            }
            if p >= 32 {
                assert!(
                    s > time(p / 2) * (1.0 - dip),
                    "{} at {p}: not above {}",
                    g.key,
                    p / 2
                );
            }
            prev = s;
        }
    }
}

#[test]
fn decode_attention_follows_kv_bytes() {
    let g = measured_h100();
    let fp16 =
        StepCost::new(&basis(&g), &llama(), Quant::Fp16, KvDtype::Fp16, &vllm()).expect("cost");
    let int8 =
        StepCost::new(&basis(&g), &llama(), Quant::Fp16, KvDtype::Int8, &vllm()).expect("cost");
    let a = |c: &StepCost, b, ctx| c.breakdown(&decode(b, ctx)).attention;
    assert!(a(&fp16, 64, 4096) > 3.0 * a(&fp16, 64, 1024) * 0.9);
    assert!(a(&int8, 64, 4096) < 0.6 * a(&fp16, 64, 4096));
    let mut prev = 0.0;
    for ctx in (128..=8192).step_by(128) {
        let v = a(&fp16, 32, ctx);
        assert!(v >= prev, "context {ctx}");
        prev = v;
    }
}

#[test]
fn cached_prefix_makes_a_prefill_chunk_dearer() {
    let c = StepCost::new(
        &basis(&measured_h100()),
        &llama(),
        Quant::Fp16,
        KvDtype::Fp16,
        &vllm(),
    )
    .expect("cost");
    let at = |cached| {
        let chunk = [PrefillChunk {
            new_tokens: 256,
            cached_tokens: cached,
        }];
        c.breakdown(&BatchShape {
            decode_seqs: 0,
            decode_context_tokens: 0,
            prefills: &chunk,
        })
        .attention
    };
    assert!(at(4096) > at(0) * 2.0, "{} vs {}", at(4096), at(0));
}

#[test]
fn beyond_measured_range_is_said() {
    let c = StepCost::new(
        &basis(&measured_h100()),
        &llama(),
        Quant::Fp16,
        KvDtype::Fp16,
        &vllm(),
    )
    .expect("cost");
    let b = c.breakdown(&decode(512, 16384));
    assert!(
        b.notes
            .iter()
            .any(|n| n.contains("decode attention") && n.contains("beyond")),
        "{:?}",
        b.notes
    );
    let inside = c.breakdown(&decode(16, 1024));
    assert!(
        !inside.notes.iter().any(|n| n.contains("beyond")),
        "{:?}",
        inside.notes
    );
}

#[test]
fn steps_beyond_the_precomputed_range_match_a_larger_table() {
    let g = measured_h100();
    let small = vllm(); // token budget 2048: 3000 tokens take the direct path
    let mut big = vllm();
    big.max_num_batched_tokens = 4096;
    let a = StepCost::new(&basis(&g), &llama(), Quant::Fp16, KvDtype::Fp16, &small).expect("cost");
    let b = StepCost::new(&basis(&g), &llama(), Quant::Fp16, KvDtype::Fp16, &big).expect("cost");
    let chunk = [PrefillChunk {
        new_tokens: 3000,
        cached_tokens: 0,
    }];
    let s = BatchShape {
        decode_seqs: 3,
        decode_context_tokens: 300,
        prefills: &chunk,
    };
    assert_eq!(a.step_seconds(&s), b.step_seconds(&s));
}
