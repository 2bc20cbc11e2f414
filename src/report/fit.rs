//! `cardplan fit` as a table and as JSON: memory, weights, reserve and KV capacity.

use serde::Serialize;

use super::table::new_table;
use crate::deploy::Target;
use crate::fit::{FIXED_RESERVE_BYTES, FitReport, gb};

/// Everything `fit --json` prints.
#[derive(Serialize)]
pub struct FitView<'a> {
    #[serde(flatten)]
    pub report: &'a FitReport,
    pub context: u32,
    pub max_seqs_at_context: u64,
    pub model_params: u64,
    /// Activation reserve's step size, tokens (the table's note; not in the JSON).
    #[serde(skip)]
    pub step_tokens: u32,
    #[serde(skip)]
    pub target: &'a Target,
    /// Why this TP (printed when TP was asked for or is above 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp_reason: Option<String>,
}

/// What was fitted where, and why this TP.
fn title(v: &FitView<'_>) -> String {
    let t = v.target;
    let gpus = if t.tp > 1 {
        format!("{} × {} ({}), per GPU", t.tp, t.gpu.key, t.gpu.name)
    } else {
        format!("{} ({})", t.gpu.key, t.gpu.name)
    };
    let mut out = format!(
        "{} ({}) on {gpus}, KV cache {}\n",
        t.model.key, t.quant, t.kv
    );
    if let Some(why) = &v.tp_reason {
        out.push_str(&format!("tensor parallel: {why}\n"));
    }
    out
}

/// The fit as a terminal table with a verdict line.
pub fn terminal(v: &FitView<'_>) -> String {
    let (r, t) = (v.report, v.target);
    let mut out = title(v);
    let mut table = new_table();
    table.set_header(vec!["", "value", "note"]);
    let rows = [
        (
            "GPU memory".to_string(),
            gb(r.memory_bytes),
            format!(
                "× {:.2} usable = {}",
                r.gpu_memory_utilization,
                gb(r.usable_bytes)
            ),
        ),
        (
            "weights".to_string(),
            gb(r.weights_bytes),
            format!(
                "{:.2} B params, {}",
                v.model_params as f64 / 1e9,
                t.quant.describe()
            ),
        ),
        (
            "runtime reserve".to_string(),
            gb(r.reserve_bytes),
            format!(
                "activations {} at {} tokens/step + {} CUDA context, workspaces, graphs",
                gb(r.activation_bytes),
                v.step_tokens,
                gb(FIXED_RESERVE_BYTES)
            ),
        ),
        (
            "KV per token".to_string(),
            format!("{} KiB", r.kv_bytes_per_token as f64 / 1024.0),
            format!(
                "2 × {} layers × {} KV heads × {} dims × {} B",
                t.model.layers,
                t.model.kv_heads_per_rank(t.tp),
                t.model.head_dim,
                t.kv.bytes()
            ),
        ),
        (
            "KV cache".to_string(),
            gb(r.kv_bytes),
            format!(
                "{} blocks of {} tokens = {} tokens",
                r.kv_blocks, r.block_size, r.kv_tokens
            ),
        ),
        (
            format!("sequences at {} tokens", v.context),
            v.max_seqs_at_context.to_string(),
            "that fit in KV at once".to_string(),
        ),
    ];
    for (a, b, c) in rows {
        table.add_row(vec![a, b, c]);
    }
    out.push_str(&format!("{table}\n"));
    if let Some(moe) = &r.moe {
        out.push_str(&format!("{}\n", moe.note));
    }
    if r.fits {
        out.push_str("fits: yes\n");
    } else {
        out.push_str(&format!(
            "fits: NO, short by {}: {}\n",
            gb(r.shortfall_bytes),
            r.reason
        ));
    }
    out
}
