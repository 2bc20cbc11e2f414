//! The timer's method line, written into the profile's provenance: how the times were taken,
//! with what this run's rotation did. Kept a pure function of [`MethodFacts`] so its text is
//! pinned by a test (profiles compare their methods by it).

use super::timing::{
    MAX_CALLS, MAX_COPIES, MAX_ROTATION_BYTES, MIN_CALLS, RECOVER_AFTER, RECOVER_HEAT,
    RotationStats, SAMPLE_TARGET_MS, SELECT_REPS, SPIN_NS, SUSTAIN_HEAT, SUSTAIN_SAMPLE_MS,
    SUSTAIN_WINDOW,
};
use crate::calibrate::kernels::STREAM_MAX_PART;
use crate::calibrate::sweep::COMPUTE_BOUND_MIN_TOKENS;
use crate::profile::Timing;

/// What the method line says of one timer: its settings, and what rotation did so far.
pub(super) struct MethodFacts {
    pub(super) timing: Timing,
    pub(super) warmup: usize,
    pub(super) reps: usize,
    /// Size of the isolated method's L2-evicting memset.
    pub(super) flush_bytes: usize,
    pub(super) l2_bytes: u64,
    pub(super) rot: RotationStats,
}

pub(super) fn line(f: &MethodFacts) -> String {
    let common = common();
    match f.timing {
        Timing::Isolated => format!(
            "isolated: CUDA events around one call (or fixed call sequence) each; {} warm-up calls, median of {} timings; \
             before each timed call a {} MB memset evicts the {} MB L2; {common}",
            f.warmup,
            f.reps,
            f.flush_bytes >> 20,
            f.l2_bytes >> 20
        ),
        Timing::BackToBack => back_to_back(f, &common),
    }
}

/// The part that is the same for both timing methods: inputs and libraries.
fn common() -> String {
    format!(
        "random inputs (never all zero), written on the legacy default stream, as PyTorch writes its tensors (a process that has done so times small GEMMs up to 6% slower); \
         cuBLASLt fp16 GEMM (CUBLAS_COMPUTE_32F) and int8 IMMA GEMM (CUBLAS_COMPUTE_32I), TN, 32 MB workspace, \
         fastest of the top-16 heuristic algorithms per shape and token count (chosen on {SELECT_REPS} short replays each); \
         cublasGemmEx fp16 (torch's F.linear call) with a 32 MB workspace; \
         paged decode: fastest of the kernel variants (fp16 KV: one-pass online-softmax on CUDA cores with 8 warps, 4 warps, 4 and 8 warps + cp.async pipeline, and on tensor cores (mma.sync) with 4 and 8 warps + cp.async pipeline; int8 KV: the CUDA-core ones, two-pass instead of the 4-warp one) x partition sizes (powers of two from half the base one to 8x it, and those that make one or two full waves of the kernel's resident CTAs; one-pass: up to {STREAM_MAX_PART} tokens) per point, chosen on {SELECT_REPS} short replays each and then timed in full, blocks scattered at random over a pool as large as the blocks in use; \
         custom kernels compiled by NVRTC for this GPU"
    )
}

/// The back-to-back method, with what rotation did in this run.
fn back_to_back(f: &MethodFacts, common: &str) -> String {
    let r = f.rot;
    let capped = if r.capped == 0 {
        "every input set reached 2x L2".to_string()
    } else {
        format!(
            "{} of {} input sets stayed below 2x L2 (the {MAX_COPIES}-copy cap or the preallocated \
             pool/rows bit; inputs of at most {:.2} MB per call, smallest rotated footprint {:.2} MB, \
             so part of their reads can hit in L2)",
            r.capped,
            r.jobs,
            r.capped_max_bytes as f64 / 1e6,
            r.capped_min_footprint as f64 / 1e6
        )
    };
    format!(
        "back-to-back: a CUDA graph of R calls (R = {}..{}: at least the number of copies and {MIN_CALLS}, \
         raised until one replay lasts {SAMPLE_TARGET_MS} ms, at most {MAX_CALLS}, then a whole number of rounds \
         over the copies) replayed between one \
         CUDA-event pair after a {} us busy-wait, time = elapsed / R; median of {} replays after \
         at least {} warm-up calls (each copy once) and one warm-up replay; compute-bound jobs (GEMMs at >= {COMPUTE_BOUND_MIN_TOKENS} tokens, \
         prefill attention) under sustained load: their replays last >= {SUSTAIN_SAMPLE_MS} ms and follow {} ms of \
         the job's own graph replayed back to back (once per GEMM shape and token count, shared by its paths; \
         the job that heats takes its samples over at least {} ms, the clock's swings): the \
         power-capped clock a GPU serving at capacity runs at, not a burst's boost clock; \
         other jobs starting within {} ms of such samples first replay their own graph for {} ms \
         (the clock recovers from the cap); \
         the calls rotate over S copies of the large inputs \
         (weights and their scales, KV cache blocks via disjoint block tables, prefill Q/K/V, \
         elementwise rows) with S x bytes read >= 2x the {} MB L2 (S <= {MAX_COPIES}, <= {} GB of copies): \
         {capped}; activations (GEMM x, decode q) shared, as L2-resident in a forward pass; \
         no cache flush; the device copy (copy roof) is launched back to back from the \
         stream, not a graph (a captured copy runs on a copy engine); {common}",
        r.min_calls,
        r.max_calls,
        SPIN_NS / 1000,
        f.reps,
        f.warmup,
        SUSTAIN_HEAT.as_millis(),
        SUSTAIN_WINDOW.as_millis(),
        RECOVER_AFTER.as_millis(),
        RECOVER_HEAT.as_millis(),
        f.l2_bytes >> 20,
        MAX_ROTATION_BYTES >> 30
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The method line of the H200 profile measured at ce7d7eb (profiles/gpus/h200.yaml).
    const H200_CE7D7EB: &str = "back-to-back: a CUDA graph of R calls (R = 2..64: at least the number of copies and 2, raised until one replay lasts 0.3 ms, at most 64, then a whole number of rounds over the copies) replayed between one CUDA-event pair after a 50 us busy-wait, time = elapsed / R; median of 30 replays after at least 5 warm-up calls (each copy once) and one warm-up replay; compute-bound jobs (GEMMs at >= 128 tokens, prefill attention) under sustained load: their replays last >= 2 ms and follow 200 ms of the job's own graph replayed back to back (once per GEMM shape and token count, shared by its paths; the job that heats takes its samples over at least 150 ms, the clock's swings): the power-capped clock a GPU serving at capacity runs at, not a burst's boost clock; other jobs starting within 1000 ms of such samples first replay their own graph for 200 ms (the clock recovers from the cap); the calls rotate over S copies of the large inputs (weights and their scales, KV cache blocks via disjoint block tables, prefill Q/K/V, elementwise rows) with S x bytes read >= 2x the 60 MB L2 (S <= 64, <= 4 GB of copies): 33 of 210 input sets stayed below 2x L2 (the 64-copy cap or the preallocated pool/rows bit; inputs of at most 1.84 MB per call, smallest rotated footprint 1.05 MB, so part of their reads can hit in L2); activations (GEMM x, decode q) shared, as L2-resident in a forward pass; no cache flush; the device copy (copy roof) is launched back to back from the stream, not a graph (a captured copy runs on a copy engine); random inputs (never all zero), written on the legacy default stream, as PyTorch writes its tensors (a process that has done so times small GEMMs up to 6% slower); cuBLASLt fp16 GEMM (CUBLAS_COMPUTE_32F) and int8 IMMA GEMM (CUBLAS_COMPUTE_32I), TN, 32 MB workspace, fastest of the top-16 heuristic algorithms per shape and token count (chosen on 3 short replays each); cublasGemmEx fp16 (torch's F.linear call) with a 32 MB workspace; paged decode: fastest of the kernel variants (fp16 KV: one-pass online-softmax on CUDA cores with 8 warps, 4 warps, 4 and 8 warps + cp.async pipeline, and on tensor cores (mma.sync) with 4 and 8 warps + cp.async pipeline; int8 KV: the CUDA-core ones, two-pass instead of the 4-warp one) x partition sizes (powers of two from half the base one to 8x it, and those that make one or two full waves of the kernel's resident CTAs; one-pass: up to 4096 tokens) per point, chosen on 3 short replays each and then timed in full, blocks scattered at random over a pool as large as the blocks in use; custom kernels compiled by NVRTC for this GPU";

    #[test]
    fn the_default_method_line_is_the_one_the_profiles_carry() {
        let f = MethodFacts {
            timing: Timing::BackToBack,
            warmup: 5,
            reps: 30,
            flush_bytes: 120 << 20,
            l2_bytes: 60 << 20,
            rot: RotationStats {
                jobs: 210,
                capped: 33,
                capped_max_bytes: 1_840_000,
                capped_min_footprint: 1_048_576,
                min_calls: 2,
                max_calls: 64,
            },
        };
        assert_eq!(line(&f), H200_CE7D7EB);
        let isolated = line(&MethodFacts {
            timing: Timing::Isolated,
            ..f
        });
        assert!(isolated.starts_with(
            "isolated: CUDA events around one call (or fixed call sequence) each; 5 warm-up calls, \
             median of 30 timings; before each timed call a 120 MB memset evicts the 60 MB L2; \
             random inputs (never all zero), written on the legacy default stream"
        ));
    }
}
