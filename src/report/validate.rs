//! `cardplan validate` as a terminal table, as the README's Markdown (one table per dataset, the
//! error by metric, the summary line) and as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::table::new_table;
use crate::validate::quant_ratio::RatioResult;
use crate::validate::record::Dataset;
use crate::validate::stats::{LeftOut, MetricStats, NOMINAL, leave_one_out, metric_stats};
use crate::validate::{Accuracy, RowResult, accuracy};

/// Everything `validate --json` prints.
#[derive(Serialize)]
pub struct ValidationView<'a> {
    pub rows: Vec<&'a RowResult>,
    pub summary: Accuracy,
    pub datasets: Vec<DatasetInfo>,
    /// ln(predicted / measured) per metric over the rows not marked fitted.
    pub metrics: Vec<MetricStats>,
    /// Intervals built without each dataset, applied to it (`--leave-one-out`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leave_one_out: Option<Vec<LeftOut>>,
    #[serde(skip)]
    pub sets: &'a [Dataset],
    /// Quantized runs against the fp16 run of the same batch: step-time ratios.
    pub quant_ratio: &'a [RatioResult],
    pub quant_ratio_summary: Accuracy,
}

#[derive(Serialize)]
pub struct DatasetInfo {
    pub name: String,
    pub source: String,
    pub rows: usize,
}

impl<'a> ValidationView<'a> {
    pub fn new(sets: &'a [Dataset], with_leave_one_out: bool, ratios: &'a [RatioResult]) -> Self {
        let rows: Vec<&RowResult> = sets.iter().flat_map(|d| &d.rows).collect();
        let owned: Vec<RowResult> = rows.iter().map(|r| (*r).clone()).collect();
        ValidationView {
            summary: accuracy(&owned),
            rows,
            datasets: sets
                .iter()
                .map(|d| DatasetInfo {
                    name: d.name.clone(),
                    source: d.source.clone(),
                    rows: d.rows.len(),
                })
                .collect(),
            metrics: metric_stats(sets),
            leave_one_out: with_leave_one_out.then(|| leave_one_out(sets, NOMINAL)),
            sets,
            quant_ratio: ratios,
            quant_ratio_summary: crate::validate::quant_ratio::summary(ratios),
        }
    }
}

/// Columns, in this order when a dataset has them: (header, figure key).
const COLUMNS: [(&str, &str); 7] = [
    ("req/s", "requests_per_s"),
    ("out tok/s", "output_tok_s"),
    ("E2E mean s", "e2e_s.mean"),
    ("TTFT mean ms", "ttft_ms.mean"),
    ("TPOT mean ms", "tpot_ms.mean"),
    ("tok/s mean", "request_tok_s.mean"),
    ("tok/s p01", "request_tok_s.p01"),
];

fn row_name(r: &RowResult) -> String {
    match (r.fitted.is_some(), r.overloaded) {
        (true, true) => format!("{} (overloaded, fitted)", r.name),
        (true, false) => format!("{} (fitted)", r.name),
        (false, true) => format!("{} (overloaded)", r.name),
        (false, false) => r.name.clone(),
    }
}

/// The columns any of `rows` compares.
fn columns(rows: &[&RowResult]) -> Vec<(&'static str, &'static str)> {
    COLUMNS
        .into_iter()
        .filter(|(_, key)| rows.iter().any(|r| r.error_of(key).is_some()))
        .collect()
}

/// The summary line, and one line per fitted row saying what was fitted to it.
pub fn footer(v: &ValidationView<'_>) -> String {
    let a = v.summary;
    let mut out = format!(
        "Each cell: measured → predicted (signed error). {} figures compared: median |error| {:.1}%, max |error| {:.1}%.",
        a.figures_compared,
        100.0 * a.median_abs_error,
        100.0 * a.max_abs_error
    );
    let overloaded: Vec<&str> = v
        .rows
        .iter()
        .filter(|r| r.overloaded && r.fitted.is_none())
        .map(|r| r.name.as_str())
        .collect();
    if !overloaded.is_empty() {
        let _ = write!(
            out,
            "\nOverloaded (the measured server's queue grew all run; judged on their own targets, left out of the summary): {}.",
            overloaded.join(", ")
        );
    }
    for r in v.rows.iter().filter(|r| r.fitted.is_some()) {
        let what = r.fitted.as_deref().unwrap_or_default();
        let _ = write!(
            out,
            "\n'{}' (fitted): {what}; it is left out of the summary.",
            r.name
        );
    }
    out
}

fn md_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = md_row(header);
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        out.push_str(&md_row(r));
    }
    out
}

/// One dataset's table: header and rows (row, engine, then the figures it compares).
pub fn dataset_table(d: &Dataset) -> (Vec<String>, Vec<Vec<String>>) {
    let rows: Vec<&RowResult> = d.rows.iter().collect();
    let cols = columns(&rows);
    let header = ["row", "engine"]
        .into_iter()
        .chain(cols.iter().map(|c| c.0))
        .map(String::from)
        .collect();
    let body = rows
        .iter()
        .map(|r| {
            [row_name(r), r.engine.clone()]
                .into_iter()
                .chain(cols.iter().map(|(_, key)| cell(r, key)))
                .collect()
        })
        .collect();
    (header, body)
}

/// What a dataset ran: "rtx3090 (derived profile), llama-3.1-8b fp16".
pub fn dataset_line(d: &Dataset) -> String {
    match d.rows.first() {
        Some(r) => format!(
            "{} ({} profile), {} {}: {}",
            r.gpu, r.profile.kind, r.model, r.quant, d.source
        ),
        None => d.source.clone(),
    }
}

/// The error-by-metric table: header and rows.
pub fn metrics_table(m: &[MetricStats]) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "metric",
        "rows",
        "median",
        "sd of ln",
        "p05 … p95",
        "90% interval, one more row",
    ]
    .map(String::from)
    .to_vec();
    let body = m
        .iter()
        .map(|s| {
            let dash = || "–".to_string();
            let mut row = vec![s.name.clone(), s.rows.to_string()];
            match &s.summary {
                Some(x) => row.extend([
                    pct(x.median),
                    format!("{:.3}", x.sd),
                    format!("{} … {}", pct(x.p05), pct(x.p95)),
                    x.interval
                        .map_or_else(dash, |(a, b)| format!("{} … {}", pct(a), pct(b))),
                ]),
                None => row.extend([dash(), dash(), dash(), dash()]),
            }
            row
        })
        .collect();
    (header, body)
}

/// A log error as the signed relative error it stands for: ln 1.1 → "+10.0%".
pub fn pct(log_error: f64) -> String {
    format!("{:+.1}%", 100.0 * log_error.exp_m1())
}

pub const METRICS_NOTE: &str = "Signed error per metric over the rows not marked fitted, as \
predicted ÷ measured − 1 (statistics on ln(predicted ÷ measured)); the interval is where one \
more row's error falls (Student t on the rows' mean and spread). `cardplan plan` builds its \
model-error interval the same way from the step-time row, at its own confidence, widened for a \
GPU, scheme or model family no row covers (docs/ACCURACY.md).";

/// The README's "Accuracy" section: one table per dataset, the error by metric, the summary.
pub fn markdown(v: &ValidationView<'_>) -> String {
    let mut out = String::new();
    for d in v.sets {
        let _ = writeln!(out, "**{}**: {}\n", d.name, dataset_line(d));
        let (h, b) = dataset_table(d);
        out.push_str(&md_table(&h, &b));
        out.push('\n');
    }
    let _ = writeln!(out, "{METRICS_NOTE}\n");
    let (h, b) = metrics_table(&v.metrics);
    out.push_str(&md_table(&h, &b));
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", footer(v));
    out
}

/// The leave-one-dataset-out table: header and rows.
pub fn leave_one_out_table(l: &[LeftOut]) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "metric",
        "left out",
        "built from",
        "interval (widened)",
        "rows covered",
    ]
    .map(String::from)
    .to_vec();
    let body = l
        .iter()
        .map(|x| {
            let widened = if x.widening.is_empty() {
                String::new()
            } else {
                format!(
                    ", widened {}",
                    x.widening
                        .iter()
                        .map(|w| format!("±{:.0}%", 100.0 * w.sigma))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            vec![
                x.metric.clone(),
                x.dataset.clone(),
                format!("{} rows", x.built_from),
                x.interval.map_or("too few rows".into(), |(a, b)| {
                    format!("{} … {}{widened}", pct(a), pct(b))
                }),
                x.covered
                    .map_or("–".into(), |c| format!("{c} of {}", x.rows)),
            ]
        })
        .collect();
    (header, body)
}

/// The tables for a terminal, with the profile each GPU's step times rest on.
pub fn terminal(v: &ValidationView<'_>) -> String {
    let mut t = new_table();
    let all: Vec<&RowResult> = v.rows.clone();
    let cols = columns(&all);
    t.set_header(
        ["row", "GPU", "engine"]
            .into_iter()
            .chain(cols.iter().map(|c| c.0)),
    );
    for r in &all {
        t.add_row(
            [row_name(r), r.gpu.clone(), r.engine.clone()]
                .into_iter()
                .chain(cols.iter().map(|(_, key)| cell(r, key))),
        );
    }
    let mut out = format!("{t}\n{}\n", footer(v));
    let profiles: std::collections::BTreeSet<String> = all
        .iter()
        .map(|r| {
            format!(
                "{}: {} profile, {}",
                r.gpu, r.profile.kind, r.profile.source
            )
        })
        .collect();
    for p in profiles {
        let _ = writeln!(out, "profile {p}");
    }
    let _ = writeln!(out, "\n{METRICS_NOTE}");
    out.push_str(&plain_table(metrics_table(&v.metrics)));
    if let Some(l) = &v.leave_one_out {
        let _ = writeln!(out, "\n{LEAVE_ONE_OUT_NOTE}");
        out.push_str(&plain_table(leave_one_out_table(l)));
    }
    out
}

/// What the leave-one-dataset-out table says.
pub const LEAVE_ONE_OUT_NOTE: &str = "Leave one dataset out: the 90% interval built from the \
other datasets' rows, widened as `cardplan plan` widens for a GPU, scheme or model family they \
do not cover, applied to the left-out dataset's rows.";

fn plain_table((header, body): (Vec<String>, Vec<Vec<String>>)) -> String {
    let mut t = new_table();
    t.set_header(header);
    for r in body {
        t.add_row(r);
    }
    format!("{t}\n")
}

fn cell(r: &RowResult, key: &str) -> String {
    match r.errors.iter().find(|e| e.figure == key) {
        Some(e) => format!(
            "{} → {} ({:+.1}%)",
            fmt(e.measured),
            fmt(e.predicted),
            100.0 * e.error
        ),
        None => "–".to_string(),
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The quantization ratio rows as a terminal table, with their summary.
pub fn ratio_terminal(v: &ValidationView<'_>) -> String {
    if v.quant_ratio.is_empty() {
        return String::new();
    }
    let mut t = new_table();
    t.set_header(vec![
        "quantized vs fp16 (weights/KV, batch, length)",
        "GPU",
        "measured ms",
        "predicted ms",
        "ratio measured → predicted (error)",
    ]);
    for r in v.quant_ratio {
        t.add_row(vec![
            r.name.clone(),
            r.gpu.clone(),
            format!("{:.2} / {:.2}", r.measured_ms, r.baseline_measured_ms),
            format!("{:.2} / {:.2}", r.predicted_ms, r.baseline_predicted_ms),
            format!(
                "{:.3} → {:.3} ({:+.1}%)",
                r.measured_ratio,
                r.predicted_ratio,
                100.0 * r.error
            ),
        ]);
    }
    let a = v.quant_ratio_summary;
    format!(
        "\n{t}\nStep time of each quantized run over the fp16/fp16 run of the same batch and lengths \
         (batch latency / output tokens). {} ratios: median |error| {:.1}%, max |error| {:.1}%.\n",
        a.figures_compared,
        100.0 * a.median_abs_error,
        100.0 * a.max_abs_error
    )
}
