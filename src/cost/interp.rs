//! Interpolation in measured tables: log–log between points (exact at points, monotone between,
//! exact for power laws such as `t ∝ T` in the compute-bound range), roofline-scaled beyond them.

/// Where a query fell relative to the measured range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Inside,
    Below,
    Above,
}

/// Scale a measured time `t` by a roofline ratio while keeping the fixed floor: the part of `t`
/// above `floor` (launch latency, tail) scales, the floor does not. A ratio of exactly 1 returns
/// `t` unchanged, so a table priced against its own shape and GPU is reproduced bit for bit.
pub fn rescale(t: f64, floor: f64, ratio: f64) -> f64 {
    if ratio == 1.0 {
        return t;
    }
    let f = floor.min(t);
    f + (t - f) * ratio
}

/// Up to this many points a forward scan finds the bracket faster than a binary search (the
/// simulator's queries move slowly, so its branches predict well).
const SCAN_MAX: usize = 16;

/// The first index with `xs[i] >= x` (`xs` ascending; `xs.len()` if none), as
/// `partition_point` gives it.
#[inline]
fn first_at_least(xs: &[f64], x: f64) -> usize {
    if xs.len() <= SCAN_MAX {
        xs.iter().position(|&v| v >= x).unwrap_or(xs.len())
    } else {
        xs.partition_point(|&v| v < x)
    }
}

/// A measured series `size → seconds`, sizes strictly ascending and positive.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    x: Vec<f64>,
    t: Vec<f64>,
    ln_x: Vec<f64>,
    ln_t: Vec<f64>,
}

impl Curve {
    /// `None` when the points are empty, not ascending, or not positive and finite.
    pub fn new(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Curve> {
        let (x, t): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
        let ok = !x.is_empty()
            && x.windows(2).all(|w| w[1] > w[0])
            && x.iter().chain(&t).all(|v| v.is_finite() && *v > 0.0);
        ok.then(|| Curve {
            ln_x: x.iter().map(|v| v.ln()).collect(),
            ln_t: t.iter().map(|v| v.ln()).collect(),
            x,
            t,
        })
    }

    /// Number of measured points.
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// Always false: a curve has at least one point.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Smallest and largest measured size.
    pub fn range(&self) -> (f64, f64) {
        (self.x[0], self.x[self.x.len() - 1])
    }

    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.x.iter().copied().zip(self.t.iter().copied())
    }

    /// Time at `x`. Inside the range: log–log interpolation. Outside: the nearest end point
    /// scaled by `roof(x) / roof(end)` above `floor` (the end point's efficiency carried over).
    pub fn eval(&self, x: f64, roof: impl Fn(f64) -> f64, floor: f64) -> (f64, Side) {
        self.eval_ln(x, f64::ln, roof, floor)
    }

    /// [`Curve::eval`] with `ln(x)` given by `ln_x`, called only when needed: the rows of a
    /// [`Grid`] share one logarithm of the column (the same number, computed once).
    #[inline]
    fn eval_ln(
        &self,
        x: f64,
        ln_x: impl FnOnce(f64) -> f64,
        roof: impl Fn(f64) -> f64,
        floor: f64,
    ) -> (f64, Side) {
        let n = self.x.len();
        let (lo, hi) = self.range();
        if x < lo {
            return (rescale(self.t[0], floor, roof(x) / roof(lo)), Side::Below);
        }
        if x > hi {
            return (
                rescale(self.t[n - 1], floor, roof(x) / roof(hi)),
                Side::Above,
            );
        }
        let i = first_at_least(&self.x, x);
        if self.x[i] == x {
            return (self.t[i], Side::Inside);
        }
        let w = (ln_x(x) - self.ln_x[i - 1]) / (self.ln_x[i] - self.ln_x[i - 1]);
        let t = (self.ln_t[i - 1] + w * (self.ln_t[i] - self.ln_t[i - 1])).exp();
        // keep within the bracketing points despite rounding, so monotonicity holds exactly
        let (a, b) = (self.t[i - 1], self.t[i]);
        (t.clamp(a.min(b), a.max(b)), Side::Inside)
    }
}

/// A measured 2-D table `(row, col) → seconds` (decode attention: batch × context): one curve over
/// `col` per measured `row`, log–log interpolation across rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    rows: Vec<(f64, Curve)>,
    /// `ln` of each row's value, computed once (the simulator prices millions of steps).
    ln_rows: Vec<f64>,
}

impl Grid {
    /// `None` when any row's curve is invalid or there are no rows.
    pub fn new(points: impl IntoIterator<Item = (f64, f64, f64)>) -> Option<Grid> {
        let mut pts: Vec<(f64, f64, f64)> = points.into_iter().collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut rows: Vec<(f64, Curve)> = Vec::new();
        let mut i = 0;
        while i < pts.len() {
            let r = pts[i].0;
            let j = i + pts[i..].iter().take_while(|p| p.0 == r).count();
            let curve = Curve::new(pts[i..j].iter().map(|p| (p.1, p.2)))?;
            rows.push((r, curve));
            i = j;
        }
        let ln_rows = rows.iter().map(|(r, _)| r.ln()).collect();
        (!rows.is_empty()).then_some(Grid { rows, ln_rows })
    }

    pub fn row_range(&self) -> (f64, f64) {
        (self.rows[0].0, self.rows[self.rows.len() - 1].0)
    }

    /// Smallest and largest column over all rows.
    pub fn col_range(&self) -> (f64, f64) {
        self.rows
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), (_, c)| {
                let (a, b) = c.range();
                (lo.min(a), hi.max(b))
            })
    }

    /// Time at `(r, c)`; `roof(r, c)` is the roofline of the table's own shape.
    pub fn eval(
        &self,
        r: f64,
        c: f64,
        roof: impl Fn(f64, f64) -> f64,
        floor: f64,
    ) -> (f64, Side, Side) {
        let n = self.rows.len();
        // ln(c), taken at most once for both rows
        let mut ln_c = f64::NAN;
        let mut at_row = |k: usize| {
            let (rk, curve) = &self.rows[k];
            let ln = |x: f64| {
                if ln_c.is_nan() {
                    ln_c = x.ln();
                }
                ln_c
            };
            curve.eval_ln(c, ln, |cc| roof(*rk, cc), floor)
        };
        let (lo, hi) = self.row_range();
        if r <= lo || r >= hi {
            let k = if r <= lo { 0 } else { n - 1 };
            let (t, side_c) = at_row(k);
            let rk = self.rows[k].0;
            let side_r = if r == rk {
                Side::Inside
            } else if r < rk {
                Side::Below
            } else {
                Side::Above
            };
            return (rescale(t, floor, roof(r, c) / roof(rk, c)), side_r, side_c);
        }
        let i = match self.rows.len() {
            n if n <= SCAN_MAX => self.rows.iter().position(|(v, _)| *v >= r).unwrap_or(n),
            _ => self.rows.partition_point(|(v, _)| *v < r),
        };
        if self.rows[i].0 == r {
            let (t, s) = at_row(i);
            return (t, Side::Inside, s);
        }
        let (t0, s0) = at_row(i - 1);
        let (t1, s1) = at_row(i);
        let (ln_r0, ln_r1) = (self.ln_rows[i - 1], self.ln_rows[i]);
        let w = (r.ln() - ln_r0) / (ln_r1 - ln_r0);
        let t = (t0.ln() + w * (t1.ln() - t0.ln())).exp();
        let side_c = if s0 != Side::Inside { s0 } else { s1 };
        (t.clamp(t0.min(t1), t0.max(t1)), Side::Inside, side_c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_the_binary_search_s_bracket() {
        for n in [1usize, 2, 7, 16, 17, 40] {
            let xs: Vec<f64> = (0..n).map(|i| (i * i + 1) as f64).collect();
            for k in 0..(n * n + 3) * 4 {
                let x = k as f64 / 4.0;
                assert_eq!(
                    first_at_least(&xs, x),
                    xs.partition_point(|&v| v < x),
                    "{n} {x}"
                );
            }
        }
    }

    fn curve() -> Curve {
        Curve::new([
            (1.0, 0.010),
            (8.0, 0.011),
            (64.0, 0.02),
            (512.0, 0.12),
            (4096.0, 0.9),
        ])
        .expect("valid curve")
    }

    #[test]
    fn exact_at_measured_points() {
        let c = curve();
        for (x, t) in c.points().collect::<Vec<_>>() {
            let (v, side) = c.eval(x, |x| x, 0.003);
            assert_eq!(v, t, "at {x}");
            assert_eq!(side, Side::Inside);
        }
    }

    #[test]
    fn monotone_between_points() {
        let c = curve();
        let mut prev = 0.0;
        for i in 1..=4096u32 {
            let (v, _) = c.eval(f64::from(i), |x| x, 0.003);
            assert!(v >= prev, "not monotone at {i}: {v} < {prev}");
            prev = v;
        }
    }

    #[test]
    fn log_log_interpolation_is_exact_for_power_laws() {
        let c = Curve::new([(100.0, 1.0), (400.0, 4.0)]).expect("valid");
        let (v, _) = c.eval(200.0, |x| x, 0.0);
        assert!((v - 2.0).abs() < 1e-12, "{v}");
    }

    #[test]
    fn beyond_range_scales_by_roofline_above_floor() {
        let c = curve();
        let (v, side) = c.eval(8192.0, |x| x, 0.0);
        assert_eq!(side, Side::Above);
        assert!((v - 1.8).abs() < 1e-12, "{v}");
        // with a floor, only the part above it scales
        let (v, _) = c.eval(8192.0, |x| x, 0.1);
        assert!((v - (0.1 + 0.8 * 2.0)).abs() < 1e-12, "{v}");
    }

    #[test]
    fn rejects_bad_points() {
        assert!(Curve::new([]).is_none());
        assert!(Curve::new([(2.0, 1.0), (1.0, 1.0)]).is_none());
        assert!(Curve::new([(1.0, f64::NAN)]).is_none());
        assert!(Curve::new([(0.0, 1.0)]).is_none());
    }

    #[test]
    fn grid_exact_at_points_and_monotone_in_both_axes() {
        let mut pts = Vec::new();
        for b in [1.0, 4.0, 16.0, 64.0] {
            for c in [256.0, 1024.0, 4096.0] {
                pts.push((b, c, 0.005 + 1e-7 * b * c));
            }
        }
        let g = Grid::new(pts.clone()).expect("valid grid");
        let roof = |b: f64, c: f64| b * c;
        for &(b, c, t) in &pts {
            assert_eq!(g.eval(b, c, roof, 0.003).0, t);
        }
        for b in 1..=64 {
            let mut prev = 0.0;
            for c in (256..=4096).step_by(64) {
                let (v, _, _) = g.eval(f64::from(b), f64::from(c), roof, 0.003);
                assert!(v >= prev, "b={b} c={c}");
                prev = v;
            }
        }
        for c in [256.0, 700.0, 4096.0] {
            let mut prev = 0.0;
            for b in 1..=64 {
                let (v, _, _) = g.eval(f64::from(b), c, roof, 0.003);
                assert!(v >= prev, "b={b} c={c}");
                prev = v;
            }
        }
        let (_, sb, sc) = g.eval(128.0, 8192.0, roof, 0.003);
        assert_eq!((sb, sc), (Side::Above, Side::Above));
    }
}
