//! The sweep planner: which sizes are timed, grouped so buffers are reused.

use cardplan::calibrate::sweep::{
    COMPUTE_BOUND_MIN_TOKENS, GEMV_MAX_TOKENS, GemmPath, Job, MIDPOINTS_BELOW, SweepSpec,
    token_sweep,
};
use cardplan::catalog;

#[test]
fn token_sweep_covers_powers_of_two_and_points_between() {
    let t = token_sweep(8192);
    assert_eq!(t.first(), Some(&1));
    assert_eq!(t.last(), Some(&8192));
    assert!(t.windows(2).all(|w| w[0] < w[1]));
    for p in 0..=13 {
        assert!(t.contains(&(1u32 << p)), "missing {}", 1 << p);
    }
    assert!(t.contains(&3) && t.contains(&768));
    // no 1.5x points from the midpoint limit up (the longest, compute-bound jobs)
    assert!(
        !t.iter()
            .any(|&x| x > MIDPOINTS_BELOW && !x.is_power_of_two())
    );
}

#[test]
fn llama_sweep_times_every_vllm_linear_in_every_scheme() {
    let m = catalog::model("llama-3.1-8b").unwrap();
    let spec = SweepSpec::new(std::slice::from_ref(&m), false, true);
    let jobs = spec.jobs();
    for l in m.linears() {
        for path in [
            GemmPath::Fp16CublasGemmEx,
            GemmPath::Int8W8a8,
            GemmPath::Nf4DequantCublas,
        ] {
            for &t in &spec.tokens {
                assert!(
                    jobs.contains(&Job::Gemm {
                        path,
                        n: l.n,
                        k: l.k,
                        tokens: t
                    }),
                    "{} {path:?} T={t}",
                    l.name
                );
            }
        }
    }
    // LM head in fp16 only.
    assert!(jobs.iter().any(
        |j| matches!(j, Job::Gemm { path: GemmPath::Fp16CublasGemmEx, n, .. } if *n == m.vocab)
    ));
    assert!(
        !jobs.iter().any(
            |j| matches!(j, Job::Gemm { path, n, .. } if *n == m.vocab && !path.is_fp16_gemm())
        )
    );
    // cuBLASLt fp16 only at the roof shape: its algorithm choice is too costly at every point.
    for j in &jobs {
        if let Job::Gemm {
            path: GemmPath::Fp16Cublas,
            n,
            k,
            tokens,
        } = j
        {
            assert_eq!((*n, *k, *tokens), (8192, 8192, 8192));
        }
    }
    // bitsandbytes' dispatch (the faithful nf4 scheme) at every point of every quantized layer.
    for l in m.linears() {
        for &t in &spec.tokens {
            let has = jobs.contains(&Job::Gemm {
                path: GemmPath::Nf4Bnb,
                n: l.n,
                k: l.k,
                tokens: t,
            });
            assert!(has, "{} T={t}", l.name);
        }
    }
    // GEMV paths only at small token counts.
    for j in &jobs {
        if let Job::Gemm {
            path: GemmPath::Nf4Gemv | GemmPath::Int8W8a16Gemv,
            tokens,
            ..
        } = j
        {
            assert!(*tokens <= GEMV_MAX_TOKENS);
        }
    }
    // Roofs, decode over batch 1..256 x context 128..8192 for both KV dtypes, prefill to 16384.
    assert!(matches!(jobs[0], Job::Copy { .. }));
    assert!(jobs.iter().any(|j| matches!(
        j,
        Job::Gemm {
            path: GemmPath::Int8ImmaOnly,
            n: 8192,
            k: 8192,
            tokens: 8192
        }
    )));
    let decode = jobs
        .iter()
        .filter(|j| matches!(j, Job::Decode { .. }))
        .count();
    assert_eq!(
        decode,
        cardplan::catalog::quant::KvDtype::ALL.len()
            * spec.decode_batches.len()
            * spec.decode_contexts.len()
    );
    assert!(jobs.iter().any(|j| matches!(
        j,
        Job::Decode {
            batch: 256,
            context: 8192,
            ..
        }
    )));
    assert!(jobs.iter().any(|j| matches!(
        j,
        Job::Prefill {
            tokens: 16384,
            heads: 32,
            kv_heads: 8
        }
    )));
}

#[test]
fn grid_shapes_skip_compute_bound_midpoints_and_imma_only() {
    let m = catalog::model("llama-3.1-8b").unwrap();
    let spec = SweepSpec::new(std::slice::from_ref(&m), false, true);
    let jobs = spec.jobs();
    let has = |path, n, k, tokens| jobs.contains(&Job::Gemm { path, n, k, tokens });
    // A grid-only shape: powers of two from the compute-bound sizes up, all midpoints below them.
    let (n, k) = (8192, 8192);
    assert!(has(GemmPath::Fp16CublasGemmEx, n, k, 96));
    assert!(has(GemmPath::Fp16CublasGemmEx, n, k, 256));
    assert!(!has(GemmPath::Fp16CublasGemmEx, n, k, 384));
    assert!(!has(GemmPath::Int8W8a8, n, k, 768));
    assert!(!has(GemmPath::Int8ImmaOnly, n, k, 4096));
    // o_proj is also a grid size, but a model shape keeps the full sweep.
    assert!(has(GemmPath::Fp16CublasGemmEx, 4096, 4096, 384));
    assert!(has(GemmPath::Int8ImmaOnly, 4096, 4096, 4096));
    // The roof shape is timed in every roof path whatever the grid does.
    assert!(has(GemmPath::Int8ImmaOnly, 8192, 8192, 8192));
}

#[test]
fn jobs_of_one_shape_are_adjacent() {
    let m = catalog::model("llama-3.1-8b").unwrap();
    let jobs = SweepSpec::new(&[m], false, true).jobs();
    let shapes: Vec<(u32, u32)> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Gemm { n, k, .. } => Some((*n, *k)),
            _ => None,
        })
        .collect();
    let mut seen = Vec::new();
    for w in shapes.windows(2) {
        if w[0] != w[1] {
            assert!(
                !seen.contains(&w[1]) || w[1] == (8192, 8192),
                "shape {:?} comes back",
                w[1]
            );
            seen.push(w[0]);
        }
    }
}

#[test]
fn quick_sweep_is_small_and_unsupported_heads_are_reported() {
    let llama = catalog::model("llama-3.1-8b").unwrap();
    let full = SweepSpec::new(std::slice::from_ref(&llama), false, true)
        .jobs()
        .len();
    let quick = SweepSpec::new(std::slice::from_ref(&llama), true, true)
        .jobs()
        .len();
    assert!(quick * 5 < full, "quick {quick} vs full {full}");
    // phi-2 has head_dim 80: its attention is skipped with a note, its linears still timed.
    let phi = catalog::model("phi-2").unwrap();
    let spec = SweepSpec::new(std::slice::from_ref(&phi), true, false);
    assert!(spec.attn.is_empty());
    assert!(
        spec.skipped
            .iter()
            .any(|s| s.contains("phi-2") && s.contains("head_dim"))
    );
    assert!(!spec.shapes.is_empty());
}

#[test]
fn raw_json_names_every_path_by_its_key() {
    let spec = SweepSpec::new(&[catalog::model("llama-3.1-8b").unwrap()], true, true);
    let mut seen = std::collections::BTreeSet::new();
    for j in spec.jobs() {
        if let Job::Gemm { path, .. } = j {
            let v = serde_json::to_value(j).unwrap();
            assert_eq!(v["path"], path.key(), "{path:?}");
            seen.insert(path.key());
        }
    }
    for key in [
        "fp16-cublas-gemmex",
        "nf4-bnb",
        "nf4-dequant-cublas",
        "nf4-gemv",
    ] {
        assert!(seen.contains(key), "{key} never timed");
    }
}

#[test]
fn compute_bound_jobs_are_large_gemms_and_prefill_attention() {
    let m = catalog::model("llama-3.1-8b").unwrap();
    let jobs = SweepSpec::new(&[m], false, true).jobs();
    let mut seen = (false, false);
    for j in &jobs {
        let want = match *j {
            Job::Gemm { tokens, .. } => tokens >= COMPUTE_BOUND_MIN_TOKENS,
            Job::Prefill { .. } => true,
            _ => false,
        };
        assert_eq!(j.compute_bound(), want, "{j:?}");
        seen = (seen.0 || want, seen.1 || !want);
    }
    assert_eq!(seen, (true, true), "the sweep has jobs of both kinds");
    // Memory-bound decode-sized GEMMs stay burst-timed.
    assert!(
        !Job::Gemm {
            path: GemmPath::Fp16CublasGemmEx,
            n: 4096,
            k: 4096,
            tokens: 1
        }
        .compute_bound()
    );
}

#[test]
fn the_paths_of_one_gemm_size_share_one_heat_up() {
    let g = |path, tokens| Job::Gemm {
        path,
        n: 6144,
        k: 4096,
        tokens,
    };
    let t = COMPUTE_BOUND_MIN_TOKENS;
    let group = g(GemmPath::Fp16CublasGemmEx, t).sustain_group();
    assert!(group.is_some());
    assert_eq!(g(GemmPath::Int8W8a8, t).sustain_group(), group);
    assert_eq!(g(GemmPath::Nf4Bnb, t).sustain_group(), group);
    assert_ne!(g(GemmPath::Int8W8a8, 2 * t).sustain_group(), group);
    assert_eq!(g(GemmPath::Int8W8a8, t / 2).sustain_group(), None);
    let prefill = Job::Prefill {
        heads: 32,
        kv_heads: 8,
        tokens: 512,
    };
    assert_eq!(prefill.sustain_group(), Some(prefill));
}
