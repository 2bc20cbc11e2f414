//! Cards needed and what they cost: plain arithmetic, kept apart so it is easy to check.

use serde::{Deserialize, Serialize};

/// Hours in an average month (8760 h / 12), the convention cloud price sheets use.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Cards needed to serve `users` when one card serves `per_card`; `None` when a card serves
/// nobody within the SLO (no number of cards is enough).
pub fn cards_needed(users: u64, per_card: u64) -> Option<u64> {
    if users == 0 {
        return Some(0);
    }
    (per_card > 0).then(|| users.div_ceil(per_card))
}

/// Users each card carries when `users` are spread evenly over `cards` (rounded up).
pub fn users_per_card_at(users: u64, cards: u64) -> u64 {
    if cards == 0 { 0 } else { users.div_ceil(cards) }
}

/// Monthly cost of the cards, and per user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// USD per GPU-hour.
    pub price_per_hour: f64,
    /// Where the price comes from.
    pub price_source: String,
    pub hours_per_month: f64,
    pub cards: u64,
    /// USD per month for `cards` running all month.
    pub per_month: f64,
    /// USD per month with one spare card.
    pub per_month_with_spare: f64,
    /// USD per user per month (`per_month / users`), without the spare.
    pub per_user_month: Option<f64>,
}

/// Cost of `cards` cards at `price_per_hour` serving `users` users, running 24/7.
pub fn monthly_cost(
    users: u64,
    cards: u64,
    price_per_hour: f64,
    price_source: &str,
) -> CostEstimate {
    let card_month = price_per_hour * HOURS_PER_MONTH;
    let per_month = card_month * cards as f64;
    CostEstimate {
        price_per_hour,
        price_source: price_source.to_string(),
        hours_per_month: HOURS_PER_MONTH,
        cards,
        per_month,
        per_month_with_spare: per_month + card_month,
        per_user_month: (users > 0).then(|| per_month / users as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_round_up() {
        assert_eq!(cards_needed(5000, 1000), Some(5));
        assert_eq!(cards_needed(5001, 1000), Some(6));
        assert_eq!(cards_needed(1, 1000), Some(1));
        assert_eq!(cards_needed(0, 1000), Some(0));
        assert_eq!(cards_needed(10, 0), None);
    }

    #[test]
    fn more_users_never_need_fewer_cards() {
        for per_card in [1u64, 3, 17, 250, 4321] {
            let mut prev = 0;
            for users in 0..20_000u64 {
                let c = cards_needed(users, per_card).unwrap();
                assert!(c >= prev);
                // Enough cards, and not one too many.
                assert!(c * per_card >= users);
                assert!(c == 0 || (c - 1) * per_card < users);
                prev = c;
            }
        }
    }

    #[test]
    fn spreading_load_never_exceeds_capacity() {
        for (users, per_card) in [(5000u64, 1234u64), (7, 3), (1_000_000, 999)] {
            let cards = cards_needed(users, per_card).unwrap();
            let each = users_per_card_at(users, cards);
            assert!(each <= per_card);
            assert!(each * cards >= users);
        }
    }

    #[test]
    fn monthly_cost_of_cards() {
        let c = monthly_cost(5000, 5, 0.25, "test");
        assert!((c.per_month - 5.0 * 0.25 * 730.0).abs() < 1e-9);
        assert!((c.per_month_with_spare - 6.0 * 0.25 * 730.0).abs() < 1e-9);
        let per_user = c.per_user_month.unwrap();
        assert!((per_user - 912.5 / 5000.0).abs() < 1e-12);
        assert_eq!(monthly_cost(0, 0, 1.0, "x").per_user_month, None);
    }
}
