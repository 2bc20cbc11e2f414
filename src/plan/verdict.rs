//! From a capacity to cards: how many for the population, with a spare, at the ends of the
//! interval and for the worst simulated window, and what they cost.

use serde::Serialize;

use super::cards::{CostEstimate, cards_needed, monthly_cost, users_per_card_at};
use super::search::Capacity;

/// The verdict for `users` users given a capacity.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Cards at the estimated capacity; `None` when one card serves nobody within the SLO.
    pub cards_needed: Option<u64>,
    pub cards_with_spare: Option<u64>,
    /// Cards at the high and low ends of the capacity interval; the second is the conservative
    /// answer (every card's capacity at the interval's low end).
    pub cards_range: Option<(u64, u64)>,
    /// Users each card carries with `cards_needed` cards.
    pub users_per_card_at_load: Option<u64>,
}

pub fn verdict(users: u64, cap: &Capacity) -> Verdict {
    let est = cap.estimate.floor() as u64;
    let cards = cards_needed(users, est);
    let range = cards_needed(users, cap.high.floor() as u64)
        .zip(cards_needed(users, cap.low.floor() as u64));
    Verdict {
        cards_needed: cards,
        cards_with_spare: cards.map(|c| c + 1),
        cards_range: range,
        users_per_card_at_load: cards.map(|c| users_per_card_at(users, c)),
    }
}

/// A verdict counted in servers of `gpus` GPUs, counted in GPUs: a spare is a whole server,
/// and the load each GPU carries is its server's share.
pub fn in_gpus(v: &Verdict, gpus: u32) -> Verdict {
    let g = u64::from(gpus.max(1));
    Verdict {
        cards_needed: v.cards_needed.map(|s| s * g),
        cards_with_spare: v.cards_with_spare.map(|s| s * g),
        cards_range: v.cards_range.map(|(a, b)| (a * g, b * g)),
        users_per_card_at_load: v.users_per_card_at_load.map(|u| u.div_ceil(g)),
    }
}

/// Cost of the verdict's cards.
pub fn verdict_cost(users: u64, v: &Verdict, price: f64, source: &str) -> Option<CostEstimate> {
    v.cards_needed
        .map(|c| monthly_cost(users, c, price, source))
}
