//! The model part of a plan's interval: the capacity search rerun with every step time (kernels
//! and engine overheads alike) scaled to the two ends of the model-error interval.
//!
//! The rerun is paired with the main search: replication `r` at a scaled step time uses the seed
//! of the main search's replication `r` (common random numbers), so the ratio of the two
//! capacities carries the step-time change and almost none of the traffic luck. The model part
//! is the main estimate times the mean ratio over the first `windows` replications, which costs
//! `2 × windows` searches instead of rerunning all replications at both ends (the `--json`
//! figures in docs/ACCURACY.md compare the two).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error_bars::{
    Bounds, ErrorBasis, ErrorInterval, ErrorRecord, Subject, basis, combine, error_interval,
};
use super::planner::Planner;
use super::search::{Capacity, SearchOptions, search_one};
use crate::error::Result;
use crate::step::{BatchShape, StepTime};

/// Another step-time model's times multiplied by `k`.
pub struct Scaled<'a> {
    pub inner: &'a dyn StepTime,
    pub k: f64,
}

impl StepTime for Scaled<'_> {
    fn step_seconds(&self, batch: &BatchShape<'_>) -> f64 {
        self.k * self.inner.step_seconds(batch)
    }
}

/// What the plan is asked to fold in: the record and how many paired replications to rerun.
#[derive(Debug, Clone)]
pub struct ModelErrorRequest {
    pub record: ErrorRecord,
    /// Paired replications per end (at most the main search's).
    pub windows: usize,
    /// Said with the answer when time to first token limits capacity (TTFT's own error is no
    /// step-time scale and is not in the interval).
    pub ttft_caveat: Option<String>,
}

/// Users per card at the two ends of the model-error interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPart {
    pub low: f64,
    pub high: f64,
    /// Real ÷ predicted step time at the low and the high end of capacity.
    pub step_scale_at_low: f64,
    pub step_scale_at_high: f64,
    /// Paired replications rerun per end.
    pub windows: usize,
    pub error: ErrorInterval,
    pub basis: ErrorBasis,
}

/// The answer's interval: model error and traffic randomness, each and combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInterval {
    pub confidence: f64,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// Cards at the combined interval's high and low ends.
    pub cards_range: Option<(u64, u64)>,
    pub traffic: Bounds,
    pub model_error: ModelPart,
}

impl PlanInterval {
    /// The interval of a server of `gpus` GPUs, per GPU (cards already count GPUs once
    /// multiplied here).
    pub fn per_gpu(mut self, gpus: u32) -> PlanInterval {
        if gpus <= 1 {
            return self;
        }
        let g = f64::from(gpus);
        for v in [
            &mut self.estimate,
            &mut self.low,
            &mut self.high,
            &mut self.traffic.low,
            &mut self.traffic.high,
            &mut self.model_error.low,
            &mut self.model_error.high,
        ] {
            *v /= g;
        }
        let n = u64::from(gpus);
        self.cards_range = self.cards_range.map(|(a, b)| (a * n, b * n));
        self
    }
}

/// Why no model part could be computed (said with the answer instead).
pub fn unavailable(record: &ErrorRecord) -> String {
    format!(
        "the interval holds traffic randomness only: the validation record has {} usable row{} \
         of {} (two are needed)",
        record.samples.len(),
        if record.samples.len() == 1 { "" } else { "s" },
        record.metric
    )
}

/// The plan's interval with the model error folded in; `None` when the record has fewer than
/// two rows.
pub fn fold(
    planner: &Planner,
    cap: &Capacity,
    req: &ModelErrorRequest,
    users: u64,
) -> Result<Option<PlanInterval>> {
    let d = &planner.deployment;
    let subject = Subject {
        gpu: d.target.gpu.key.clone(),
        profile: planner.profile_info().kind,
        model: d.target.model.key.clone(),
        quant: d.target.quant.key().to_string(),
    };
    let b = basis(&req.record, &subject);
    let errors: Vec<f64> = req.record.samples.iter().map(|s| s.log_error).collect();
    let Some(error) = error_interval(&errors, &b.widening, cap.confidence) else {
        return Ok(None);
    };
    let (fast, slow) = error.step_scales();
    let pass = |n: u64, seed: u64, k: f64| passes_scaled(planner, n, seed, k);
    let windows = req.windows.clamp(1, cap.replications.len().max(1));
    let (low, high) = paired_bounds(&pass, cap, (slow, fast), windows, &planner.spec.search)?;
    let traffic = Bounds {
        low: cap.low,
        high: cap.high,
    };
    let model = Bounds { low, high };
    let c = combine(cap.estimate, traffic, model);
    let cards = |per_card: f64| super::cards::cards_needed(users, per_card.floor() as u64);
    Ok(Some(PlanInterval {
        confidence: cap.confidence,
        estimate: cap.estimate,
        low: c.low,
        high: c.high,
        cards_range: cards(c.high).zip(cards(c.low)),
        traffic,
        model_error: ModelPart {
            low,
            high,
            step_scale_at_low: slow,
            step_scale_at_high: fast,
            windows,
            error,
            basis: b,
        },
    }))
}

/// Whether `users` meet the SLO with step times scaled by `k` in the window of `seed`.
fn passes_scaled(p: &Planner, users: u64, seed: u64, k: f64) -> Result<bool> {
    let cost = Scaled {
        inner: &p.deployment.cost,
        k,
    };
    p.passes_with(&cost, users, seed)
}

/// Capacity at step scales `(k_low, k_high)` (the slow end gives the low capacity): the main
/// estimate times the mean ratio of paired replications. A scale of exactly 1 needs no rerun.
pub fn paired_bounds<F>(
    pass: &F,
    cap: &Capacity,
    (k_low, k_high): (f64, f64),
    windows: usize,
    opts: &SearchOptions,
) -> Result<(f64, f64)>
where
    F: Fn(u64, u64, f64) -> Result<bool> + Sync,
{
    let base = &cap.replications[..windows.min(cap.replications.len())];
    let base_sum: u64 = base.iter().map(|r| r.capacity).sum();
    let at = |k: f64| -> Result<f64> {
        if k == 1.0 || base_sum == 0 {
            return Ok(cap.estimate);
        }
        let caps: Vec<u64> = base
            .par_iter()
            .map(|r| {
                let o = SearchOptions {
                    // capacity scales about inversely with step time: start just below that.
                    // (A x1.1 bracket around it was tried: cheaper, but with a noisy SLO
                    // verdict the found capacity leans toward the start, and the paired rerun
                    // drifted 5.6% from the full one.)
                    start: ((r.capacity as f64 / k * 0.9) as u64).max(1),
                    ..*opts
                };
                search_one(&|n, seed| pass(n, seed, k), r.seed, &o).map(|x| x.capacity)
            })
            .collect::<Result<_>>()?;
        Ok(cap.estimate * caps.iter().sum::<u64>() as f64 / base_sum as f64)
    };
    let (low, high) = rayon::join(|| at(k_low), || at(k_high));
    Ok((low?, high?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::search::search;

    /// A synthetic card whose capacity is `c0 / k` (plus seed noise): step times `k` times
    /// longer serve `k` times fewer users.
    fn card(c0: f64) -> impl Fn(u64, u64, f64) -> Result<bool> + Sync {
        move |n, seed, k| Ok((n as f64) <= c0 / k + (seed % 7) as f64)
    }

    fn opts() -> SearchOptions {
        SearchOptions {
            rel_tol: 0.0,
            replications: 6,
            ..SearchOptions::default()
        }
    }

    fn main_search(c0: f64) -> Capacity {
        let f = card(c0);
        search(&|n, s| f(n, s, 1.0), &opts()).unwrap()
    }

    #[test]
    fn a_known_step_scale_moves_the_capacity_by_its_inverse() {
        let cap = main_search(10_000.0);
        let (lo, hi) = paired_bounds(&card(10_000.0), &cap, (1.25, 0.8), 6, &opts()).unwrap();
        // c0/k + noise: the ratio is within the noise's share (≤ 6 of 8,000) of 1/k
        assert!((lo / cap.estimate - 0.8).abs() < 1e-3, "{lo}");
        assert!((hi / cap.estimate - 1.25).abs() < 1e-3, "{hi}");
    }

    #[test]
    fn a_scale_of_one_reruns_nothing_and_gives_the_estimate() {
        let cap = main_search(5_000.0);
        let never = |_: u64, _: u64, _: f64| -> Result<bool> {
            Err(crate::error::Error::Internal("must not run".into()))
        };
        let (lo, hi) = paired_bounds(&never, &cap, (1.0, 1.0), 4, &opts()).unwrap();
        assert_eq!((lo, hi), (cap.estimate, cap.estimate));
    }

    #[test]
    fn paired_replications_use_the_main_searchs_seeds() {
        let cap = main_search(3_000.0);
        let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
        let f = |n: u64, seed: u64, k: f64| {
            seen.lock().unwrap().insert(seed);
            card(3_000.0)(n, seed, k)
        };
        paired_bounds(&f, &cap, (1.1, 0.9), 3, &opts()).unwrap();
        let want: std::collections::BTreeSet<u64> =
            cap.replications[..3].iter().map(|r| r.seed).collect();
        assert_eq!(seen.into_inner().unwrap(), want);
    }

    #[test]
    fn scaled_step_times_multiply() {
        struct One;
        impl StepTime for One {
            fn step_seconds(&self, _: &BatchShape<'_>) -> f64 {
                0.02
            }
        }
        let s = Scaled {
            inner: &One,
            k: 1.5,
        };
        let b = BatchShape {
            decode_seqs: 1,
            decode_context_tokens: 10,
            prefills: &[],
        };
        assert!((s.step_seconds(&b) - 0.03).abs() < 1e-15);
    }
}
