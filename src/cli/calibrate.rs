//! `cardplan calibrate` (not built yet: owned by a later issue).

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cardplan calibrate --help")]
pub struct CalibrateArgs {}

pub fn run(_args: CalibrateArgs) -> Result<()> {
    Err(Error::NotImplemented("cardplan calibrate"))
}
