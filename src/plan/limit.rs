//! What limited capacity, read from what the simulation saw at the first load that failed:
//! requests refused as too long, a KV cache that filled and preempted, time to first token, or
//! the streaming rate. A buyer needs the cause, not only the number: a faster GPU fixes latency,
//! more memory fixes KV capacity, and nothing but a longer context fixes refused requests.

use serde::{Deserialize, Serialize};

use super::slo::{Slo, slo_stats};
use crate::error::Result;
use crate::sim::Metrics;

/// Preemptions per completed request above which the KV cache, not compute, is the limit.
const PREEMPTION_STORM: f64 = 0.05;

/// Why one card cannot serve more users within the SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Requests longer than the server accepts (model context or KV cache) were refused.
    RequestsTooLong,
    /// The KV cache filled and requests were preempted and recomputed.
    KvCapacity,
    /// Time to first token past its limit (queueing or long prefills).
    Ttft,
    /// Tokens streamed too slowly after the first.
    StreamingRate,
    /// Both limits missed at once.
    TtftAndStreamingRate,
    /// The search stopped at its upper limit before anything failed.
    SearchLimit,
}

/// The cause, the load it was seen at, and the numbers behind it in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub cause: Cause,
    /// Users per card at the load examined.
    pub at_users: u64,
    pub detail: String,
}

/// The limit seen in `m`, one simulated window at `users` users per card, against `slo`.
/// `max_context` is the longest request the server accepts.
pub fn diagnose(m: &Metrics, users: u64, slo: &Slo, max_context: u32) -> Result<Limit> {
    let stats = slo_stats(m, slo)?;
    let total = m.requests + m.rejected + m.unfinished;
    let refused_share = if total == 0 {
        0.0
    } else {
        m.rejected as f64 / total as f64
    };
    let limit = |cause, detail| Limit {
        cause,
        at_users: users,
        detail,
    };
    if m.rejected > 0 && refused_share > 1.0 - slo.quantile {
        return Ok(limit(
            Cause::RequestsTooLong,
            format!(
                "{} of {total} requests were refused: prompt plus answer longer than the {} tokens \
                 the server accepts (the model's context or the KV cache)",
                m.rejected, max_context
            ),
        ));
    }
    let storm = m.requests > 0 && m.preemptions as f64 > PREEMPTION_STORM * m.requests as f64;
    if storm {
        return Ok(limit(
            Cause::KvCapacity,
            format!(
                "the KV cache filled (peak {:.0}% of blocks) and {} requests were preempted and \
                 recomputed for {} completed",
                m.kv_peak_util * 100.0,
                m.preemptions,
                m.requests
            ),
        ));
    }
    let ttft_missed = stats.ttft_tail_s > slo.ttft_s;
    let rate_missed = stats.tok_s_tail < slo.tok_s;
    let (p_rate, p_ttft) = slo.labels();
    let ttft = format!(
        "TTFT {p_ttft} {:.2} s against {} s",
        stats.ttft_tail_s, slo.ttft_s
    );
    let rate = format!(
        "streaming rate {p_rate} {:.1} tok/s against {}",
        stats.tok_s_tail, slo.tok_s
    );
    let kv = if m.kv_peak_util >= 0.95 {
        format!(
            ", with the KV cache full (peak {:.0}%)",
            m.kv_peak_util * 100.0
        )
    } else {
        String::new()
    };
    Ok(match (ttft_missed, rate_missed) {
        (true, true) => limit(
            Cause::TtftAndStreamingRate,
            format!("{ttft} and {rate}{kv}"),
        ),
        (false, true) => limit(Cause::StreamingRate, format!("{rate}{kv}")),
        _ => limit(Cause::Ttft, format!("{ttft}{kv}")),
    })
}

/// The limit when the search never saw a failure.
pub fn search_limit(users: u64) -> Limit {
    Limit {
        cause: Cause::SearchLimit,
        at_users: users,
        detail: format!("the search stopped at {users} users per card without missing the SLO"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{LatencySummary, RateSummary};

    fn metrics() -> Metrics {
        let lat = |v: f64| LatencySummary {
            mean: v,
            p50: v,
            p90: v,
            p95: v,
            p99: v,
            min: v,
            max: v,
            count: 100,
        };
        let rate = |v: f64| RateSummary {
            mean: v,
            p50: v,
            p10: v,
            p05: v,
            p01: v,
            min: v,
            count: 100,
        };
        Metrics {
            requests: 100,
            rejected: 0,
            unfinished: 0,
            overloaded: false,
            output_tokens: 10_000,
            prompt_tokens: 10_000,
            duration_s: 100.0,
            ttft_ms: Some(lat(500.0)),
            tpot_ms: Some(lat(30.0)),
            itl_ms: Some(lat(30.0)),
            e2e_s: Some(lat(3.0)),
            request_tok_s: Some(rate(30.0)),
            stream_tok_s: Some(rate(33.0)),
            output_tok_s: 100.0,
            requests_per_s: 1.0,
            preemptions: 0,
            prefix_caching: false,
            prefix_hit_rate: None,
            kv_peak_util: 0.5,
            kv_mean_util: 0.3,
            queue_peak: 0,
            queue_mean: 0.0,
            running_mean: 3.0,
            steps: 1000,
            simulated_s: 100.0,
            quantile_relative_error: 0.01,
            measured: String::new(),
        }
    }

    #[test]
    fn each_cause_is_told_apart() {
        let slo = Slo::default();
        let cause = |m: &Metrics| diagnose(m, 10, &slo, 2048).unwrap().cause;
        let mut m = metrics();
        m.rejected = 900;
        assert_eq!(cause(&m), Cause::RequestsTooLong);
        let mut m = metrics();
        m.preemptions = 40;
        assert_eq!(cause(&m), Cause::KvCapacity);
        let slow_ttft = |m: &mut Metrics| m.ttft_ms.iter_mut().for_each(|t| t.p95 = 4000.0);
        let mut m = metrics();
        slow_ttft(&mut m);
        assert_eq!(cause(&m), Cause::Ttft);
        let mut m = metrics();
        m.stream_tok_s.iter_mut().for_each(|r| r.p05 = 4.0);
        assert_eq!(cause(&m), Cause::StreamingRate);
        slow_ttft(&mut m);
        assert_eq!(cause(&m), Cause::TtftAndStreamingRate);
    }

    #[test]
    fn refused_requests_are_named_with_the_context() {
        let mut m = metrics();
        m.requests = 0;
        m.rejected = 1000;
        let l = diagnose(&m, 1, &Slo::default(), 2048).unwrap();
        assert_eq!(l.cause, Cause::RequestsTooLong);
        assert!(
            l.detail.contains("1000 of 1000") && l.detail.contains("2048"),
            "{}",
            l.detail
        );
    }
}
