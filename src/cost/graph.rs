//! From kernels timed one at a time to kernels replayed back to back in a CUDA graph.
//!
//! Applies only to profiles whose [`Timing`] is `isolated` (all profiles written before the
//! calibrator learnt back-to-back timing). A `back-to-back` profile was timed as a CUDA graph of
//! many calls over rotated inputs, i.e. already in-graph: its tables are used as measured
//! ([`Composition::for_profile`] returns no correction), so nothing here was tuned to it.
//!
//! An isolated profile's calibrator timed each kernel alone: CUDA events around one call, after a
//! fill that evicts L2. Every such time carries a fixed per-call cost (event and launch latency, the ramp-up of a
//! cold kernel, write-back of the dirty lines the eviction fill left in L2) that a serving step
//! does not pay: vLLM replays the decode step from a CUDA graph, and each kernel starts while the
//! previous one drains. Summing isolated times therefore overstates a step by that fixed cost
//! times the number of kernels (about 10 per layer).
//!
//! Two parts of an isolated time are not paid in a step, and both are estimated from the profile:
//! - the per-call fixed cost: the smallest time the profile holds (an elementwise kernel over one
//!   token, which does almost no work) minus the in-graph floor [`LAUNCH_FLOOR_S`];
//! - the write-back of the L2 the eviction fill left dirty: a kernel reading `b` fresh bytes evicts
//!   `min(b, L2)` dirty bytes, which DRAM writes while the kernel reads (`min(b, L2) / copy bandwidth`).
//!   In a step the kernels before wrote only activations, so there is little to write back. A
//!   kernel pays it in proportion to its memory slack `1 − compute/memory` (at the profile's
//!   measured copy and GEMM roofs): all of it for a weight stream, none at or beyond the ridge
//!   point, where the extra DRAM traffic hides under the arithmetic.
//!
//! A kernel is then priced at its isolated time minus both, but never below the in-graph launch
//! floor plus its bytes at the measured copy bandwidth, and never above its isolated time.
//! Defaults (src/cost/defaults.rs) are in-graph estimates already and are not corrected.

use super::defaults::LAUNCH_FLOOR_S;
use super::roofline::{Rate, Work};
use crate::profile::{DecodeAttnTable, Measured, Timing};

/// Fixed per-call part of the profile's kernel times, seconds: its smallest elementwise time (else
/// its smallest time of any table; else [`LAUNCH_FLOOR_S`]). This part does not scale with
/// bandwidth or FLOP/s when the profile is transferred to another GPU. (Named for isolated
/// profiles, where it is largest; a back-to-back profile's is the in-graph per-kernel cost.)
pub fn isolated_fixed_s(m: &Measured) -> f64 {
    let first = |pts: &[(u32, f64)]| pts.first().map(|p| p.1);
    let elementwise = m
        .elementwise
        .iter()
        .filter_map(|t| first(&t.points))
        .fold(f64::INFINITY, f64::min);
    let any = m
        .gemm
        .iter()
        .filter_map(|t| first(&t.points))
        .chain(m.attn_prefill.iter().filter_map(|t| first(&t.points)))
        .chain(
            m.attn_decode
                .iter()
                .flat_map(|t| t.points.iter().map(|p| p.ms)),
        )
        .fold(f64::INFINITY, f64::min);
    let ms = if elementwise.is_finite() {
        elementwise
    } else {
        any
    };
    if ms.is_finite() && ms > 0.0 {
        (ms * 1e-3).max(LAUNCH_FLOOR_S)
    } else {
        LAUNCH_FLOOR_S
    }
}

/// Non-scaling part of a decode-attention table, seconds: its smallest time, a call over one or a
/// few short sequences whose few KB of KV take well under a microsecond to read, so the time is
/// launch, split-K reduction and latency; never less than the profile's per-call `fixed_s`.
pub fn decode_fixed_s(t: &DecodeAttnTable, fixed_s: f64) -> f64 {
    let smallest = t
        .points
        .iter()
        .map(|p| p.ms * 1e-3)
        .fold(f64::INFINITY, f64::min);
    if smallest.is_finite() {
        smallest.max(fixed_s)
    } else {
        fixed_s
    }
}

/// How isolated times become in-graph times for one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Composition {
    /// Per-call fixed cost above the in-graph floor, seconds.
    pub fixed_excess_s: f64,
    /// L2 of the GPU the tables were measured on, bytes (what the eviction fill left dirty).
    pub l2_bytes: f64,
    /// Measured copy bandwidth (bytes read + written per second).
    pub copy_bw: f64,
    /// Measured fp16 and int8 GEMM rates (FLOP/s), to tell memory- from compute-bound kernels.
    pub fp16_rate: f64,
    pub int8_rate: f64,
}

impl Composition {
    /// No correction (tables priced as measured).
    pub fn isolated() -> Composition {
        Composition {
            fixed_excess_s: 0.0,
            l2_bytes: 0.0,
            copy_bw: f64::INFINITY,
            fp16_rate: f64::INFINITY,
            int8_rate: f64::INFINITY,
        }
    }

    /// The correction for tables measured (or derived from tables measured) on a GPU with
    /// `l2_bytes` of L2: none when they were timed back to back (already in-graph).
    pub fn for_profile(m: &Measured, l2_bytes: f64) -> Composition {
        if m.provenance.timing == Timing::BackToBack {
            return Composition::isolated();
        }
        Composition {
            fixed_excess_s: (isolated_fixed_s(m) - LAUNCH_FLOOR_S).max(0.0),
            l2_bytes,
            copy_bw: m.roofs.copy_gbs * 1e9,
            fp16_rate: m.roofs.fp16_tflops * 1e12,
            int8_rate: m.roofs.int8_tops * 1e12,
        }
    }

    /// Seconds an isolated time of `work` overstates its in-graph time by.
    pub fn delta_s(&self, work: &Work) -> f64 {
        let memory = work.bytes / self.copy_bw;
        let rate = match work.rate {
            Rate::Fp16 => self.fp16_rate,
            // FP8 runs at the int8 rate on every GPU with FP8 (Ada, Hopper); the profile's
            // measured int8 rate is the closest measured roof
            Rate::Int8 | Rate::Fp8 => self.int8_rate,
        };
        // the share of the kernel's DRAM time not covered by its arithmetic: 1 for a weight
        // stream, 0 at and beyond the ridge point
        let slack = if memory > 0.0 {
            (1.0 - work.flops / rate / memory).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let write_back = slack * work.bytes.min(self.l2_bytes) / self.copy_bw;
        self.fixed_excess_s + write_back
    }

    /// In-graph time of a kernel timed alone at `isolated_s`, doing `work`.
    pub fn in_graph(&self, isolated_s: f64, work: &Work) -> f64 {
        let lower = LAUNCH_FLOOR_S + work.bytes / self.copy_bw;
        (isolated_s - self.delta_s(work)).max(lower).min(isolated_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ElementwiseKind, ElementwiseTable, MeasuredRoofs, Provenance};

    fn measured(smallest_ms: f64) -> Measured {
        Measured {
            allreduce: vec![],
            moe_gemm: vec![],
            provenance: Provenance {
                device: "t".into(),
                sm_count: 1,
                driver: "t".into(),
                cuda: "t".into(),
                date: "t".into(),
                cardplan_version: "t".into(),
                git_rev: "t".into(),
                method: "t".into(),
                timing: Timing::Isolated,
                derived_from: None,
                notes: vec![],
            },
            roofs: MeasuredRoofs {
                copy_gbs: 2500.0,
                fp16_tflops: 700.0,
                int8_tops: 1400.0,
            },
            gemm: vec![],
            attn_prefill: vec![],
            attn_decode: vec![],
            elementwise: vec![ElementwiseTable {
                kind: ElementwiseKind::SiluMul,
                width: 4096,
                points: vec![(1, smallest_ms), (8, 2.0 * smallest_ms)],
            }],
        }
    }

    #[test]
    fn back_to_back_profiles_are_not_corrected() {
        let mut m = measured(0.005);
        m.provenance.timing = Timing::BackToBack;
        let c = Composition::for_profile(&m, 50e6);
        assert_eq!(c, Composition::isolated());
        // a memory-bound 300 µs kernel keeps its measured time
        assert_eq!(c.in_graph(300e-6, &stream(100e6, 0.0)), 300e-6);
        // while the same table timed in isolation is corrected
        m.provenance.timing = Timing::Isolated;
        assert!(Composition::for_profile(&m, 50e6).in_graph(300e-6, &stream(100e6, 0.0)) < 300e-6);
    }

    #[test]
    fn fixed_cost_is_the_smallest_elementwise_time() {
        assert!((isolated_fixed_s(&measured(0.005)) - 5e-6).abs() < 1e-15);
        // never below the in-graph floor
        assert_eq!(isolated_fixed_s(&measured(0.001)), LAUNCH_FLOOR_S);
    }

    fn stream(bytes: f64, flops: f64) -> Work {
        Work {
            bytes,
            flops,
            rate: Rate::Fp16,
        }
    }

    #[test]
    fn in_graph_time_drops_fixed_cost_and_write_back_but_not_below_the_copy_roof() {
        let c = Composition::for_profile(&measured(0.005), 50e6);
        assert!((c.fixed_excess_s - (5e-6 - LAUNCH_FLOOR_S)).abs() < 1e-15);
        // a memory-bound 300 µs kernel reading 100 MB: loses the fixed excess and 50 MB of write-back
        let want = 300e-6 - c.fixed_excess_s - 50e6 / 2.5e12;
        assert!((c.in_graph(300e-6, &stream(100e6, 0.0)) - want).abs() < 1e-12);
        // compute-bound: only the fixed excess
        let w = stream(100e6, 1e12);
        assert!((c.in_graph(2e-3, &w) - (2e-3 - c.fixed_excess_s)).abs() < 1e-12);
        // a tiny kernel: the launch floor
        assert!((c.in_graph(5e-6, &stream(0.0, 0.0)) - LAUNCH_FLOOR_S).abs() < 1e-15);
        // never below the copy roof, never above the isolated time
        let w = stream(250e6, 0.0);
        assert!(c.in_graph(110e-6, &w) >= LAUNCH_FLOOR_S + 250e6 / 2.5e12 - 1e-15);
        assert!(c.in_graph(2e-6, &stream(1e9, 0.0)) <= 2e-6);
        assert_eq!(
            Composition::isolated().in_graph(7e-6, &stream(1e6, 0.0)),
            7e-6
        );
    }
}
