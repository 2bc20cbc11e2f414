//! The verdict's cards and cost rows: how many cards (GPUs), the conservative count, the load
//! each carries, and what they cost a month.

use super::format::{thousands, usd, usd_per_hour, users_with_interval};
use crate::plan::result::PlanResult;

pub(super) fn cards_rows(r: &PlanResult) -> Vec<(String, String)> {
    let (Some(c), Some(s)) = (r.cards_needed, r.cards_with_spare) else {
        return vec![(
            "cards needed".into(),
            "none is enough: one card misses the SLO even for one user".into(),
        )];
    };
    let mut rows = vec![("cards needed".into(), format!("{c} ({s} with one spare)"))];
    if let (Some((_, conservative)), Some(u)) = (r.cards_range, &r.users_per_card)
        && conservative > c
    {
        rows.push((
            "conservative".into(),
            format!(
                "{conservative} cards if every card's capacity is at the interval's low end ({} \
                 users per card)",
                users_with_interval(u.estimate as f64, u.low as f64, u.high as f64)
                    .1
                    .split('–')
                    .next()
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(a) = &r.at_load {
        rows.push((
            "load per card".into(),
            format!(
                "{} users on each of the {c} cards ({} in a session at the peak)",
                thousands(a.users.div_ceil(u64::from(r.tp.max(1)))),
                thousands(a.active_sessions.div_ceil(u64::from(r.tp.max(1))))
            ),
        ));
    }
    rows
}

pub(super) fn cost_rows(r: &PlanResult) -> Vec<(String, String)> {
    let Some(c) = &r.cost else {
        return Vec::new();
    };
    let mut rows = vec![(
        "cost".into(),
        format!(
            "{}/month ({}/month with the spare) at {} per card, 730 h/month",
            usd(c.per_month),
            usd(c.per_month_with_spare),
            usd_per_hour(c.price_per_hour)
        ),
    )];
    if let Some(p) = c.per_user_month {
        rows.push(("per user".into(), format!("{} per user per month", usd(p))));
    }
    rows.push(("price source".into(), c.price_source.clone()));
    rows
}
