//! Request metrics with the definitions of vLLM's benchmark (`vllm bench serve`):
//! TTFT = send → first token; TPOT = (E2E − TTFT)/(output − 1), requests with one output token
//! excluded; ITL = every gap between consecutive tokens of a request; E2E = send → last token;
//! per-request rate = output tokens / E2E (Backprop's "tokens per second"); streaming rate =
//! tokens after the first / time after the first (= 1 / TPOT: what a reader of the stream
//! sees once it has started; requests with one output token have none).
//!
//! A summary of no values is absent (`None`, `null` in JSON), never zeros that read as data.
//!
//! Everything is aggregated in [`Sketch`]es: bounded memory, no record per request.

use serde::{Deserialize, Serialize};

use super::sketch::Sketch;

/// Latency summary: exact mean, sketch quantiles. (Not `Summary`: the crate has several.)
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    /// Number of values summarised.
    pub count: u64,
}

impl LatencySummary {
    /// The summary of `s` scaled by `scale`; `None` when `s` holds no value.
    pub fn of(s: &Sketch, scale: f64) -> Option<LatencySummary> {
        (s.count() > 0).then(|| LatencySummary {
            mean: s.mean() * scale,
            p50: s.quantile(0.50) * scale,
            p90: s.quantile(0.90) * scale,
            p95: s.quantile(0.95) * scale,
            p99: s.quantile(0.99) * scale,
            min: s.min() * scale,
            max: s.max() * scale,
            count: s.count(),
        })
    }
}

/// Rate summary with the slow tail named honestly: `p05` is the 5th percentile of the rate
/// (what Backprop calls "p95").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct RateSummary {
    pub mean: f64,
    pub p50: f64,
    pub p10: f64,
    pub p05: f64,
    pub p01: f64,
    pub min: f64,
    pub count: u64,
}

impl RateSummary {
    /// The summary of `s`; `None` when `s` holds no value.
    pub fn of(s: &Sketch) -> Option<RateSummary> {
        (s.count() > 0).then(|| RateSummary {
            mean: s.mean(),
            p50: s.quantile(0.50),
            p10: s.quantile(0.10),
            p05: s.quantile(0.05),
            p01: s.quantile(0.01),
            min: s.min(),
            count: s.count(),
        })
    }
}

/// The result of one run, over the measured requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Measured requests that completed.
    pub requests: u64,
    /// Measured requests refused: prompt + output longer than the model's context or the KV cache
    /// (or, for prefill-first engines, a prompt over the step's token budget).
    pub rejected: u64,
    /// Measured requests still running when the simulation hit its time limit (0 normally).
    pub unfinished: u64,
    /// The server could not keep up: measured requests were still running, or were never sent,
    /// when simulated time ran out.
    pub overloaded: bool,
    /// Output tokens of the completed measured requests.
    pub output_tokens: u64,
    /// Prompt tokens sent by the completed measured requests (history included for sessions).
    pub prompt_tokens: u64,
    /// Makespan: first measured send → last measured token, seconds.
    pub duration_s: f64,
    pub ttft_ms: Option<LatencySummary>,
    pub tpot_ms: Option<LatencySummary>,
    pub itl_ms: Option<LatencySummary>,
    pub e2e_s: Option<LatencySummary>,
    /// Output tokens / E2E per request (Backprop's "tokens per second").
    pub request_tok_s: Option<RateSummary>,
    /// Tokens after the first / time after the first, per request with more than one token.
    pub stream_tok_s: Option<RateSummary>,
    /// Output tokens / makespan.
    pub output_tok_s: f64,
    /// Completed requests / makespan.
    pub requests_per_s: f64,
    /// Preemptions by recompute (KV cache full) while measuring.
    pub preemptions: u64,
    /// Whether the engine cached prefixes (vLLM's automatic prefix caching).
    pub prefix_caching: bool,
    /// Share of the measured requests' prompt tokens found in the prefix cache when they were
    /// first admitted (vLLM's prefix cache hit rate); absent with prefix caching off.
    pub prefix_hit_rate: Option<f64>,
    /// Largest share of KV blocks in use while measuring.
    pub kv_peak_util: f64,
    /// Time-averaged share of KV blocks in use while measuring.
    pub kv_mean_util: f64,
    /// Most requests waiting for admission while measuring.
    pub queue_peak: u64,
    /// Time-averaged requests waiting while measuring.
    pub queue_mean: f64,
    /// Time-averaged requests running (admitted) while measuring.
    pub running_mean: f64,
    /// Engine steps run in the whole simulation, and simulated seconds (warm-up and drain included).
    pub steps: u64,
    pub simulated_s: f64,
    /// Relative error of every reported quantile (the sketch's bound).
    pub quantile_relative_error: f64,
    /// Which requests were measured, in words.
    pub measured: String,
}
