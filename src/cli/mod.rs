//! Command-line interface: one file per subcommand, each with its argument struct and glue.

mod allreduce;
mod bounds;
mod calibrate;
mod common;
mod fit;
mod list;
mod merge;
mod plan;
mod progress;
mod simulate;
mod step;
mod validate;
mod whatif;

use clap::{Parser, Subcommand};

use crate::error::Result;

const ABOUT: &str = "How many end users can one GPU serve at >= 10 tokens/s each?

cardplan times real FP16/INT8/NF4 kernels on a GPU, turns them into serving-step times and
replays a population of users through a vLLM-style server to answer, with the assumptions shown.";

const EXAMPLES: &str = "Examples:
  cardplan plan --users 5000 --gpu rtx3090
  cardplan fit --gpu rtx3090 --model llama-3.1-70b --quant nf4
  cardplan simulate --gpu h100-sxm --model llama-3.1-8b --quant nf4 --concurrency 100
  cardplan whatif --gpu rtx3090,rtx4090,l40s --quant fp16,int8,nf4 --users 5000 --report out/
  cardplan list gpus";

#[derive(Debug, Parser)]
#[command(name = "cardplan", version, about = ABOUT, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Users one card serves within the SLO, cards needed for N users, and the cost.
    Plan(plan::PlanArgs),
    /// Replay a load through the simulated server and report latency and throughput.
    Simulate(Box<simulate::SimulateArgs>),
    /// Compare GPUs × quantization schemes for the same user population.
    Whatif(whatif::WhatifArgs),
    /// Join the shard outputs of `whatif --shard K/N --json` into the whole comparison.
    Merge(merge::MergeArgs),
    /// Time of one serving step, with its breakdown.
    Step(step::StepArgs),
    /// Time the real kernels on this machine's GPU and write a measured profile.
    Calibrate(calibrate::CalibrateArgs),
    /// Predictions next to published measurements.
    Validate(validate::ValidateArgs),
    /// Does the model fit? Weights, runtime reserve and KV-cache capacity.
    Fit(fit::FitArgs),
    /// List the catalog: GPUs, models, quantization schemes, scenarios.
    List(list::ListArgs),
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plan(a) => plan::run(a),
        Command::Simulate(a) => simulate::run(*a),
        Command::Whatif(a) => whatif::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Step(a) => step::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Fit(a) => fit::run(a),
        Command::List(a) => list::run(a),
    }
}
