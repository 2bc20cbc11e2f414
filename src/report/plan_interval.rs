//! The verdict rows of a plan's interval with the model's own error folded in: the combined
//! interval, its model and traffic parts, and what the model part rests on.

use super::format::{sig_str, users_with_interval};
use crate::plan::error_bars::{ErrorBasis, Widening};
use crate::plan::result::PlanResult;

/// Rows for the verdict table (none without an interval).
pub fn rows(r: &PlanResult) -> Vec<(String, String)> {
    let Some(i) = &r.interval else {
        return Vec::new();
    };
    let conf = sig_str(i.confidence * 100.0, 2);
    let range = |lo: f64, hi: f64| users_with_interval(i.estimate, lo, hi).1;
    let m = &i.model_error;
    let mut rows = vec![
        (
            "likely".into(),
            format!(
                "{} users per card ({conf}%: model error and traffic combined)",
                range(i.low, i.high)
            ),
        ),
        (
            "· model error".into(),
            format!(
                "{}: step times {}–{} of predicted ({conf}% prediction interval of the \
                 step-time error; {} paired windows per end)",
                range(m.low, m.high),
                times(m.step_scale_at_high),
                times(m.step_scale_at_low),
                m.windows
            ),
        ),
        (
            "· traffic".into(),
            format!(
                "{} ({conf}% of peak windows)",
                range(i.traffic.low, i.traffic.high)
            ),
        ),
        ("· error basis".into(), basis_text(&m.basis)),
    ];
    if let (Some((_, worst)), Some(c)) = (i.cards_range, r.cards_needed)
        && worst > c
    {
        rows.push((
            "· at the low end".into(),
            format!(
                "{worst} cards if every card serves only the combined interval's low end ({} \
                 users per card)",
                range(i.low, i.high).split('–').next().unwrap_or_default()
            ),
        ));
    }
    rows
}

/// "×0.93": a step-time factor.
fn times(k: f64) -> String {
    format!("×{k:.2}")
}

/// How many rows on which GPUs, whether this GPU, scheme and family are among them, and the
/// widening when not.
pub fn basis_text(b: &ErrorBasis) -> String {
    let gpus: Vec<String> = b
        .gpus
        .iter()
        .map(|g| format!("{} ×{} ({})", g.gpu, g.rows, g.profile))
        .collect();
    let mut out = format!(
        "{} validation rows: {}; this GPU, {} ({} profile), is {}in the record",
        b.rows,
        gpus.join(", "),
        b.gpu,
        b.profile,
        if b.gpu_covered { "" } else { "not " }
    );
    if b.widening.is_empty() {
        out.push_str(", and so are its scheme and model family");
    } else {
        out.push_str(&format!("; widened: {}", widening_text(&b.widening)));
    }
    out
}

/// "no validation row used nf4 (±10%), …": each widening with its one-sigma size.
pub fn widening_text(w: &[Widening]) -> String {
    w.iter()
        .map(|w| format!("{} (±{:.0}%)", w.reason, 100.0 * w.sigma))
        .collect::<Vec<_>>()
        .join(", ")
}
