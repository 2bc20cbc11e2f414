//! The integration tests, one binary: the library's public contracts and the CLI end to end.

mod common;

mod answers;
mod calibrate_moe;
mod calibrate_profiles;
mod calibrate_quant;
mod calibrate_quant_paths;
mod calibrate_sweep;
mod calibrate_writer;
mod cost_model;
mod cost_step_cli;
mod error_bars;
mod foundation;
mod fuzz;
mod give_up;
mod layering;
mod moe;
mod mxfp4;
mod plan_acceptance;
mod plan_cli;
mod prefix_cache;
mod quant_schemes;
mod report_cli;
mod report_write;
mod sim_cli;
mod sim_props;
mod tensor_parallel;
mod validate;
mod whatif_shard;
