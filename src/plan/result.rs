//! The whole answer to "N users on this GPU": the structure printed as JSON and rendered by
//! the terminal and report writers.

use serde::Serialize;

use super::cost::{CostEstimate, HOURS_PER_MONTH};
use super::planner::{
    AtLoad, PlanInputs, Planner, Prepare, Sensitivity, Verdict, Window, at_load, sensitivity,
    verdict, verdict_cost,
};
use super::search::Capacity;
use super::slo::Slo;
use crate::cost::{ProfileInfo, ProfileKind};
use crate::error::Result;
use crate::fit::FitReport;
use crate::sim::Load;

/// What was asked.
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    pub users: u64,
    pub gpu: String,
    pub gpu_name: String,
    pub model: String,
    pub quant: String,
    pub kv: String,
    pub engine: String,
    pub scenario: String,
}

/// Users one card serves within the SLO.
#[derive(Debug, Clone, Serialize)]
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

impl UsersPerCard {
    fn from(c: &Capacity) -> Self {
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
#[derive(Debug, Clone, Serialize)]
pub struct SloInfo {
    #[serde(flatten)]
    pub slo: Slo,
    /// `scenario <key>` or `command line`.
    pub source: String,
    pub text: String,
}

/// The engine limits the simulation used.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub key: String,
    pub policy: String,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub gpu_memory_utilization: f64,
    pub source: String,
}

/// Everything the number rests on.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct PlanResult {
    pub question: Question,
    pub fits: bool,
    pub fit: FitReport,
    pub users_per_card: Option<UsersPerCard>,
    pub cards_needed: Option<u64>,
    pub cards_with_spare: Option<u64>,
    /// Cards at the high and the low end of the users-per-card interval.
    pub cards_range: Option<(u64, u64)>,
    /// Cards if sized by the worst simulated peak window's capacity (the conservative answer).
    pub cards_all_windows: Option<u64>,
    pub slo: SloInfo,
    pub at_load: Option<AtLoad>,
    pub cost: Option<CostEstimate>,
    pub assumptions: Assumptions,
    pub sensitivity: Vec<Sensitivity>,
    /// The SLO at the lightest load (one user, one active session).
    pub light_load: Option<LightLoad>,
    pub profile: Option<ProfileInfo>,
    /// Caveats in words.
    pub notes: Vec<String>,
    /// The planner, for follow-up simulations (charts); not part of the JSON.
    #[serde(skip)]
    pub planner: Option<std::sync::Arc<Planner>>,
}

/// The SLO with a single active session, per simulated window.
#[derive(Debug, Clone, Copy, Serialize)]
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
}

/// Answer the question for `users` users.
pub fn plan(
    inputs: PlanInputs,
    users: u64,
    price_per_hour: f64,
    price_source: &str,
    slo_source: &str,
    work: PlanWork,
) -> Result<PlanResult> {
    let sc = inputs.scenario.clone();
    let question = Question {
        users,
        gpu: inputs.gpu.key.clone(),
        gpu_name: inputs.gpu.name.clone(),
        model: inputs.model.key.clone(),
        quant: inputs.quant.to_string(),
        kv: inputs.kv.to_string(),
        engine: inputs.engine.key.clone(),
        scenario: sc.key.clone(),
    };
    let warmup_s = Load::Users(users.max(1)).default_warmup_s(&sc);
    let mut assumptions = Assumptions {
        scenario: sc.key.clone(),
        scenario_description: sc.description.clone(),
        active_share: sc.session.active_share,
        active_sessions_total: Load::active_sessions(users.max(1), &sc),
        turns_mean: sc.session.turns.mean(),
        think_time_s_mean: sc.session.think_time_s.mean(),
        prompt_tokens_mean: sc.prompt_tokens.mean(),
        output_tokens_mean: sc.output_tokens.mean(),
        context_growth: sc.session.context_growth,
        scenario_assumptions: sc.assumptions.clone(),
        slo: inputs.slo.describe(),
        window: inputs.window,
        warmup_s,
        replications: inputs.search.replications,
        seed: inputs.search.base_seed,
        engine: EngineInfo {
            key: inputs.engine.key.clone(),
            policy: inputs.engine.policy.to_string(),
            max_num_seqs: inputs.engine.max_num_seqs,
            max_num_batched_tokens: inputs.engine.max_num_batched_tokens,
            gpu_memory_utilization: inputs.engine.gpu_memory_utilization,
            source: inputs.engine.source.clone(),
        },
        kv_blocks: None,
        kv_tokens: None,
        max_context: None,
        hours_per_month: HOURS_PER_MONTH,
        price_per_hour,
        price_source: price_source.to_string(),
        billing: "cards are paid for 730 h a month (sized for the peak hour, rented all month)"
            .into(),
    };
    let slo = SloInfo {
        slo: inputs.slo,
        source: slo_source.to_string(),
        text: inputs.slo.describe(),
    };
    let planner = match Planner::prepare(inputs)? {
        Prepare::DoesNotFit(fit) => {
            let note = format!(
                "{} ({}) does not fit on {}: {} (short by {})",
                question.model,
                question.quant,
                question.gpu,
                fit.reason,
                crate::fit::gb(fit.shortfall_bytes)
            );
            return Ok(PlanResult {
                question,
                fits: false,
                fit,
                users_per_card: None,
                cards_needed: None,
                cards_with_spare: None,
                cards_range: None,
                cards_all_windows: None,
                slo,
                at_load: None,
                cost: None,
                assumptions,
                sensitivity: Vec::new(),
                light_load: None,
                profile: None,
                notes: vec![note],
                planner: None,
            });
        }
        Prepare::Fits(p) => std::sync::Arc::new(*p),
    };
    assumptions.kv_blocks = Some(planner.deployment.kv_blocks);
    assumptions.kv_tokens =
        Some(planner.deployment.kv_blocks * u64::from(planner.inputs.engine.block_size));
    assumptions.max_context = Some(planner.deployment.max_context);
    let cap = planner.capacity()?;
    let mut v = verdict(users, &cap);
    let mut notes = Vec::new();
    // One user (one active session) tells load-bound from latency-bound: if the SLO fails
    // without any load, more cards cannot fix it.
    let light = at_load(&planner, 1)?;
    let light_load = LightLoad {
        slo_met: light.slo_met,
        windows: light.slo_stats.len(),
    };
    if light_load.slo_met * 2 < light_load.windows {
        v = Verdict {
            cards_needed: None,
            cards_with_spare: None,
            cards_range: None,
            cards_all_windows: None,
            users_per_card_at_load: None,
        };
        notes.push(format!(
            "a single active session misses the SLO in {} of {} simulated windows: the limit is \
             per-request latency on this GPU (long prompts or outputs), not load, so more cards do \
             not help; a faster GPU, a smaller scheme or a looser SLO is needed",
            light_load.windows - light_load.slo_met,
            light_load.windows
        ));
    } else if light_load.slo_met < light_load.windows {
        notes.push(format!(
            "even a single active session misses the SLO in {} of {} simulated windows: the \
             number is close to a latency limit, not only a load limit",
            light_load.windows - light_load.slo_met,
            light_load.windows
        ));
    }
    if cap.capped {
        notes.push(format!(
            "the search stopped at its limit of {} users per card: the card may serve more",
            planner.inputs.search.max_users
        ));
    }
    if v.cards_needed.is_none() && light_load.slo_met * 2 >= light_load.windows {
        notes.push(
            "one card does not meet the SLO even for a single user: no number of cards is enough \
             (a faster GPU, a smaller scheme or a looser SLO is needed)"
                .into(),
        );
    }
    let at = match v.users_per_card_at_load {
        Some(u) if work.at_load && u > 0 => Some(at_load(&planner, u)?),
        _ => None,
    };
    if let Some(a) = &at
        && a.slo_met < a.slo_stats.len()
    {
        notes.push(format!(
            "at {} users per card the SLO was met in {} of {} simulated peak windows: \
             the estimate is a mean, plan with the spare card or the low end of the interval",
            a.users,
            a.slo_met,
            a.slo_stats.len()
        ));
    }
    if let Some(a) = &at
        && a.metrics.requests < 200
    {
        notes.push(format!(
            "only {} requests were measured per peak window at this load: tail percentiles \
             are coarse; a larger --window-requests gives steadier numbers",
            a.metrics.requests
        ));
    }
    let sens = if work.sensitivity_replications > 0 && cap.estimate >= 1.0 {
        sensitivity(&planner, cap.estimate, work.sensitivity_replications)?
    } else {
        Vec::new()
    };
    let profile = Some(planner.profile_info().clone());
    if let Some(p) = &profile
        && p.kind != ProfileKind::Measured
    {
        notes.push(format!(
            "step times are {} ({}), not measured on this GPU",
            p.kind, p.source
        ));
    }
    Ok(PlanResult {
        question,
        fits: true,
        fit: planner.deployment.fit.clone(),
        users_per_card: Some(UsersPerCard::from(&cap)),
        cards_needed: v.cards_needed,
        cards_with_spare: v.cards_with_spare,
        cards_range: v.cards_range,
        cards_all_windows: v.cards_all_windows,
        slo,
        at_load: at,
        cost: verdict_cost(users, &v, price_per_hour, price_source),
        assumptions,
        sensitivity: sens,
        light_load: Some(light_load),
        profile,
        notes,
        planner: Some(planner),
    })
}
