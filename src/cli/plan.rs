//! `cardplan plan` (not built yet: owned by a later issue).

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cardplan plan --help")]
pub struct PlanArgs {}

pub fn run(_args: PlanArgs) -> Result<()> {
    Err(Error::NotImplemented("cardplan plan"))
}
