//! Charts drawn with plotters, as SVG text (for Markdown and inline HTML) or PNG files.
//!
//! There are no system fonts at run time, so the DejaVu Sans font is compiled into the binary
//! and registered with plotters once, before the first chart.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::error::{Error, Result};

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/LICENSE-DejaVu.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub(super) const FAMILY: &str = "sans-serif";

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (900, 480);

/// Register the embedded font under plotters' `sans-serif` family (idempotent).
pub fn ensure_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Internal(
            "the embedded chart font could not be loaded".into(),
        ))
    }
}

/// Colour of the `i`-th series: a colour-blind-safe palette (Okabe–Ito).
pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 7] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(120, 120, 120),
    ];
    P[i % P.len()]
}

/// One line on a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw a marker at each point (for sparse, measured points).
    pub markers: bool,
}

/// A labelled horizontal or vertical reference line (an SLO limit, a capacity knee).
#[derive(Debug, Clone, PartialEq)]
pub struct RefLine {
    pub at: f64,
    pub label: String,
}

/// What a chart shows; drawn the same way on any backend.
#[derive(Debug, Clone, PartialEq)]
pub enum ChartSpec {
    Lines {
        title: String,
        x_label: String,
        y_label: String,
        series: Vec<Series>,
        /// Horizontal reference lines (y values).
        hlines: Vec<RefLine>,
        /// Vertical reference lines (x values).
        vlines: Vec<RefLine>,
        /// Fixed y range, e.g. 0–100 for a utilisation.
        y_range: Option<(f64, f64)>,
    },
    /// Horizontal bars, one per label; `highlight` marks the best.
    Bars {
        title: String,
        x_label: String,
        bars: Vec<Bar>,
    },
    /// Predicted against measured on log axes (`validate --report`).
    Scatter(super::scatter::Scatter),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub highlight: bool,
}

impl ChartSpec {
    pub fn title(&self) -> &str {
        match self {
            ChartSpec::Lines { title, .. } | ChartSpec::Bars { title, .. } => title,
            ChartSpec::Scatter(s) => &s.title,
        }
    }
}

pub(super) fn draw_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("drawing a chart: {e:?}"))
}

/// The chart as an SVG document.
pub fn to_svg(spec: &ChartSpec) -> Result<String> {
    ensure_font()?;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        draw(&root, spec)?;
        root.present().map_err(draw_err)?;
    }
    Ok(buf)
}

/// Draw the chart as a PNG at `path` (the encoder picks the format from the extension).
pub fn write_png(spec: &ChartSpec, path: &Path) -> Result<()> {
    ensure_font()?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root, spec)?;
    root.present().map_err(draw_err)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, spec: &ChartSpec) -> Result<()> {
    root.fill(&WHITE).map_err(draw_err)?;
    match spec {
        ChartSpec::Lines {
            title,
            x_label,
            y_label,
            series,
            hlines,
            vlines,
            y_range,
        } => draw_lines(
            root, title, x_label, y_label, series, hlines, vlines, *y_range,
        ),
        ChartSpec::Bars {
            title,
            x_label,
            bars,
        } => draw_bars(root, title, x_label, bars),
        ChartSpec::Scatter(s) => super::scatter::draw(root, s),
    }
}

/// A range that contains `values` with a little headroom, never empty.
fn padded(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-12 {
        hi = lo + lo.abs().max(1.0);
    }
    (lo, hi + (hi - lo) * 0.08)
}

#[allow(clippy::too_many_arguments)]
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    hlines: &[RefLine],
    vlines: &[RefLine],
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(vlines.iter().map(|l| l.at));
    let (x0, x1) = padded(xs, true);
    let (y0, y1) = y_range.unwrap_or_else(|| {
        padded(
            series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .chain(hlines.iter().map(|l| l.at)),
            true,
        )
    });
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| axis_label(*v))
        .y_label_formatter(&|v| axis_label(*v))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    let area = Area { x0, x1, y0, y1 };
    draw_hlines(&mut chart, hlines, &area)?;
    draw_vlines(&mut chart, vlines, &area)?;
    draw_series(&mut chart, series)
}

/// The plotting area's data ranges, for placing reference lines and their labels.
struct Area {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

type Lines<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Horizontal reference lines (the SLO limits), dashed red with their label.
fn draw_hlines<DB: DrawingBackend>(
    chart: &mut Lines<'_, DB>,
    hlines: &[RefLine],
    a: &Area,
) -> Result<()> {
    for l in hlines {
        chart
            .draw_series(DashedLineSeries::new(
                [(a.x0, l.at), (a.x1, l.at)],
                8,
                5,
                ShapeStyle::from(&RED).stroke_width(2),
            ))
            .map_err(draw_err)?;
        // above the line, never across it
        chart
            .draw_series(std::iter::once(Text::new(
                l.label.clone(),
                (a.x0 + (a.x1 - a.x0) * 0.01, l.at + (a.y1 - a.y0) * 0.01),
                (FAMILY, 14)
                    .into_font()
                    .color(&RED)
                    .pos(Pos::new(HPos::Left, VPos::Bottom)),
            )))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Vertical reference lines (the capacity), dashed grey with their label at the top.
fn draw_vlines<DB: DrawingBackend>(
    chart: &mut Lines<'_, DB>,
    vlines: &[RefLine],
    a: &Area,
) -> Result<()> {
    let grey = RGBColor(90, 90, 90);
    for l in vlines {
        chart
            .draw_series(DashedLineSeries::new(
                [(l.at, a.y0), (l.at, a.y1)],
                8,
                5,
                ShapeStyle::from(&grey).stroke_width(2),
            ))
            .map_err(draw_err)?;
        // on the side with more room, so the label never runs into the axis and its ticks
        let left_half = l.at - a.x0 < (a.x1 - a.x0) / 2.0;
        let (dx, side) = if left_half {
            (0.008, HPos::Left)
        } else {
            (-0.008, HPos::Right)
        };
        chart
            .draw_series(std::iter::once(Text::new(
                l.label.clone(),
                (l.at + (a.x1 - a.x0) * dx, a.y1 - (a.y1 - a.y0) * 0.03),
                (FAMILY, 14)
                    .into_font()
                    .color(&grey)
                    .pos(Pos::new(side, VPos::Top)),
            )))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The upper corner where the data is lower at its end: a legend there hides no point (a rising
/// TTFT curve ends high on the right, a falling rate starts high on the left).
fn legend_corner(series: &[Series]) -> SeriesLabelPosition {
    let ends = series
        .iter()
        .filter_map(|s| Some((s.points.first()?.1, s.points.last()?.1)));
    let (left, right) = ends.fold((f64::MIN, f64::MIN), |(l, r), (a, b)| (l.max(a), r.max(b)));
    if right > left {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::UpperRight
    }
}

/// The data series with markers where asked, and the legend when any series is named.
fn draw_series<'a, DB: DrawingBackend + 'a>(
    chart: &mut Lines<'a, DB>,
    series: &[Series],
) -> Result<()> {
    for (i, s) in series.iter().enumerate() {
        let c = palette(i);
        let style = ShapeStyle::from(&c).stroke_width(2);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(draw_err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        if s.markers {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, ShapeStyle::from(&c).filled())),
                )
                .map_err(draw_err)?;
        }
    }
    if series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .position(legend_corner(series))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FAMILY, 14))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    bars: &[Bar],
) -> Result<()> {
    let n = bars.len().max(1);
    // Bar `i` is centred on y = n − 1 − i, so the first bar is drawn at the top.
    let y_of = |i: usize| (n - 1 - i) as f64;
    let (_, x1) = padded(bars.iter().map(|b| b.value), true);
    // Room for the value labels right of the longest bar.
    let x1 = x1 * 1.12;
    let label_width = bars
        .iter()
        .map(|b| b.label.chars().count() as u32)
        .max()
        .unwrap_or(4)
        .clamp(4, 40)
        * 8
        + 16;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(label_width)
        .build_cartesian_2d(0f64..x1, -0.5f64..(n as f64 - 0.5))
        .map_err(draw_err)?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let fmt = move |v: &f64| {
        let r = v.round();
        if (v - r).abs() > 1e-6 || r < 0.0 || r > (n - 1) as f64 {
            return String::new();
        }
        labels.get(n - 1 - r as usize).cloned().unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_label)
        .x_label_formatter(&|v| axis_label(*v))
        .y_labels(n)
        .y_label_formatter(&fmt)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    let base = palette(0);
    let best = palette(2);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let c = if b.highlight { best } else { base };
            let y = y_of(i);
            Rectangle::new(
                [(0.0, y - 0.35), (b.value.max(0.0), y + 0.35)],
                ShapeStyle::from(&c).filled(),
            )
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let text = if b.highlight {
                format!("{} (best)", fmt_value(b.value))
            } else {
                fmt_value(b.value)
            };
            Text::new(
                text,
                (b.value.max(0.0) + x1 * 0.01, y_of(i)),
                (FAMILY, 14)
                    .into_font()
                    .into_text_style(root)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))
        .map_err(draw_err)?;
    Ok(())
}

/// Tick labels: whole numbers with separators from 10 up, 3 significant figures below.
fn axis_label(v: f64) -> String {
    if v.abs() >= 10.0 {
        let s = super::format::thousands(v.abs().round() as u64);
        if v < 0.0 { format!("-{s}") } else { s }
    } else if v.abs() < 1e-9 {
        "0".into()
    } else {
        super::format::sig_str(v, 3)
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        super::format::thousands(v.round() as u64)
    } else {
        super::format::sig_str(v, 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> ChartSpec {
        ChartSpec::Lines {
            title: "Per-request rate vs users".into(),
            x_label: "users per card".into(),
            y_label: "tokens/s per request".into(),
            series: vec![Series {
                name: "p05".into(),
                points: vec![(100.0, 40.0), (200.0, 20.0), (300.0, 8.0)],
                markers: true,
            }],
            hlines: vec![RefLine {
                at: 10.0,
                label: "SLO 10 tok/s".into(),
            }],
            vlines: vec![RefLine {
                at: 250.0,
                label: "capacity 250".into(),
            }],
            y_range: None,
        }
    }

    #[test]
    fn svg_has_title_and_axis_labels() {
        let svg = to_svg(&lines()).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "Per-request rate vs users",
            "users per card",
            "tokens/s per request",
            "SLO 10 tok/s",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn bars_render_with_labels_and_best_marked() {
        let spec = ChartSpec::Bars {
            title: "Users per card".into(),
            x_label: "users".into(),
            bars: vec![
                Bar {
                    label: "rtx3090 fp16".into(),
                    value: 1200.0,
                    highlight: false,
                },
                Bar {
                    label: "l40s int8".into(),
                    value: 4100.0,
                    highlight: true,
                },
            ],
        };
        let svg = to_svg(&spec).unwrap();
        assert!(svg.contains("rtx3090 fp16") && svg.contains("l40s int8"));
        assert!(svg.contains("(best)"));
    }

    #[test]
    fn empty_and_degenerate_data_do_not_panic() {
        let spec = ChartSpec::Lines {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                name: String::new(),
                points: vec![(1.0, f64::NAN)],
                markers: false,
            }],
            hlines: vec![],
            vlines: vec![],
            y_range: None,
        };
        assert!(to_svg(&spec).is_ok());
        let bars = ChartSpec::Bars {
            title: "t".into(),
            x_label: "x".into(),
            bars: vec![],
        };
        assert!(to_svg(&bars).is_ok());
    }

    #[test]
    fn the_legend_goes_where_the_curves_end_low() {
        let line = |a: f64, b: f64| Series {
            name: "s".into(),
            points: vec![(0.0, a), (1.0, b)],
            markers: false,
        };
        let rising = [line(0.1, 3.0)];
        assert!(matches!(
            legend_corner(&rising),
            SeriesLabelPosition::UpperLeft
        ));
        let falling = [line(40.0, 8.0), line(30.0, 2.0)];
        assert!(matches!(
            legend_corner(&falling),
            SeriesLabelPosition::UpperRight
        ));
    }

    #[test]
    fn png_is_a_png() {
        let dir = std::env::temp_dir().join(format!("cardplan-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rate.png");
        write_png(&lines(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
