//! `cardplan simulate` as tables and as JSON: the inputs, then the metrics.

use std::fmt::Write as _;

use serde::Serialize;

use comfy_table::Table;

use super::table::new_table;
use crate::catalog::engine::EnginePreset;
use crate::catalog::scenario::RateMetric;
use crate::cost::ProfileInfo;
use crate::sim::{LatencySummary, Load, LoadStats, Metrics, Scenario, Stop};

/// Everything `simulate --json` prints: the inputs, then the metrics.
#[derive(Serialize)]
pub struct SimView<'a> {
    pub gpu: &'a str,
    /// GPUs the model is split over (one engine, one server).
    pub tp: u32,
    pub model: &'a str,
    pub quant: String,
    pub kv_dtype: String,
    pub engine: &'a EnginePreset,
    pub kv_blocks: u64,
    pub kv_tokens: u64,
    pub max_context: u32,
    pub load: &'a Load,
    pub stop: Stop,
    pub seed: u64,
    pub scenario: &'a Scenario,
    pub profile: &'a ProfileInfo,
    #[serde(flatten)]
    pub metrics: &'a Metrics,
    pub load_stats: &'a LoadStats,
    pub kv_timeline: &'a [(f64, f64)],
    pub queue_timeline: &'a [(f64, f64)],
}

fn describe_load(load: &Load, stats: &LoadStats) -> String {
    match load {
        Load::Concurrency(n) => format!("closed loop, {n} clients"),
        Load::Rate { rate, burstiness } => {
            format!("open loop, {rate} req/s, gamma shape {burstiness}")
        }
        Load::Users(n) => format!(
            "{n} users, {} in a session at the peak",
            stats.active_sessions.unwrap_or(0)
        ),
        Load::Trace(t) => format!("trace {} ({} requests)", t.path, t.requests.len()),
    }
}

/// The run as terminal tables: latency, per-request rate, counts, and what was measured.
pub fn terminal(r: &SimView<'_>) -> String {
    let m = r.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}, KV {}) on {}, engine {} ({}), scenario {}",
        r.model, r.quant, r.kv_dtype, r.gpu, r.engine.key, r.engine.policy, r.scenario.key
    );
    let _ = writeln!(
        out,
        "load: {}; seed {}; KV cache {} blocks = {} tokens; max context {} tokens",
        describe_load(r.load, r.load_stats),
        r.seed,
        r.kv_blocks,
        r.kv_tokens,
        r.max_context
    );
    let _ = writeln!(out, "step times: {} ({})", r.profile.kind, r.profile.source);
    let _ = writeln!(out, "{}", latency_table(m));
    let _ = writeln!(out, "{}", rate_table(m));
    let _ = writeln!(out, "{}", counts_table(m));
    let _ = writeln!(out, "measured: {}", m.measured);
    if m.overloaded {
        let _ = writeln!(
            out,
            "OVERLOADED: {} of the measured requests finished; {} were still running when simulated \
             time ran out: the server cannot keep up with this load",
            m.requests, m.unfinished
        );
    }
    let _ = writeln!(
        out,
        "quantiles within {:.1}% (log-bucketed sketch); SLO of {}: {} rate p{:02.0} >= {} tok/s, TTFT p95 <= {} s",
        m.quantile_relative_error * 100.0,
        r.scenario.key,
        match r.scenario.slo.rate {
            RateMetric::Streaming => "streaming",
            RateMetric::EndToEnd => "end-to-end",
        },
        r.scenario.slo.request_tok_s_percentile,
        r.scenario.slo.min_request_tok_s,
        r.scenario.slo.ttft_p95_s
    );
    out
}

/// TTFT, TPOT, ITL and E2E, all in milliseconds; "–" where nothing was measured.
fn latency_table(m: &Metrics) -> Table {
    let mut t = new_table();
    t.set_header(vec!["metric", "mean", "p50", "p90", "p95", "p99", "max"]);
    let mut row = |name: &str, s: Option<LatencySummary>, scale: f64| {
        let cells = match s {
            Some(s) => [s.mean, s.p50, s.p90, s.p95, s.p99, s.max]
                .map(|v| format!("{:.1}", v * scale))
                .to_vec(),
            None => vec!["–".to_string(); 6],
        };
        t.add_row(
            std::iter::once(name.to_string())
                .chain(cells)
                .collect::<Vec<_>>(),
        );
    };
    row("TTFT (ms)", m.ttft_ms, 1.0);
    row("TPOT (ms)", m.tpot_ms, 1.0);
    row("ITL (ms)", m.itl_ms, 1.0);
    row("E2E (ms)", m.e2e_s, 1e3);
    t
}

/// The per-request rates with their slow tails: streaming (after the first token) and end to
/// end (output / E2E, Backprop's).
fn rate_table(m: &Metrics) -> Table {
    let mut t = new_table();
    t.set_header(vec![
        "per-request tok/s",
        "mean",
        "p50",
        "p10",
        "p05",
        "p01",
        "min",
    ]);
    for (name, q) in [
        ("streaming (after the first token)", m.stream_tok_s),
        ("output tokens / E2E", m.request_tok_s),
    ] {
        let cells = match q {
            Some(q) => [q.mean, q.p50, q.p10, q.p05, q.p01, q.min]
                .map(|v| format!("{v:.2}"))
                .to_vec(),
            None => vec!["–".to_string(); 6],
        };
        t.add_row(
            std::iter::once(name.to_string())
                .chain(cells)
                .collect::<Vec<_>>(),
        );
    }
    t
}

/// Requests, tokens, throughput and what the server held.
fn counts_table(m: &Metrics) -> Table {
    let mut t = new_table();
    t.set_header(vec!["", "value"]);
    let rows: Vec<(&str, String)> = vec![
        ("requests completed", m.requests.to_string()),
        ("requests rejected", m.rejected.to_string()),
        ("requests unfinished", m.unfinished.to_string()),
        ("output tokens", m.output_tokens.to_string()),
        ("makespan", format!("{:.2} s", m.duration_s)),
        ("throughput", format!("{:.1} output tok/s", m.output_tok_s)),
        ("request rate", format!("{:.3} req/s", m.requests_per_s)),
        ("preemptions", m.preemptions.to_string()),
        (
            "KV cache in use",
            format!(
                "peak {:.1}%, mean {:.1}%",
                m.kv_peak_util * 100.0,
                m.kv_mean_util * 100.0
            ),
        ),
        (
            "queue (waiting)",
            format!("peak {}, mean {:.1}", m.queue_peak, m.queue_mean),
        ),
        ("running (mean)", format!("{:.1} requests", m.running_mean)),
        (
            "simulated",
            format!("{} steps, {:.1} s", m.steps, m.simulated_s),
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}
