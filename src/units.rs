//! Numbers in words at the precision they deserve: significant figures, percentages, thousands
//! separators. The bottom of the crate: the planner names its cases with these, and every
//! renderer in [`crate::report`] builds on them.

/// An integer with thousands separators: 12345 → "12,345".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `x` rounded to `sig` significant figures (for honest display of estimates).
pub fn round_sig(x: f64, sig: u32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let mag = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(sig as i32 - 1 - mag);
    (x * scale).round() / scale
}

/// A float with `sig` significant figures, without exponent notation for ordinary sizes:
/// 0.001234 → "0.0012", 12.345 → "12", 1234.5 → "1235" (integers are never cut).
pub fn sig_str(x: f64, sig: u32) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    let decimals = (sig as i32 - 1 - mag).max(0) as usize;
    let s = format!(
        "{:.*}",
        decimals,
        round_sig(x, sig.max((mag + 1).max(1) as u32))
    );
    // "10.0" reads as more precise than it is: drop trailing zeros after the point.
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A share as a percentage: 0.123 → "12.3%".
pub fn percent(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    format!("{}%", sig_str(x * 100.0, 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn significant_figures() {
        assert_eq!(sig_str(0.001234, 2), "0.0012");
        assert_eq!(sig_str(12.345, 3), "12.3");
        assert_eq!(sig_str(1234.5, 3), "1235");
        assert_eq!(round_sig(4321.0, 2), 4300.0);
        assert_eq!(sig_str(10.0, 3), "10");
        assert_eq!(sig_str(0.25, 3), "0.25");
        assert_eq!(percent(0.1), "10%");
        assert_eq!(percent(0.1234), "12.3%");
    }
}
