//! Cost model: the time of one serving step, from measured kernel tables (or tables derived
//! from a measured GPU for one you don't own).
//!
//! [`PricingBasis`] says which tables a GPU is priced with; [`StepCost`] prices a step from them.
//! Modules: [`roofline`] (bytes and FLOPs per kernel), [`interp`] (table interpolation),
//! [`tables`] (pricing any shape from a profile), [`graph`] (kernels timed one at a time →
//! kernels replayed in a CUDA graph), [`transfer`] (deriving a profile for a GPU you don't own), [`moe`] (mixture-of-experts
//! feed-forward blocks),
//! [`defaults`] (efficiencies used where nothing was measured), `explain` (the caveats behind a
//! breakdown). What a step is made of, and the trait the simulator prices it through, live in
//! [`crate::step`].

pub mod basis;
pub mod comm;
pub mod defaults;
mod explain;
pub mod graph;
pub mod interp;
pub mod moe;
pub mod roofline;
mod step_cost;
pub mod tables;
pub mod transfer;

use serde::Serialize;

pub use basis::{PricingBasis, ProfileInfo, ProfileKind};
pub use comm::{Comm, CommSource};
pub use step_cost::StepCost;

/// Time of one step, split by component (seconds).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StepBreakdown {
    pub linear: f64,
    pub attention: f64,
    pub lm_head: f64,
    pub elementwise: f64,
    pub overhead: f64,
    /// Tensor-parallel communication: all-reduces, the logits gather, the per-step hand-off.
    pub comm: f64,
    /// Caveats, e.g. "prefill of 20000 tokens beyond the measured range (16384)".
    pub notes: Vec<String>,
}

impl StepBreakdown {
    pub fn total(&self) -> f64 {
        self.linear + self.attention + self.lm_head + self.elementwise + self.overhead + self.comm
    }
}
