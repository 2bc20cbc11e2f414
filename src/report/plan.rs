//! `cardplan plan` rendered for people: terminal tables and the Markdown/HTML report.

use super::chart::{ChartSpec, RefLine, Series};
use super::doc::Document;
use super::format::{
    percent, seconds, sig_str, thousands, tok_s, usd_per_hour, users_with_interval,
};
use super::table::new_table;
use crate::catalog::scenario::RateMetric;
use crate::plan::result::PlanResult;
use crate::plan::slo::judged_rate;
use crate::sim::LatencySummary;

/// One line: what was asked.
pub fn headline(r: &PlanResult) -> String {
    let q = &r.question;
    format!(
        "{} users · {} {}{} (KV {}) on {} ({}) · engine {} · scenario {}",
        thousands(q.users),
        q.model,
        q.quant,
        q.experts
            .as_ref()
            .map_or(String::new(), |e| format!(", experts {e}")),
        q.kv,
        super::server::gpus(r),
        q.gpu_name,
        q.engine,
        q.scenario
    )
}

/// The verdict rows: (label, value).
pub fn verdict_rows(r: &PlanResult) -> Vec<(String, String)> {
    if !r.fits {
        return does_not_fit_rows(r);
    }
    let mut rows = Vec::new();
    if let Some(u) = &r.users_per_card {
        let capped = if u.capped {
            " (search limit reached: at least)"
        } else {
            ""
        };
        let (est, range) = users_with_interval(u.estimate as f64, u.low as f64, u.high as f64);
        rows.push((
            "capacity per card".into(),
            format!(
                "{est} users{capped} ({}% of peak windows: {range}; mean of {} simulated)",
                sig_str(u.confidence * 100.0, 2),
                u.per_replication.len()
            ),
        ));
    }
    rows.extend(super::server::rows(r));
    rows.extend(super::plan_interval::rows(r));
    if let Some(l) = &r.limit {
        let at = if l.at_users > 0 {
            let users = if l.at_users == 1 { "user" } else { "users" };
            let unit = super::server::unit(r);
            format!("at {} {users} per {unit}: ", thousands(l.at_users))
        } else {
            String::new()
        };
        rows.push(("limited by".into(), format!("{at}{}", l.detail)));
    }
    rows.extend(super::plan_cards::cards_rows(r));
    rows.extend(super::plan_cards::cost_rows(r));
    rows
}

fn does_not_fit_rows(r: &PlanResult) -> Vec<(String, String)> {
    let gb = crate::fit::gb;
    vec![
        (
            "fits".into(),
            format!(
                "NO, short by {}: {}",
                gb(r.fit.shortfall_bytes),
                r.fit.reason
            ),
        ),
        (
            "memory".into(),
            format!(
                "weights {} + runtime reserve {} + KV cache vs {} usable",
                gb(r.fit.weights_bytes),
                gb(r.fit.reserve_bytes),
                gb(r.fit.usable_bytes)
            ),
        ),
        (
            "cards needed".into(),
            "none: the model does not fit on this GPU".into(),
        ),
    ]
}

/// Rows of the metrics table at the per-card load: metric, typical, tail, SLO.
pub fn at_load_rows(r: &PlanResult) -> Vec<Vec<String>> {
    let Some(a) = &r.at_load else {
        return Vec::new();
    };
    let m = &a.metrics;
    let slo = &r.slo.slo;
    let (lo_l, hi_l) = slo.labels();
    // The SLO columns summarise every window: the median tail value, its range, and in how
    // many windows the limit held. The other rows describe the first window.
    let n = a.slo_stats.len();
    let rates: Vec<f64> = a.slo_stats.iter().map(|s| s.tok_s_tail).collect();
    let ttfts: Vec<f64> = a.slo_stats.iter().map(|s| s.ttft_tail_s).collect();
    let rate_ok = rates.iter().filter(|&&x| x >= slo.tok_s).count();
    let ttft_ok = ttfts.iter().filter(|&&x| x <= slo.ttft_s).count();
    let lat = or_dash::<LatencySummary>;
    let rate_name = match slo.rate {
        RateMetric::Streaming => "streaming rate",
        RateMetric::EndToEnd => "per-request rate (end to end)",
    };
    vec![
        vec![
            rate_name.into(),
            or_dash(judged_rate(m, slo.rate), &|q| {
                format!("p50 {}", tok_s(q.p50))
            }),
            format!("{lo_l} {}", spread(rates, "tok/s")),
            format!(">= {}: met in {rate_ok} of {n}", tok_s(slo.tok_s)),
        ],
        vec![
            "time to first token".into(),
            lat(m.ttft_ms, &|t| format!("p50 {}", seconds(t.p50 / 1000.0))),
            format!("{hi_l} {}", spread(ttfts, "s")),
            format!("<= {}: met in {ttft_ok} of {n}", seconds(slo.ttft_s)),
        ],
        vec![
            "time per output token".into(),
            lat(m.tpot_ms, &|t| format!("p50 {}", seconds(t.p50 / 1000.0))),
            lat(m.tpot_ms, &|t| format!("p95 {}", seconds(t.p95 / 1000.0))),
            String::new(),
        ],
        vec![
            "end-to-end latency".into(),
            lat(m.e2e_s, &|t| format!("p50 {}", seconds(t.p50))),
            lat(m.e2e_s, &|t| format!("p95 {}", seconds(t.p95))),
            String::new(),
        ],
        vec![
            "KV cache in use".into(),
            format!("mean {}", percent(m.kv_mean_util)),
            format!("peak {}", percent(m.kv_peak_util)),
            format!(
                "{} preemption{}",
                thousands(m.preemptions),
                if m.preemptions == 1 { "" } else { "s" }
            ),
        ],
        vec![
            "throughput".into(),
            format!("{} tok/s out", sig_str(m.output_tok_s, 3)),
            format!("{} req/s", sig_str(m.requests_per_s, 3)),
            format!(
                "{} running, {} waiting (mean)",
                sig_str(m.running_mean, 3),
                sig_str(m.queue_mean, 2)
            ),
        ],
    ]
}

/// "13.1 tok/s (windows 11.9–14.2)": the median over windows, then the range.
fn spread(mut v: Vec<f64>, unit: &str) -> String {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let f = |x: f64| sig_str(x, 3);
    match v.len() {
        0 => "n/a".into(),
        1 => format!("{} {unit}", f(v[0])),
        k => format!(
            "{} {unit} (windows {}–{})",
            f(crate::plan::slo::quantile_sorted(&v, 0.5)),
            f(v[0]),
            f(v[k - 1])
        ),
    }
}

/// A summary in words, or "–" when nothing was measured (never a 0 that reads as data).
fn or_dash<T>(s: Option<T>, f: &dyn Fn(T) -> String) -> String {
    s.map_or_else(|| "–".to_string(), f)
}

/// Sensitivity rows: change, users per card, relative.
pub fn sensitivity_rows(r: &PlanResult) -> Vec<Vec<String>> {
    r.sensitivity
        .iter()
        .map(|s| {
            vec![
                s.change.clone(),
                {
                    let (e, r) = users_with_interval(s.users_per_card, s.low, s.high);
                    format!("{e} ({r})")
                },
                s.ratio
                    .map(|x| format!("× {}", sig_str(x, 2)))
                    .unwrap_or_else(|| "n/a".into()),
            ]
        })
        .collect()
}

/// The assumptions as short sentences; `per_target` adds the lines specific to this GPU and
/// scheme (KV capacity, price), left out where several targets share one list.
pub fn assumption_lines(r: &PlanResult, per_target: bool) -> Vec<String> {
    let a = &r.assumptions;
    let mut v = vec![
        format!(
            "{} of users are in a session at the peak hour: {} sessions for {} users",
            percent(a.active_share),
            thousands(a.active_sessions_total),
            thousands(r.question.users)
        ),
        format!(
            "sessions of {} turns on average, {} think time between turns (mean)",
            sig_str(a.turns_mean, 2),
            seconds(a.think_time_s_mean)
        ),
        format!(
            "new prompt {} tokens, answer {} tokens (means){}",
            sig_str(a.prompt_tokens_mean, 3),
            sig_str(a.output_tokens_mean, 3),
            if a.context_growth {
                "; each turn resends the conversation so far".to_string()
            } else if a.prompt_reuse > 0.0 {
                format!(
                    "; {}% of each prompt repeats the start of its session",
                    sig_str(a.prompt_reuse * 100.0, 2)
                )
            } else {
                String::new()
            }
        ),
        "users are spread evenly over the cards; each card holds a fixed number of session \
         slots (users × active share, a new user taking a slot after a short gap) for the whole \
         window: hour-to-hour swings in how many users are active are not modelled"
            .to_string(),
        format!("SLO ({}): {}", r.slo.source, r.slo.text),
        format!(
            "each simulated peak window: {} warm-up, then {}; {} windows (seed {})",
            seconds(a.warmup_s),
            a.window.describe(),
            a.replications,
            a.seed
        ),
        format!(
            "engine {} ({}): max {} sequences, {} tokens per step, {} of GPU memory",
            a.engine.key,
            a.engine.policy,
            a.engine.max_num_seqs,
            thousands(u64::from(a.engine.max_num_batched_tokens)),
            percent(a.engine.gpu_memory_utilization)
        ),
        prefix_caching_line(r),
    ];
    v.extend(super::server::tp_line(r));
    v.extend(r.fit.moe.as_ref().map(|m| m.note.clone()));
    if !per_target {
        return v;
    }
    if let (Some(b), Some(t)) = (a.kv_blocks, a.kv_tokens) {
        v.push(format!(
            "KV cache: {} blocks = {} tokens; longest request {} tokens",
            thousands(b),
            thousands(t),
            a.max_context
                .map_or("n/a".into(), |c| thousands(u64::from(c)))
        ));
    }
    v.push(format!(
        "price {} per card ({}); {}",
        usd_per_hour(a.price_per_hour),
        a.price_source,
        a.billing
    ));
    v
}

/// Whether prefix caching was on and, at the per-card load, the share of prompt tokens it served.
fn prefix_caching_line(r: &PlanResult) -> String {
    if !r.assumptions.engine.prefix_caching {
        return "prefix caching off: every prompt token is computed (--no-prefix-caching, or the engine has none)".into();
    }
    let rate = r.at_load.as_ref().and_then(|a| a.metrics.prefix_hit_rate);
    format!(
        "prefix caching on (vLLM V1 default): {} of prompt tokens came from the cache at the per-card load (turns resending the conversation, shared system prompts); --no-prefix-caching compares",
        rate.map_or("n/a".into(), percent)
    )
}

/// The terminal rendering.
pub fn terminal(r: &PlanResult) -> String {
    let mut out = String::new();
    out.push_str(&headline(r));
    out.push('\n');
    out.push_str(&format!("SLO: {} ({})\n", r.slo.text, r.slo.source));
    let mut t = new_table();
    for (k, v) in verdict_rows(r) {
        t.add_row(vec![k, v]);
    }
    out.push_str(&format!("{t}\n"));
    if let Some(a) = &r.at_load {
        let unit = super::server::unit(r);
        out.push_str(&format!(
            "\nAt the load each {unit} carries: {} users per {unit}, {} in a session at the peak \
             (SLO met in {} of {} windows)\n",
            thousands(a.users),
            thousands(a.active_sessions),
            a.slo_met,
            a.slo_stats.len()
        ));
        let mut t = new_table();
        t.set_header(vec!["metric", "typical window", "tail", "SLO / note"]);
        for row in at_load_rows(r) {
            t.add_row(row);
        }
        out.push_str(&format!("{t}\n"));
    }
    if !r.sensitivity.is_empty() {
        out.push_str("\nSensitivity (users per card if one assumption changes)\n");
        let mut t = new_table();
        t.set_header(vec!["if", "users per card", "vs base"]);
        for row in sensitivity_rows(r) {
            t.add_row(row);
        }
        out.push_str(&format!("{t}\n"));
    }
    out.push_str("\nAssumptions\n");
    for l in assumption_lines(r, true) {
        out.push_str(&format!("  - {l}\n"));
    }
    if let Some(p) = &r.profile {
        out.push_str(&format!(
            "Step times: {} profile for {} ({})\n",
            p.kind, p.gpu, p.source
        ));
    }
    // Without a fit, the verdict table already says why.
    if r.fits {
        for n in &r.notes {
            out.push_str(&format!("Note: {n}\n"));
        }
    }
    out
}

/// Charts of the per-request rate and TTFT against users per card.
pub fn load_charts(r: &PlanResult) -> Vec<(String, ChartSpec)> {
    let sweep = &r.load_sweep;
    if sweep.is_empty() {
        return Vec::new();
    }
    let slo = &r.slo.slo;
    // Labelled with the same rounding as the verdict table, so the two never disagree.
    let knee = r.users_per_card.as_ref().map(|u| RefLine {
        at: u.estimate as f64,
        label: format!(
            "capacity {} users",
            users_with_interval(u.estimate as f64, u.low as f64, u.high as f64).0
        ),
    });
    let (lo_l, hi_l) = slo.labels();
    let pick_rate = |m: &crate::sim::Metrics| {
        crate::plan::slo::slo_stats(m, slo).map_or(f64::NAN, |s| s.tok_s_tail)
    };
    let pick_ttft = |m: &crate::sim::Metrics| {
        crate::plan::slo::slo_stats(m, slo).map_or(f64::NAN, |s| s.ttft_tail_s)
    };
    // One line per metric over the sweep, dropping points the metric is undefined at.
    let series = |name: String, y: &dyn Fn(&crate::sim::Metrics) -> f64| Series {
        name,
        points: sweep
            .iter()
            .map(|p| (p.users as f64, y(&p.metrics)))
            .filter(|pt| pt.1.is_finite())
            .collect(),
        markers: true,
    };
    let rate = ChartSpec::Lines {
        title: format!(
            "Per-request streaming rate vs users per card ({})",
            r.question.gpu
        ),
        x_label: "users per card".into(),
        y_label: "output tokens/s per request".into(),
        series: vec![
            series("p50".into(), &|m| {
                judged_rate(m, slo.rate).map_or(f64::NAN, |r| r.p50)
            }),
            series(format!("{lo_l} (slow tail)"), &pick_rate),
        ],
        hlines: vec![RefLine {
            at: slo.tok_s,
            label: format!("SLO {lo_l} >= {}", tok_s(slo.tok_s)),
        }],
        vlines: knee.iter().cloned().collect(),
        y_range: None,
    };
    let ttft = ChartSpec::Lines {
        title: format!("Time to first token vs users per card ({})", r.question.gpu),
        x_label: "users per card".into(),
        y_label: "time to first token (s)".into(),
        series: vec![
            series("p50".into(), &|m| {
                m.ttft_ms.map_or(f64::NAN, |t| t.p50 / 1000.0)
            }),
            series(hi_l.clone(), &pick_ttft),
        ],
        hlines: vec![RefLine {
            at: slo.ttft_s,
            label: format!("SLO {hi_l} <= {}", seconds(slo.ttft_s)),
        }],
        vlines: knee.into_iter().collect(),
        y_range: None,
    };
    vec![
        ("rate_vs_users".into(), rate),
        ("ttft_vs_users".into(), ttft),
    ]
}

/// KV-cache utilisation over time at the planned per-card load.
pub fn kv_chart(r: &PlanResult) -> Option<(String, ChartSpec)> {
    let a = r.at_load.as_ref()?;
    if a.kv_timeline.is_empty() {
        return None;
    }
    Some((
        "kv_over_time".into(),
        ChartSpec::Lines {
            title: format!(
                "KV cache in use at {} users per card ({})",
                thousands(a.users),
                r.question.gpu
            ),
            x_label: "simulated time (s), warm-up included".into(),
            y_label: "KV blocks in use (%)".into(),
            series: vec![Series {
                name: String::new(),
                points: a.kv_timeline.iter().map(|&(t, u)| (t, u * 100.0)).collect(),
                markers: false,
            }],
            hlines: Vec::new(),
            vlines: vec![RefLine {
                at: r.assumptions.warmup_s,
                label: "measuring from here".into(),
            }],
            y_range: Some((0.0, 105.0)),
        },
    ))
}

/// The report document.
pub fn document(r: &PlanResult) -> Document {
    let mut d = Document::new(format!(
        "cardplan: {} users of {} on {}",
        thousands(r.question.users),
        r.question.model,
        r.question.gpu
    ));
    d.para(headline(r));
    d.heading("Verdict");
    d.table(
        vec!["".into(), "".into()],
        verdict_rows(r)
            .into_iter()
            .map(|(k, v)| vec![k, v])
            .collect(),
    );
    if !r.notes.is_empty() {
        d.bullets(r.notes.clone());
    }
    at_load_section(&mut d, r);
    let charts = load_charts(r);
    if !charts.is_empty() {
        d.heading("Latency against load");
        d.para(
            "Each point is one simulated peak window with the same seed (common random numbers); \
             the dashed red line is the SLO limit, the grey line the estimated capacity.",
        );
        for (name, spec) in charts {
            d.chart(name, spec);
        }
    }
    if let Some((name, spec)) = kv_chart(r) {
        d.heading("KV cache at the planned load");
        d.chart(name, spec);
    }
    if !r.sensitivity.is_empty() {
        d.heading("Sensitivity");
        d.table(
            vec!["if".into(), "users per card".into(), "vs base".into()],
            sensitivity_rows(r),
        );
    }
    assumptions_section(&mut d, r);
    d
}

/// The metrics at the per-card load, with the SLO they were held to.
fn at_load_section(d: &mut Document, r: &PlanResult) {
    let Some(a) = &r.at_load else {
        return;
    };
    d.heading(format!(
        "At the load each card carries: {} users per card ({} in a session)",
        thousands(a.users),
        thousands(a.active_sessions)
    ));
    d.para(format!(
        "SLO: {}. Met in {} of {} simulated peak windows.",
        r.slo.text,
        a.slo_met,
        a.slo_stats.len()
    ));
    d.table(
        vec![
            "metric".into(),
            "typical window".into(),
            "tail".into(),
            "SLO / note".into(),
        ],
        at_load_rows(r),
    );
}

/// Everything the number rests on: assumptions, the scenario's sources, the profile.
fn assumptions_section(d: &mut Document, r: &PlanResult) {
    d.heading("Assumptions");
    d.bullets(assumption_lines(r, true));
    if !r.assumptions.scenario_assumptions.is_empty() {
        d.para(format!(
            "Scenario {}: {}",
            r.assumptions.scenario, r.assumptions.scenario_description
        ));
        d.bullets(r.assumptions.scenario_assumptions.clone());
    }
    if let Some(p) = &r.profile {
        d.heading("Profile");
        d.para(format!(
            "Step times: {} profile for {} ({}).",
            p.kind, p.gpu, p.source
        ));
    }
}
