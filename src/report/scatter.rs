//! Predicted against measured on log–log axes: one marker style per dataset, the y = x line
//! and the ±10% and ±25% bands, drawn with the chart module's font and palette.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::{FAMILY, draw_err, palette};
use crate::error::Result;
use crate::units::sig_str;

/// One dataset's points (measured, predicted).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Hollow markers: rows that do not count (a parameter was fitted to them).
    pub hollow: bool,
    /// Colour and shape index: the dataset's, shared by its hollow group.
    pub style: usize,
}

/// A predicted-vs-measured chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Scatter {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub groups: Vec<Group>,
}

/// Bands around y = x: (relative half-width, fill opacity), widest first.
const BANDS: [(f64, f64); 2] = [(0.25, 0.10), (0.10, 0.20)];

/// The axis range: every point, padded so both bands show around the extremes.
fn range(s: &Scatter) -> Option<(f64, f64)> {
    let vals = s
        .groups
        .iter()
        .flat_map(|g| g.points.iter().flat_map(|&(x, y)| [x, y]))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = vals.fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    (lo.is_finite() && hi > 0.0).then(|| (nice(lo / 1.4, false), nice(hi * 1.4, true)))
}

/// The nearest 1, 2 or 5 × 10ⁿ below (or above) `x`: axis ends that label cleanly.
fn nice(x: f64, up: bool) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    let steps = [1.0, 2.0, 5.0, 10.0];
    if up {
        steps
            .iter()
            .map(|s| s * p)
            .find(|&v| v >= x)
            .unwrap_or(10.0 * p)
    } else {
        steps
            .iter()
            .rev()
            .map(|s| s * p)
            .find(|&v| v <= x)
            .unwrap_or(p)
    }
}

/// The band `y ∈ [(1 − w)x, (1 + w)x]` clipped to the square `[lo, hi]²`.
fn band(lo: f64, hi: f64, w: f64) -> Vec<(f64, f64)> {
    let (a, b) = (1.0 - w, 1.0 + w);
    vec![
        (lo, lo),
        ((lo / a).min(hi), lo),
        (hi, (a * hi).max(lo)),
        (hi, hi),
        ((hi / b).max(lo), hi),
        (lo, (b * lo).min(hi)),
    ]
}

/// Draw `s` on `root` (white background already filled).
pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Scatter) -> Result<()> {
    let Some((lo, hi)) = range(s) else {
        root.draw(&Text::new(
            format!("{}: no rows", s.title),
            (40, 40),
            (FAMILY, 18).into_font(),
        ))
        .map_err(draw_err)?;
        return Ok(());
    };
    // the legend in its own panel beside the plot, where it cannot hide a marker
    let (w, _) = root.dim_in_pixel();
    let (plot, side) = root.split_horizontally((w as f64 * 0.6) as u32);
    draw_legend(&side, s)?;
    let mut chart = ChartBuilder::on(&plot)
        .caption(&s.title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), (lo..hi).log_scale())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(&s.x_label)
        .y_desc(&s.y_label)
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|v| sig_str(*v, 2))
        .y_label_formatter(&|v| sig_str(*v, 2))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(246, 246, 246))
        .draw()
        .map_err(draw_err)?;
    let grey = RGBColor(120, 120, 120);
    for (w, alpha) in BANDS {
        let fill = grey.mix(alpha);
        chart
            .draw_series(std::iter::once(Polygon::new(band(lo, hi, w), fill)))
            .map_err(draw_err)?
            .label(format!("±{:.0}%", w * 100.0))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], fill.filled()));
    }
    chart
        .draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.stroke_width(1)))
        .map_err(draw_err)?
        .label("predicted = measured")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for g in &s.groups {
        draw_group(&mut chart, g)?;
    }
    // which side of the line is which, in the empty lower-right corner
    chart
        .draw_series(std::iter::once(Text::new(
            "below the line: predicted low",
            (hi / 1.08, lo * 1.08),
            (FAMILY, 13)
                .into_font()
                .color(&grey)
                .pos(Pos::new(HPos::Right, VPos::Bottom)),
        )))
        .map_err(draw_err)?;
    Ok(())
}

type LogChart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// One dataset's markers: the `i`-th colour and the `i`-th shape (circle, triangle, square,
/// cross), hollow for rows that do not count.
fn draw_group<'a, DB: DrawingBackend + 'a>(chart: &mut LogChart<'a, DB>, g: &Group) -> Result<()> {
    let (style, line) = looks(g);
    let pts = g.points.iter().copied();
    match g.style % 4 {
        0 => chart.draw_series(pts.map(|p| Circle::new(p, 6, style))),
        1 => chart.draw_series(pts.map(|p| TriangleMarker::new(p, 8, style))),
        2 => chart.draw_series(
            pts.map(|p| EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], style)),
        ),
        _ => chart.draw_series(pts.map(|p| Cross::new(p, 6, line))),
    }
    .map_err(draw_err)?;
    Ok(())
}

/// A group's marker styles (body, cross): filled where its rows count; where they do not, an
/// outline, and a paler colour for the shapes an outline cannot tell apart (triangle, cross).
fn looks(g: &Group) -> (ShapeStyle, ShapeStyle) {
    let c = palette(g.style);
    if !g.hollow {
        return (c.filled(), c.stroke_width(3));
    }
    let pale = c.mix(0.4);
    match g.style % 4 {
        1 => (pale.filled(), pale.stroke_width(3)),
        _ => (c.stroke_width(2), pale.stroke_width(3)),
    }
}

/// A legend marker, drawn at pixel coordinates.
type Mark<DB> = DynElement<'static, DB, (i32, i32)>;

/// The key: bands, the y = x line and one line per group, top to bottom in `area`.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &Scatter) -> Result<()> {
    let font = (FAMILY, 13).into_font();
    let y_of = |i: usize| 56 + 20 * i as i32;
    let mut keys: Vec<(Mark<DB>, String)> = Vec::new();
    for (w, alpha) in BANDS {
        let y = y_of(keys.len());
        let band = Rectangle::new([(6, y - 5), (26, y + 5)], BLACK.mix(alpha).filled());
        keys.push((
            band.into_dyn(),
            format!("within ±{}%", sig_str(w * 100.0, 2)),
        ));
    }
    let y = y_of(keys.len());
    let line = PathElement::new(vec![(6, y), (26, y)], BLACK);
    keys.push((line.into_dyn(), "predicted = measured".into()));
    for g in &s.groups {
        let y = y_of(keys.len());
        keys.push((marker(g, (16, y)), g.name.clone()));
    }
    for (i, (m, text)) in keys.iter().enumerate() {
        area.draw(m).map_err(draw_err)?;
        area.draw(&Text::new(text.clone(), (34, y_of(i) - 7), font.clone()))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The group's marker at pixel `at`: its shape and colour, hollow where it does not count.
fn marker<DB: DrawingBackend>(g: &Group, at: (i32, i32)) -> Mark<DB> {
    let (style, line) = looks(g);
    let (x, y) = at;
    match g.style % 4 {
        0 => Circle::new(at, 6, style).into_dyn(),
        1 => TriangleMarker::new(at, 8, style).into_dyn(),
        2 => Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], style).into_dyn(),
        _ => Cross::new(at, 6, line).into_dyn(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_stay_inside_the_square_and_hold_the_diagonal() {
        for w in [0.1, 0.25] {
            let p = band(1.0, 100.0, w);
            assert!(
                p.iter()
                    .all(|&(x, y)| (1.0..=100.0).contains(&x) && (1.0..=100.0).contains(&y))
            );
            assert!(p.contains(&(1.0, 1.0)) && p.contains(&(100.0, 100.0)));
            assert!(p.contains(&(100.0, 100.0 * (1.0 - w))));
        }
    }

    #[test]
    fn the_range_pads_every_point() {
        let s = Scatter {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            groups: vec![Group {
                name: "a".into(),
                points: vec![(10.0, 12.0), (50.0, 40.0), (f64::NAN, 1.0)],
                hollow: false,
                style: 0,
            }],
        };
        let (lo, hi) = range(&s).unwrap();
        assert!(lo < 1.0 && hi > 50.0 * 1.4);
        assert_eq!((lo, hi), (0.5, 100.0));
        assert_eq!((nice(0.7, false), nice(0.7, true)), (0.5, 1.0));
        assert_eq!((nice(30.0, false), nice(30.0, true)), (20.0, 50.0));
        assert!(
            range(&Scatter {
                groups: vec![],
                ..s
            })
            .is_none()
        );
    }
}
