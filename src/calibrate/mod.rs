//! The calibrator: check the custom kernels, time every kernel of the sweep on the local GPU and
//! write a measured profile (see [`crate::profile`] for the table contract).
//!
//! The hardware sits behind [`timer::KernelTimer`], so everything but the CUDA timer itself is
//! tested on CPU with [`timer::MockTimer`].

pub mod allreduce;
pub mod assemble;
pub mod bnb;
pub mod cuda;
mod kernels;
pub mod lowbit;
pub mod merge;
pub mod moe;
pub mod nccl;
mod nvrtc;
pub mod quant;
pub mod raw;
pub mod reference;
mod shapes;
pub mod sweep;
pub mod timer;

use crate::error::{Error, Result};
use crate::profile::{GpuProfile, Provenance};
use assemble::Timed;
use sweep::SweepSpec;
use timer::{CheckReport, KernelTimer};

/// Everything one calibration produced.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// The datasheet profile with the measured block merged in.
    pub profile: GpuProfile,
    /// Every timed job, every path (also those that lost), for comparisons.
    pub timed: Vec<Timed>,
    pub checks: Vec<CheckReport>,
}

/// Run checks and the sweep on `timer`, merge into `base` (the GPU's catalog datasheet).
/// `progress` is called after each job with (done, total, job).
pub fn calibrate(
    timer: &mut dyn KernelTimer,
    spec: &SweepSpec,
    base: GpuProfile,
    git_rev: &str,
    mut progress: impl FnMut(usize, usize, &sweep::Job),
) -> Result<Calibration> {
    let checks = timer.check()?;
    if let Some(bad) = checks.iter().find(|c| !c.passed()) {
        return Err(Error::Gpu(format!(
            "kernel {} failed its correctness check: worst error {:.3}× the bound {} (max abs error {:.3e}); calibration aborted",
            bad.kernel, bad.worst_ratio, bad.bound, bad.max_abs_err
        )));
    }
    let jobs = spec.jobs();
    let mut timed = Vec::with_capacity(jobs.len());
    let mut skipped = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let result = timer.time(job);
        progress(i + 1, jobs.len(), job);
        let ms = match result {
            Ok(ms) => ms,
            Err(e) if job.optional() => {
                skipped.push(format!("{}: {e}", job.short_label()));
                continue;
            }
            Err(e) => return Err(e),
        };
        if !(ms.is_finite() && ms > 0.0) {
            return Err(Error::Gpu(format!(
                "timing {job:?} gave {ms} ms: not a positive time"
            )));
        }
        timed.push(Timed { job: *job, ms });
    }
    let dev = timer.device().clone();
    let mut notes = provenance_notes(&checks, spec, &dev);
    notes.extend(skipped_note(&skipped));
    let provenance = Provenance {
        device: dev.name.clone(),
        sm_count: dev.sm_count,
        driver: dev.driver.clone(),
        cuda: dev.cuda.clone(),
        date: now_rfc3339(),
        cardplan_version: env!("CARGO_PKG_VERSION").to_string(),
        git_rev: git_rev.to_string(),
        method: timer.method(),
        timing: timer.timing(),
        derived_from: None,
        notes,
    };
    let measured = assemble::measured(&timed, provenance)?;
    let mut profile = base;
    profile.measured = Some(measured);
    profile
        .validate("calibrated profile")
        .map_err(|e| Error::Internal(format!("calibration produced an invalid profile: {e}")))?;
    Ok(Calibration {
        profile,
        timed,
        checks,
    })
}

/// One note for the quantized jobs that failed and were skipped: how many, and the first reason.
fn skipped_note(skipped: &[String]) -> Option<String> {
    let first = skipped.first()?;
    Some(format!(
        "{} quantized-path jobs failed and were skipped (their tables are missing or partial); first: {first}",
        skipped.len()
    ))
}

/// The notes a fresh profile carries: the checks passed, what the sweep skipped, and how each
/// scheme's table was made.
fn provenance_notes(
    checks: &[CheckReport],
    spec: &SweepSpec,
    dev: &timer::DeviceInfo,
) -> Vec<String> {
    let mut notes: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "check {}: passed, worst {:.3} of bound {}",
                c.kernel, c.worst_ratio, c.bound
            )
        })
        .collect();
    notes.extend(spec.skipped.iter().cloned());
    notes.push(nf4_note(dev, spec));
    notes.push(format!(
        "nf4-fused = cardplan's own path, no library's: min(fused NF4 GEMV, one-kernel NF4 dequantize + cuBLAS \
         fp16 GEMM) for T <= {}, dequantize + cuBLAS above",
        sweep::GEMV_MAX_TOKENS
    ));
    notes.push(FP16_NOTE.into());
    notes.push(
        "int8 = min(W8A16 GEMV, W8A8: per-token quantize + cuBLASLt IMMA + dequantize epilogue) per token count".into(),
    );
    notes.extend(quant_notes());
    notes.push(
        "prefill attention: cardplan's own WMMA flash-style kernel (64x64 tiles); on the H100 it ran at \
         0.11-0.15x the speed of FlashAttention through torch SDPA (benches/gpu-results/calibrate-*.md): \
         an upper bound on what vLLM's prefill attention costs"
            .into(),
    );
    notes
}

/// Which bitsandbytes kernel the faithful `nf4` scheme prices at one point.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Nf4BnbPoint {
    pub n: u32,
    pub k: u32,
    pub tokens: u32,
    pub kernel: String,
}

/// The bitsandbytes kernel behind every point of the `nf4` table on this device.
pub fn nf4_bnb_points(dev: &timer::DeviceInfo, spec: &SweepSpec) -> Vec<Nf4BnbPoint> {
    let (cc, sms) = (dev.compute_capability, dev.sm_count);
    let mut v = Vec::new();
    for (n, k, _) in &spec.shapes {
        for &tokens in &spec.tokens {
            let kernel = bnb::priced(cc, sms, tokens, *n, *k, sweep::GEMV_MAX_TOKENS).label();
            v.push(Nf4BnbPoint {
                n: *n,
                k: *k,
                tokens,
                kernel,
            });
        }
    }
    v
}

/// What the faithful `nf4` table is, and which bitsandbytes kernel each of its points prices.
fn nf4_note(dev: &timer::DeviceInfo, spec: &SweepSpec) -> String {
    let (cc, sms) = (dev.compute_capability, dev.sm_count);
    let ported = bnb::dispatch(cc, sms, 16, 4096, 4096).is_some();
    // Per layer, runs of adjacent token counts with the same kernel.
    type Runs = Vec<(String, Vec<u32>)>;
    let mut layers: Vec<((u32, u32), Runs)> = Vec::new();
    for p in nf4_bnb_points(dev, spec) {
        if layers.last().is_none_or(|(nk, _)| *nk != (p.n, p.k)) {
            layers.push(((p.n, p.k), Vec::new()));
        }
        if let Some((_, runs)) = layers.last_mut() {
            match runs.last_mut() {
                Some((l, toks)) if *l == p.kernel => toks.push(p.tokens),
                _ => runs.push((p.kernel, vec![p.tokens])),
            }
        }
    }
    let shapes: Vec<String> = layers
        .iter()
        .map(|((n, k), runs)| {
            let runs: Vec<String> = runs
                .iter()
                .map(|(l, toks)| format!("{l} T={}", assemble::ranges(toks)))
                .collect();
            format!("{n}x{k}: {}", runs.join(", "))
        })
        .collect();
    format!(
        "nf4 = what bitsandbytes 0.50.2 Linear4bit runs on this GPU ({}), each kernel by cardplan's stand-in \
         with its work split: simt = its GEMV/SIMT kernel, priced by cardplan's fused NF4 GEMV; mma-MxNxK = its \
         mma.sync kernel with that tile (kernels/nf4_mma.cu); dequant-linear = its unfused sequence (dequantize \
         the 8-bit absmax, add the offset, dequantize to fp16, cublasGemmEx), the 4-bit \
         dequantize as bitsandbytes' kernel runs it (64-thread CTAs, warp-transposed loads and stores, the absmax \
         re-read per byte) but with a table decode where it runs a branch tree. Per layer: {}",
        if ported {
            format!(
                "sm_{}{}, {sms} SMs: its dispatch is ported for sm90",
                cc.0, cc.1
            )
        } else {
            format!(
                "sm_{}{}: its dispatch is ported for sm90 only, so here its GEMV up to 4 tokens and its \
                 sequence above",
                cc.0, cc.1
            )
        },
        shapes.join("; ")
    )
}

/// How the FP8, INT4 and LLM.int8() tables are formed (provenance notes).
pub fn quant_notes() -> Vec<String> {
    vec![
        "fp8 = cardplan's per-token e4m3 quantize kernel + cuBLASLt e4m3 x e4m3 -> bf16 (fp32 accumulate, \
         outer-vector scales: per-channel weights, per-token activations), as vLLM runs FP8-dynamic; \
         fp8-tensor = static per-tensor quantize + cuBLASLt with scalar scales; token counts cuBLASLt \
         has no FP8 kernel for run padded to a multiple of 16"
            .into(),
        "int4 = min(cardplan's W4A16 GEMV up to 64 tokens (kernels/quant.cu w4a16_gemv: 16-byte streamed \
         loads of the Marlin-style packed weights, 8 in flight per lane, dequantized in registers, mma.sync \
         m16n8k16, fp16 scales per group of 128, split over k with the reduction in the same launch), its \
         Marlin-style mma kernel, dequantize to fp16 (coalesced through shared memory) + cublasGemmEx \
         (vLLM's AWQ path at >= 256 tokens)) per token count; symmetric weights (zero 8): AWQ's zero \
         points cost one more small load per group, not timed"
            .into(),
        format!(
            "llm-int8 = bitsandbytes 0.50's Linear8bitLt forward (threshold 6.0), launch for launch: |x| >= 6 \
             (two elementwise kernels), any() read back to the host, the outlier columns by a column \
             reduction and nonzero (its count read back to the host), row-wise int8 quantize, the outlier \
             columns zeroed, cuBLASLt IMMA, dequantize, the int8 weights' outlier columns gathered and \
             dequantized (three kernels, every call), x's outlier columns gathered and addmm (a copy and an \
             fp16 cublasGemmEx with beta 1); {:.1}% of x's columns are outliers; timed by the host wall \
             clock per call, the two syncs included; Python's dispatch of these ops is not in the table",
            100.0 * sweep::LLM_INT8_OUTLIER_SHARE
        ),
        "decode attention with fp8 KV: the one-pass CUDA-core kernels of int8 KV, e4m3 decoded by hand"
            .into(),
    ]
}

/// How the fp16 table is formed (a provenance note).
const FP16_NOTE: &str = "fp16 = cublasGemmEx (fp32 accumulate, default math mode), as torch's F.linear \
     without bias calls it for vLLM's unquantized layers; cuBLASLt's best heuristic algorithm is timed \
     at the roof shape only (fp16 roof)";

/// The median time of each job over several runs of the same sweep, so that one run's scatter
/// weighs less: compute-bound GEMMs vary by several percent from run to run with the GPU's power
/// state (docs/ACCURACY.md, "How the tables are timed"). Every run must have timed the same jobs.
pub fn median_of_runs(runs: &[Vec<Timed>]) -> Result<Vec<Timed>> {
    let (first, rest) = runs
        .split_first()
        .ok_or_else(|| Error::Usage("no raw timings to merge".into()))?;
    for (i, r) in rest.iter().enumerate() {
        let same = r.len() == first.len() && first.iter().all(|t| r.iter().any(|u| u.job == t.job));
        if !same {
            return Err(Error::BadInput(format!(
                "raw timings {} did not time the same jobs as the first ({} timed calls against {}); \
                 merge only runs of one sweep",
                i + 2,
                r.len(),
                first.len()
            )));
        }
    }
    Ok(first
        .iter()
        .map(|t| {
            let mut v: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.iter().find(|u| u.job == t.job).map(|u| u.ms))
                .collect();
            v.sort_by(f64::total_cmp);
            let m = v.len() / 2;
            let ms = if v.len() % 2 == 1 {
                v[m]
            } else {
                (v[m - 1] + v[m]) / 2.0
            };
            Timed { job: t.job, ms }
        })
        .collect())
}

/// Rebuild the tables of `base`'s measured block (a measured profile) from raw timings, after a
/// change in which timed path sets a scheme's table. Nothing is re-measured: the provenance stays
/// the run's own, with a note saying what was re-assembled (`source` says from whose timings),
/// when, and by which revision.
pub fn reassemble(
    base: GpuProfile,
    timed: &[Timed],
    source: &str,
    git_rev: &str,
) -> Result<GpuProfile> {
    let old = base.measured.as_ref().ok_or_else(|| {
        Error::BadInput(format!("{} has no measured block to re-assemble", base.key))
    })?;
    if timed.is_empty() {
        return Err(Error::BadInput("the raw timings hold no timed jobs".into()));
    }
    let mut provenance = old.provenance.clone();
    // Notes derived from the tables are written anew by `assemble::measured`.
    provenance.notes.retain(|n| {
        !n.starts_with("fp16 = ")
            && !n.starts_with("moe_gemm = ")
            && !n.contains(" was fastest at some shape for token counts ")
    });
    provenance.notes.push(FP16_NOTE.into());
    provenance.notes.push(format!(
        "tables re-assembled from {source} on {} by cardplan {} ({git_rev}); nothing re-measured",
        now_rfc3339(),
        env!("CARGO_PKG_VERSION")
    ));
    let measured = assemble::measured(timed, provenance)?;
    let mut profile = base;
    profile.measured = Some(measured);
    profile
        .validate("re-assembled profile")
        .map_err(|e| Error::Internal(format!("re-assembly produced an invalid profile: {e}")))?;
    Ok(profile)
}

/// The git revision baked in at build time (`CARDPLAN_GIT_REV`), or "unknown".
pub fn build_git_rev() -> &'static str {
    option_env!("CARDPLAN_GIT_REV").unwrap_or("unknown")
}

/// The catalog key of a GPU from the name the driver reports, where cardplan knows it.
pub fn catalog_key_for(device_name: &str) -> Option<&'static str> {
    let n = device_name.to_ascii_lowercase();
    let table: [(&[&str], &str); 12] = [
        (&["h200"], "h200"),
        (&["h100", "pcie"], "h100-pcie"),
        (&["h100"], "h100-sxm"),
        (&["a100", "80gb"], "a100-80g"),
        (&["a100"], "a100-40g"),
        (&["l40s"], "l40s"),
        (&["l4"], "l4"),
        (&["a10g"], "a10g"),
        (&["rtx a4000"], "rtx-a4000"),
        (&["4090"], "rtx4090"),
        (&["3090"], "rtx3090"),
        (&["t4"], "t4"),
    ];
    table
        .iter()
        .find(|(needles, _)| needles.iter().all(|s| n.contains(s)))
        .map(|(_, k)| *k)
}

/// Current UTC time as RFC 3339, without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sweep::Job;

    fn gemm(tokens: u32, ms: f64) -> Timed {
        Timed {
            job: Job::Gemm {
                path: sweep::GemmPath::Fp16CublasGemmEx,
                n: 4096,
                k: 4096,
                tokens,
            },
            ms,
        }
    }

    #[test]
    fn runs_merge_to_the_median_per_job() {
        let runs = vec![
            vec![gemm(1, 1.0), gemm(8, 10.0)],
            vec![gemm(8, 30.0), gemm(1, 3.0)],
            vec![gemm(1, 2.0), gemm(8, 20.0)],
        ];
        let m = median_of_runs(&runs).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].job, m[0].ms), (gemm(1, 0.0).job, 2.0));
        assert_eq!((m[1].job, m[1].ms), (gemm(8, 0.0).job, 20.0));
        // two runs: the mean of the middle pair
        assert_eq!(median_of_runs(&runs[..2]).unwrap()[0].ms, 2.0);
        // one run: itself
        assert_eq!(median_of_runs(&runs[..1]).unwrap()[1].ms, 10.0);
    }

    #[test]
    fn runs_of_different_sweeps_do_not_merge() {
        let a = vec![gemm(1, 1.0), gemm(8, 10.0)];
        let b = vec![gemm(1, 1.0), gemm(16, 10.0)];
        let c = vec![gemm(1, 1.0)];
        for other in [b, c] {
            let e = median_of_runs(&[a.clone(), other]).unwrap_err();
            assert!(matches!(e, Error::BadInput(_)), "{e}");
        }
        assert!(median_of_runs(&[]).is_err());
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
    }

    #[test]
    fn device_names_map_to_catalog_keys() {
        assert_eq!(catalog_key_for("NVIDIA H100 80GB HBM3"), Some("h100-sxm"));
        assert_eq!(catalog_key_for("NVIDIA H100 PCIe"), Some("h100-pcie"));
        assert_eq!(catalog_key_for("NVIDIA H200"), Some("h200"));
        assert_eq!(catalog_key_for("Some Other GPU"), None);
    }
}
