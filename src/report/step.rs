//! `cardplan step` as a table and as JSON: one step's time by component, with its caveats.

use serde::Serialize;

use super::table::new_table;
use crate::cost::{ProfileInfo, StepBreakdown};

/// Everything `step --json` prints.
#[derive(Serialize)]
pub struct StepView<'a> {
    pub gpu: &'a str,
    pub model: &'a str,
    pub quant: String,
    pub kv: String,
    pub engine: &'a str,
    /// GPUs the model is split over; times are one step of the whole server.
    pub tp: u32,
    /// Where the all-reduce times come from.
    pub comm: String,
    pub batch: u32,
    pub context: u32,
    pub prefill_tokens: u32,
    pub prefill_cached: u32,
    pub tokens: u64,
    /// GPU time plus engine overhead.
    pub step_ms: f64,
    /// GPU time only (everything but overhead).
    pub gpu_ms: f64,
    pub breakdown: BreakdownMs,
    pub notes: &'a [String],
    pub profile: &'a ProfileInfo,
    pub warnings: &'a [String],
    /// Where the engine's overhead figures come from (the table's footer; not in the JSON).
    #[serde(skip)]
    pub engine_source: &'a str,
    /// The breakdown in seconds, as the table shows it.
    #[serde(skip)]
    pub seconds: &'a StepBreakdown,
}

/// A step's components in milliseconds.
#[derive(Serialize)]
pub struct BreakdownMs {
    pub linear: f64,
    pub attention: f64,
    pub lm_head: f64,
    pub elementwise: f64,
    pub overhead: f64,
    pub comm: f64,
}

impl From<&StepBreakdown> for BreakdownMs {
    fn from(b: &StepBreakdown) -> Self {
        BreakdownMs {
            linear: b.linear * 1e3,
            attention: b.attention * 1e3,
            lm_head: b.lm_head * 1e3,
            elementwise: b.elementwise * 1e3,
            overhead: b.overhead * 1e3,
            comm: b.comm * 1e3,
        }
    }
}

/// The step as a terminal table, with the decode rate, the profile and the notes.
pub fn terminal(v: &StepView<'_>) -> String {
    let prefill = if v.prefill_tokens > 0 {
        format!(
            " + prefill of {} tokens over {} cached",
            v.prefill_tokens, v.prefill_cached
        )
    } else {
        String::new()
    };
    let gpus = if v.tp > 1 {
        format!("{} × {} (TP {})", v.tp, v.gpu, v.tp)
    } else {
        v.gpu.to_string()
    };
    let mut out = format!(
        "{} ({}, KV {}) on {gpus}, engine {}: {} decoding × {} context{prefill}\n",
        v.model, v.quant, v.kv, v.engine, v.batch, v.context
    );
    let b = v.seconds;
    let total = b.total();
    let mut t = new_table();
    t.set_header(vec!["component", "ms", "share"]);
    let rows = [
        ("linear layers", b.linear),
        ("attention", b.attention),
        ("lm head", b.lm_head),
        ("elementwise", b.elementwise),
        ("TP communication", b.comm),
        ("engine overhead", b.overhead),
        ("step", total),
    ];
    for (name, s) in rows
        .into_iter()
        .filter(|r| v.tp > 1 || r.0 != "TP communication")
    {
        t.add_row(vec![
            name.to_string(),
            format!("{:.3}", s * 1e3),
            format!("{:.1}%", 100.0 * s / total),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    if v.batch > 0 {
        let step_s = total;
        out.push_str(&format!(
            "decode rate: {:.1} tokens/s per sequence, {:.0} tokens/s in total\n",
            1.0 / step_s,
            f64::from(v.batch) / step_s
        ));
    }
    let p = v.profile;
    out.push_str(&format!("profile: {} ({}): {}\n", p.gpu, p.kind, p.source));
    if v.tp > 1 {
        out.push_str(&format!("TP communication: {}\n", v.comm));
    }
    out.push_str(&format!("engine overhead: {}\n", v.engine_source));
    for n in v.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}
