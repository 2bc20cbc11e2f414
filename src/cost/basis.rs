//! What a GPU's step times rest on: its own measured tables, tables derived for it from a measured
//! GPU, or — where nothing was measured — the default efficiency set on its datasheet roofs.
//! Resolved once from the target and the measured profiles the caller supplies (the deployment
//! layer passes the catalog's), so the cost model never looks anything up.

use serde::{Deserialize, Serialize};

use super::transfer;
use crate::profile::GpuProfile;

/// Where a profile's kernel tables come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileKind {
    /// Timed on this GPU by `cardplan calibrate`.
    Measured,
    /// Scaled from a measured GPU by datasheet roofs.
    Derived,
    /// Nothing measured anywhere: the default efficiency set on this GPU's datasheet.
    DatasheetRoofline,
}

impl ProfileKind {
    pub fn key(self) -> &'static str {
        match self {
            ProfileKind::Measured => "measured",
            ProfileKind::Derived => "derived",
            ProfileKind::DatasheetRoofline => "datasheet-roofline",
        }
    }
}

impl std::fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Which profile a prediction rests on, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileInfo {
    /// GPU key of the target.
    pub gpu: String,
    pub kind: ProfileKind,
    /// What it was measured on / derived from, in words.
    pub source: String,
}

/// The tables to price a GPU with, and what they are.
#[derive(Debug, Clone)]
pub struct PricingBasis {
    /// The GPU being priced (its datasheet sets the roofs).
    pub target: GpuProfile,
    /// Its own measured profile or one derived for it; `None`: the default efficiency set.
    pub tables: Option<GpuProfile>,
    pub info: ProfileInfo,
    /// L2 of the GPU the tables were measured on, bytes (the in-graph correction needs it).
    pub tables_l2_bytes: f64,
}

/// Bytes of L2 of a datasheet given in MB (10^6 bytes).
fn l2_bytes(l2_mb: f64) -> f64 {
    l2_mb * 1e6
}

impl PricingBasis {
    /// The basis for `target`: its own tables when it carries them, else tables derived from the
    /// nearest of `measured`, else the default efficiency set.
    pub fn resolve(target: &GpuProfile, measured: &[GpuProfile]) -> PricingBasis {
        if let Some(m) = &target.measured {
            let p = &m.provenance;
            let (kind, source, l2_mb) = match &p.derived_from {
                Some(d) => (
                    ProfileKind::Derived,
                    transfer::derivation_note(&target.key, p, d),
                    d.l2_mb,
                ),
                None => (
                    ProfileKind::Measured,
                    format!(
                        "measured on {} ({} SMs, driver {}, CUDA {}) at {}, cardplan {} {}",
                        p.device,
                        p.sm_count,
                        p.driver,
                        p.cuda,
                        p.date,
                        p.cardplan_version,
                        p.git_rev
                    ),
                    target.datasheet.l2_mb,
                ),
            };
            return Self::with_tables(target, target.clone(), kind, source, l2_mb);
        }
        if let Some(src) = transfer::pick_source(target, measured)
            && let Some(derived) = transfer::derive(src, target)
        {
            let provenance = derived.measured.as_ref().map(|m| &m.provenance);
            let (kind, source) = match provenance.and_then(|p| Some((p, p.derived_from.as_ref()?)))
            {
                Some((p, d)) => (
                    ProfileKind::Derived,
                    transfer::derivation_note(&target.key, p, d),
                ),
                // the same key and datasheet as a measured GPU: its own tables
                None => (ProfileKind::Measured, format!("derived from {}", src.key)),
            };
            let l2_mb = src.datasheet.l2_mb;
            return Self::with_tables(target, derived, kind, source, l2_mb);
        }
        PricingBasis {
            target: target.clone(),
            tables: None,
            info: ProfileInfo {
                gpu: target.key.clone(),
                kind: ProfileKind::DatasheetRoofline,
                source: format!(
                    "no measured profile in the catalog: {}'s datasheet ({} GB/s, {} fp16 TFLOP/s) \
                     at the default efficiency set (src/cost/defaults.rs)",
                    target.key, target.datasheet.bandwidth_gbs, target.datasheet.fp16_tflops
                ),
            },
            tables_l2_bytes: l2_bytes(target.datasheet.l2_mb),
        }
    }

    fn with_tables(
        target: &GpuProfile,
        tables: GpuProfile,
        kind: ProfileKind,
        source: String,
        l2_mb: f64,
    ) -> PricingBasis {
        PricingBasis {
            target: target.clone(),
            tables: Some(tables),
            info: ProfileInfo {
                gpu: target.key.clone(),
                kind,
                source,
            },
            tables_l2_bytes: l2_bytes(l2_mb),
        }
    }

    /// The profile derived for this GPU from a measured one; `None` when the GPU's own tables or
    /// the default efficiency set are used.
    pub fn derived_profile(&self) -> Option<&GpuProfile> {
        self.tables
            .as_ref()
            .filter(|p| p.key != self.target.key || p.measured != self.target.measured)
    }
}
