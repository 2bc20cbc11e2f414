//! Planning: SLO evaluation, capacity search, cards needed and their cost.
//!
//! [`search`] and [`cost`] know nothing about the simulator: the search takes any
//! `pass(users, seed)` rule, so its logic is tested with synthetic cards. [`planner`] wires it
//! to the simulator; [`result`] is the answer as printed and serialised.

pub mod cost;
pub mod planner;
pub mod result;
pub mod search;
pub mod slo;
