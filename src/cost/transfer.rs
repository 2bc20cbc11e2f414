//! Transfer of a measured profile to a GPU you don't own.
//!
//! For every measured point, efficiency = roofline time on the source datasheet ÷ measured time;
//! the derived time is the target's roofline time ÷ that efficiency. Only the part of the time
//! above the fixed per-call cost ([`super::graph::isolated_fixed_s`], launch latency and the like)
//! scales: a launch gap does not shrink with bandwidth. The roofline takes the larger of the memory and compute times on each GPU, so a
//! point that is memory-bound on the source but compute-bound on the target (an H100 → GeForce
//! transfer at a few hundred tokens) scales by the target's compute roof.
//!
//! The derived block keeps the source's provenance, so its timing method (`isolated` or
//! `back-to-back`) travels with it and the cost model corrects a derived profile exactly when it
//! would correct its source.
//!
//! What this cannot see, stated in the derived profile's notes: L2 size (tables are DRAM-bound
//! because the calibrator flushes L2 or rotates its inputs over more than twice the L2), SM count
//! and clocks beyond the datasheet peaks, and library heuristics that differ by architecture.

use super::graph::{decode_fixed_s, isolated_fixed_s};
use super::interp::rescale;
use super::roofline::{self, Roofs};
use super::tables::heads;
use crate::catalog::quant::Quant;
use crate::profile::{DerivedFrom, GpuProfile, Measured, MeasuredRoofs, Provenance};

/// The measured profile a target should be derived from: the target itself when it is measured;
/// otherwise a measured GPU of the same architecture family, else any measured GPU; among those,
/// the closest in (log bandwidth, log fp16 rate).
pub fn pick_source<'a>(target: &GpuProfile, measured: &'a [GpuProfile]) -> Option<&'a GpuProfile> {
    let d = &target.datasheet;
    let dist = |p: &GpuProfile| {
        let s = &p.datasheet;
        let family = if s.arch == d.arch { 0.0 } else { 1000.0 };
        family
            + (s.bandwidth_gbs / d.bandwidth_gbs).ln().abs()
            + (s.fp16_tflops / d.fp16_tflops).ln().abs()
    };
    measured
        .iter()
        .filter(|p| p.measured.is_some())
        .min_by(|a, b| dist(a).total_cmp(&dist(b)))
}

/// `target` with a measured block derived from `source`'s. Returns `None` when `source` has no
/// measurements. Every table keeps its sizes; only the times change.
pub fn derive(source: &GpuProfile, target: &GpuProfile) -> Option<GpuProfile> {
    let m = source.measured.as_ref()?;
    let rs = Roofs::from_datasheet(&source.datasheet);
    let rt = Roofs::from_datasheet(&target.datasheet);
    // the fixed per-call part of the source's times does not scale with the roofs
    let floor_ms = isolated_fixed_s(m) * 1e3;
    let scale = |t_ms: f64, work: roofline::Work| {
        rescale(t_ms, floor_ms, work.seconds(&rt) / work.seconds(&rs))
    };
    let mut out: Measured = m.clone();
    out.gemm.retain(|t| t.scheme.parse::<Quant>().is_ok());
    for t in &mut out.gemm {
        let Ok(q) = t.scheme.parse::<Quant>() else {
            continue;
        };
        let (n, k) = (f64::from(t.n), f64::from(t.k));
        for p in &mut t.points {
            p.1 = scale(p.1, roofline::gemm(q, n, k, f64::from(p.0)));
        }
    }
    super::moe::scale_tables(&mut out.moe_gemm, &scale);
    for t in &mut out.attn_prefill {
        let h = heads(t.heads, t.kv_heads, t.head_dim);
        for p in &mut t.points {
            let x = f64::from(p.0);
            p.1 = scale(p.1, roofline::prefill_attn(h, x * x / 2.0, x, x));
        }
    }
    for t in &mut out.attn_decode {
        let h = heads(t.heads, t.kv_heads, t.head_dim);
        let (kvb, block) = (t.kv.bytes() as f64, f64::from(t.block_size));
        // small decode calls are latency-bound: the table's own floor does not scale either
        let fixed_ms = decode_fixed_s(t, floor_ms * 1e-3) * 1e3;
        for p in &mut t.points {
            let w = roofline::decode_attn(h, kvb, block, f64::from(p.batch), f64::from(p.context));
            p.ms = rescale(p.ms, fixed_ms, w.seconds(&rt) / w.seconds(&rs));
        }
    }
    for t in &mut out.elementwise {
        for p in &mut t.points {
            p.1 = scale(
                p.1,
                roofline::elementwise(t.kind, f64::from(t.width), f64::from(p.0)),
            );
        }
    }
    let ratio = |a: f64, b: f64| if a == b { 1.0 } else { a / b };
    let (sd, td) = (&source.datasheet, &target.datasheet);
    let bw = ratio(td.bandwidth_gbs, sd.bandwidth_gbs);
    let fp16 = ratio(td.fp16_tflops, sd.fp16_tflops);
    let int8 = ratio(td.int8_tops, sd.int8_tops);
    out.roofs = MeasuredRoofs {
        copy_gbs: m.roofs.copy_gbs * bw,
        fp16_tflops: m.roofs.fp16_tflops * fp16,
        int8_tops: m.roofs.int8_tops * int8,
    };
    if source.key != target.key || sd != td {
        let derived = DerivedFrom {
            gpu: source.key.clone(),
            l2_mb: sd.l2_mb,
            bandwidth_ratio: bw,
            fp16_ratio: fp16,
            int8_ratio: int8,
            fixed_us: floor_ms * 1e3,
        };
        let note = derivation_note(&target.key, &out.provenance, &derived);
        out.provenance.notes.push(note);
        out.provenance.derived_from = Some(derived);
    }
    Some(GpuProfile {
        key: target.key.clone(),
        name: target.name.clone(),
        datasheet: target.datasheet.clone(),
        interconnect: target.interconnect.clone(),
        measured: Some(out),
    })
}

/// One line saying what a profile derived for `target` rests on; `source` is the provenance the
/// derived tables keep (the measured GPU's date, device and timing method).
pub fn derivation_note(target: &str, source: &Provenance, d: &DerivedFrom) -> String {
    format!(
        "derived for {target} from {} (measured {} on {}, timing {}) by datasheet roofline \
         scaling: bandwidth ×{:.3}, fp16 (fp32-accumulate) ×{:.3}, int8 ×{:.3}; fixed per-call \
         time {:.1} µs kept; L2 size and SM count not modeled",
        d.gpu,
        source.date,
        source.device,
        source.timing,
        d.bandwidth_ratio,
        d.fp16_ratio,
        d.int8_ratio,
        d.fixed_us
    )
}
