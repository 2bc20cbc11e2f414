//! Request metrics with the definitions of vLLM's benchmark (`vllm bench serve`):
//! TTFT = send → first token; TPOT = (E2E − TTFT)/(output − 1), requests with one output token
//! excluded; ITL = every gap between consecutive tokens of a request; E2E = send → last token;
//! per-request rate = output tokens / E2E (Backprop's "tokens per second").
//!
//! Everything is aggregated in [`Sketch`]es: bounded memory, no record per request.

use serde::Serialize;

use super::sketch::{RELATIVE_ERROR, Sketch};

/// Latency summary: exact mean, sketch quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Summary {
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

impl Summary {
    pub fn of(s: &Sketch, scale: f64) -> Summary {
        Summary {
            mean: s.mean() * scale,
            p50: s.quantile(0.50) * scale,
            p90: s.quantile(0.90) * scale,
            p95: s.quantile(0.95) * scale,
            p99: s.quantile(0.99) * scale,
            min: s.min() * scale,
            max: s.max() * scale,
            count: s.count(),
        }
    }
}

/// Rate summary with the slow tail named honestly: `p05` is the 5th percentile of the rate
/// (what Backprop calls "p95").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
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
    pub fn of(s: &Sketch) -> RateSummary {
        RateSummary {
            mean: s.mean(),
            p50: s.quantile(0.50),
            p10: s.quantile(0.10),
            p05: s.quantile(0.05),
            p01: s.quantile(0.01),
            min: s.min(),
            count: s.count(),
        }
    }
}

/// The result of one run, over the measured requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Measured requests that completed.
    pub requests: u64,
    /// Measured requests refused: prompt + output longer than the model's context or the KV cache
    /// (or, for prefill-first engines, a prompt over the step's token budget).
    pub rejected: u64,
    /// Measured requests still running when the simulation hit its time limit (0 normally).
    pub unfinished: u64,
    /// Output tokens of the completed measured requests.
    pub output_tokens: u64,
    /// Prompt tokens sent by the completed measured requests (history included for sessions).
    pub prompt_tokens: u64,
    /// Makespan: first measured send → last measured token, seconds.
    pub duration_s: f64,
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    pub itl_ms: Summary,
    pub e2e_s: Summary,
    pub request_tok_s: RateSummary,
    /// Output tokens / makespan.
    pub output_tok_s: f64,
    /// Completed requests / makespan.
    pub requests_per_s: f64,
    /// Preemptions by recompute (KV cache full) while measuring.
    pub preemptions: u64,
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

/// Accumulates measured requests and server statistics.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub ttft: Sketch,
    pub tpot: Sketch,
    pub itl: Sketch,
    pub e2e: Sketch,
    pub rate: Sketch,
    pub requests: u64,
    pub rejected: u64,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub first_send_ns: Option<u64>,
    pub last_token_ns: u64,
    pub preemptions: u64,
    pub kv_peak_blocks: u64,
    pub kv_block_ns: f64,
    pub queue_peak: u64,
    pub queue_ns: f64,
    pub running_ns: f64,
    pub measured_ns: u64,
}

impl Recorder {
    /// A measured request finished: times in ns since the start.
    pub fn complete(&mut self, send: u64, first: u64, last: u64, prompt: u32, output: u32) {
        let ttft = (first - send) as f64 * 1e-9;
        let e2e = (last - send) as f64 * 1e-9;
        self.ttft.add(ttft * 1e3);
        self.e2e.add(e2e);
        if output > 1 {
            self.tpot.add((e2e - ttft) / f64::from(output - 1) * 1e3);
        }
        if e2e > 0.0 {
            self.rate.add(f64::from(output) / e2e);
        }
        self.requests += 1;
        self.output_tokens += u64::from(output);
        self.prompt_tokens += u64::from(prompt);
        self.note_send(send);
        self.last_token_ns = self.last_token_ns.max(last);
    }

    pub fn note_send(&mut self, send: u64) {
        self.first_send_ns = Some(self.first_send_ns.map_or(send, |f| f.min(send)));
    }

    /// `n` measured token gaps of `gap_ns` each.
    pub fn itl(&mut self, gap_ns: u64, n: u64) {
        self.itl.add_n(gap_ns as f64 * 1e-6, n);
    }

    /// Server state held for `dt_ns` while measuring.
    pub fn hold(&mut self, dt_ns: u64, kv_blocks: u64, queue: u64, running: u64) {
        let dt = dt_ns as f64;
        self.kv_block_ns += dt * kv_blocks as f64;
        self.queue_ns += dt * queue as f64;
        self.running_ns += dt * running as f64;
        self.measured_ns += dt_ns;
        self.kv_peak_blocks = self.kv_peak_blocks.max(kv_blocks);
        self.queue_peak = self.queue_peak.max(queue);
    }

    pub fn finish(
        &self,
        kv_capacity: u64,
        unfinished: u64,
        steps: u64,
        end_ns: u64,
        measured: String,
    ) -> Metrics {
        let duration_ns = self
            .first_send_ns
            .map_or(0, |f| self.last_token_ns.saturating_sub(f));
        let duration_s = duration_ns as f64 * 1e-9;
        let per_s = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };
        let held = self.measured_ns.max(1) as f64;
        Metrics {
            requests: self.requests,
            rejected: self.rejected,
            unfinished,
            output_tokens: self.output_tokens,
            prompt_tokens: self.prompt_tokens,
            duration_s,
            ttft_ms: Summary::of(&self.ttft, 1.0),
            tpot_ms: Summary::of(&self.tpot, 1.0),
            itl_ms: Summary::of(&self.itl, 1.0),
            e2e_s: Summary::of(&self.e2e, 1.0),
            request_tok_s: RateSummary::of(&self.rate),
            output_tok_s: per_s(self.output_tokens as f64),
            requests_per_s: per_s(self.requests as f64),
            preemptions: self.preemptions,
            kv_peak_util: self.kv_peak_blocks as f64 / kv_capacity.max(1) as f64,
            kv_mean_util: self.kv_block_ns / held / kv_capacity.max(1) as f64,
            queue_peak: self.queue_peak,
            queue_mean: self.queue_ns / held,
            running_mean: self.running_ns / held,
            steps,
            simulated_s: end_ns as f64 * 1e-9,
            quantile_relative_error: RELATIVE_ERROR,
            measured,
        }
    }
}
