//! `cardplan validate`: predictions next to published measurements.

use clap::Args;

use super::common::print_json;
use crate::error::Result;
use crate::report::{self, validate::ValidationView};
use crate::validate;

const EXAMPLES: &str = "Examples:
  cardplan validate
  cardplan validate --json
  cardplan validate --markdown     # the README's Accuracy table";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ValidateArgs {
    /// Print JSON (a list of rows with `name`, `measured`, `predicted`, `errors`).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print a Markdown table (what the README's "Accuracy" section holds).
    #[arg(long)]
    pub markdown: bool,
}

pub fn run(args: ValidateArgs) -> Result<()> {
    let rows = validate::run_all()?;
    let ratios = validate::quant_ratio::run_all()?;
    let view = ValidationView {
        summary: validate::accuracy(&rows),
        rows: &rows,
        quant_ratio_summary: validate::quant_ratio::summary(&ratios),
        quant_ratio: &ratios,
    };
    if args.json {
        return print_json(&view);
    }
    if args.markdown {
        print!("{}", report::validate::markdown(&view));
    } else {
        print!("{}", report::validate::terminal(&view));
        print!("{}", report::validate::ratio_terminal(&view));
    }
    Ok(())
}
