//! `cardplan step` (not built yet: owned by a later issue).

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cardplan step --help")]
pub struct StepArgs {}

pub fn run(_args: StepArgs) -> Result<()> {
    Err(Error::NotImplemented("cardplan step"))
}
