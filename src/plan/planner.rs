//! The simulator-backed planner: one (GPU, model, scheme, KV dtype, engine, scenario) turned
//! into users per card, cards needed, their cost, and the numbers behind them.
//!
//! Every simulation is a steady-state peak window: the scenario's population model with the
//! simulator's default warm-up (one average session), then a measured window of a fixed number
//! of requests (so every load gets the same statistical precision) or of fixed seconds
//! arrivals. The capacity search ([`super::search`]) sees only pass/fail per (users, seed).

use rayon::prelude::*;
use serde::Serialize;

use super::cost::{CostEstimate, cards_needed, cost, users_per_card_at};
use super::search::{Capacity, SearchOptions, replication_seed, search};
use super::slo::{Slo, SloStats};
use crate::catalog::engine::EnginePreset;
use crate::catalog::model::ModelArch;
use crate::catalog::quant::{KvDtype, Quant};
use crate::cost::ProfileInfo;
use crate::deploy::{Deployment, Placement, Target};
use crate::error::{Error, Result};
use crate::fit::FitReport;
use crate::profile::GpuProfile;
use crate::sim::{self, Dist, Load, Metrics, Scenario, SimConfig, SimOutput, Stop};
use crate::step::{BatchShape, StepTime};

/// What to plan for.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    pub gpu: GpuProfile,
    pub model: ModelArch,
    pub quant: Quant,
    pub kv: KvDtype,
    pub engine: EnginePreset,
    pub scenario: Scenario,
    pub slo: Slo,
    /// Measured part of each simulated peak window.
    pub window: Window,
    pub search: SearchOptions,
}

/// How long each simulated peak window measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The first N requests sent after the warm-up: the same precision at every load.
    Requests(u64),
    /// Requests sent during this many seconds after the warm-up.
    Seconds(f64),
}

impl Window {
    pub fn stop(&self) -> Stop {
        match *self {
            Window::Requests(n) => Stop::Requests(n),
            Window::Seconds(s) => Stop::Duration(s),
        }
    }

    /// "400 measured requests" or "300 s of measured arrivals".
    pub fn describe(&self) -> String {
        match *self {
            Window::Requests(n) => format!("{n} measured requests"),
            Window::Seconds(s) => format!("{s} s of measured arrivals"),
        }
    }
}

/// A ready-to-run evaluator for one configuration that fits.
#[derive(Debug, Clone)]
pub struct Planner {
    pub inputs: PlanInputs,
    pub deployment: Deployment,
}

/// Whether the model fits; a planner when it does.
pub enum Prepare {
    Fits(Box<Planner>),
    DoesNotFit(FitReport),
}

/// The SLO quantiles the simulator's metrics carry (the per-request rate at `1 − q`, TTFT at `q`).
pub const SUPPORTED_QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// The SLO statistics of one simulated window. Requests refused (too long for the context or
/// the KV cache) or unfinished count as failing requests: if they alone exceed `1 − quantile`
/// of the requests, the tail values are set to fail the SLO.
pub fn slo_stats(m: &Metrics, slo: &Slo) -> Result<SloStats> {
    let q = slo.quantile;
    let close = |a: f64| (q - a).abs() < 1e-9;
    let (rate, ttft_ms) = if close(0.5) {
        (m.request_tok_s.p50, m.ttft_ms.p50)
    } else if close(0.9) {
        (m.request_tok_s.p10, m.ttft_ms.p90)
    } else if close(0.95) {
        (m.request_tok_s.p05, m.ttft_ms.p95)
    } else if close(0.99) {
        (m.request_tok_s.p01, m.ttft_ms.p99)
    } else {
        return Err(Error::Usage(format!(
            "--slo-quantile must be one of 0.5, 0.9, 0.95, 0.99 (the percentiles the simulator reports), got {q}"
        )));
    };
    let bad = m.rejected + m.unfinished;
    let total = m.requests + bad;
    let bad_share = if total == 0 {
        0.0
    } else {
        bad as f64 / total as f64
    };
    let failing = bad_share > 1.0 - q;
    Ok(SloStats {
        tok_s_tail: if failing { 0.0 } else { rate },
        ttft_tail_s: if failing {
            f64::INFINITY
        } else {
            ttft_ms / 1000.0
        },
        requests: m.requests as usize,
    })
}

impl Planner {
    /// Check the fit and build the step-time model and KV capacity.
    pub fn prepare(inputs: PlanInputs) -> Result<Prepare> {
        let target = Target {
            gpu: inputs.gpu.clone(),
            model: inputs.model.clone(),
            quant: inputs.quant,
            kv: inputs.kv,
        };
        Ok(match Deployment::place(target, inputs.engine.clone())? {
            Placement::DoesNotFit(report) => Prepare::DoesNotFit(report),
            Placement::Fits(d) => Prepare::Fits(Box::new(Planner {
                inputs,
                deployment: *d,
            })),
        })
    }

    /// The simulation config for `users` users with `seed`.
    pub fn config(&self, users: u64, seed: u64) -> SimConfig {
        let load = Load::Users(users.max(1));
        let warmup_s = load.default_warmup_s(&self.inputs.scenario);
        SimConfig {
            engine: self.inputs.engine.clone(),
            kv_blocks: self.deployment.kv_blocks,
            max_context: self.deployment.max_context,
            load,
            scenario: self.inputs.scenario.clone(),
            stop: self.inputs.window.stop(),
            seed,
            warmup_s,
        }
    }

    /// Simulate one peak window.
    pub fn simulate(&self, users: u64, seed: u64) -> Result<SimOutput> {
        sim::run(&self.deployment.cost, &self.config(users, seed))
    }

    /// Whether `users` users meet the SLO in the window simulated with `seed`.
    pub fn passes(&self, users: u64, seed: u64) -> Result<bool> {
        if users == 0 {
            return Ok(true);
        }
        let out = self.simulate(users, seed)?;
        Ok(self
            .inputs
            .slo
            .met_by(&slo_stats(&out.metrics, &self.inputs.slo)?))
    }

    /// A first guess at the capacity, from the card's decode throughput at its largest batch
    /// and the scenario's demand per user. It does not use the SLO, so searches with different
    /// SLOs share their path (see [`super::search`]).
    pub fn start_guess(&self) -> u64 {
        let sc = &self.inputs.scenario;
        let out_mean = sc.output_tokens.mean().max(1.0);
        let prompt_mean = sc.prompt_tokens.mean().max(1.0);
        let turns = sc.session.turns.mean().max(1.0);
        // Context of a typical decoding sequence, history included when it grows.
        let ctx = if sc.session.context_growth {
            (prompt_mean + out_mean) * (turns + 1.0) / 2.0
        } else {
            prompt_mean + out_mean / 2.0
        };
        let ctx = ctx.min(f64::from(self.deployment.max_context.max(1)));
        let kv_seqs = (self.deployment.kv_blocks * u64::from(self.inputs.engine.block_size)) as f64
            / ctx.max(1.0);
        let batch = kv_seqs
            .min(f64::from(self.inputs.engine.max_num_seqs))
            .clamp(1.0, 1e6) as u32;
        let t = self.deployment.cost.step_seconds(&BatchShape {
            decode_seqs: batch,
            decode_context_tokens: (f64::from(batch) * ctx) as u64,
            prefills: &[],
        });
        if !(t.is_finite() && t > 0.0) {
            return self.inputs.search.start.max(1);
        }
        // Each turn also costs its prompt once (prefill); weigh it at a tenth of a decode token.
        let tokens_per_s = f64::from(batch) / t / (1.0 + 0.1 * prompt_mean / out_mean);
        let think = sc.session.think_time_s.mean().max(0.1);
        let per_session = out_mean / (think + out_mean / 20.0);
        let users = tokens_per_s / per_session / sc.session.active_share;
        // Start low: doubling from below costs one simulation, bisecting from far above several.
        ((users * 0.6) as u64).clamp(1, self.inputs.search.max_users)
    }

    /// Capacity search with the planner's options (and the start guess).
    pub fn capacity(&self) -> Result<Capacity> {
        let opts = SearchOptions {
            start: self.start_guess(),
            ..self.inputs.search
        };
        search(&|n, seed| self.passes(n, seed), &opts)
    }

    pub fn profile_info(&self) -> &ProfileInfo {
        self.deployment.cost.profile_info()
    }
}

/// Metrics at one load over several seeds.
#[derive(Debug, Clone, Serialize)]
pub struct AtLoad {
    /// Users on each card.
    pub users: u64,
    /// Users in a session at the peak on each card.
    pub active_sessions: u64,
    /// Metrics of the first replication's window.
    pub metrics: Metrics,
    /// The SLO numbers of every replication's window.
    pub slo_stats: Vec<SloStats>,
    /// In how many replications the SLO was met.
    pub slo_met: usize,
    /// KV utilisation over time in the first replication (time s, share of blocks in use).
    #[serde(skip)]
    pub kv_timeline: Vec<(f64, f64)>,
}

/// Simulate `users` per card once per replication seed.
pub fn at_load(p: &Planner, users: u64) -> Result<AtLoad> {
    let opts = &p.inputs.search;
    let outs: Vec<SimOutput> = (0..opts.replications)
        .into_par_iter()
        .map(|r| p.simulate(users.max(1), replication_seed(opts.base_seed, r)))
        .collect::<Result<_>>()?;
    let slo_stats: Vec<SloStats> = outs
        .iter()
        .map(|o| slo_stats(&o.metrics, &p.inputs.slo))
        .collect::<Result<_>>()?;
    let slo_met = slo_stats.iter().filter(|s| p.inputs.slo.met_by(s)).count();
    let first = outs
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("no replication ran".into()))?;
    Ok(AtLoad {
        users,
        active_sessions: Load::active_sessions(users.max(1), &p.inputs.scenario),
        metrics: first.metrics,
        slo_stats,
        slo_met,
        kv_timeline: first.kv_timeline,
    })
}

/// One point of a load sweep (for charts).
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub users: u64,
    pub metrics: Metrics,
}

/// Metrics at several loads with the first replication's seed (common random numbers), in parallel.
pub fn sweep(p: &Planner, loads: &[u64]) -> Result<Vec<SweepPoint>> {
    let seed = replication_seed(p.inputs.search.base_seed, 0);
    loads
        .par_iter()
        .map(|&u| {
            Ok(SweepPoint {
                users: u,
                metrics: p.simulate(u.max(1), seed)?.metrics,
            })
        })
        .collect()
}

/// `n` loads from `lo` to `hi`, evenly spaced, distinct and at least 1.
pub fn load_grid(lo: u64, hi: u64, n: usize) -> Vec<u64> {
    let (lo, hi) = (lo.max(1), hi.max(lo.max(1)));
    let mut v: Vec<u64> = (0..n.max(2))
        .map(|i| lo + ((hi - lo) as f64 * i as f64 / (n.max(2) - 1) as f64).round() as u64)
        .collect();
    v.dedup();
    v
}

/// A distribution with every value scaled by `k` (for "outputs twice as long").
pub fn scale_dist(d: &Dist, k: f64) -> Dist {
    match d {
        Dist::Fixed { value } => Dist::Fixed { value: value * k },
        Dist::Uniform { min, max } => Dist::Uniform {
            min: min * k,
            max: max * k,
        },
        Dist::Lognormal {
            median,
            p90,
            min,
            max,
        } => Dist::Lognormal {
            median: median * k,
            p90: p90 * k,
            min: min.map(|m| m * k),
            max: max.map(|m| m * k),
        },
        Dist::Empirical { values, weights } => Dist::Empirical {
            values: values.iter().map(|v| v * k).collect(),
            weights: weights.clone(),
        },
    }
}

/// Capacity under one changed assumption.
#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    /// What changed, in words.
    pub change: String,
    pub users_per_card: f64,
    pub low: f64,
    pub high: f64,
    /// Relative to the base estimate (0.5 = half as many users per card).
    pub ratio: Option<f64>,
}

/// Capacity if the active share doubles and if outputs are twice as long, with `replications`
/// seeds each (fewer than the main search: these are a direction, not the answer).
pub fn sensitivity(p: &Planner, base: f64, replications: usize) -> Result<Vec<Sensitivity>> {
    let sc = &p.inputs.scenario;
    let share = sc.session.active_share;
    let doubled = (share * 2.0).min(1.0);
    let mut busier = sc.clone();
    busier.session.active_share = doubled;
    let mut longer = sc.clone();
    longer.output_tokens = scale_dist(&sc.output_tokens, 2.0);
    let cases = [
        (
            format!(
                "active share at peak {} → {}",
                super::super::report::format::percent(share),
                super::super::report::format::percent(doubled)
            ),
            busier,
        ),
        ("outputs twice as long".to_string(), longer),
    ];
    cases
        .into_par_iter()
        .map(|(change, scenario)| {
            let inputs = PlanInputs {
                scenario,
                search: SearchOptions {
                    replications,
                    ..p.inputs.search
                },
                ..p.inputs.clone()
            };
            let q = Planner {
                inputs,
                deployment: p.deployment.clone(),
            };
            let guess = ((base * 0.5) as u64).max(1);
            let opts = SearchOptions {
                start: guess,
                ..q.inputs.search
            };
            let c = search(&|n, seed| q.passes(n, seed), &opts)?;
            Ok(Sensitivity {
                change,
                users_per_card: c.estimate,
                low: c.low,
                high: c.high,
                ratio: (base > 0.0).then(|| c.estimate / base),
            })
        })
        .collect()
}

/// The verdict for `users` users given a capacity.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Cards at the estimated capacity; `None` when one card serves nobody within the SLO.
    pub cards_needed: Option<u64>,
    pub cards_with_spare: Option<u64>,
    /// Cards at the high and low ends of the capacity interval.
    pub cards_range: Option<(u64, u64)>,
    /// Cards if sized by the worst simulated peak window's capacity: the conservative answer.
    pub cards_all_windows: Option<u64>,
    /// Users each card carries with `cards_needed` cards.
    pub users_per_card_at_load: Option<u64>,
}

pub fn verdict(users: u64, cap: &Capacity) -> Verdict {
    let est = cap.estimate.floor() as u64;
    let cards = cards_needed(users, est);
    let range = cards_needed(users, cap.high.floor() as u64)
        .zip(cards_needed(users, cap.low.floor() as u64));
    Verdict {
        cards_needed: cards,
        cards_with_spare: cards.map(|c| c + 1),
        cards_range: range,
        cards_all_windows: cards.and(cards_needed(users, cap.min)),
        users_per_card_at_load: cards.map(|c| users_per_card_at(users, c)),
    }
}

/// Cost of the verdict's cards.
pub fn verdict_cost(users: u64, v: &Verdict, price: f64, source: &str) -> Option<CostEstimate> {
    v.cards_needed.map(|c| cost(users, c, price, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_even_and_distinct() {
        assert_eq!(load_grid(100, 500, 5), vec![100, 200, 300, 400, 500]);
        assert_eq!(load_grid(0, 2, 10), vec![1, 2]);
        assert_eq!(load_grid(7, 3, 4), vec![7]);
    }

    #[test]
    fn scaling_a_distribution_scales_its_mean() {
        let dists = [
            Dist::Fixed { value: 100.0 },
            Dist::Uniform {
                min: 10.0,
                max: 30.0,
            },
            Dist::Lognormal {
                median: 250.0,
                p90: 500.0,
                min: Some(16.0),
                max: Some(1024.0),
            },
            Dist::Empirical {
                values: vec![1.0, 3.0],
                weights: Some(vec![1.0, 3.0]),
            },
        ];
        for d in dists {
            let s = scale_dist(&d, 2.0);
            assert!((s.mean() - 2.0 * d.mean()).abs() < 1e-9 * d.mean().max(1.0));
        }
    }
}
