//! Limits on the work one command may ask for, checked at the edge with the flag that asks: a
//! run that could not finish in reasonable time (or memory) is refused up front with the reason,
//! not started. The numbers are stated in `--help`.

use crate::catalog::scenario::Scenario;
use crate::error::{Error, Result, check_range, compact};
use crate::sim::{Load, Stop};

/// Measured requests one simulation may send (about a minute of simulating on one core).
pub const MAX_REQUESTS: u64 = 10_000_000;
/// Longest measured window, seconds (30 days).
pub const MAX_DURATION_S: f64 = 30.0 * 86_400.0;
/// Users in a session at once (each holds state in the simulator).
pub const MAX_ACTIVE_SESSIONS: u64 = 1_000_000;
/// Closed-loop clients.
pub const MAX_CONCURRENCY: u32 = 1_000_000;

/// The load flags, range-checked.
pub fn check_load(load: &Load, scenario: &Scenario) -> Result<()> {
    match load {
        Load::Concurrency(n) if *n == 0 || *n > MAX_CONCURRENCY => Err(Error::BadInput(format!(
            "--concurrency must be 1..={MAX_CONCURRENCY}, got {n}"
        ))),
        Load::Rate { rate, burstiness } => {
            check_range("--rate", *rate, 1e-6, 1e6)?;
            check_range("--burstiness", *burstiness, 1e-3, 1e3)?;
            Ok(())
        }
        Load::Users(n) => check_users("--users", *n, scenario),
        _ => Ok(()),
    }
}

/// A user population whose peak fits in the simulator.
pub fn check_users(flag: &str, users: u64, scenario: &Scenario) -> Result<()> {
    if users == 0 || users > 1_000_000_000 {
        return Err(Error::BadInput(format!(
            "{flag} must be 1..=1000000000, got {users}"
        )));
    }
    let active = Load::active_sessions(users, scenario);
    if active > MAX_ACTIVE_SESSIONS {
        return Err(Error::BadInput(format!(
            "{flag} {users} puts {active} users in a session at once under scenario {}; at most \
             {MAX_ACTIVE_SESSIONS} can be simulated (plan for a share of the population and scale)",
            scenario.key
        )));
    }
    Ok(())
}

/// The stop flags, and the requests they would make the simulator send.
pub fn check_stop(stop: &Stop, load: &Load, scenario: &Scenario) -> Result<()> {
    match *stop {
        Stop::Requests(k) if k == 0 || k > MAX_REQUESTS => Err(Error::BadInput(format!(
            "--requests must be 1..={MAX_REQUESTS}, got {k}"
        ))),
        Stop::Duration(d) => {
            check_range("--duration", d, 1e-3, MAX_DURATION_S)?;
            let expected = expected_rate(load, scenario) * d;
            if expected > MAX_REQUESTS as f64 {
                return Err(Error::BadInput(format!(
                    "--duration {} at this load sends about {} requests; at most {MAX_REQUESTS} \
                     can be measured in one run (shorten --duration)",
                    compact(d),
                    compact(expected.round())
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Requests per second a load offers, where it can be told in advance (0 when it cannot).
fn expected_rate(load: &Load, scenario: &Scenario) -> f64 {
    match load {
        Load::Rate { rate, .. } => *rate,
        Load::Users(n) => {
            let gap = scenario.session.think_time_s.mean().max(1.0);
            Load::active_sessions(*n, scenario) as f64 / gap
        }
        _ => 0.0,
    }
}
