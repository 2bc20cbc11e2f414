//! cardplan: how many end users can one GPU serve at >= 10 tokens/s each?
//!
//! Data flows one way: kernels → [`calibrate`] → [`profile`] → [`cost`] → [`sim`] → [`plan`] →
//! [`report`], with [`catalog`] supplying models, GPUs, schemes and engines.

pub mod calibrate;
pub mod catalog;
pub mod cli;
pub mod cost;
pub mod deploy;
pub mod error;
pub mod fit;
pub mod fsutil;
pub mod plan;
pub mod profile;
pub mod report;
pub mod sim;
pub mod step;
pub mod units;
pub mod validate;
pub mod yaml;

pub use error::{Error, Result};

/// Scenario keys and one-line descriptions, for `cardplan list scenarios`.
pub use catalog::scenario::scenario_list;
