//! The simulated server (placeholder while the scheduler is being written).

use super::{SimConfig, SimOutput};
use crate::cost::StepTime;
use crate::error::{Error, Result};

pub(crate) fn simulate(_cost: &dyn StepTime, _cfg: &SimConfig) -> Result<SimOutput> {
    Err(Error::NotImplemented("the simulator core"))
}
