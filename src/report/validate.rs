//! `cardplan validate` as a terminal table, as the README's Markdown table and as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::table::new_table;
use crate::validate::{Accuracy, RowResult};

/// Everything `validate --json` prints.
#[derive(Serialize)]
pub struct ValidationView<'a> {
    pub rows: &'a [RowResult],
    pub summary: Accuracy,
}

/// Columns: (header, figure key).
const COLUMNS: [(&str, &str); 7] = [
    ("req/s", "requests_per_s"),
    ("E2E mean s", "e2e_s.mean"),
    ("TTFT mean ms", "ttft_ms.mean"),
    ("TPOT mean ms", "tpot_ms.mean"),
    ("out tok/s", "output_tok_s"),
    ("tok/s mean", "request_tok_s.mean"),
    ("tok/s p01", "request_tok_s.p01"),
];

fn header() -> Vec<&'static str> {
    ["row", "GPU", "engine"]
        .into_iter()
        .chain(COLUMNS.iter().map(|c| c.0))
        .collect()
}

fn body(rows: &[RowResult]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let name = if r.fitted.is_some() && r.overloaded {
                format!("{} (overloaded, fitted)", r.name)
            } else if r.fitted.is_some() {
                format!("{} (fitted)", r.name)
            } else if r.overloaded {
                format!("{} (overloaded)", r.name)
            } else {
                r.name.clone()
            };
            [name, r.gpu.clone(), r.engine.clone()]
                .into_iter()
                .chain(COLUMNS.iter().map(|(_, key)| cell(r, key)))
                .collect()
        })
        .collect()
}

/// The summary line, and one line per fitted row saying what was fitted to it.
fn footer(v: &ValidationView<'_>) -> String {
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

/// The Markdown table the README's "Accuracy" section holds.
pub fn markdown(v: &ValidationView<'_>) -> String {
    let header = header();
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let rule: Vec<&str> = header.iter().map(|_| "---").collect();
    let _ = writeln!(out, "|{}|", rule.join("|"));
    for row in body(v.rows) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", footer(v));
    out
}

/// The table for a terminal, with the profile each GPU's step times rest on.
pub fn terminal(v: &ValidationView<'_>) -> String {
    let mut t = new_table();
    t.set_header(header());
    for row in body(v.rows) {
        t.add_row(row);
    }
    let mut out = format!("{t}\n{}\n", footer(v));
    let profiles: std::collections::BTreeSet<String> = v
        .rows
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
    out
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
