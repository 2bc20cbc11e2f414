//! `cardplan validate --report DIR`: the validation record as a Markdown/HTML page, with a
//! predicted-vs-measured chart per metric.

use super::chart::ChartSpec;
use super::doc::Document;
use super::scatter::{Group, Scatter};
use super::validate::{
    LEAVE_ONE_OUT_NOTE, ValidationView, dataset_line, dataset_table, footer, leave_one_out_table,
    metrics_table,
};
use crate::validate::record::{Dataset, METRICS, Metric, point};
use crate::validate::stats::{NOMINAL, leave_one_out};

/// The chart of one metric: a group per dataset, and one (hollow) for its rows that are not
/// counted (fitted, or overloaded and judged on their own targets).
pub fn scatter(sets: &[Dataset], m: &Metric) -> Scatter {
    let mut groups = Vec::new();
    for (style, d) in sets.iter().enumerate() {
        for aside in [false, true] {
            let points: Vec<(f64, f64)> = d
                .rows
                .iter()
                .filter(|r| (r.fitted.is_some() || r.overloaded) == aside)
                .filter_map(|r| point(r, m).map(|p| (p.measured, p.predicted)))
                .collect();
            if !points.is_empty() {
                groups.push(Group {
                    name: if aside {
                        format!("{} · not counted", d.name)
                    } else {
                        d.name.clone()
                    },
                    points,
                    hollow: aside,
                    style,
                });
            }
        }
    }
    Scatter {
        title: format!("{}: predicted against measured", m.name),
        x_label: format!("measured ({})", m.unit),
        y_label: format!("predicted ({})", m.unit),
        groups,
    }
}

/// The page: error by metric with its charts, the leave-one-dataset-out check, every dataset.
pub fn document(v: &ValidationView<'_>) -> Document {
    let mut d = Document::new("cardplan validate: predictions against published measurements");
    d.para(
        "Every row of profiles/validation/ rerun through the simulator and compared with what was \
         published. Markers: one shape and colour per dataset; hollow or pale \
         markers are rows that are not counted (a parameter was fitted to them, or the server was \
         overloaded). Grey bands: within ±10% and ±25%.",
    );
    d.heading("Error by metric");
    d.para(super::validate::METRICS_NOTE);
    let (h, b) = metrics_table(&v.metrics);
    d.table(h, b);
    for m in &METRICS {
        let s = scatter(v.sets, m);
        if s.groups.is_empty() {
            d.para(format!("No validation row measures {} yet.", m.name));
        } else {
            d.chart(
                format!("predicted_vs_measured_{}", m.key),
                ChartSpec::Scatter(s),
            );
        }
    }
    d.heading("Leave one dataset out");
    d.para(LEAVE_ONE_OUT_NOTE);
    let loo = match &v.leave_one_out {
        Some(l) => l.clone(),
        None => leave_one_out(v.sets, NOMINAL),
    };
    let (h, b) = leave_one_out_table(&loo);
    d.table(h, b);
    for set in v.sets {
        d.heading(format!("Dataset {}", set.name));
        d.para(dataset_line(set));
        let (h, b) = dataset_table(set);
        d.table(h, b);
    }
    d.heading("Summary");
    d.para(footer(v));
    d
}
