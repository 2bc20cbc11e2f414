//! How the answer moves if the scenario's two least certain assumptions are off: twice the share
//! of users active at the peak, and outputs twice as long.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::planner::{PlanSpec, Planner};
use super::search::SearchOptions;
use crate::error::Result;
use crate::sim::Dist;
use crate::units::percent;

/// Capacity under one changed assumption.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sensitivity {
    /// What changed, in words.
    pub change: String,
    pub users_per_card: f64,
    pub low: f64,
    pub high: f64,
    /// Relative to the base estimate (0.5 = half as many users per card).
    pub ratio: Option<f64>,
}

/// Capacity if the active share doubles and if outputs are twice as long, with `replications`
/// seeds each (fewer than the main search: these are a direction, not the answer).
pub fn sensitivity(p: &Planner, base: f64, replications: usize) -> Result<Vec<Sensitivity>> {
    let sc = &p.spec.scenario;
    let share = sc.session.active_share;
    let doubled = (share * 2.0).min(1.0);
    let mut busier = sc.clone();
    busier.session.active_share = doubled;
    let mut longer = sc.clone();
    longer.output_tokens = scale_dist(&sc.output_tokens, 2.0);
    let cases = [
        (
            format!(
                "active share at peak {} → {}",
                percent(share),
                percent(doubled)
            ),
            busier,
        ),
        ("outputs twice as long".to_string(), longer),
    ];
    cases
        .into_par_iter()
        .map(|(change, scenario)| {
            let q = p.with_spec(PlanSpec {
                scenario,
                search: SearchOptions {
                    replications,
                    ..p.spec.search
                },
                ..p.spec.clone()
            });
            let c = q.capacity_from(Some(((base * 0.5) as u64).max(1)))?;
            Ok(Sensitivity {
                change,
                users_per_card: c.estimate,
                low: c.low,
                high: c.high,
                ratio: (base > 0.0).then(|| c.estimate / base),
            })
        })
        .collect()
}

/// A distribution with every value scaled by `k` (for "outputs twice as long").
pub fn scale_dist(d: &Dist, k: f64) -> Dist {
    match d {
        Dist::Fixed { value } => Dist::Fixed { value: value * k },
        Dist::Uniform { min, max } => Dist::Uniform {
            min: min * k,
            max: max * k,
        },
        Dist::Lognormal {
            median,
            p90,
            min,
            max,
        } => Dist::Lognormal {
            median: median * k,
            p90: p90 * k,
            min: min.map(|m| m * k),
            max: max.map(|m| m * k),
        },
        Dist::Empirical { values, weights } => Dist::Empirical {
            values: values.iter().map(|v| v * k).collect(),
            weights: weights.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_a_distribution_scales_its_mean() {
        let dists = [
            Dist::Fixed { value: 100.0 },
            Dist::Uniform {
                min: 10.0,
                max: 30.0,
            },
            Dist::Lognormal {
                median: 250.0,
                p90: 500.0,
                min: Some(16.0),
                max: Some(1024.0),
            },
            Dist::Empirical {
                values: vec![1.0, 3.0],
                weights: Some(vec![1.0, 3.0]),
            },
        ];
        for d in dists {
            let s = scale_dist(&d, 2.0);
            assert!((s.mean() - 2.0 * d.mean()).abs() < 1e-9 * d.mean().max(1.0));
        }
    }
}
