//! `cardplan validate`: predictions next to published measurements, and the distribution of the
//! model's error that `cardplan plan` folds into its interval.

use std::path::PathBuf;

use clap::Args;

use super::common::print_json;
use crate::error::Result;
use crate::fsutil::check_writable;
use crate::report::{self, doc::write_report, validate::ValidationView};
use crate::validate;

const EXAMPLES: &str = "Examples:
  cardplan validate
  cardplan validate --json
  cardplan validate --markdown          # the README's Accuracy section
  cardplan validate --leave-one-out     # intervals built without each dataset, applied to it
  cardplan validate --report out/       # report.html with a predicted-vs-measured chart per metric";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ValidateArgs {
    /// Print JSON (`rows` with `name`, `measured`, `predicted`, `errors`; `metrics`: the signed
    /// log error per metric; `leave_one_out` with --leave-one-out).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print Markdown (what the README's "Accuracy" section holds).
    #[arg(long)]
    pub markdown: bool,
    /// Also check the 90% intervals: built without each dataset, applied to it.
    #[arg(long)]
    pub leave_one_out: bool,
    /// Write report.md, report.html and a predicted-vs-measured SVG chart per metric here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// With --report, also write each chart as PNG.
    #[arg(long, requires = "report")]
    pub png: bool,
}

pub fn run(args: ValidateArgs) -> Result<()> {
    if let Some(dir) = &args.report {
        check_writable(dir)?;
    }
    let sets = validate::record::run_datasets()?;
    let ratios = validate::quant_ratio::run_all()?;
    let view = ValidationView::new(&sets, args.leave_one_out, &ratios);
    if args.json {
        print_json(&view)?;
    } else if args.markdown {
        print!("{}", report::validate::markdown(&view));
    } else {
        print!("{}", report::validate::terminal(&view));
        print!("{}", report::validate::ratio_terminal(&view));
    }
    if let Some(dir) = &args.report {
        let doc = report::validate_doc::document(&view);
        let w = write_report(dir, &doc, args.png)?;
        eprintln!("report written to {}", w.html.display());
    }
    Ok(())
}
