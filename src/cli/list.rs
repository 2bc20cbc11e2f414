//! `cardplan list`: what is in the catalog.

use crate::report::table::new_table;
use clap::{Args, ValueEnum};

use super::common::print_json;
use crate::catalog::{self, quant::Quant};
use crate::error::Result;

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
    let mut t = new_table();
    match args.what {
        What::Gpus => {
            let gpus = catalog::gpus()?;
            if args.json {
                return print_json(&gpus);
            }
            t.set_header(vec![
                "key",
                "name",
                "memory",
                "GB/s",
                "fp16 TFLOP/s",
                "int8 TOP/s",
                "$/h",
                "profile",
            ]);
            for g in &gpus {
                let d = &g.datasheet;
                t.add_row(vec![
                    g.key.clone(),
                    g.name.clone(),
                    format!("{:.0} GiB", d.memory_mib as f64 / 1024.0),
                    format!("{}", d.bandwidth_gbs),
                    format!("{}", d.fp16_tflops),
                    format!("{}", d.int8_tops),
                    format!("{:.2}", d.price_per_hour),
                    if g.measured.is_some() {
                        "measured".into()
                    } else {
                        "derived".into()
                    },
                ]);
            }
        }
        What::Models => {
            let models = catalog::models()?;
            if args.json {
                return print_json(&models);
            }
            t.set_header(vec![
                "key", "params", "layers", "hidden", "heads/kv", "context", "source",
            ]);
            for m in &models {
                t.add_row(vec![
                    m.key.clone(),
                    format!("{:.2} B", m.params().total() as f64 / 1e9),
                    m.layers.to_string(),
                    m.hidden.to_string(),
                    format!("{}/{}", m.heads, m.kv_heads),
                    m.max_context.to_string(),
                    m.source.clone(),
                ]);
            }
        }
        What::Quants => {
            if args.json {
                let v: Vec<_> = Quant::ALL
                    .iter()
                    .map(|q| serde_json::json!({"key": q.key(), "description": q.describe()}))
                    .collect();
                return print_json(&v);
            }
            t.set_header(vec!["key", "description"]);
            for q in Quant::ALL {
                t.add_row(vec![q.key(), q.describe()]);
            }
        }
        What::Scenarios => {
            let list = crate::scenario_list()?;
            if args.json {
                return print_json(&list);
            }
            t.set_header(vec!["key", "description"]);
            for (k, d) in list {
                t.add_row(vec![k, d]);
            }
        }
    }
    println!("{t}");
    Ok(())
}
