//! The whole answer to "N users on this GPU": the structure printed as JSON and rendered by
//! the terminal and report writers.

use serde::{Deserialize, Serialize};

use super::cards::CostEstimate;
use super::limit::Limit;
use super::model_error::PlanInterval;
use super::planner::{AtLoad, SweepPoint, Window};
use super::search::Capacity;
use super::sensitivity::Sensitivity;
use super::slo::Slo;
use crate::cost::ProfileInfo;
use crate::fit::FitReport;

/// What was asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Question {
    pub users: u64,
    pub gpu: String,
    pub gpu_name: String,
    pub model: String,
    pub quant: String,
    /// How the checkpoint stores its MoE experts when not in the scheme (gpt-oss: mxfp4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<String>,
    pub kv: String,
    pub engine: String,
    pub scenario: String,
}

/// Users one card serves within the SLO.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsersPerCard {
    pub estimate: u64,
    pub low: u64,
    pub high: u64,
    pub confidence: f64,
    /// Each replication's capacity.
    pub per_replication: Vec<u64>,
    /// True when the search hit its upper limit: the card may serve more.
    pub capped: bool,
    pub simulations: usize,
}

/// A server of several GPUs: what it serves and how many are needed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerVerdict {
    pub gpus: u32,
    pub users_per_server: UsersPerCard,
    pub servers_needed: Option<u64>,
    pub servers_with_spare: Option<u64>,
    pub servers_range: Option<(u64, u64)>,
    /// Where the all-reduce times come from.
    pub interconnect: String,
}

impl UsersPerCard {
    /// The same capacity per GPU of a server of `gpus` (rounded down).
    pub fn per_gpu(&self, gpus: u32) -> UsersPerCard {
        let g = u64::from(gpus.max(1));
        UsersPerCard {
            estimate: self.estimate / g,
            low: self.low / g,
            high: self.high / g,
            per_replication: self.per_replication.iter().map(|u| u / g).collect(),
            ..self.clone()
        }
    }

    pub fn from(c: &Capacity) -> Self {
        UsersPerCard {
            estimate: c.estimate.floor() as u64,
            low: c.low.floor() as u64,
            high: c.high.floor() as u64,
            confidence: c.confidence,
            per_replication: c.replications.iter().map(|r| r.capacity).collect(),
            capped: c.capped,
            simulations: c.evaluations,
        }
    }
}

/// The SLO and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloInfo {
    #[serde(flatten)]
    pub slo: Slo,
    /// `scenario <key>` or `command line`.
    pub source: String,
    pub text: String,
}

/// The engine limits the simulation used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineInfo {
    pub key: String,
    pub policy: String,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub gpu_memory_utilization: f64,
    /// Automatic prefix caching on (vLLM V1's default).
    pub prefix_caching: bool,
    /// The host-time model in words.
    pub host: String,
    pub source: String,
}

/// Everything the number rests on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assumptions {
    pub scenario: String,
    pub scenario_description: String,
    /// Share of all users in a session at the peak hour.
    pub active_share: f64,
    /// Users in a session at the peak, for the whole population.
    pub active_sessions_total: u64,
    pub turns_mean: f64,
    pub think_time_s_mean: f64,
    pub prompt_tokens_mean: f64,
    pub output_tokens_mean: f64,
    pub context_growth: bool,
    /// Share of each prompt repeating the start of its session (prefix caching reuses it).
    #[serde(default)]
    pub prompt_reuse: f64,
    /// The scenario's assumptions in words, with their sources.
    pub scenario_assumptions: Vec<String>,
    pub slo: String,
    /// Measured window and warm-up (seconds) of each simulated peak.
    pub window: Window,
    pub warmup_s: f64,
    pub replications: usize,
    pub seed: u64,
    pub engine: EngineInfo,
    pub kv_blocks: Option<u64>,
    pub kv_tokens: Option<u64>,
    pub max_context: Option<u32>,
    pub hours_per_month: f64,
    pub price_per_hour: f64,
    pub price_source: String,
    /// Cards run all month (a peak-hour sizing: off-peak hours are paid for too).
    pub billing: String,
}

/// The full answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanResult {
    pub question: Question,
    pub fits: bool,
    pub fit: FitReport,
    /// GPUs per server (the tensor-parallel size); 1 when a server is one card.
    pub tp: u32,
    /// Why this TP: given with `--tp`, or chosen by `--tp auto`.
    pub tp_reason: String,
    /// The answer per server of `tp` GPUs, the unit that was simulated (absent at TP 1, where
    /// server and card are the same). Every `cards_*` figure counts GPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerVerdict>,
    /// Users per GPU: a server's capacity divided by its GPUs.
    pub users_per_card: Option<UsersPerCard>,
    pub cards_needed: Option<u64>,
    pub cards_with_spare: Option<u64>,
    /// Cards at the high and the low end of the capacity interval (the second: the conservative
    /// answer, every card at the low end).
    pub cards_range: Option<(u64, u64)>,
    pub slo: SloInfo,
    pub at_load: Option<AtLoad>,
    pub cost: Option<CostEstimate>,
    pub assumptions: Assumptions,
    pub sensitivity: Vec<Sensitivity>,
    /// The SLO at the lightest load (one user, one active session).
    pub light_load: Option<LightLoad>,
    /// What limited capacity, from the simulation at the first load that failed.
    pub limit: Option<Limit>,
    pub profile: Option<ProfileInfo>,
    /// Users per card with the model's own error folded in (`None` when not asked for).
    pub interval: Option<PlanInterval>,
    /// Caveats in words.
    pub notes: Vec<String>,
    /// Metrics at loads around the capacity (for the report's charts; not part of the JSON).
    #[serde(skip)]
    pub load_sweep: Vec<SweepPoint>,
}

/// The SLO with a single active session, per simulated window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LightLoad {
    pub slo_met: usize,
    pub windows: usize,
}

/// What to compute beyond users per card and cards.
#[derive(Debug, Clone, Copy)]
pub struct PlanWork {
    pub at_load: bool,
    /// Replications per sensitivity case; 0 skips them.
    pub sensitivity_replications: usize,
    /// Loads simulated around the capacity for charts; 0 skips the sweep.
    pub sweep_points: usize,
}
