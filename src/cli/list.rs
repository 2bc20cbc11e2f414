//! `cardplan list`: what is in the catalog.

use clap::{Args, ValueEnum};

use super::common::print_json;
use crate::catalog::{self, quant::Quant};
use crate::error::Result;
use crate::report;

const EXAMPLES: &str = "Examples:
  cardplan list gpus
  cardplan list models --json
  cardplan list quants
  cardplan list scenarios";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum What {
    Gpus,
    Models,
    Quants,
    Scenarios,
}

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ListArgs {
    /// What to list.
    pub what: What,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ListArgs) -> Result<()> {
    let table = match args.what {
        What::Gpus => {
            let gpus = catalog::gpus()?;
            if args.json {
                return print_json(&gpus);
            }
            report::list::gpus(&gpus)
        }
        What::Models => {
            let models = catalog::models()?;
            if args.json {
                return print_json(&models);
            }
            report::list::models(&models)
        }
        What::Quants => {
            if args.json {
                let v: Vec<_> = Quant::ALL
                    .iter()
                    .map(|q| serde_json::json!({"key": q.key(), "description": q.describe()}))
                    .collect();
                return print_json(&v);
            }
            report::list::quants()
        }
        What::Scenarios => {
            let list = crate::scenario_list()?;
            if args.json {
                return print_json(&list);
            }
            report::list::scenarios(&list)
        }
    };
    println!("{table}");
    Ok(())
}
