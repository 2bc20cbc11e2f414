//! The whole answer to "N users on this GPU": fit, capacity search, verdict, the load a single
//! user puts on the card, sensitivity, and the caveats, assembled into a [`PlanResult`].

use super::cards::HOURS_PER_MONTH;
use super::limit::{Cause, Limit, diagnose, search_limit};
use super::model_error::{ModelErrorRequest, PlanInterval, fold, unavailable};
use super::planner::{AtLoad, PlanSpec, Planner, Prepare, Tick, at_load, load_grid, sweep};
use super::result::{
    Assumptions, EngineInfo, LightLoad, PlanResult, PlanWork, Question, ServerVerdict, SloInfo,
    UsersPerCard,
};
use super::search::Capacity;
use super::sensitivity::sensitivity;
use super::verdict::{Verdict, in_gpus, verdict, verdict_cost};
use crate::catalog::engine::EnginePreset;
use crate::deploy::Target;
use crate::error::Result;
use crate::fit::FitReport;
use crate::sim::Load;

/// A question to answer: `users` end users on `target` under `engine`, with `spec`'s traffic,
/// SLO and search, at `price_per_hour`.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub users: u64,
    pub target: Target,
    /// Why the target runs at its TP (printed with the answer).
    pub tp_reason: String,
    pub engine: EnginePreset,
    pub spec: PlanSpec,
    pub price_per_hour: f64,
    /// Where the price comes from.
    pub price_source: String,
    /// Where the SLO comes from (`scenario <key>` or `command line`).
    pub slo_source: String,
    pub work: PlanWork,
    /// Told after every simulated window, for a progress display.
    pub tick: Option<Tick>,
    /// The validation record to fold into the interval (`None`: traffic randomness only).
    pub model_error: Option<ModelErrorRequest>,
}

/// Answer the question.
pub fn plan(req: PlanRequest) -> Result<PlanResult> {
    let question = question(&req);
    let assumptions = assumptions(&req);
    let slo = SloInfo {
        slo: req.spec.slo,
        source: req.slo_source.clone(),
        text: req.spec.slo.describe(),
    };
    let planner = match Planner::prepare(req.target.clone(), req.engine.clone(), req.spec.clone())?
    {
        Prepare::DoesNotFit(fit) => return Ok(does_not_fit(question, fit, slo, assumptions)),
        Prepare::Fits(p) => Planner {
            tick: req.tick.clone(),
            ..*p
        },
    };
    answer(&req, &planner, question, slo, assumptions)
}

fn question(req: &PlanRequest) -> Question {
    let t = &req.target;
    Question {
        users: req.users,
        gpu: t.gpu.key.clone(),
        gpu_name: t.gpu.name.clone(),
        model: t.model.key.clone(),
        quant: t.quant.to_string(),
        experts: t
            .model
            .moe
            .as_ref()
            .and_then(|m| m.expert_format)
            .map(|f| f.key().to_string()),
        kv: t.kv.to_string(),
        engine: req.engine.key.clone(),
        scenario: req.spec.scenario.key.clone(),
    }
}

/// Everything the number rests on that is known before simulating.
fn assumptions(req: &PlanRequest) -> Assumptions {
    let sc = &req.spec.scenario;
    let users = req.users.max(1);
    let e = &req.engine;
    Assumptions {
        scenario: sc.key.clone(),
        scenario_description: sc.description.clone(),
        active_share: sc.session.active_share,
        active_sessions_total: Load::active_sessions(users, sc),
        turns_mean: sc.session.turns.mean(),
        think_time_s_mean: sc.session.think_time_s.mean(),
        prompt_tokens_mean: sc.prompt_tokens.mean(),
        output_tokens_mean: sc.output_tokens.mean(),
        context_growth: sc.session.context_growth,
        prompt_reuse: sc.session.prompt_reuse,
        scenario_assumptions: sc.assumptions.clone(),
        slo: req.spec.slo.describe(),
        window: req.spec.window,
        warmup_s: Load::Users(users).default_warmup_s(sc),
        replications: req.spec.search.replications,
        seed: req.spec.search.base_seed,
        engine: EngineInfo {
            key: e.key.clone(),
            policy: e.policy.to_string(),
            max_num_seqs: e.max_num_seqs,
            max_num_batched_tokens: e.max_num_batched_tokens,
            gpu_memory_utilization: e.gpu_memory_utilization,
            prefix_caching: e.prefix_caching,
            host: e.host_summary(),
            source: e.source.clone(),
        },
        kv_blocks: None,
        kv_tokens: None,
        max_context: None,
        hours_per_month: HOURS_PER_MONTH,
        price_per_hour: req.price_per_hour,
        price_source: req.price_source.clone(),
        billing: "cards are paid for 730 h a month (sized for the peak hour, rented all month)"
            .into(),
    }
}

fn does_not_fit(
    question: Question,
    fit: FitReport,
    slo: SloInfo,
    assumptions: Assumptions,
) -> PlanResult {
    let note = format!(
        "{} ({}) does not fit on {}: {} (short by {})",
        question.model,
        question.quant,
        question.gpu,
        fit.reason,
        crate::fit::gb(fit.shortfall_bytes)
    );
    PlanResult {
        question,
        fits: false,
        fit,
        tp: 1,
        tp_reason: String::new(),
        server: None,
        users_per_card: None,
        cards_needed: None,
        cards_with_spare: None,
        cards_range: None,
        slo,
        at_load: None,
        cost: None,
        assumptions,
        sensitivity: Vec::new(),
        light_load: None,
        limit: None,
        profile: None,
        interval: None,
        notes: vec![note],
        load_sweep: Vec::new(),
    }
}

fn answer(
    req: &PlanRequest,
    planner: &Planner,
    question: Question,
    slo: SloInfo,
    mut assumptions: Assumptions,
) -> Result<PlanResult> {
    let d = &planner.deployment;
    assumptions.kv_blocks = Some(d.kv_blocks);
    assumptions.kv_tokens = Some(d.kv_tokens());
    assumptions.max_context = Some(d.max_context);
    let users = req.users;
    // One user (one active session) tells load-bound from latency-bound: if the SLO fails
    // without any load, more cards cannot fix it. It needs no capacity, so it runs alongside
    // the search (both cores busy while the search's slowest replication finishes).
    let (cap, light_run) = rayon::join(|| planner.capacity(), || at_load(planner, 1));
    let (cap, light_run) = (cap?, light_run?);
    let mut v = verdict(users, &cap);
    let mut notes = d.cost.scheme_notes();
    let light = LightLoad {
        slo_met: light_run.slo_met,
        windows: light_run.slo_stats.len(),
    };
    let limit = limit(planner, &cap, &light_run)?;
    if light.slo_met * 2 < light.windows {
        v = Verdict {
            cards_needed: None,
            cards_with_spare: None,
            cards_range: None,
            users_per_card_at_load: None,
        };
    }
    notes.extend(search_notes(planner, &cap, &v, light, &limit));
    let mut interval_notes = Vec::new();
    let (at, sens, interval) = follow_ups(req, planner, &cap, &v, &limit, &mut interval_notes)?;
    let tp = d.target.tp;
    notes.extend(
        at.as_ref()
            .map(|a| at_load_notes(a, tp))
            .unwrap_or_default(),
    );
    notes.extend(interval_notes);
    let profile = planner.profile_info().clone();
    let users_per_server = UsersPerCard::from(&cap);
    let load_sweep = match req.work.sweep_points {
        n if n > 0 && users_per_server.estimate > 0 => {
            let u = users_per_server.estimate;
            let hi = (u as f64 * 1.5).ceil() as u64;
            sweep(planner, &load_grid((u / 5).max(1), hi, n))?
        }
        _ => Vec::new(),
    };
    let server = server_verdict(planner, &users_per_server, &v);
    let cards = in_gpus(&v, tp);
    Ok(PlanResult {
        question,
        fits: true,
        fit: d.fit.clone(),
        tp,
        tp_reason: req.tp_reason.clone(),
        server,
        users_per_card: Some(users_per_server.per_gpu(tp)),
        cards_needed: cards.cards_needed,
        cards_with_spare: cards.cards_with_spare,
        cards_range: cards.cards_range,
        slo,
        at_load: at,
        cost: verdict_cost(users, &cards, req.price_per_hour, &req.price_source),
        assumptions,
        sensitivity: sens,
        light_load: Some(light),
        limit: Some(limit),
        profile: Some(profile),
        interval,
        notes,
        load_sweep,
    })
}

/// What the three follow-ups of the search give: the metrics at the verdict's load, the
/// sensitivity cases and the interval with model error. They depend on the search only, not on
/// each other, so they run together.
fn follow_ups(
    req: &PlanRequest,
    planner: &Planner,
    cap: &Capacity,
    v: &Verdict,
    limit: &Limit,
    notes: &mut Vec<String>,
) -> Result<(
    Option<AtLoad>,
    Vec<crate::plan::sensitivity::Sensitivity>,
    Option<PlanInterval>,
)> {
    let (at, (sens, interval)) = rayon::join(
        || match v.users_per_card_at_load {
            Some(u) if req.work.at_load && u > 0 => at_load(planner, u).map(Some),
            _ => Ok(None),
        },
        || {
            rayon::join(
                || sensitivity_per_card(req, planner, cap),
                || interval(req, planner, cap, limit, notes),
            )
        },
    );
    Ok((at?, sens?, interval?))
}

/// Sensitivity, simulated per server and reported per card like the capacity.
fn sensitivity_per_card(
    req: &PlanRequest,
    planner: &Planner,
    cap: &Capacity,
) -> Result<Vec<crate::plan::sensitivity::Sensitivity>> {
    if req.work.sensitivity_replications == 0 || cap.estimate < 1.0 {
        return Ok(Vec::new());
    }
    let mut sens = sensitivity(planner, cap.estimate, req.work.sensitivity_replications)?;
    let g = f64::from(planner.deployment.target.tp);
    for s in &mut sens {
        (s.users_per_card, s.low, s.high) = (s.users_per_card / g, s.low / g, s.high / g);
    }
    Ok(sens)
}

/// The verdict per server when a server has several GPUs (`None` at TP 1).
fn server_verdict(
    planner: &Planner,
    per_server: &UsersPerCard,
    v: &Verdict,
) -> Option<ServerVerdict> {
    let d = &planner.deployment;
    (d.target.tp > 1).then(|| ServerVerdict {
        gpus: d.target.tp,
        users_per_server: per_server.clone(),
        servers_needed: v.cards_needed,
        servers_with_spare: v.cards_with_spare,
        servers_range: v.cards_range,
        interconnect: d.cost.comm_source().describe(),
    })
}

/// The interval with the model's own error folded in, when asked for; what it leaves out goes
/// to `notes`.
fn interval(
    req: &PlanRequest,
    planner: &Planner,
    cap: &Capacity,
    limit: &Limit,
    notes: &mut Vec<String>,
) -> Result<Option<PlanInterval>> {
    let Some(m) = &req.model_error else {
        return Ok(None);
    };
    let tp = planner.deployment.target.tp;
    let i = fold(planner, cap, m, req.users)?.map(|i| i.per_gpu(tp));
    if i.is_none() {
        notes.push(unavailable(&m.record));
    }
    if matches!(limit.cause, Cause::Ttft | Cause::TtftAndStreamingRate)
        && let Some(c) = &m.ttft_caveat
    {
        notes.push(c.clone());
    }
    Ok(i)
}

/// What limited capacity: read at the first load that failed in the first window's search, or
/// at one user when even one misses the SLO.
fn limit(planner: &Planner, cap: &Capacity, light: &AtLoad) -> Result<Limit> {
    let slo = &planner.spec.slo;
    let max_context = planner.deployment.max_context;
    if light.slo_met * 2 < light.slo_stats.len() {
        return diagnose(&light.metrics, 1, slo, max_context);
    }
    let first = cap.replications.first();
    match first.and_then(|r| r.first_fail.map(|f| (r.seed, f))) {
        Some((seed, users)) => {
            let m = planner.simulate(users, seed)?.metrics;
            diagnose(&m, users, slo, max_context)
        }
        None => Ok(search_limit(planner.spec.search.max_users)),
    }
}

/// What the search and the single-user check say about the answer.
fn search_notes(
    planner: &Planner,
    cap: &Capacity,
    v: &Verdict,
    light: LightLoad,
    limit: &Limit,
) -> Vec<String> {
    let mut notes = Vec::new();
    let missed = light.windows - light.slo_met;
    if light.slo_met * 2 < light.windows {
        notes.push(format!(
            "a single active session misses the SLO in {missed} of {} simulated windows ({}): \
             the limit is not load, so more cards do not help",
            light.windows, limit.detail
        ));
    } else if light.slo_met < light.windows {
        notes.push(format!(
            "even a single active session misses the SLO in {missed} of {} simulated windows: the \
             number is close to a latency limit, not only a load limit",
            light.windows
        ));
    }
    if cap.capped {
        notes.push(format!(
            "the search stopped at its limit of {} users per card: the card may serve more",
            planner.spec.search.max_users
        ));
    }
    if v.cards_needed.is_none() && light.slo_met * 2 >= light.windows {
        notes.push(
            "one card does not meet the SLO even for a single user: no number of cards is enough \
             (a faster GPU, a smaller scheme or a looser SLO is needed)"
                .into(),
        );
    }
    notes
}

/// Caveats about the simulated windows at the recommended load.
fn at_load_notes(a: &AtLoad, tp: u32) -> Vec<String> {
    let mut notes = Vec::new();
    let unit = if tp > 1 { "server" } else { "card" };
    if a.slo_met < a.slo_stats.len() {
        notes.push(format!(
            "at {} users per {unit} the SLO was met in {} of {} simulated peak windows: \
             the estimate is a mean, plan with the spare card or the low end of the interval",
            a.users,
            a.slo_met,
            a.slo_stats.len()
        ));
    }
    if a.metrics.requests < 200 {
        notes.push(format!(
            "only {} requests were measured per peak window at this load: tail percentiles \
             are coarse; a larger --window-requests gives steadier numbers",
            a.metrics.requests
        ));
    }
    notes
}
