//! Turning what a run recorded into its [`SimOutput`].

use super::metrics::{LatencySummary, Metrics, RateSummary};
use super::recorder::{Occupancy, Outcomes, Recorder};
use super::sketch::RELATIVE_ERROR;
use super::time::Nanos;
use super::{Load, LoadStats, SimConfig, SimOutput, Sketches, Stop};

/// The end of a run, for [`SimOutput`].
pub(crate) struct RunEnd {
    pub kv_capacity: u64,
    /// Engine steps run.
    pub steps: u64,
    /// Simulated time at the end.
    pub at: Nanos,
    pub prefix_caching: bool,
}

pub(crate) fn sim_output(rec: Recorder, cfg: &SimConfig, end: &RunEnd) -> SimOutput {
    let Recorder {
        mut outcomes,
        occupancy,
        traffic,
        ..
    } = rec;
    let measured = describe_measurement(cfg, traffic.measured_sent);
    let unsent = match cfg.stop {
        Stop::Requests(k) => {
            k.saturating_sub(traffic.measured_sent) > 0 && end.at >= Nanos::HORIZON
        }
        Stop::Duration(_) => false,
    };
    let mut metrics = metrics(&outcomes, &occupancy, traffic.outstanding, end, measured);
    metrics.overloaded = traffic.outstanding > 0 || unsent;
    if unsent {
        metrics.measured = format!(
            "{}; simulated time ran out (146 years) before all requests were sent",
            metrics.measured
        );
    }
    let (kv_timeline, queue_timeline) = occupancy.timeline.finish();
    let window_s = match cfg.stop {
        Stop::Duration(d) => d,
        Stop::Requests(_) => outcomes
            .first_send
            .map_or(0.0, |f| traffic.last_measured_send.saturating_sub(f).secs()),
    };
    let load = LoadStats {
        sent: traffic.sent,
        offered_requests_per_s: if window_s > 0.0 {
            traffic.measured_sent as f64 / window_s
        } else {
            0.0
        },
        active_sessions: match cfg.load {
            Load::Users(n) => Some(Load::active_sessions(n, &cfg.scenario)),
            _ => None,
        },
        warmup_s: cfg.warmup_s,
        simulated_output_tokens: traffic.emitted,
    };
    let sketches = Sketches {
        ttft_ms: std::mem::take(&mut outcomes.ttft),
        tpot_ms: std::mem::take(&mut outcomes.tpot),
        itl_ms: std::mem::take(&mut outcomes.itl),
        e2e_s: std::mem::take(&mut outcomes.e2e),
        request_tok_s: std::mem::take(&mut outcomes.rate),
        stream_tok_s: std::mem::take(&mut outcomes.stream),
    };
    SimOutput {
        metrics,
        kv_timeline,
        queue_timeline,
        load,
        sketches,
    }
}

fn metrics(
    o: &Outcomes,
    occ: &Occupancy,
    unfinished: u64,
    end: &RunEnd,
    measured: String,
) -> Metrics {
    let duration_s = o
        .first_send
        .map_or(Nanos::ZERO, |f| o.last_token.saturating_sub(f))
        .secs();
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let held = occ.measured.0.max(1) as f64;
    let capacity = end.kv_capacity.max(1) as f64;
    Metrics {
        requests: o.requests,
        rejected: o.rejected,
        unfinished,
        overloaded: unfinished > 0,
        output_tokens: o.output_tokens,
        prompt_tokens: o.prompt_tokens,
        duration_s,
        ttft_ms: LatencySummary::of(&o.ttft, 1.0),
        tpot_ms: LatencySummary::of(&o.tpot, 1.0),
        itl_ms: LatencySummary::of(&o.itl, 1.0),
        e2e_s: LatencySummary::of(&o.e2e, 1.0),
        request_tok_s: RateSummary::of(&o.rate),
        stream_tok_s: RateSummary::of(&o.stream),
        output_tok_s: per_s(o.output_tokens as f64),
        requests_per_s: per_s(o.requests as f64),
        preemptions: o.preemptions,
        prefix_caching: end.prefix_caching,
        prefix_hit_rate: (end.prefix_caching && o.prefix_queried > 0)
            .then(|| o.prefix_hits as f64 / o.prefix_queried as f64),
        kv_peak_util: occ.kv_peak_blocks as f64 / capacity,
        kv_mean_util: occ.kv_block_ns / held / capacity,
        queue_peak: occ.queue_peak,
        queue_mean: occ.queue_ns / held,
        running_mean: occ.running_ns / held,
        steps: end.steps,
        simulated_s: end.at.secs(),
        quantile_relative_error: RELATIVE_ERROR,
        measured,
    }
}

/// Which requests were measured, in words.
fn describe_measurement(cfg: &SimConfig, sent: u64) -> String {
    let warm = if cfg.warmup_s > 0.0 {
        format!(
            "; requests sent during the {} s warm-up load the server but are not measured",
            cfg.warmup_s
        )
    } else {
        String::new()
    };
    match cfg.stop {
        Stop::Requests(_) => {
            format!("all {sent} requests sent after the warm-up, each until its last token{warm}")
        }
        Stop::Duration(d) => format!(
            "the {sent} requests sent in [{w}, {e}) s, each until its last token; the load keeps running while they finish{warm}",
            w = cfg.warmup_s,
            e = cfg.warmup_s + d
        ),
    }
}
