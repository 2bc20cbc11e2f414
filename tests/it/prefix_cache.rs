//! Prefix caching as vLLM V1 does it, seen from outside the simulator: what each prefill step
//! is asked to compute, and that turning caching off changes nothing else.

use std::sync::Mutex;

use cardplan::catalog::{self, engine::EnginePreset, quant::KvDtype};
use cardplan::deploy::{Deployment, Target};
use cardplan::sim::{self, Dist, Load, Scenario, SimConfig, Stop};
use cardplan::step::{BatchShape, PrefillChunk, StepTime};

/// A step time that remembers the prefill chunks of every step it priced.
#[derive(Default)]
struct Recording(Mutex<Vec<Vec<PrefillChunk>>>);

impl StepTime for Recording {
    fn step_seconds(&self, b: &BatchShape<'_>) -> f64 {
        if !b.prefills.is_empty()
            && let Ok(mut v) = self.0.lock()
        {
            v.push(b.prefills.to_vec());
        }
        0.01 + 1e-5 * b.tokens() as f64
    }
}

impl Recording {
    fn prefills(&self) -> Vec<Vec<PrefillChunk>> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn fixed(v: u32) -> Dist {
    Dist::Fixed {
        value: f64::from(v),
    }
}

fn chunk(new_tokens: u32, cached_tokens: u32) -> Vec<PrefillChunk> {
    vec![PrefillChunk {
        new_tokens,
        cached_tokens,
    }]
}

fn config(engine: EnginePreset, load: Load, scenario: Scenario, stop: Stop) -> SimConfig {
    SimConfig {
        engine,
        kv_blocks: 4096,
        max_context: 65_536,
        load,
        scenario,
        stop,
        seed: 1,
        warmup_s: 0.0,
    }
}

/// One user, two turns of 100 new prompt tokens and 50 output tokens each.
fn two_turns(caching: bool) -> Vec<Vec<PrefillChunk>> {
    let mut sc = Scenario::load("chat").unwrap();
    sc.prompt_tokens = fixed(100);
    sc.output_tokens = fixed(50);
    sc.session.active_share = 1.0;
    sc.session.turns = fixed(2);
    sc.session.think_time_s = fixed(5);
    let mut engine = EnginePreset::builtin("vllm").unwrap();
    engine.prefix_caching = caching;
    let rec = Recording::default();
    let cfg = config(engine, Load::Users(1), sc, Stop::Requests(2));
    let out = sim::run_checked(&rec, &cfg).unwrap();
    assert_eq!(out.metrics.requests, 2);
    rec.prefills()
}

#[test]
fn a_second_turn_whose_conversation_is_cached_prefills_only_its_new_tokens() {
    // Turn 2 resends 100 + 50 tokens and adds 100. The first turn's KV holds 149 tokens
    // (the last answer token is never fed back): 9 full blocks of 16 = 144 tokens are reused,
    // and only the 6 tokens of the partial block plus the 100 new ones are computed.
    assert_eq!(two_turns(true), vec![chunk(100, 0), chunk(106, 144)]);
    assert_eq!(two_turns(false), vec![chunk(100, 0), chunk(250, 0)]);
}

#[test]
fn a_shared_system_prompt_is_computed_once_while_its_blocks_stay_cached() {
    let mut sc = Scenario::load("sharegpt").unwrap();
    sc.prompt_tokens = fixed(40);
    sc.output_tokens = fixed(4);
    sc.system_prompt_tokens = 160;
    let engine = EnginePreset::builtin("vllm").unwrap();
    let rec = Recording::default();
    let cfg = config(engine, Load::Concurrency(1), sc, Stop::Requests(3));
    let out = sim::run_checked(&rec, &cfg).unwrap();
    // The first request computes all 200 tokens; the next ones reuse the 10 blocks of the
    // system prompt and compute their own 40 tokens.
    assert_eq!(
        rec.prefills(),
        vec![chunk(200, 0), chunk(40, 160), chunk(40, 160)]
    );
    let rate = out.metrics.prefix_hit_rate.unwrap();
    assert!((rate - 320.0 / 600.0).abs() < 1e-12, "{rate}");
}

/// One user, three requests of a session whose prompts repeat `reuse` of their start.
fn reused_prompts(reuse: f64) -> Vec<Vec<PrefillChunk>> {
    let mut sc = Scenario::load("code-assist").unwrap();
    sc.prompt_tokens = fixed(200);
    sc.output_tokens = fixed(8);
    sc.session.active_share = 1.0;
    sc.session.turns = fixed(3);
    sc.session.think_time_s = fixed(5);
    sc.session.prompt_reuse = reuse;
    let rec = Recording::default();
    let engine = EnginePreset::builtin("vllm").unwrap();
    let cfg = config(engine, Load::Users(1), sc, Stop::Requests(3));
    let out = sim::run_checked(&rec, &cfg).unwrap();
    assert_eq!(out.metrics.requests, 3);
    rec.prefills()
}

#[test]
fn a_prompt_that_repeats_its_sessions_start_prefills_only_the_rest() {
    // Half of 200 tokens repeat: 6 full blocks of 16 (96 tokens) are reused from the second
    // request on; the first request has nothing to reuse.
    assert_eq!(
        reused_prompts(0.5),
        vec![chunk(200, 0), chunk(104, 96), chunk(104, 96)]
    );
    // Without reuse every prompt is new, as the embedded scenario assumes.
    assert_eq!(reused_prompts(0.0), vec![chunk(200, 0); 3]);
}

#[test]
fn prompt_reuse_outside_a_share_or_with_a_growing_conversation_is_refused() {
    let mut sc = Scenario::load("code-assist").unwrap();
    for bad in [-0.1, 1.5, f64::NAN] {
        sc.session.prompt_reuse = bad;
        let e = sc.validate().unwrap_err();
        assert!(e.contains("session.prompt_reuse"), "{e}");
    }
    let mut chat = Scenario::load("chat").unwrap();
    chat.session.prompt_reuse = 0.5;
    let e = chat.validate().unwrap_err();
    assert!(e.contains("context_growth"), "{e}");
}

/// The engine of the golden outputs: today's `vllm` numbers, caching and async scheduling off.
fn engine_before() -> EnginePreset {
    let mut e = EnginePreset::builtin("vllm").unwrap();
    e.prefix_caching = false;
    e.async_scheduling = false;
    e.cpu_overlap = 0.0;
    e.step_overhead_s = 0.0015;
    e.per_seq_overhead_s = 0.000_010;
    e
}

#[test]
fn with_prefix_caching_off_the_results_equal_the_golden_outputs() {
    // `scripts/golden.sh` before prefix caching existed: `simulate --gpu rtx4090 --scenario
    // chat|sharegpt --engine vllm --concurrency 32 --requests 300 --json` (steps, output
    // tokens, mean TTFT and TPOT in ms).
    let golden = [
        (
            "chat",
            3062,
            86_571,
            112.908_944_673_333_37,
            24.890_060_233_790_038,
        ),
        (
            "sharegpt",
            2415,
            59_292,
            108.876_185_483_333_27,
            25.985_258_690_692_277,
        ),
    ];
    let target = Target {
        gpu: catalog::gpu("rtx4090").unwrap(),
        model: catalog::model("llama-3.1-8b").unwrap(),
        quant: "fp16".parse().unwrap(),
        kv: KvDtype::Fp16,
        tp: 1,
    };
    for (scenario, steps, tokens, ttft, tpot) in golden {
        // Without sharing, caching on changes nothing either (no preemption here).
        for caching in [false, true] {
            let mut engine = engine_before();
            engine.prefix_caching = caching;
            let d = Deployment::require(target.clone(), engine, None).unwrap();
            let sc = Scenario::load(scenario).unwrap();
            let cfg = d.sim_config(Load::Concurrency(32), sc, Stop::Requests(300), 0, 0.0);
            let m = sim::run_checked(&d.cost, &cfg).unwrap().metrics;
            let got = (m.steps, m.output_tokens, m.ttft_ms.unwrap().mean);
            assert_eq!(got, (steps, tokens, ttft), "{scenario}, caching {caching}");
            assert_eq!(
                m.tpot_ms.unwrap().mean,
                tpot,
                "{scenario}, caching {caching}"
            );
        }
    }
}

/// A step of 10 ms on the GPU plus the engine's per-step host time, as the cost model charges it.
struct GpuPlusHost(f64);

impl StepTime for GpuPlusHost {
    fn step_seconds(&self, _: &BatchShape<'_>) -> f64 {
        0.010 + self.0
    }
}

#[test]
fn host_time_runs_after_the_gpu_or_hides_behind_it() {
    // One request alone, 3 output tokens: a prefill step and 2 decode steps, each emitting one
    // token; host time 5 or 30 ms per step + 1 ms per output token.
    let e2e = |per_step: f64, overlap: f64| {
        let mut sc = Scenario::load("sharegpt").unwrap();
        sc.prompt_tokens = fixed(10);
        sc.output_tokens = fixed(3);
        let mut e = engine_before();
        e.step_overhead_s = per_step;
        e.per_seq_overhead_s = 0.0;
        e.per_output_token_s = 0.001;
        e.cpu_overlap = overlap;
        let cfg = config(e, Load::Concurrency(1), sc, Stop::Requests(1));
        let m = sim::run_checked(&GpuPlusHost(per_step), &cfg)
            .unwrap()
            .metrics;
        m.e2e_s.unwrap().mean / 3.0
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    // In series: GPU + host.
    assert!(close(e2e(0.005, 0.0), 0.016), "{}", e2e(0.005, 0.0));
    // Hidden: max(GPU, host).
    assert!(close(e2e(0.005, 1.0), 0.010), "{}", e2e(0.005, 1.0));
    assert!(close(e2e(0.030, 1.0), 0.031), "{}", e2e(0.030, 1.0));
    // Half hidden: max(GPU, host / 2) + host / 2.
    assert!(
        close(e2e(0.030, 0.5), 0.0155 + 0.0155),
        "{}",
        e2e(0.030, 0.5)
    );
}
