//! The lines a plan at TP > 1 adds: what one server of several GPUs serves, how many servers,
//! and why that many GPUs per server.

use super::format::{thousands, users_with_interval};
use crate::plan::result::PlanResult;

/// What the simulation counted users per: a card at TP 1, a server of `tp` cards above.
pub fn unit(r: &PlanResult) -> &'static str {
    if r.tp > 1 { "server" } else { "card" }
}

/// `4 × h100-sxm (TP 4)`, or the GPU alone at TP 1.
pub fn gpus(r: &PlanResult) -> String {
    if r.tp > 1 {
        format!("{} × {} (TP {})", r.tp, r.question.gpu, r.tp)
    } else {
        r.question.gpu.clone()
    }
}

/// Verdict rows for a server of several GPUs (none at TP 1).
pub fn rows(r: &PlanResult) -> Vec<(String, String)> {
    let Some(s) = &r.server else {
        return Vec::new();
    };
    let u = &s.users_per_server;
    let (est, range) = users_with_interval(u.estimate as f64, u.low as f64, u.high as f64);
    let mut rows = vec![(
        "capacity per server".to_string(),
        format!("{est} users ({range}) on {} GPUs; per card below", s.gpus),
    )];
    if let Some(n) = s.servers_needed {
        let spare = s
            .servers_with_spare
            .map(|w| format!(", {} with a spare server", thousands(w)))
            .unwrap_or_default();
        rows.push((
            "servers needed".to_string(),
            format!(
                "{} servers of {} GPUs = {} cards{spare}",
                thousands(n),
                s.gpus,
                thousands(n * u64::from(s.gpus))
            ),
        ));
    }
    rows.push(("interconnect".to_string(), s.interconnect.clone()));
    rows
}

/// The assumption line saying why this TP (none when TP 1 was not a choice).
pub fn tp_line(r: &PlanResult) -> Option<String> {
    (!r.tp_reason.is_empty() && (r.tp > 1 || r.tp_reason.contains("auto")))
        .then(|| format!("tensor parallel: {}", r.tp_reason))
}
