//! `cardplan calibrate` rendered: what a calibration wrote (the terminal table and the `--json`
//! object), and where its wall time went.

use serde::Serialize;

use super::table::new_table;
use crate::error::{Error, Result};
use crate::profile::{GpuProfile, MeasuredRoofs, Timing};

/// One kernel's correctness check, as the outcome reports it.
#[derive(Debug, Clone, Serialize)]
pub struct KernelCheck<'a> {
    pub kernel: &'a str,
    /// Largest error over its bound (the check passed at <= 1).
    pub worst_ratio: f64,
    pub max_abs_err: f64,
    pub bound: &'a str,
}

/// What a calibration wrote, and where (also the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationOutcome<'a> {
    pub out: String,
    pub device: &'a str,
    pub key: &'a str,
    pub timing: Timing,
    pub roofs: MeasuredRoofs,
    pub gemm_tables: usize,
    pub decode_tables: usize,
    pub prefill_tables: usize,
    pub elementwise_tables: usize,
    pub checks: Vec<KernelCheck<'a>>,
}

impl<'a> CalibrationOutcome<'a> {
    /// The outcome of writing `profile` (a measured one) to `out`, measured on `device`.
    pub fn new(
        out: String,
        device: &'a str,
        profile: &'a GpuProfile,
        checks: Vec<KernelCheck<'a>>,
    ) -> Result<CalibrationOutcome<'a>> {
        let m = profile
            .measured
            .as_ref()
            .ok_or_else(|| Error::Internal("profile lost its measured block".into()))?;
        Ok(CalibrationOutcome {
            out,
            device,
            key: &profile.key,
            timing: m.provenance.timing,
            roofs: m.roofs,
            gemm_tables: m.gemm.len(),
            decode_tables: m.attn_decode.len(),
            prefill_tables: m.attn_prefill.len(),
            elementwise_tables: m.elementwise.len(),
            checks,
        })
    }
}

/// The outcome as a two-column terminal table.
pub fn terminal(o: &CalibrationOutcome) -> String {
    let mut t = new_table();
    t.set_header(vec!["what", "value"]);
    t.add_row(vec!["device".to_string(), o.device.to_string()]);
    t.add_row(vec![
        "profile".to_string(),
        format!("{} ({})", o.out, o.key),
    ]);
    t.add_row(vec!["timing".to_string(), o.timing.to_string()]);
    t.add_row(vec![
        "copy bandwidth".to_string(),
        format!("{:.0} GB/s (read + write)", o.roofs.copy_gbs),
    ]);
    t.add_row(vec![
        "fp16 GEMM peak".to_string(),
        format!("{:.0} TFLOP/s", o.roofs.fp16_tflops),
    ]);
    t.add_row(vec![
        "int8 GEMM peak".to_string(),
        format!("{:.0} TOP/s", o.roofs.int8_tops),
    ]);
    t.add_row(vec![
        "tables".to_string(),
        format!(
            "{} gemm, {} decode attention, {} prefill attention, {} elementwise",
            o.gemm_tables, o.decode_tables, o.prefill_tables, o.elementwise_tables
        ),
    ]);
    for c in &o.checks {
        t.add_row(vec![
            format!("check {}", c.kernel),
            format!("pass ({:.2} of bound {})", c.worst_ratio, c.bound),
        ]);
    }
    t.to_string()
}

/// Wall time spent per phase (diagnostics on stderr: where a calibration's time goes).
pub struct Phases {
    last: std::time::Instant,
    spent: Vec<(&'static str, f64)>,
}

impl Phases {
    /// Phases counted from `start`.
    pub fn new(start: std::time::Instant) -> Phases {
        Phases {
            last: start,
            spent: Vec::new(),
        }
    }

    /// The time since the last lap, added to `what`.
    pub fn lap(&mut self, what: &'static str) {
        let now = std::time::Instant::now();
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        match self.spent.iter_mut().find(|(w, _)| *w == what) {
            Some(e) => e.1 += dt,
            None => self.spent.push((what, dt)),
        }
    }

    /// `what 1.2 s, …` in first-seen order.
    pub fn summary(&self) -> String {
        self.spent
            .iter()
            .map(|(w, s)| format!("{w} {s:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
