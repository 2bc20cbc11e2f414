//! `cardplan whatif` rendered: the comparison table with the best of each column marked, and
//! the report with users-per-card and users-per-dollar bars.

use serde::{Deserialize, Serialize};

use super::chart::{Bar, ChartSpec};
use super::doc::Document;
use super::format::{thousands, usd, usd_per_hour, users_with_interval};
use super::table::new_table;
use crate::cost::ProfileKind;
use crate::plan::result::PlanResult;

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub model: String,
    pub scenario: String,
    pub gpu: String,
    /// GPUs per server; `users_per_card` and `cards_needed` count single GPUs.
    pub tp: u32,
    pub quant: String,
    pub fits: bool,
    pub users_per_card: Option<u64>,
    pub users_per_card_low: Option<u64>,
    pub users_per_card_high: Option<u64>,
    pub cards_needed: Option<u64>,
    pub cost_per_month: Option<f64>,
    pub cost_per_user_month: Option<f64>,
    /// Users served per USD of monthly GPU cost (1 / cost per user per month).
    pub users_per_dollar_month: Option<f64>,
    pub price_per_hour: f64,
    pub price_source: String,
    /// Why there is no number, when there is none.
    pub note: Option<String>,
}

/// Rows holding the best value of each column (ties all marked; empty when no row has a value).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Best {
    pub users_per_card: Vec<usize>,
    pub cards_needed: Vec<usize>,
    pub cost_per_month: Vec<usize>,
    pub cost_per_user_month: Vec<usize>,
}

/// The whole comparison (also the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub users: u64,
    pub rows: Vec<Row>,
    pub best: Best,
    /// Shared settings, taken from the first combination.
    pub slo: Option<crate::plan::result::SloInfo>,
    pub assumptions: Option<crate::plan::result::Assumptions>,
    /// Every combination's full plan.
    pub plans: Vec<PlanResult>,
}

/// Marks a `whatif --shard` output, so that `merge` refuses any other JSON.
pub const SHARD_FORMAT: &str = "cardplan-whatif-shard/1";

/// What `whatif --shard K/N --json` prints: that shard's plans with their grid positions, and
/// enough of the command to check that shards belong together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardOutput {
    pub format: String,
    /// This shard, 1-based.
    pub shard: usize,
    /// Shards in all.
    pub of: usize,
    pub users: u64,
    /// The flags that change the numbers (and the cardplan version), compared verbatim.
    pub settings: String,
    /// Every grid position in words, in grid order: the same in every shard of one command.
    pub grid: Vec<String>,
    pub entries: Vec<ShardEntry>,
}

/// One computed configuration and its 0-based position in the grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardEntry {
    pub index: usize,
    pub plan: PlanResult,
}

/// Indices of the rows whose `key` is best (largest or smallest); equal values all count.
fn best_by<F: Fn(&Row) -> Option<f64>>(rows: &[Row], key: F, larger: bool) -> Vec<usize> {
    let vals: Vec<Option<f64>> = rows
        .iter()
        .map(|r| key(r).filter(|v| v.is_finite()))
        .collect();
    let best = vals.iter().flatten().copied().reduce(|a, b| {
        if (larger && b > a) || (!larger && b < a) {
            b
        } else {
            a
        }
    });
    let Some(best) = best else {
        return Vec::new();
    };
    let tol = 1e-9 * best.abs().max(1.0);
    vals.iter()
        .enumerate()
        .filter(|(_, v)| v.is_some_and(|v| (v - best).abs() <= tol))
        .map(|(i, _)| i)
        .collect()
}

impl Comparison {
    pub fn new(users: u64, plans: Vec<PlanResult>) -> Comparison {
        let rows: Vec<Row> = plans
            .iter()
            .map(|p| {
                let u = p.users_per_card.as_ref();
                let note = if !p.fits {
                    Some(format!(
                        "does not fit at TP {}: weights {} + reserve {} > {} usable per GPU",
                        p.tp,
                        crate::fit::gb(p.fit.weights_bytes),
                        crate::fit::gb(p.fit.reserve_bytes),
                        crate::fit::gb(p.fit.usable_bytes)
                    ))
                } else if p.cards_needed.is_none() {
                    let why = p.limit.as_ref().map_or_else(
                        || "misses the SLO even for one user".to_string(),
                        |l| l.detail.clone(),
                    );
                    Some(format!("none: {why}"))
                } else {
                    None
                };
                let per_user = p.cost.as_ref().and_then(|c| c.per_user_month);
                Row {
                    model: p.question.model.clone(),
                    scenario: p.question.scenario.clone(),
                    gpu: p.question.gpu.clone(),
                    tp: p.tp,
                    quant: p.question.quant.clone(),
                    fits: p.fits,
                    users_per_card: u.map(|u| u.estimate),
                    users_per_card_low: u.map(|u| u.low),
                    users_per_card_high: u.map(|u| u.high),
                    cards_needed: p.cards_needed,
                    cost_per_month: p.cost.as_ref().map(|c| c.per_month),
                    cost_per_user_month: per_user,
                    users_per_dollar_month: per_user.filter(|&c| c > 0.0).map(|c| 1.0 / c),
                    price_per_hour: p.assumptions.price_per_hour,
                    price_source: p.assumptions.price_source.clone(),
                    note,
                }
            })
            .collect();
        let best = Best {
            users_per_card: best_by(&rows, |r| r.users_per_card.map(|x| x as f64), true),
            cards_needed: best_by(&rows, |r| r.cards_needed.map(|x| x as f64), false),
            cost_per_month: best_by(&rows, |r| r.cost_per_month, false),
            cost_per_user_month: best_by(&rows, |r| r.cost_per_user_month, false),
        };
        Comparison {
            users,
            slo: plans.first().map(|p| p.slo.clone()),
            assumptions: plans.first().map(|p| p.assumptions.clone()),
            rows,
            best,
            plans,
        }
    }

    /// Whether the rows span several models, and several scenarios (then they get a column).
    pub fn varies(&self) -> (bool, bool) {
        let differs = |f: fn(&Row) -> &str| self.rows.iter().any(|r| f(r) != f(&self.rows[0]));
        (differs(|r| &r.model), differs(|r| &r.scenario))
    }

    /// The SLO, once per scenario when scenarios vary (each brings its own defaults).
    pub fn slo_lines(&self) -> Vec<String> {
        if !self.varies().1 {
            return self
                .slo
                .iter()
                .map(|s| format!("SLO: {} ({})", s.text, s.source))
                .collect();
        }
        let mut lines: Vec<String> = Vec::new();
        for p in &self.plans {
            let l = format!(
                "SLO for {}: {} ({})",
                p.question.scenario, p.slo.text, p.slo.source
            );
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        lines
    }

    /// A row's name in charts and notes: GPU and scheme, with model and scenario when they vary.
    pub fn label(&self, r: &Row) -> String {
        let (models, scenarios) = self.varies();
        let mut parts = Vec::new();
        if scenarios {
            parts.push(r.scenario.as_str());
        }
        if models {
            parts.push(r.model.as_str());
        }
        parts.extend([r.gpu.as_str(), r.quant.as_str()]);
        parts.join(" ")
    }

    /// Table cells (header, rows), the best of each column marked with `*`.
    pub fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let (models, scenarios) = self.varies();
        let (h, rows) = self.base_cells();
        let lead = |scenario: &str, model: &str| {
            let mut v: Vec<String> = Vec::new();
            if scenarios {
                v.push(scenario.to_string());
            }
            if models {
                v.push(model.to_string());
            }
            v
        };
        let mut header = lead("scenario", "model");
        header.extend(h);
        let rows = self
            .rows
            .iter()
            .zip(rows)
            .map(|(r, cells)| {
                let mut v = lead(&r.scenario, &r.model);
                v.extend(cells);
                v
            })
            .collect();
        (header, rows)
    }

    fn base_cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = vec![
            "GPU".into(),
            "quant".into(),
            "users per card (interval)".into(),
            "cards needed".into(),
            "$/month".into(),
            "$/user/month".into(),
            "price".into(),
        ];
        let mark = |s: String, i: usize, b: &[usize]| {
            if b.contains(&i) { format!("{s} *") } else { s }
        };
        let rows = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let upc = match (
                    r.users_per_card,
                    r.users_per_card_low,
                    r.users_per_card_high,
                ) {
                    (Some(e), Some(lo), Some(hi)) if e > 0 => {
                        let (e, range) = users_with_interval(e as f64, lo as f64, hi as f64);
                        mark(format!("{e} ({range})"), i, &self.best.users_per_card)
                    }
                    _ => r.note.clone().unwrap_or_else(|| "n/a".into()),
                };
                let dash = || "–".to_string();
                let gpu = if r.tp > 1 {
                    format!("{} (TP {})", r.gpu, r.tp)
                } else {
                    r.gpu.clone()
                };
                vec![
                    gpu,
                    r.quant.clone(),
                    upc,
                    r.cards_needed
                        .map(|c| mark(thousands(c), i, &self.best.cards_needed))
                        .unwrap_or_else(dash),
                    r.cost_per_month
                        .map(|c| mark(usd(c), i, &self.best.cost_per_month))
                        .unwrap_or_else(dash),
                    r.cost_per_user_month
                        .map(|c| mark(usd(c), i, &self.best.cost_per_user_month))
                        .unwrap_or_else(dash),
                    usd_per_hour(r.price_per_hour),
                ]
            })
            .collect();
        (header, rows)
    }
}

pub fn terminal(c: &Comparison) -> String {
    let mut out = format!("{} users", thousands(c.users));
    let (models, scenarios) = c.varies();
    if let Some(a) = &c.assumptions {
        let scenario = if scenarios {
            "scenarios in the table".to_string()
        } else {
            format!("scenario {}", a.scenario)
        };
        out.push_str(&format!(" · {scenario} · engine {}", a.engine.key));
    }
    if let Some(p) = c.plans.first() {
        let model = if models {
            "models in the table"
        } else {
            &p.question.model
        };
        out.push_str(&format!(" · {model} (KV {})", p.question.kv));
    }
    out.push('\n');
    for line in c.slo_lines() {
        out.push_str(&format!("{line}\n"));
    }
    let (h, rows) = c.cells();
    let mut t = new_table();
    t.set_header(h);
    for r in rows {
        t.add_row(r);
    }
    out.push_str(&format!(
        "{t}\n* best in its column. Cost: cards × price per GPU-hour × 730 h/month.\n"
    ));
    let derived: Vec<String> = c
        .plans
        .iter()
        .filter_map(|p| p.profile.as_ref())
        .filter(|p| p.kind != ProfileKind::Measured)
        .map(|p| p.gpu.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !derived.is_empty() {
        out.push_str(&format!(
            "Step times not measured on: {} (derived or datasheet profiles).\n",
            derived.join(", ")
        ));
    }
    out
}

/// Bars of users per card and users per dollar (fitting combinations only).
pub fn charts(c: &Comparison) -> Vec<(String, ChartSpec)> {
    let label = |r: &Row| c.label(r);
    let upc: Vec<Bar> = c
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.users_per_card.map(|v| Bar {
                label: label(r),
                value: v as f64,
                highlight: c.best.users_per_card.contains(&i),
            })
        })
        .collect();
    let upd: Vec<Bar> = c
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.users_per_dollar_month.map(|v| Bar {
                label: label(r),
                value: v,
                highlight: c.best.cost_per_user_month.contains(&i),
            })
        })
        .collect();
    let mut v = Vec::new();
    if !upc.is_empty() {
        v.push((
            "users_per_card".into(),
            ChartSpec::Bars {
                title: "Users per card within the SLO".into(),
                x_label: "users per card (mean of the simulated peak windows)".into(),
                bars: upc,
            },
        ));
    }
    if !upd.is_empty() {
        v.push((
            "users_per_dollar".into(),
            ChartSpec::Bars {
                title: "Users per dollar of monthly GPU cost".into(),
                x_label: "users per USD per month (730 h at the GPU-hour price)".into(),
                bars: upd,
            },
        ));
    }
    v
}

pub fn document(c: &Comparison) -> Document {
    let mut d = Document::new(format!("cardplan whatif: {} users", thousands(c.users)));
    for line in c.slo_lines() {
        d.para(format!("{line}."));
    }
    d.heading("Comparison");
    let (h, rows) = c.cells();
    d.table(h, rows);
    d.para("* marks the best value in each column. Cost: cards × $/GPU-hour × 730 h/month.");
    for (name, spec) in charts(c) {
        d.chart(name, spec);
    }
    if let Some(p) = c.plans.iter().find(|p| p.fits) {
        d.heading("Assumptions");
        d.bullets(super::plan::assumption_lines(p, false));
    }
    // The same caveat for several combinations is listed once, with the combinations it covers.
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (p, r) in c.plans.iter().zip(&c.rows) {
        let who = c.label(r);
        for n in &p.notes {
            let n = n.replace(&p.question.gpu, "this GPU");
            match grouped.iter_mut().find(|(text, _)| *text == n) {
                Some((_, list)) => list.push(who.clone()),
                None => grouped.push((n, vec![who.clone()])),
            }
        }
    }
    let notes: Vec<String> = grouped
        .into_iter()
        .map(|(n, who)| format!("{}: {n}", who.join(", ")))
        .collect();
    if !notes.is_empty() {
        d.heading("Notes");
        d.bullets(notes);
    }
    d.heading("Prices");
    let mut seen = std::collections::BTreeMap::new();
    for r in &c.rows {
        seen.entry(r.gpu.clone()).or_insert_with(|| {
            format!(
                "{}: {} ({})",
                r.gpu,
                usd_per_hour(r.price_per_hour),
                r.price_source
            )
        });
    }
    d.bullets(seen.into_values().collect());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(upc: Option<u64>, cost: Option<f64>) -> Row {
        Row {
            model: "m".into(),
            scenario: "s".into(),
            gpu: "g".into(),
            tp: 1,
            quant: "q".into(),
            fits: upc.is_some(),
            users_per_card: upc,
            users_per_card_low: upc,
            users_per_card_high: upc,
            cards_needed: None,
            cost_per_month: cost,
            cost_per_user_month: cost,
            users_per_dollar_month: None,
            price_per_hour: 1.0,
            price_source: String::new(),
            note: None,
        }
    }

    #[test]
    fn best_marks_every_tie_and_skips_missing_values() {
        let rows = vec![
            row(Some(10), Some(5.0)),
            row(None, None),
            row(Some(30), Some(2.0)),
            row(Some(30), Some(2.0)),
        ];
        assert_eq!(
            best_by(&rows, |r| r.users_per_card.map(|x| x as f64), true),
            vec![2, 3]
        );
        assert_eq!(best_by(&rows, |r| r.cost_per_month, false), vec![2, 3]);
        assert!(best_by(&rows, |r| r.cards_needed.map(|x| x as f64), false).is_empty());
    }
}
