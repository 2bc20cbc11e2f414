//! Planning: SLO evaluation, capacity search, cards needed and their cost.
//!
//! [`search`] and [`cards`] know nothing about the simulator: the search takes any
//! `pass(users, seed)` rule, so its logic is tested with synthetic cards. [`planner`] wires it
//! to a deployment and the simulator; [`answer`] assembles the whole answer ([`result`]), with
//! [`verdict`] (cards) and [`sensitivity`] (what if the assumptions are off).

pub mod answer;
pub mod cards;
pub mod error_bars;
pub mod limit;
pub mod model_error;
pub mod planner;
pub mod result;
pub mod search;
pub mod sensitivity;
pub mod slo;
pub mod verdict;

pub use answer::{PlanRequest, plan};
