//! `cardplan whatif`: the same population on several GPUs × quantization schemes.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::common::{parse_quant, print_json};
use super::plan::{Common, PlanOptions};
use crate::catalog;
use crate::catalog::engine::EnginePreset;
use crate::catalog::quant::KvDtype;
use crate::catalog::shard::TpChoice;
use crate::deploy::{Target, TpPick, pick_tp};
use crate::error::{Error, Result};
use crate::fsutil::check_writable;
use crate::plan::result::PlanWork;
use crate::plan::{PlanRequest, plan};
use crate::report::doc::write_report;
use crate::report::whatif::{
    Comparison, SHARD_FORMAT, ShardEntry, ShardOutput, document, terminal,
};

const EXAMPLES: &str = "Examples:
  cardplan whatif --gpu rtx3090,rtx4090,l40s --quant fp16,int8,nf4 --users 5000
  cardplan whatif --gpu l4,a10g --quant fp16,nf4 --model qwen2.5-7b --users 20000 --report out/
  cardplan whatif --gpu h100-sxm,a100-80g --model llama-3.1-70b --quant int8,nf4 --users 50000 --json
  cardplan whatif --gpu h200,h100-sxm,rtx4090,l40s --model llama-3.1-70b --tp auto,8 --users 5000
  cardplan whatif --gpu l40s --model llama-3.1-8b,qwen2.5-7b --scenario chat,code-assist --users 5000
  cardplan whatif --gpu l4,l40s --quant fp16,nf4 --users 5000 --shard 1/2 --json > s1.json
  cardplan merge s1.json s2.json   # after shard 2/2: what one run prints (docs/SHARDING.md)

Every combination (scenario × model × GPU × scheme × TP, in that order) runs the same search as
`cardplan plan` (in parallel); combinations whose weights do not fit are listed as not fitting.
The best value of each column is marked with *.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct WhatifArgs {
    /// End users to serve.
    #[arg(long, value_name = "N")]
    pub users: u64,
    /// GPUs to compare, comma-separated catalog keys or profile paths.
    #[arg(long, value_name = "GPU,...", value_delimiter = ',', required = true)]
    pub gpu: Vec<String>,
    /// Quantization schemes to compare, comma-separated.
    #[arg(
        long,
        value_name = "SCHEME,...",
        value_delimiter = ',',
        default_value = "fp16"
    )]
    pub quant: Vec<String>,
    /// Models to compare, comma-separated catalog keys or paths.
    #[arg(
        long,
        value_name = "MODEL,...",
        value_delimiter = ',',
        default_value = "llama-3.1-8b"
    )]
    pub model: Vec<String>,
    /// KV-cache dtype: fp16 or int8.
    #[arg(long, value_name = "DTYPE", default_value = "fp16")]
    pub kv: String,
    /// Tensor-parallel sizes to compare, comma-separated: 1, 2, 4, 8 or auto (the fewest GPUs
    /// per server that fit the model with a useful KV cache, per GPU and scheme).
    #[arg(
        long,
        value_name = "N|auto,...",
        value_delimiter = ',',
        default_value = "auto",
        value_parser = super::common::parse_tp
    )]
    pub tp: Vec<TpChoice>,
    /// Compute only shard K of N (1-based: K is 1..=N): the configurations at grid positions
    /// K-1, K-1+N, K-1+2N, ... Prints that shard's JSON; join the N files with `cardplan merge`.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub opts: PlanOptions,
}

/// One shard of the whatif grid: `index` is 1-based, `1 <= index <= count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Whether grid position `i` (0-based) belongs to this shard.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index - 1
    }
}

/// `K/N` with `1 <= K <= N` (1-based, as Slurm arrays usually count; add 1 to a Kubernetes
/// `JOB_COMPLETION_INDEX`).
pub fn parse_shard(s: &str) -> std::result::Result<Shard, String> {
    let bad = || format!("expected K/N with 1 <= K <= N (shards are numbered from 1), got '{s}'");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let k: usize = k.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || k == 0 || k > n {
        return Err(bad());
    }
    Ok(Shard { index: k, count: n })
}

pub fn run(args: WhatifArgs) -> Result<()> {
    check_flags(&args)?;
    let commons = scenarios(&args.opts)?;
    let engine = &commons[0].engine;
    let per_scenario = targets(&args, engine)?;
    // scenarios outermost, then models, GPUs, schemes and TP sizes (see `targets`)
    let grid: Vec<(&Common, Target, TpPick)> = commons
        .iter()
        .flat_map(|c| {
            per_scenario
                .iter()
                .map(move |(t, p)| (c, t.clone(), p.clone()))
        })
        .collect();
    let labels: Vec<String> = grid
        .iter()
        .map(|(c, t, _)| grid_label(&c.spec.scenario.key, t))
        .collect();
    let (indices, targets): (Vec<usize>, Vec<_>) = grid
        .into_iter()
        .enumerate()
        .filter(|(i, _)| args.shard.is_none_or(|s| s.owns(*i)))
        .unzip();
    let bar = progress(targets.len());
    let work = PlanWork {
        at_load: false,
        sensitivity_replications: 0,
        sweep_points: 0,
    };
    let results = targets
        .into_par_iter()
        .map(|(common, target, pick)| {
            let (price_per_hour, price_source) = args.opts.price(&target.gpu);
            let r = plan(PlanRequest {
                users: args.users,
                target,
                tp_reason: pick.reason,
                engine: common.engine.clone(),
                spec: common.spec.clone(),
                price_per_hour,
                price_source,
                slo_source: common.slo_source.clone(),
                work,
                tick: None,
                model_error: None,
            });
            bar.inc(1);
            r
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    let plans = results?;
    if let Some(shard) = args.shard {
        return print_json(&ShardOutput {
            format: SHARD_FORMAT.into(),
            shard: shard.index,
            of: shard.count,
            users: args.users,
            settings: settings(&args),
            grid: labels,
            entries: indices
                .into_iter()
                .zip(plans)
                .map(|(index, plan)| ShardEntry { index, plan })
                .collect(),
        });
    }
    let o = &args.opts;
    emit(
        &Comparison::new(args.users, plans),
        o.json,
        o.report.as_deref(),
        o.png,
    )
}

/// Flags that cannot work together, before anything runs. `--shard` prints JSON for `merge`:
/// a table or a report of one shard is refused.
fn check_flags(args: &WhatifArgs) -> Result<()> {
    if args.users == 0 || args.users > 1_000_000_000 {
        return Err(Error::BadInput(format!(
            "--users must be 1..=1000000000, got {}",
            args.users
        )));
    }
    if args.opts.price_per_hour.is_some() && args.gpu.len() > 1 {
        return Err(Error::Usage(
            "--price-per-hour applies one price to every GPU; compare GPUs at their datasheet prices \
             or run one GPU at a time"
                .into(),
        ));
    }
    if let Some(dir) = &args.opts.report {
        check_writable(dir)?;
    }
    if args.shard.is_some() && (!args.opts.json || args.opts.report.is_some()) {
        return Err(Error::Usage(
            "--shard prints the shard's JSON: give --json and no --report; join the shards with \
             `cardplan merge` (which writes the report)"
                .into(),
        ));
    }
    Ok(())
}

/// The settings of each scenario `--scenario a,b` names (each resolves its own SLO defaults).
fn scenarios(opts: &PlanOptions) -> Result<Vec<Common>> {
    let mut names: Vec<&str> = opts.scenario.split(',').map(str::trim).collect();
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(*n));
    names
        .iter()
        .map(|n| {
            let mut o = opts.clone();
            o.scenario = (*n).to_string();
            o.resolve()
        })
        .collect()
}

/// Print the comparison (JSON or table) and write the report when asked: shared by `whatif`
/// and `merge`, so that a merged run prints exactly what a single run prints.
pub(super) fn emit(
    cmp: &Comparison,
    json: bool,
    report: Option<&std::path::Path>,
    png: bool,
) -> Result<()> {
    // The answer first: a report that fails to write (the folder was checked up front) leaves
    // no partial files and does not take the answer with it.
    if json {
        print_json(cmp)?;
    } else {
        print!("{}", terminal(cmp));
    }
    if let Some(dir) = report {
        let w = write_report(dir, &document(cmp), png)?;
        eprintln!("report written to {}", w.html.display());
    }
    Ok(())
}

/// One grid position in words, the same in every shard of one command.
fn grid_label(scenario: &str, t: &Target) -> String {
    format!(
        "{scenario} {} {} {} kv {} tp {}",
        t.model.key, t.gpu.key, t.quant, t.kv, t.tp
    )
}

/// The flags that change the numbers, so that `merge` refuses shards of different commands.
fn settings(args: &WhatifArgs) -> String {
    let mut o = args.opts.clone();
    (o.json, o.report, o.png) = (false, None, false);
    format!("cardplan {} · {o:?}", env!("CARGO_PKG_VERSION"))
}

/// Every model × GPU × scheme × TP the flags name, in the order given; `auto` resolved per
/// model, GPU and scheme, and a size two choices land on computed once.
fn targets(args: &WhatifArgs, engine: &EnginePreset) -> Result<Vec<(Target, TpPick)>> {
    // each GPU and scheme once, in the order first given
    let mut gpus = args
        .gpu
        .iter()
        .map(|g| catalog::gpu(g.trim()))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = std::collections::HashSet::new();
    gpus.retain(|g| seen.insert(g.key.clone()));
    let mut quants = args
        .quant
        .iter()
        .map(|q| parse_quant(q.trim()))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = std::collections::HashSet::new();
    quants.retain(|q| seen.insert(*q));
    let mut models = args
        .model
        .iter()
        .map(|m| catalog::model(m.trim()))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = std::collections::HashSet::new();
    models.retain(|m| seen.insert(m.key.clone()));
    let kv: KvDtype = args
        .kv
        .parse()
        .map_err(|e: String| Error::Usage(format!("--kv: {e}")))?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for model in &models {
        for g in &gpus {
            for &quant in &quants {
                let base = Target {
                    gpu: g.clone(),
                    model: model.clone(),
                    quant,
                    kv,
                    tp: 1,
                };
                for &choice in &args.tp {
                    let pick = pick_tp(&base, engine, choice)?;
                    if seen.insert((model.key.clone(), g.key.clone(), quant, pick.tp)) {
                        let target = Target {
                            tp: pick.tp,
                            ..base.clone()
                        };
                        out.push((target, pick));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A progress bar over the combinations, on stderr (hidden when stderr is not a terminal).
fn progress(n: usize) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {wide_bar} {pos}/{len} combinations, ETA {eta} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}
