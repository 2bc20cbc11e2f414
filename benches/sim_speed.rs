//! Simulator speed on one core: simulated output tokens and events per wall-clock second.
//!
//! `cargo bench --bench sim_speed` (release build). The headline cases are the library path of
//! `cardplan simulate --users 5000 --gpu rtx3090 --duration 3600` and an open-loop (Poisson)
//! run of 10^5 and 10^6 requests; the others stress long runs, an overloaded server with
//! preemptions, and prefill-first scheduling. `CASES=open` keeps the cases whose name holds it.
//!
//! Events are engine steps + arrivals + completions (completions counted as arrivals not
//! refused: at the end at most one batch of unmeasured requests is still running, which is
//! noise at these sizes). Peak memory of a whole command: `/usr/bin/time -v` (see
//! `benches/commands.sh`).

use std::time::Instant;

use cardplan::catalog::{self, engine::EnginePreset, quant::KvDtype};
use cardplan::deploy::{Deployment, Target};
use cardplan::sim::{self, Load, Scenario, Stop};

struct Case {
    name: &'static str,
    gpu: &'static str,
    engine: &'static str,
    scenario: &'static str,
    load: Load,
    stop: Stop,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = catalog::model("llama-3.1-8b")?;
    let quant = "fp16".parse().map_err(|e: String| e)?;
    let cases = [
        Case {
            name: "simulate --gpu h100-sxm --rate 20 --scenario sharegpt --requests 100000 (open loop)",
            gpu: "h100-sxm",
            engine: "vllm",
            scenario: "sharegpt",
            load: Load::Rate {
                rate: 20.0,
                burstiness: 1.0,
            },
            stop: Stop::Requests(100_000),
        },
        Case {
            name: "simulate --gpu h100-sxm --rate 20 --scenario sharegpt --requests 1000000 (open loop)",
            gpu: "h100-sxm",
            engine: "vllm",
            scenario: "sharegpt",
            load: Load::Rate {
                rate: 20.0,
                burstiness: 1.0,
            },
            stop: Stop::Requests(1_000_000),
        },
        Case {
            name: "simulate --users 5000 --gpu rtx3090 --duration 3600",
            gpu: "rtx3090",
            engine: "vllm",
            scenario: "chat",
            load: Load::Users(5000),
            stop: Stop::Duration(3600.0),
        },
        Case {
            name: "simulate --users 5000 --gpu h100-sxm --duration 3600",
            gpu: "h100-sxm",
            engine: "vllm",
            scenario: "chat",
            load: Load::Users(5000),
            stop: Stop::Duration(3600.0),
        },
        Case {
            name: "simulate --gpu h100-sxm --concurrency 256 --scenario sharegpt --requests 1000000",
            gpu: "h100-sxm",
            engine: "vllm",
            scenario: "sharegpt",
            load: Load::Concurrency(256),
            stop: Stop::Requests(1_000_000),
        },
        Case {
            name: "simulate --gpu rtx3090 --rate 8 --scenario sharegpt --requests 1000000 (overloaded)",
            gpu: "rtx3090",
            engine: "vllm",
            scenario: "sharegpt",
            load: Load::Rate {
                rate: 8.0,
                burstiness: 1.0,
            },
            stop: Stop::Requests(1_000_000),
        },
        Case {
            name: "simulate --gpu rtx3090 --concurrency 100 --scenario backprop-long --engine vllm-v0 --requests 1000000",
            gpu: "rtx3090",
            engine: "vllm-v0",
            scenario: "backprop-long",
            load: Load::Concurrency(100),
            stop: Stop::Requests(1_000_000),
        },
    ];
    let only = std::env::var("CASES").unwrap_or_default();
    println!(
        "{:>9} {:>12} {:>10} {:>9} {:>10} {:>10}  case",
        "wall s", "sim tokens", "M tok/s", "steps", "events", "M ev/s"
    );
    for c in cases.into_iter().filter(|c| c.name.contains(only.as_str())) {
        let gpu = catalog::gpu(c.gpu)?;
        let engine = EnginePreset::builtin(c.engine).ok_or("engine")?;
        let scenario = Scenario::load(c.scenario)?;
        let target = Target {
            gpu,
            model: model.clone(),
            quant,
            kv: KvDtype::Fp16,
            tp: 1,
        };
        let deployment = Deployment::require(target, engine, None)?;
        let warmup_s = c.load.default_warmup_s(&scenario);
        let cfg = deployment.sim_config(c.load, scenario, c.stop, 0, warmup_s);
        // Best of three, to keep noise from other processes out.
        let mut best = f64::INFINITY;
        let mut out = None;
        for _ in 0..3 {
            let t = Instant::now();
            let o = sim::run(&deployment.cost, &cfg)?;
            best = best.min(t.elapsed().as_secs_f64());
            out = Some(o);
        }
        let o = out.ok_or("no run")?;
        let tokens = o.load.simulated_output_tokens;
        let events = o.metrics.steps + 2 * o.load.sent - o.metrics.rejected;
        println!(
            "{:>9.3} {:>12} {:>10.1} {:>9} {:>10} {:>10.2}  {}",
            best,
            tokens,
            tokens as f64 / best / 1e6,
            o.metrics.steps,
            events,
            events as f64 / best / 1e6,
            c.name
        );
    }
    Ok(())
}
