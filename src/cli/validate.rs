//! `cardplan validate` (not built yet: owned by a later issue).

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cardplan validate --help")]
pub struct ValidateArgs {}

pub fn run(_args: ValidateArgs) -> Result<()> {
    Err(Error::NotImplemented("cardplan validate"))
}
