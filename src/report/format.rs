//! Number formatting for people: user counts with honest precision, money, durations, rates.

pub use crate::units::{percent, round_sig, sig_str, thousands};

/// A user count rounded to 2 significant figures at and above 1,000, with separators:
/// 4321.7 → "4,300"; small counts are shown exactly.
pub fn users(x: f64) -> String {
    if !x.is_finite() || x < 0.0 {
        return "n/a".into();
    }
    let r = if x >= 1000.0 {
        round_sig(x, 2)
    } else {
        x.round()
    };
    thousands(r as u64)
}

/// An interval of user counts: "3,900–4,300"; a single number when both ends round alike.
pub fn users_range(low: f64, high: f64) -> String {
    let (a, b) = (users(low), users(high));
    if a == b { a } else { format!("{a}–{b}") }
}

/// An estimate and its interval rounded to the same step, chosen from the interval's width so
/// that the digits shown are the digits known: (712, 661, 756) → ("710", "660–760").
/// Without a width (one replication) the estimate gets two significant figures from 1,000 up.
pub fn users_with_interval(estimate: f64, low: f64, high: f64) -> (String, String) {
    if ![estimate, low, high]
        .iter()
        .all(|x| x.is_finite() && *x >= 0.0)
    {
        return ("n/a".into(), "n/a".into());
    }
    let half = (high - low) / 2.0;
    let step = if half >= 1.0 {
        let top = 10f64.powi((estimate.max(1.0).log10().floor() as i32 - 1).max(0));
        10f64.powi(half.log10().floor() as i32).min(top)
    } else if estimate >= 1000.0 {
        10f64.powi(estimate.log10().floor() as i32 - 1)
    } else {
        1.0
    };
    let r = |x: f64| thousands(((x / step).round() * step) as u64);
    let (a, b) = (r(low), r(high));
    let range = if a == b { a } else { format!("{a}–{b}") };
    (r(estimate), range)
}

/// A price per hour: "$0.25/h", "$1.00/h".
pub fn usd_per_hour(x: f64) -> String {
    if x > 0.0 && x < 0.01 {
        format!("${}/h", sig_str(x, 2))
    } else {
        format!("${x:.2}/h")
    }
}

/// US dollars: "$1,234" for large amounts, "$12.30" below 100, "$0.0123" below 1 cent.
pub fn usd(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let neg = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    if a >= 100.0 {
        format!("{neg}${}", thousands(a.round() as u64))
    } else if a >= 0.01 || a == 0.0 {
        format!("{neg}${a:.2}")
    } else {
        format!("{neg}${}", sig_str(a, 2))
    }
}

/// Seconds in a readable unit: "850 ms", "1.24 s", "12.5 s".
pub fn seconds(s: f64) -> String {
    if !s.is_finite() {
        return "n/a".into();
    }
    if s < 1.0 {
        format!("{} ms", sig_str(s * 1000.0, 3))
    } else {
        format!("{} s", sig_str(s, 3))
    }
}

/// A rate in tokens per second with 3 significant figures: "12.4 tok/s".
pub fn tok_s(x: f64) -> String {
    format!("{} tok/s", sig_str(x, 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_counts_round_to_two_figures() {
        assert_eq!(users(4321.7), "4,300");
        assert_eq!(users(3949.0), "3,900");
        assert_eq!(users(987.4), "987");
        assert_eq!(users(12_345.0), "12,000");
        assert_eq!(users_range(3890.0, 4310.0), "3,900–4,300");
        assert_eq!(users_range(4310.0, 4320.0), "4,300");
        assert_eq!(users(f64::NAN), "n/a");
        assert_eq!(
            users_with_interval(712.0, 661.0, 756.0),
            ("710".into(), "660–760".into())
        );
        assert_eq!(
            users_with_interval(1740.0, 1700.0, 1790.0),
            ("1,740".into(), "1,700–1,790".into())
        );
        assert_eq!(
            users_with_interval(4120.0, 3890.0, 4310.0),
            ("4,100".into(), "3,900–4,300".into())
        );
        assert_eq!(users_with_interval(4321.0, 4321.0, 4321.0).0, "4,300");
        assert_eq!(
            users_with_interval(87.0, 80.0, 95.0),
            ("87".into(), "80–95".into())
        );
        assert_eq!(usd_per_hour(1.0), "$1.00/h");
        assert_eq!(usd_per_hour(0.25), "$0.25/h");
    }

    #[test]
    fn money() {
        assert_eq!(usd(912.5), "$913");
        assert_eq!(usd(12_345.0), "$12,345");
        assert_eq!(usd(12.3), "$12.30");
        assert_eq!(usd(0.18), "$0.18");
        assert_eq!(usd(0.001234), "$0.0012");
        assert_eq!(usd(0.0), "$0.00");
    }

    #[test]
    fn significant_figures() {
        assert_eq!(seconds(0.8504), "850 ms");
        assert_eq!(seconds(1.2449), "1.24 s");
        assert_eq!(tok_s(12.44), "12.4 tok/s");
    }
}
