//! `cardplan simulate` (not built yet: owned by a later issue).

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cardplan simulate --help")]
pub struct SimulateArgs {}

pub fn run(_args: SimulateArgs) -> Result<()> {
    Err(Error::NotImplemented("cardplan simulate"))
}
