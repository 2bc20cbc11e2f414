//! `cardplan whatif` (not built yet: owned by a later issue).

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cardplan whatif --help")]
pub struct WhatifArgs {}

pub fn run(_args: WhatifArgs) -> Result<()> {
    Err(Error::NotImplemented("cardplan whatif"))
}
