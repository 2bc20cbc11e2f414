//! `cardplan plan`: users per card within the SLO, cards needed for N users, and the cost.

use std::path::PathBuf;

use clap::Args;

use super::common::{TargetArgs, print_json};
use crate::catalog::engine::EnginePreset;
use crate::error::{Error, Result, check_range};
use crate::fsutil::check_writable;
use crate::plan::model_error::ModelErrorRequest;
use crate::plan::planner::{PlanSpec, Tick, Window};
use crate::plan::result::PlanWork;
use crate::plan::search::SearchOptions;
use crate::plan::slo::{SloOverrides, check_quantile, resolve_slo};
use crate::plan::{PlanRequest, plan};
use crate::report::{self, doc::write_report};
use crate::sim::Scenario;
use crate::validate;

const EXAMPLES: &str = "Examples:
  cardplan plan --users 5000 --gpu rtx3090
  cardplan plan --users 20000 --gpu l40s --quant int8 --scenario code-assist --json
  cardplan plan --users 5000 --gpu rtx4090 --slo-tok-s 20 --slo-ttft-s 1 --report out/ --png
  cardplan plan --users 5000 --gpu rtx3090 --active-share 0.2 --price-per-hour 0.35
  cardplan plan --users 5000 --model llama-3.1-70b --gpu h100-sxm --tp auto

The SLO defaults to the scenario's (chat: 95% of requests at >= 10 tok/s, TTFT p95 <= 2 s).
Capacity per card is the mean over simulated peak windows (--replications, each
--window-requests long); the 95% interval is where one peak window's capacity falls, and its
low end gives the conservative card count. Cards needed = ceil(users / capacity); cost = cards x
price x 730 h/month.";

/// Flags shared by `plan` and `whatif`: scenario, SLO, engine and search settings.
#[derive(Debug, Clone, Args)]
pub struct PlanOptions {
    /// Workload scenario (see `cardplan list scenarios`) or a scenario YAML path.
    #[arg(long, value_name = "SCENARIO", default_value = "chat")]
    pub scenario: String,
    /// Engine preset: vllm, vllm-v0, hf-static, or an engine YAML path.
    #[arg(long, value_name = "ENGINE", default_value = "vllm")]
    pub engine: String,
    /// Turn the engine's automatic prefix caching off (to compare).
    #[arg(long)]
    pub no_prefix_caching: bool,
    /// Share of users in a session at the peak hour (overrides the scenario's).
    #[arg(long, value_name = "SHARE")]
    pub active_share: Option<f64>,
    /// SLO: minimum per-request streaming rate, tokens/s [default: the scenario's, 10 for chat].
    #[arg(long, value_name = "TOK_S")]
    pub slo_tok_s: Option<f64>,
    /// SLO: share of requests that must meet both limits: 0.5, 0.9, 0.95 or 0.99 [default: the scenario's, 0.95].
    #[arg(long, value_name = "Q")]
    pub slo_quantile: Option<f64>,
    /// SLO: maximum time to first token at that quantile, seconds [default: the scenario's, 2].
    #[arg(long, value_name = "SECONDS")]
    pub slo_ttft_s: Option<f64>,
    /// Price per GPU-hour in USD (default: the GPU datasheet's, with its source).
    #[arg(long, value_name = "USD")]
    pub price_per_hour: Option<f64>,
    /// Seed of the first simulated window; the same seed gives the same numbers.
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
    /// Simulated peak windows (different seeds), 1 to 64: the estimate is their mean capacity.
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub replications: usize,
    /// Requests measured in each simulated peak window after the warm-up, 10 to 100,000: the
    /// same statistical precision at every load.
    /// (4,000 by default, so that reruns with other seeds agree within a few per cent).
    #[arg(long, value_name = "N", default_value_t = 4000)]
    pub window_requests: u64,
    /// Measure a fixed time instead: requests sent in this many seconds after the warm-up.
    #[arg(long, value_name = "SECONDS", conflicts_with = "window_requests")]
    pub window_s: Option<f64>,
    /// Write report.md, report.html and SVG charts into this folder.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// With --report, also write each chart as PNG.
    #[arg(long, requires = "report")]
    pub png: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct PlanArgs {
    /// End users to serve (the whole population; the scenario says how many are active at the peak).
    #[arg(long, value_name = "N")]
    pub users: u64,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub opts: PlanOptions,
    /// Leave cardplan's own error (measured by `cardplan validate`) out of the interval: traffic
    /// randomness only.
    #[arg(long)]
    pub no_model_error: bool,
    /// Paired windows rerun at each end of the model-error interval, 1 to 64.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub model_error_windows: usize,
}

/// Everything resolved from flags that does not depend on the GPU or scheme.
pub struct Common {
    pub engine: EnginePreset,
    pub spec: PlanSpec,
    pub slo_source: String,
}

impl PlanOptions {
    pub fn resolve(&self) -> Result<Common> {
        let mut engine: EnginePreset = EnginePreset::load(&self.engine)?;
        if self.no_prefix_caching {
            engine.prefix_caching = false;
        }
        let mut scenario = Scenario::load(&self.scenario)?;
        if let Some(s) = self.active_share {
            check_range("--active-share", s, 1e-6, 1.0)?;
            scenario.session.active_share = s;
        }
        if let Some(v) = self.slo_tok_s {
            check_range("--slo-tok-s", v, 0.0, 1e6)?;
        }
        if let Some(q) = self.slo_quantile {
            check_quantile("--slo-quantile", q)?;
        }
        if let Some(t) = self.slo_ttft_s {
            check_range("--slo-ttft-s", t, 0.001, 3600.0)?;
        }
        let overrides = SloOverrides {
            tok_s: self.slo_tok_s,
            quantile: self.slo_quantile,
            ttft_s: self.slo_ttft_s,
        };
        let (slo, slo_source) = resolve_slo(&scenario, &overrides)?;
        if self.replications == 0 || self.replications > 64 {
            return Err(Error::BadInput(format!(
                "--replications must be 1..=64, got {}",
                self.replications
            )));
        }
        let window = match self.window_s {
            Some(s) => Window::Seconds(check_range("--window-s", s, 1.0, 86_400.0)?),
            None if (10..=100_000).contains(&self.window_requests) => {
                Window::Requests(self.window_requests)
            }
            None => {
                return Err(Error::BadInput(format!(
                    "--window-requests must be 10..=100000, got {}",
                    self.window_requests
                )));
            }
        };
        if let Some(p) = self.price_per_hour {
            check_range("--price-per-hour", p, 0.0, 1e6)?;
        }
        let search = SearchOptions {
            replications: self.replications,
            base_seed: self.seed,
            ..SearchOptions::default()
        };
        Ok(Common {
            engine,
            spec: PlanSpec {
                scenario,
                slo,
                window,
                search,
            },
            slo_source,
        })
    }

    /// The price to use for `gpu` and where it comes from.
    pub fn price(&self, gpu: &crate::profile::GpuProfile) -> (f64, String) {
        match self.price_per_hour {
            Some(p) => (p, "--price-per-hour".to_string()),
            None => (
                gpu.datasheet.price_per_hour,
                gpu.datasheet.price_source.clone(),
            ),
        }
    }
}

pub fn run(args: PlanArgs) -> Result<()> {
    if args.users == 0 || args.users > 1_000_000_000 {
        return Err(Error::BadInput(format!(
            "--users must be 1..=1000000000, got {}",
            args.users
        )));
    }
    if let Some(dir) = &args.opts.report {
        check_writable(dir)?;
    }
    let common = args.opts.resolve()?;
    let (target, pick) = args
        .target
        .resolve_tp(&common.engine, crate::catalog::shard::TpChoice::Auto)?;
    let (price_per_hour, price_source) = args.opts.price(&target.gpu);
    let model_error = model_error(&args)?;
    let counter = super::progress::counter("peak windows simulated");
    let bar = counter.clone();
    let result = plan(PlanRequest {
        users: args.users,
        target,
        tp_reason: pick.reason,
        engine: common.engine,
        spec: common.spec,
        price_per_hour,
        price_source,
        slo_source: common.slo_source,
        tick: Some(Tick(std::sync::Arc::new(move || bar.inc(1)))),
        model_error,
        work: PlanWork {
            at_load: true,
            // A direction, not the answer: fewer windows than the main search.
            sensitivity_replications: args.opts.replications.min(4),
            // Loads around the capacity for the report's charts.
            sweep_points: if args.opts.report.is_some() { 12 } else { 0 },
        },
    });
    counter.finish_and_clear();
    let result = result?;
    // The answer first: a report that fails to write (the folder was checked up front) leaves
    // no partial files and does not take the answer with it.
    if args.opts.json {
        print_json(&result)?;
    } else {
        print!("{}", report::plan::terminal(&result));
    }
    if let Some(dir) = &args.opts.report {
        let w = write_report(dir, &report::plan::document(&result), args.opts.png)?;
        eprintln!("report written to {}", w.html.display());
    }
    Ok(())
}

/// The validation record to fold into the interval, unless `--no-model-error`.
fn model_error(args: &PlanArgs) -> Result<Option<ModelErrorRequest>> {
    if args.no_model_error {
        return Ok(None);
    }
    if !(1..=64).contains(&args.model_error_windows) {
        return Err(Error::BadInput(format!(
            "--model-error-windows must be 1..=64, got {}",
            args.model_error_windows
        )));
    }
    let datasets = validate::record::run_datasets()?;
    Ok(Some(ModelErrorRequest {
        record: validate::record::step_record(&datasets),
        windows: args.model_error_windows,
        ttft_caveat: validate::record::ttft_caveat(&datasets),
    }))
}
