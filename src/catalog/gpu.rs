//! GPU datasheets: the roofs a GPU you don't own is scaled to.

use serde::{Deserialize, Serialize};

/// GPU architecture family; a derived profile prefers a measured GPU of the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Turing,
    Ampere,
    Ada,
    Hopper,
    Blackwell,
}

/// Datasheet figures (dense, no sparsity) and a default rental price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasheet {
    pub arch: Arch,
    /// Memory the driver reports (MiB): what allocators can actually use.
    pub memory_mib: u64,
    /// Peak memory bandwidth, GB/s (10^9 bytes).
    pub bandwidth_gbs: f64,
    /// Dense fp16 tensor rate with fp32 accumulation (what serving engines use), TFLOP/s.
    /// GeForce cards run this at half their fp16-accumulate rate.
    pub fp16_tflops: f64,
    /// Dense fp16 tensor rate with fp16 accumulation, TFLOP/s (equal to `fp16_tflops` off GeForce).
    pub fp16_acc16_tflops: f64,
    /// Dense int8 tensor rate, TOP/s.
    pub int8_tops: f64,
    /// Dense fp8 tensor rate, TFLOP/s, where the GPU has fp8.
    #[serde(default)]
    pub fp8_tflops: Option<f64>,
    /// Dense fp4 tensor rate, TFLOP/s, where the GPU has fp4 tensor cores (Blackwell); what a
    /// native MXFP4/NVFP4 weight path could reach. Not used for pricing yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp4_tflops: Option<f64>,
    pub sm_count: u32,
    pub l2_mb: f64,
    pub power_w: f64,
    /// Default price per GPU-hour in USD (overridable by `--price-per-hour`).
    pub price_per_hour: f64,
    /// Where the price comes from.
    pub price_source: String,
    /// Where the datasheet figures come from.
    pub source: String,
}

impl Datasheet {
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib * 1024 * 1024
    }

    pub fn validate(&self, origin: &str) -> Result<(), String> {
        let positive = [
            ("bandwidth_gbs", self.bandwidth_gbs),
            ("fp16_tflops", self.fp16_tflops),
            ("fp16_acc16_tflops", self.fp16_acc16_tflops),
            ("int8_tops", self.int8_tops),
            ("l2_mb", self.l2_mb),
            ("power_w", self.power_w),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!(
                    "{origin}: `{name}` must be a positive number, got {v}"
                ));
            }
        }
        for (name, v) in [
            ("fp8_tflops", self.fp8_tflops),
            ("fp4_tflops", self.fp4_tflops),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!(
                        "{origin}: `{name}` must be a positive number or absent, got {v}"
                    ));
                }
            }
        }
        if !(self.price_per_hour.is_finite() && self.price_per_hour >= 0.0) {
            return Err(format!("{origin}: `price_per_hour` must be >= 0"));
        }
        if self.memory_mib == 0 || self.sm_count == 0 {
            return Err(format!(
                "{origin}: `memory_mib` and `sm_count` must be positive"
            ));
        }
        Ok(())
    }
}
