//! What tensor parallelism adds to a step: the all-reduces of every layer, the gather of the
//! logits and the per-step hand-off between the engine's worker processes.
//!
//! Megatron-style TP ends each attention block and each MLP with a row-parallel linear layer
//! whose partial sums are all-reduced over `T × hidden` fp16 activations; the vocab-parallel
//! embedding adds one more; the vocab-parallel LM head gathers each rank's slice of the logits.
//! The time of one all-reduce comes from a measured table when the GPU's profile has one for this
//! TP, else from the catalog's interconnect model (see [`crate::catalog::interconnect`]).

use serde::Serialize;

use crate::catalog::interconnect::Interconnect;
use crate::profile::AllReduceTable;

/// Per step, the scheduler's output reaches every worker process and their results come back:
/// vLLM V1's shared-memory broadcast between processes, tens of µs on a server CPU (cardplan
/// estimate, not measured). Paid only when TP > 1.
pub const TP_STEP_SYNC_S: f64 = 40e-6;

/// Where all-reduce times come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum CommSource {
    /// One GPU: nothing to communicate.
    None,
    /// Timed on this GPU model by `cardplan calibrate`.
    Measured { gpu: String, tp: u32 },
    /// The interconnect model from the GPU catalog's published figures.
    Model { link: String, source: String },
}

impl CommSource {
    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            CommSource::None => "one GPU: no all-reduce".into(),
            CommSource::Measured { gpu, tp } => {
                format!("all-reduce measured on {gpu} at TP {tp} (calibrator table)")
            }
            CommSource::Model { link, .. } => {
                format!("all-reduce modelled from published figures: {link}")
            }
        }
    }
}

/// How one deployment's GPUs communicate.
#[derive(Debug, Clone)]
pub struct Comm {
    pub tp: u32,
    link: Option<Interconnect>,
    table: Option<AllReduceTable>,
    pub source: CommSource,
}

impl Comm {
    /// One GPU.
    pub fn single() -> Comm {
        Comm {
            tp: 1,
            link: None,
            table: None,
            source: CommSource::None,
        }
    }

    /// `tp` GPUs over `link`, with the measured table for this TP when `gpu`'s profile has one.
    pub fn new(gpu: &str, tp: u32, link: &Interconnect, tables: &[AllReduceTable]) -> Comm {
        if tp <= 1 {
            return Comm::single();
        }
        let table = tables
            .iter()
            .find(|t| t.tp == tp && t.points.len() >= 2)
            .cloned();
        let source = match &table {
            Some(_) => CommSource::Measured {
                gpu: gpu.to_string(),
                tp,
            },
            None => CommSource::Model {
                link: link.describe(),
                source: link.source.clone(),
            },
        };
        Comm {
            tp,
            link: Some(link.clone()),
            table,
            source,
        }
    }

    /// Seconds of one all-reduce of `bytes`.
    pub fn allreduce_s(&self, bytes: f64) -> f64 {
        if self.tp <= 1 {
            return 0.0;
        }
        if let Some(t) = &self.table {
            return t.seconds(bytes);
        }
        self.link
            .as_ref()
            .map_or(0.0, |l| l.allreduce_s(bytes, self.tp))
    }

    /// Seconds to gather `bytes_per_rank` from every rank onto one. A measured all-reduce of the
    /// whole tensor bounds it from above (an all-reduce moves twice what a gather does); without
    /// a table the link model prices it directly.
    pub fn gather_s(&self, bytes_per_rank: f64) -> f64 {
        if self.tp <= 1 {
            return 0.0;
        }
        if let Some(t) = &self.table {
            return 0.5 * t.seconds(bytes_per_rank * f64::from(self.tp));
        }
        self.link
            .as_ref()
            .map_or(0.0, |l| l.gather_s(bytes_per_rank, self.tp))
    }

    /// The per-step process hand-off ([`TP_STEP_SYNC_S`] when TP > 1).
    pub fn step_sync_s(&self) -> f64 {
        if self.tp > 1 { TP_STEP_SYNC_S } else { 0.0 }
    }
}
