//! Issue 26: a capacity search's window stops once its TTFT quantile is sure to miss the SLO,
//! and the verdict is the one the whole window gives.

use cardplan::catalog::{self, engine::EnginePreset, quant::KvDtype, quant::Quant};
use cardplan::deploy::Target;
use cardplan::plan::planner::{PlanSpec, Planner, Prepare, Window};
use cardplan::plan::search::SearchOptions;
use cardplan::plan::slo::{Slo, slo_stats};
use cardplan::sim::{self, GiveUp, Scenario};

const WINDOW: u64 = 300;

fn planner(slo: Slo) -> Planner {
    let target = Target {
        gpu: catalog::gpu("rtx3090").unwrap(),
        model: catalog::model("llama-3.1-8b").unwrap(),
        quant: Quant::Fp16,
        kv: KvDtype::Fp16,
        tp: 1,
    };
    let spec = PlanSpec {
        scenario: Scenario::load("chat").unwrap(),
        slo,
        window: Window::Requests(WINDOW),
        search: SearchOptions::default(),
    };
    match Planner::prepare(target, EnginePreset::builtin("vllm").unwrap(), spec).unwrap() {
        Prepare::Fits(p) => *p,
        Prepare::DoesNotFit(_) => panic!("llama-3.1-8b fp16 fits on an RTX 3090"),
    }
}

#[test]
fn a_window_that_gives_up_gets_the_whole_window_s_verdict() {
    let mut stopped_early = 0;
    for q in [0.5, 0.9, 0.95, 0.99] {
        let p = planner(Slo::new(10.0, q, 2.0).unwrap());
        for users in [100, 400, 700, 1400] {
            for seed in [1, 2] {
                let full = sim::run(&p.deployment.cost, &p.config(users, seed)).unwrap();
                let whole = p
                    .spec
                    .slo
                    .met_by(&slo_stats(&full.metrics, &p.spec.slo).unwrap());
                assert_eq!(
                    p.passes(users, seed).unwrap(),
                    whole,
                    "q {q}, {users} users"
                );
                // the rule `passes` uses: n − ⌊q(n − 1)⌋ slow first tokens
                let count = WINDOW - (q * (WINDOW - 1) as f64).floor() as u64;
                let g = GiveUp {
                    ttft_ms: 2000.0,
                    count,
                };
                let part = sim::run_giving_up(&p.deployment.cost, &p.config(users, seed), g);
                let part = part.unwrap();
                if part.metrics.steps < full.metrics.steps {
                    stopped_early += 1;
                    assert!(!whole, "q {q}, {users} users: a passing window gave up");
                } else {
                    assert_eq!(part.metrics, full.metrics, "q {q}, {users} users");
                }
            }
        }
    }
    // the heavy loads do stop early
    assert!(stopped_early >= 6, "{stopped_early}");
}
