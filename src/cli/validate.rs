//! `cardplan validate`: predictions next to published measurements.

use clap::Args;
use serde::Serialize;

use super::common::print_json;
use crate::error::Result;
use crate::report::table::new_table;
use crate::validate::{self, RowResult};

const EXAMPLES: &str = "Examples:
  cardplan validate
  cardplan validate --json
  cardplan validate --markdown     # the README's Accuracy table";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ValidateArgs {
    /// Print JSON (a list of rows with `name`, `measured`, `predicted`, `errors`).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print a Markdown table (what the README's "Accuracy" section holds).
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Serialize)]
struct Json<'a> {
    rows: &'a [RowResult],
    summary: Summary,
}

#[derive(Serialize)]
struct Summary {
    median_abs_error: f64,
    max_abs_error: f64,
    figures_compared: usize,
}

/// Columns: (header, figure key).
const COLUMNS: [(&str, &str); 5] = [
    ("req/s", "requests_per_s"),
    ("E2E mean s", "e2e_s.mean"),
    ("TTFT mean ms", "ttft_ms.mean"),
    ("tok/s mean", "request_tok_s.mean"),
    ("tok/s p01", "request_tok_s.p01"),
];

pub fn run(args: ValidateArgs) -> Result<()> {
    let rows = validate::run_all()?;
    let (median, max) = validate::summary(&rows);
    let compared = rows
        .iter()
        .filter(|r| r.fitted.is_none())
        .map(|r| r.errors.len())
        .sum();
    if args.json {
        return print_json(&Json {
            rows: &rows,
            summary: Summary {
                median_abs_error: median,
                max_abs_error: max,
                figures_compared: compared,
            },
        });
    }
    let header: Vec<&str> = ["row", "GPU", "engine"]
        .into_iter()
        .chain(COLUMNS.iter().map(|c| c.0))
        .collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let name = if r.fitted.is_some() {
                format!("{} (fitted)", r.name)
            } else {
                r.name.clone()
            };
            [name, r.gpu.clone(), r.engine.clone()]
                .into_iter()
                .chain(COLUMNS.iter().map(|(_, key)| cell(r, key)))
                .collect()
        })
        .collect();
    let mut footer = format!(
        "Each cell: measured → predicted (signed error). {compared} figures compared: median |error| {:.1}%, max |error| {:.1}%.",
        100.0 * median,
        100.0 * max
    );
    for r in rows.iter().filter(|r| r.fitted.is_some()) {
        let what = r.fitted.as_deref().unwrap_or_default();
        footer.push_str(&format!(
            "\n'{}' (fitted): {what}; it is left out of the summary.",
            r.name
        ));
    }
    if args.markdown {
        println!("| {} |", header.join(" | "));
        println!(
            "|{}|",
            header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
        );
        for row in &body {
            println!("| {} |", row.join(" | "));
        }
        println!();
        println!("{footer}");
        return Ok(());
    }
    let mut t = new_table();
    t.set_header(header);
    for row in body {
        t.add_row(row);
    }
    println!("{t}");
    println!("{footer}");
    let profiles: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}: {} profile, {}",
                r.gpu, r.profile.kind, r.profile.source
            )
        })
        .collect();
    for p in profiles {
        println!("profile {p}");
    }
    Ok(())
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
