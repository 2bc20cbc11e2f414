//! Simulator properties, with a mock step time so expected values can be computed by hand.

use cardplan::catalog::engine::{EnginePreset, Policy};
use cardplan::sim::{
    self, Dist, Load, Scenario, SimConfig, SimOutput, Stop, TraceLoad, TraceRequest,
};
use cardplan::step::{BatchShape, PrefillChunk, StepTime};
use proptest::prelude::*;

/// Step time linear in the batch: easy to reproduce in a test.
struct Mock {
    base: f64,
    per_seq: f64,
    per_ctx: f64,
    per_prefill_token: f64,
}

impl StepTime for Mock {
    fn step_seconds(&self, b: &BatchShape<'_>) -> f64 {
        let prefill: u64 = b.prefills.iter().map(|p| u64::from(p.new_tokens)).sum();
        self.base
            + self.per_seq * f64::from(b.seqs())
            + self.per_ctx * b.decode_context_tokens as f64
            + self.per_prefill_token * prefill as f64
    }
}

const MOCK: Mock = Mock {
    base: 0.003,
    per_seq: 0.000_1,
    per_ctx: 0.000_000_7,
    per_prefill_token: 0.000_05,
};

fn ns(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

fn scenario(prompt: Dist, output: Dist) -> Scenario {
    let mut s = Scenario::load("chat").unwrap();
    s.prompt_tokens = prompt;
    s.output_tokens = output;
    s
}

fn fixed(v: u32) -> Dist {
    Dist::Fixed {
        value: f64::from(v),
    }
}

fn config(engine: &str, load: Load, sc: Scenario, stop: Stop) -> SimConfig {
    SimConfig {
        engine: EnginePreset::builtin(engine).unwrap(),
        kv_blocks: 4096,
        max_context: 65_536,
        load,
        scenario: sc,
        stop,
        seed: 1,
        warmup_s: 0.0,
    }
}

#[test]
fn one_user_alone_is_one_prefill_plus_decode_steps() {
    let (p, n) = (37u32, 25u32);
    for engine in EnginePreset::KEYS {
        let mut cfg = config(
            engine,
            Load::Concurrency(1),
            scenario(fixed(p), fixed(n)),
            Stop::Requests(3),
        );
        // The mock prices the whole step: none of it is host time for async scheduling to hide.
        cfg.engine.cpu_overlap = 0.0;
        let out = sim::run_checked(&MOCK, &cfg).unwrap();
        let prefill = ns(MOCK.step_seconds(&BatchShape {
            decode_seqs: 0,
            decode_context_tokens: 0,
            prefills: &[PrefillChunk {
                new_tokens: p,
                cached_tokens: 0,
            }],
        }));
        let decode: u64 = (1..n)
            .map(|j| {
                ns(MOCK.step_seconds(&BatchShape {
                    decode_seqs: 1,
                    decode_context_tokens: u64::from(p + j),
                    prefills: &[],
                }))
            })
            .sum();
        let e2e = (prefill + decode) as f64 * 1e-9;
        let m = &out.metrics;
        assert_eq!(m.requests, 3, "{engine}");
        assert!(
            (m.e2e_s.unwrap().mean - e2e).abs() < 1e-12,
            "{engine}: {} vs {e2e}",
            m.e2e_s.unwrap().mean
        );
        assert!((m.e2e_s.unwrap().max - e2e).abs() < 1e-12, "{engine}");
        assert!(
            (m.ttft_ms.unwrap().mean - prefill as f64 * 1e-6).abs() < 1e-9,
            "{engine}"
        );
        assert!(
            (m.duration_s - 3.0 * e2e).abs() < 1e-9,
            "{engine}: closed loop is sequential"
        );
        assert!(
            (m.request_tok_s.unwrap().mean - f64::from(n) / e2e).abs() < 1e-9,
            "{engine}"
        );
        assert_eq!(m.output_tokens, 3 * u64::from(n));
    }
}

fn trace(reqs: &[(f64, u32, u32)]) -> Load {
    Load::Trace(TraceLoad {
        path: "test".into(),
        requests: reqs
            .iter()
            .map(|&(a, p, o)| TraceRequest {
                arrival_s: a,
                prompt_tokens: p,
                output_tokens: o,
            })
            .collect(),
    })
}

#[test]
fn static_batch_runs_to_its_longest_output_and_admits_nobody_mid_batch() {
    let mut cfg = config(
        "hf-static",
        trace(&[(0.0, 5, 10), (0.0, 3, 2), (0.001, 4, 3)]),
        scenario(fixed(1), fixed(1)),
        Stop::Requests(3),
    );
    cfg.engine.max_num_seqs = 2;
    let out = sim::run_checked(&MOCK, &cfg).unwrap();
    let chunk = PrefillChunk {
        new_tokens: 5,
        cached_tokens: 0,
    };
    let prefill = ns(MOCK.step_seconds(&BatchShape {
        decode_seqs: 0,
        decode_context_tokens: 0,
        prefills: &[chunk, chunk],
    }));
    // Both sequences stay in every step (the finished one is padding), contexts padded to 5.
    let decode = |j: u64| {
        ns(MOCK.step_seconds(&BatchShape {
            decode_seqs: 2,
            decode_context_tokens: 2 * (5 + j),
            prefills: &[],
        }))
    };
    let long_e2e = prefill + (1..10).map(decode).sum::<u64>();
    let short_e2e = prefill + decode(1);
    let m = &out.metrics;
    assert_eq!(m.requests, 3);
    assert!((m.e2e_s.unwrap().min - short_e2e as f64 * 1e-9).abs() < 1e-12);
    // The third request waits for the whole first batch.
    assert!(m.ttft_ms.unwrap().max * 1e-3 >= long_e2e as f64 * 1e-9 - 0.001);
}

#[test]
fn prefill_first_stalls_decodes_while_a_prompt_prefills() {
    // B arrives while A decodes; under vllm-v0 A's next token waits for B's prefill step.
    let load = trace(&[(0.0, 10, 40), (0.05, 500, 2)]);
    let sc = scenario(fixed(1), fixed(1));
    let v0 = sim::run_checked(
        &MOCK,
        &config("vllm-v0", load.clone(), sc.clone(), Stop::Requests(2)),
    )
    .unwrap();
    let v1 = sim::run_checked(&MOCK, &config("vllm", load, sc, Stop::Requests(2))).unwrap();
    let prefill_b = MOCK.step_seconds(&BatchShape {
        decode_seqs: 0,
        decode_context_tokens: 0,
        prefills: &[PrefillChunk {
            new_tokens: 500,
            cached_tokens: 0,
        }],
    });
    // The largest gap of v0 spans a whole prefill step plus a decode step.
    assert!(
        v0.metrics.itl_ms.unwrap().max * 1e-3 > prefill_b,
        "{:?}",
        v0.metrics.itl_ms
    );
    // Chunked prefill runs A's decode in the same step: its largest gap is that one step.
    assert!(v1.metrics.itl_ms.unwrap().max < v0.metrics.itl_ms.unwrap().max);
}

fn json(o: &SimOutput) -> String {
    serde_json::to_string(o).unwrap()
}

#[test]
fn same_seed_same_output_different_seed_differs() {
    let sc = Scenario::load("sharegpt").unwrap();
    let mut cfg = config(
        "vllm",
        Load::Rate {
            rate: 20.0,
            burstiness: 0.7,
        },
        sc,
        Stop::Requests(300),
    );
    let a = json(&sim::run(&MOCK, &cfg).unwrap());
    let b = json(&sim::run(&MOCK, &cfg).unwrap());
    assert_eq!(a, b);
    cfg.seed = 2;
    let c = json(&sim::run(&MOCK, &cfg).unwrap());
    assert_ne!(a, c);
}

#[test]
fn poisson_and_gamma_arrivals_keep_the_rate() {
    for burstiness in [1.0, 0.5, 3.0] {
        let mut cfg = config(
            "vllm",
            Load::Rate {
                rate: 5.0,
                burstiness,
            },
            scenario(fixed(8), fixed(2)),
            Stop::Requests(20_000),
        );
        cfg.seed = 11;
        let out = sim::run(&MOCK, &cfg).unwrap();
        let r = out.load.offered_requests_per_s;
        assert!((r / 5.0 - 1.0).abs() < 0.05, "burstiness {burstiness}: {r}");
    }
}

#[test]
fn sessions_resend_their_history() {
    let mut sc = Scenario::load("chat").unwrap();
    sc.session.turns = fixed(4);
    let run = |growth: bool| {
        let mut sc = sc.clone();
        sc.session.context_growth = growth;
        let mut cfg = config("vllm", Load::Users(300), sc, Stop::Duration(300.0));
        cfg.warmup_s = 60.0;
        let out = sim::run_checked(&MOCK, &cfg).unwrap();
        assert_eq!(out.load.active_sessions, Some(30));
        assert!(out.metrics.requests > 50, "{}", out.metrics.requests);
        assert_eq!(out.metrics.unfinished, 0);
        out.metrics.prompt_tokens as f64 / out.metrics.requests as f64
    };
    let (flat, grown) = (run(false), run(true));
    // Turns 2-4 carry 1-3 earlier prompts and answers (~400 tokens each).
    assert!(grown > flat + 300.0, "with history {grown}, without {flat}");
}

#[test]
fn small_kv_cache_preempts_and_still_finishes_everything() {
    let mut cfg = config(
        "vllm",
        Load::Concurrency(32),
        scenario(
            Dist::Uniform {
                min: 50.0,
                max: 300.0,
            },
            Dist::Uniform {
                min: 50.0,
                max: 400.0,
            },
        ),
        Stop::Requests(400),
    );
    cfg.kv_blocks = 120;
    let out = sim::run_checked(&MOCK, &cfg).unwrap();
    let m = &out.metrics;
    assert!(m.preemptions > 0);
    assert_eq!(m.requests, 400);
    assert!(m.kv_peak_util <= 1.0);
    assert_eq!(
        m.itl_ms.map_or(0, |s| s.count) + m.requests,
        m.output_tokens
    );
}

#[test]
fn oversized_requests_are_rejected_and_counted() {
    let mut cfg = config(
        "vllm",
        Load::Concurrency(4),
        scenario(
            Dist::Empirical {
                values: vec![100.0, 5000.0],
                weights: None,
            },
            fixed(10),
        ),
        Stop::Requests(200),
    );
    cfg.max_context = 2000;
    let out = sim::run_checked(&MOCK, &cfg).unwrap();
    let m = &out.metrics;
    assert!(
        m.rejected > 50 && m.requests > 50,
        "{} {}",
        m.rejected,
        m.requests
    );
    assert_eq!(m.requests + m.rejected, 200);
}

fn dist_strategy() -> impl Strategy<Value = Dist> {
    prop_oneof![
        (1u32..600).prop_map(fixed),
        (1u32..300, 0u32..600).prop_map(|(a, b)| Dist::Uniform {
            min: f64::from(a),
            max: f64::from(a + b),
        }),
        (2u32..200, 1.0f64..5.0).prop_map(|(m, r)| Dist::Lognormal {
            median: f64::from(m),
            p90: f64::from(m) * r,
            min: None,
            max: Some(3000.0),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// KV blocks in use never exceed capacity (checked every step by run_checked), every
    /// request completes or is rejected, and every requested token is emitted.
    #[test]
    fn bookkeeping_holds_under_any_load(
        policy in 0usize..EnginePreset::KEYS.len(),
        kv_blocks in 4u64..400,
        block_size in prop_oneof![Just(1u32), Just(4), Just(16)],
        max_seqs in 1u32..48,
        extra_budget in 0u32..3000,
        prompt in dist_strategy(),
        output in dist_strategy(),
        closed in any::<bool>(),
        clients in 1u32..40,
        rate in 0.5f64..200.0,
        requests in 1u64..150,
        seed in any::<u64>(),
    ) {
        let key = EnginePreset::KEYS[policy];
        let load = if closed {
            Load::Concurrency(clients)
        } else {
            Load::Rate { rate, burstiness: 1.0 }
        };
        let mut cfg = config(key, load, scenario(prompt, output), Stop::Requests(requests));
        cfg.engine.max_num_seqs = max_seqs;
        if cfg.engine.policy != Policy::Static {
            cfg.engine.max_num_batched_tokens = max_seqs + extra_budget;
        }
        cfg.engine.block_size = block_size;
        cfg.kv_blocks = kv_blocks;
        cfg.max_context = 4096;
        cfg.seed = seed;
        let out = sim::run_checked(&MOCK, &cfg).unwrap();
        let m = &out.metrics;
        prop_assert_eq!(m.unfinished, 0);
        prop_assert_eq!(m.requests + m.rejected, requests);
        prop_assert_eq!(m.itl_ms.map_or(0, |s| s.count) + m.requests, m.output_tokens);
        prop_assert!(m.kv_peak_util <= 1.0);
        prop_assert_eq!(m.e2e_s.map_or(0, |s| s.count), m.requests);
        prop_assert!(out.kv_timeline.len() <= sim::TIMELINE_POINTS);
        prop_assert!(out.kv_timeline.iter().all(|p| p.1 <= 1.0));
    }
}

#[test]
fn closed_loop_client_gap_delays_each_next_request() {
    let mut sc = scenario(fixed(20), fixed(10));
    let base = config("vllm", Load::Concurrency(1), sc.clone(), Stop::Requests(3));
    let e2e = sim::run(&MOCK, &base).unwrap().metrics.e2e_s.unwrap().mean;
    sc.client_gap_s = Some(Dist::Fixed { value: 0.5 });
    let cfg = config("vllm", Load::Concurrency(1), sc, Stop::Requests(3));
    let m = sim::run_checked(&MOCK, &cfg).unwrap().metrics;
    assert!((m.e2e_s.unwrap().mean - e2e).abs() < 1e-12);
    // Makespan: first send (after one gap) to the last token: three requests, two gaps between.
    assert!(
        (m.duration_s - (3.0 * e2e + 1.0)).abs() < 1e-9,
        "{}",
        m.duration_s
    );
}

#[test]
fn session_history_is_truncated_to_the_context() {
    let mut sc = scenario(fixed(300), fixed(100));
    sc.session.turns = fixed(6);
    let mut cfg = config("vllm", Load::Users(100), sc, Stop::Duration(600.0));
    cfg.max_context = 1000;
    cfg.warmup_s = 100.0;
    let m = sim::run_checked(&MOCK, &cfg).unwrap().metrics;
    assert_eq!(m.rejected, 0);
    assert!(m.requests > 50);
    let per_req = m.prompt_tokens as f64 / m.requests as f64;
    // Later turns are capped at 1000 − 100 tokens; the first turn sends 300.
    assert!(per_req > 600.0 && per_req <= 900.0, "{per_req}");
}

#[test]
fn arrivals_beyond_simulated_time_end_the_run_and_say_so() {
    // one request a billion seconds apart: the 1000th would come after the clock's horizon
    let load = Load::Rate {
        rate: 1e-9,
        burstiness: 1.0,
    };
    let cfg = config(
        "vllm",
        load,
        scenario(fixed(20), fixed(5)),
        Stop::Requests(1000),
    );
    let out = sim::run_checked(&MOCK, &cfg).unwrap();
    let m = &out.metrics;
    assert!(m.requests < 1000, "{}", m.requests);
    assert!(m.overloaded, "a run cut short by the clock says so");
    assert!(
        m.measured.contains("simulated time ran out"),
        "{}",
        m.measured
    );
}
