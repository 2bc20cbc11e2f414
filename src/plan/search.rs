//! Capacity search: the largest number of users one card serves within the SLO.
//!
//! Each replication fixes one seed and bisects over the user count with that seed at every
//! candidate (common random numbers), so two candidates differ only in load, not in luck.
//! Replications with different seeds run in parallel. Their capacities spread because peak
//! windows differ (traffic randomness): the estimate is their mean, and the interval says where
//! the capacity of a peak window falls (a prediction interval), which also bounds where another
//! run's estimate lands, so a rerun with another seed stays inside the printed interval.
//!
//! Bisection only ever compares pass/fail at the same (users, seed) points, so if one pass/fail
//! rule accepts a subset of what another accepts at every point (a stricter SLO), its result is
//! never larger: the two searches follow the same path until they disagree at some `mid`, after
//! which the stricter one stays at or below `mid` and the looser one at or above it.
//!
//! With [`SearchOptions::pilot`] (what `plan` uses) that holds for the first [`PILOTS`]
//! replications only: the others start from the pilots' mean, which moves with the SLO, so a
//! stricter SLO's replication may end up above the looser one's
//! when a window's pass/fail is not monotone in load. It saves about a third of the search's
//! simulations; the estimate and its interval stay within the replications' own spread.

use rayon::prelude::*;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::error::{Error, Result};

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SearchOptions {
    /// Independent replications (different seeds); at least 1, 2+ for an interval.
    pub replications: usize,
    /// Seed of the first replication; the others are derived from it.
    pub base_seed: u64,
    /// First candidate, e.g. a back-of-envelope estimate. Must not depend on the SLO, so that
    /// the search path is shared between SLOs (see the module docs).
    pub start: u64,
    /// The search never goes beyond this many users; a result at this limit is flagged.
    pub max_users: u64,
    /// Stop when the bracket is narrower than this share of its lower end (at least 1 user).
    pub rel_tol: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub confidence: f64,
    /// How the first bracket grows from `start`: each probe past it multiplies the load by this.
    /// 2 doubles up from a start below the capacity (and bisects down to 0 should the start
    /// fail); below 2 the start is taken to be close, and a failing start steps down by the same
    /// factor until a load passes.
    pub growth: f64,
    /// Search the first [`PILOTS`] replications from `start`, then the others from their mean
    /// with a [`NEAR_GROWTH`] bracket: the pilots' capacities say where the others fall, which
    /// saves the doubling probes (about 3 of 8 simulations per replication).
    pub pilot: bool,
}

/// Replications searched first when [`SearchOptions::pilot`] is set.
pub const PILOTS: usize = 2;

/// Bracket growth around a start known to be close (the pilots' mean, a scaled capacity): a
/// peak window's capacity spreads by about ±10% between seeds.
pub const NEAR_GROWTH: f64 = 1.1;

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            replications: 4,
            base_seed: 1,
            start: 100,
            max_users: 10_000_000,
            rel_tol: 0.02,
            confidence: 0.95,
            growth: 2.0,
            pilot: false,
        }
    }
}

/// One evaluated candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub users: u64,
    pub pass: bool,
}

/// The result of one seed's search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replication {
    pub seed: u64,
    /// Largest user count that passed (0 if none did).
    pub capacity: u64,
    /// Smallest user count that failed, if any was tried.
    pub first_fail: Option<u64>,
    /// Whether the search stopped at `max_users` without a failure.
    pub capped: bool,
    /// Every candidate in the order it was tried.
    pub probes: Vec<Probe>,
}

/// Users per card across replications, with the interval a peak window's capacity falls in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capacity {
    /// Mean of the replications' capacities.
    pub estimate: f64,
    /// Prediction interval of one peak window's capacity (Student t, `confidence`), clamped at
    /// 0. Equal to the estimate with a single replication.
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
    /// Smallest and largest single-replication capacity.
    pub min: u64,
    pub max: u64,
    /// Whether any replication hit `max_users`: the true capacity may be higher.
    pub capped: bool,
    pub evaluations: usize,
    pub replications: Vec<Replication>,
}

/// The seed of replication `r`: distinct, well-mixed seeds from one base seed (SplitMix64).
pub fn replication_seed(base: u64, r: usize) -> u64 {
    let mut z = base.wrapping_add((r as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn check(opts: &SearchOptions) -> Result<()> {
    if opts.replications == 0 {
        return Err(Error::BadInput("at least one replication is needed".into()));
    }
    if opts.max_users == 0 {
        return Err(Error::BadInput(
            "the search limit must be at least 1 user".into(),
        ));
    }
    if !(opts.rel_tol.is_finite() && opts.rel_tol >= 0.0 && opts.rel_tol < 1.0) {
        return Err(Error::BadInput(format!(
            "relative tolerance must be in [0, 1), got {}",
            opts.rel_tol
        )));
    }
    if !(opts.growth.is_finite() && opts.growth > 1.0 && opts.growth <= 2.0) {
        return Err(Error::BadInput(format!(
            "bracket growth must be in (1, 2], got {}",
            opts.growth
        )));
    }
    if !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(Error::BadInput(format!(
            "confidence must be in (0, 1), got {}",
            opts.confidence
        )));
    }
    Ok(())
}

/// Search one seed. `pass(users, seed)` says whether `users` users meet the SLO in the window
/// simulated with `seed`; zero users pass by definition.
pub fn search_one<F>(pass: &F, seed: u64, opts: &SearchOptions) -> Result<Replication>
where
    F: Fn(u64, u64) -> Result<bool>,
{
    check(opts)?;
    let mut probes = Vec::new();
    let mut try_users = |n: u64| -> Result<bool> {
        let ok = pass(n, seed)?;
        probes.push(Probe { users: n, pass: ok });
        Ok(ok)
    };
    let mut lo = 0u64;
    let mut hi: Option<u64> = None;
    // Bracket: grow from the start guess until a candidate fails or the limit is reached.
    let up = |n: u64| ((n as f64 * opts.growth).ceil() as u64).max(n.saturating_add(1));
    let mut n = opts.start.clamp(1, opts.max_users);
    loop {
        if try_users(n)? {
            lo = n;
            if n >= opts.max_users {
                break;
            }
            n = up(n).min(opts.max_users);
        } else {
            hi = Some(n);
            break;
        }
    }
    // A close start that failed: step down until a load passes (0 passes by definition).
    if opts.growth < 2.0 && lo == 0 {
        while let Some(h) = hi {
            let n = (h as f64 / opts.growth).floor() as u64;
            if n == 0 || n >= h {
                break;
            }
            if try_users(n)? {
                lo = n;
                break;
            }
            hi = Some(n);
        }
    }
    let Some(mut hi_v) = hi else {
        return Ok(Replication {
            seed,
            capacity: lo,
            first_fail: None,
            capped: true,
            probes,
        });
    };
    // Bisect: `lo` passes, `hi_v` fails.
    loop {
        let tol = ((opts.rel_tol * lo as f64).floor() as u64).max(1);
        if hi_v - lo <= tol {
            break;
        }
        let mid = lo + (hi_v - lo) / 2;
        if try_users(mid)? {
            lo = mid;
        } else {
            hi_v = mid;
        }
    }
    Ok(Replication {
        seed,
        capacity: lo,
        first_fail: Some(hi_v),
        capped: false,
        probes,
    })
}

/// Search every replication (in parallel) and summarise them.
pub fn search<F>(pass: &F, opts: &SearchOptions) -> Result<Capacity>
where
    F: Fn(u64, u64) -> Result<bool> + Sync,
{
    check(opts)?;
    let one =
        |r: usize, o: &SearchOptions| search_one(pass, replication_seed(opts.base_seed, r), o);
    let pilots = if opts.pilot && opts.replications > PILOTS {
        PILOTS
    } else {
        opts.replications
    };
    let mut reps: Vec<Replication> = (0..pilots)
        .into_par_iter()
        .map(|r| one(r, opts))
        .collect::<Result<_>>()?;
    let mean = reps.iter().map(|r| r.capacity).sum::<u64>() / pilots.max(1) as u64;
    // Pilots that hit the limit or found nothing give no useful centre: search as usual.
    let near = if mean > 0 && !reps.iter().any(|r| r.capped) {
        SearchOptions {
            start: mean,
            growth: opts.growth.min(NEAR_GROWTH),
            ..*opts
        }
    } else {
        *opts
    };
    let rest: Vec<Replication> = (pilots..opts.replications)
        .into_par_iter()
        .map(|r| one(r, &near))
        .collect::<Result<_>>()?;
    reps.extend(rest);
    Ok(summarise(reps, opts.confidence))
}

/// Mean of the replications' capacities and the interval one window's capacity falls in.
pub fn summarise(reps: Vec<Replication>, confidence: f64) -> Capacity {
    let xs: Vec<f64> = reps.iter().map(|r| r.capacity as f64).collect();
    let (estimate, half) = prediction_interval(&xs, confidence);
    Capacity {
        estimate,
        low: (estimate - half).max(0.0),
        high: estimate + half,
        confidence,
        min: reps.iter().map(|r| r.capacity).min().unwrap_or(0),
        max: reps.iter().map(|r| r.capacity).max().unwrap_or(0),
        capped: reps.iter().any(|r| r.capped),
        evaluations: reps.iter().map(|r| r.probes.len()).sum(),
        replications: reps,
    }
}

/// Mean and half-width of the two-sided `confidence` prediction interval for one more value
/// (Student t with n − 1 degrees of freedom, `s·√(1 + 1/n)`); half-width 0 for fewer than two.
pub fn prediction_interval(xs: &[f64], confidence: f64) -> (f64, f64) {
    let (mean, half) = mean_interval(xs, confidence);
    let n = xs.len() as f64;
    (mean, half * (n + 1.0).sqrt())
}

/// Mean and half-width of the two-sided `confidence` interval of the mean (Student t with
/// n − 1 degrees of freedom); half-width 0 for fewer than two values.
pub fn mean_interval(xs: &[f64], confidence: f64) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .map(|d| d.inverse_cdf(0.5 + confidence / 2.0))
        .unwrap_or(f64::NAN);
    let half = t * (var / n as f64).sqrt();
    (mean, if half.is_finite() { half } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic card: capacity `cap`, shifted by a seed-dependent amount of noise.
    fn threshold(cap: u64, noise: u64) -> impl Fn(u64, u64) -> Result<bool> + Sync {
        move |n, seed| Ok(n <= cap + seed % (noise + 1))
    }

    fn opts() -> SearchOptions {
        SearchOptions {
            rel_tol: 0.0,
            ..SearchOptions::default()
        }
    }

    #[test]
    fn finds_an_exact_threshold() {
        for cap in [0u64, 1, 7, 99, 100, 101, 4321, 123_456] {
            let r = search_one(&threshold(cap, 0), 5, &opts()).unwrap();
            assert_eq!(r.capacity, cap, "cap {cap}");
            assert_eq!(r.first_fail, Some(cap + 1));
            assert!(!r.capped);
        }
    }

    #[test]
    fn tolerance_brackets_the_threshold() {
        let o = SearchOptions {
            rel_tol: 0.02,
            ..opts()
        };
        let r = search_one(&threshold(4321, 0), 5, &o).unwrap();
        let fail = r.first_fail.unwrap();
        assert!(r.capacity <= 4321 && fail > 4321);
        assert!((fail - r.capacity) as f64 <= 0.02 * r.capacity as f64 + 1.0);
        // Fewer evaluations than with an exact search.
        let exact = search_one(&threshold(4321, 0), 5, &opts()).unwrap();
        assert!(r.probes.len() < exact.probes.len());
    }

    #[test]
    fn a_close_start_brackets_from_either_side() {
        for (cap, start) in [
            (1000u64, 1000u64),
            (1000, 950),
            (1000, 1300),
            (1000, 40_000),
            (0, 5),
        ] {
            let o = SearchOptions {
                start,
                growth: NEAR_GROWTH,
                ..opts()
            };
            let r = search_one(&threshold(cap, 0), 5, &o).unwrap();
            assert_eq!(r.capacity, cap, "start {start}");
            assert_eq!(r.first_fail, Some(cap + 1), "start {start}");
        }
    }

    #[test]
    fn pilots_give_the_same_exact_capacities_in_fewer_simulations() {
        let o = SearchOptions {
            replications: 12,
            ..opts()
        };
        let f = threshold(5000, 400);
        let plain = search(&f, &o).unwrap();
        let piloted = search(&f, &SearchOptions { pilot: true, ..o }).unwrap();
        let caps = |c: &Capacity| {
            c.replications
                .iter()
                .map(|r| (r.seed, r.capacity))
                .collect::<Vec<_>>()
        };
        assert_eq!(caps(&plain), caps(&piloted));
        assert_eq!(piloted.estimate, plain.estimate);
        assert!(
            piloted.evaluations < plain.evaluations,
            "{} >= {}",
            piloted.evaluations,
            plain.evaluations
        );
        // the pilots are searched as usual: their probes match the plain search's
        for r in 0..PILOTS {
            assert_eq!(plain.replications[r], piloted.replications[r]);
        }
    }

    #[test]
    fn stops_at_the_limit() {
        let o = SearchOptions {
            max_users: 1000,
            ..opts()
        };
        let r = search_one(&|_, _| Ok(true), 1, &o).unwrap();
        assert_eq!(r.capacity, 1000);
        assert!(r.capped);
        assert_eq!(r.first_fail, None);
    }

    #[test]
    fn uses_one_seed_per_replication() {
        let seen = std::sync::Mutex::new(Vec::new());
        let f = |n: u64, seed: u64| {
            seen.lock().unwrap().push(seed);
            Ok(n <= 500)
        };
        let c = search(&f, &opts()).unwrap();
        let seen = seen.into_inner().unwrap();
        let mut seeds = seen.clone();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), opts().replications);
        for r in &c.replications {
            let count = seen.iter().filter(|&&s| s == r.seed).count();
            assert_eq!(count, r.probes.len());
        }
        assert_eq!(c.evaluations, seen.len());
    }

    #[test]
    fn a_stricter_rule_never_finds_more_even_when_noisy() {
        // Non-monotone pass/fail in users (as a noisy simulation can be); the strict rule
        // accepts a subset of the loose rule's points.
        let margin = |n: u64, seed: u64| {
            let wobble = ((n.wrapping_mul(2_654_435_761) ^ seed) % 97) as f64;
            3000.0 - n as f64 + 4.0 * wobble
        };
        for seed in 0..50 {
            let loose = |n, s| Ok(margin(n, s) >= 0.0);
            let strict = |n, s| Ok(margin(n, s) >= 150.0);
            let o = SearchOptions {
                rel_tol: 0.01,
                ..opts()
            };
            let a = search_one(&loose, seed, &o).unwrap();
            let b = search_one(&strict, seed, &o).unwrap();
            assert!(b.capacity <= a.capacity, "seed {seed}: {b:?} > {a:?}");
        }
    }

    #[test]
    fn interval_covers_the_replications_mean() {
        let c = search(&threshold(1000, 200), &opts()).unwrap();
        let caps: Vec<u64> = c.replications.iter().map(|r| r.capacity).collect();
        let mean = caps.iter().sum::<u64>() as f64 / caps.len() as f64;
        assert!((c.estimate - mean).abs() < 1e-9);
        assert!(c.low <= c.estimate && c.estimate <= c.high);
        assert!(caps.iter().all(|&x| (1000..=1200).contains(&x)));
        assert_eq!(c.min, *caps.iter().min().unwrap());
        assert_eq!(c.max, *caps.iter().max().unwrap());
    }

    #[test]
    fn t_interval_matches_a_hand_computation() {
        // Mean 10, sample sd 2, n = 4: t(0.975, 3) = 3.182446; half = 3.182446 * 2 / 2.
        let (m, h) = mean_interval(&[8.0, 10.0, 12.0, 10.0], 0.95);
        let sd = (8.0f64 / 3.0).sqrt();
        assert!((m - 10.0).abs() < 1e-12);
        assert!((h - 3.182_446 * sd / 2.0).abs() < 1e-4, "{h}");
        assert_eq!(mean_interval(&[5.0], 0.95), (5.0, 0.0));
        assert_eq!(mean_interval(&[5.0, 5.0, 5.0], 0.95), (5.0, 0.0));
    }

    #[test]
    fn a_window_falls_in_the_prediction_interval_wider_than_the_mean_s() {
        // n = 4: the prediction half-width is the mean's times sqrt(n + 1)
        let xs = [8.0, 10.0, 12.0, 10.0];
        let (m, h) = mean_interval(&xs, 0.95);
        let (pm, ph) = prediction_interval(&xs, 0.95);
        assert_eq!(m, pm);
        assert!((ph - h * 5f64.sqrt()).abs() < 1e-12, "{ph}");
        // every value of a sample of one window per seed lies inside it here
        assert!(xs.iter().all(|x| (pm - ph..=pm + ph).contains(x)));
    }

    #[test]
    fn more_confidence_widens_the_interval() {
        let xs = [90.0, 100.0, 110.0, 105.0];
        assert!(mean_interval(&xs, 0.99).1 > mean_interval(&xs, 0.9).1);
    }

    #[test]
    fn bad_options_are_errors_not_panics() {
        let f = |_: u64, _: u64| Ok(true);
        for o in [
            SearchOptions {
                replications: 0,
                ..opts()
            },
            SearchOptions {
                max_users: 0,
                ..opts()
            },
            SearchOptions {
                rel_tol: f64::NAN,
                ..opts()
            },
            SearchOptions {
                confidence: 1.0,
                ..opts()
            },
            SearchOptions {
                growth: 1.0,
                ..opts()
            },
            SearchOptions {
                growth: f64::NAN,
                ..opts()
            },
        ] {
            assert!(search(&f, &o).is_err());
        }
    }

    #[test]
    fn evaluator_errors_propagate() {
        let f = |n: u64, _: u64| {
            if n > 300 {
                Err(Error::Internal("boom".into()))
            } else {
                Ok(true)
            }
        };
        assert!(search(&f, &opts()).is_err());
    }

    #[test]
    fn seeds_differ() {
        let s: std::collections::HashSet<u64> = (0..100).map(|r| replication_seed(7, r)).collect();
        assert_eq!(s.len(), 100);
        assert_eq!(replication_seed(7, 3), replication_seed(7, 3));
    }
}
