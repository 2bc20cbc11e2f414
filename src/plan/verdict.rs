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

/// Cost of the verdict's cards.
pub fn verdict_cost(users: u64, v: &Verdict, price: f64, source: &str) -> Option<CostEstimate> {
    v.cards_needed
        .map(|c| monthly_cost(users, c, price, source))
}
