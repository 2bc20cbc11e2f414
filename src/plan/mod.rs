//! Planning: SLO evaluation, capacity search, cards needed and their cost.
//!
//! [`search`] and [`cost`] know nothing about the simulator: the search takes any
//! `pass(users, seed)` rule, so its logic is tested with synthetic cards.

pub mod cost;
pub mod search;
pub mod slo;
