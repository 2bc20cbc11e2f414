//! A `--quant-only` run merged into a measured profile: its FP8, INT4 and LLM.int8() GEMM tables
//! and FP8-KV decode tables replace (or join) the profile's own, everything else stays as it was
//! measured, and the provenance says what came from which run.

use crate::catalog::quant::KvDtype;
use crate::error::{Error, Result};
use crate::profile::{GpuProfile, Measured};

/// Schemes whose GEMM tables a `--quant-only` run provides.
pub const QUANT_SCHEMES: [&str; 4] = ["fp8", "fp8-tensor", "int4", "llm-int8"];

/// `--quant-schemes` checked against the schemes a quant-only run can time (`fp8-kv`: FP8-KV
/// decode attention).
pub fn check_quant_schemes(schemes: &[String]) -> Result<Vec<String>> {
    for s in schemes {
        if !QUANT_SCHEMES.contains(&s.as_str()) && s != "fp8-kv" {
            return Err(Error::Usage(format!(
                "--quant-schemes: unknown scheme '{s}' (expected {} or fp8-kv)",
                QUANT_SCHEMES.join(", ")
            )));
        }
    }
    Ok(schemes.to_vec())
}

/// `base` (a measured profile) with the quantized tables of `fresh` merged in: all of them, or
/// with `schemes` (a `--quant-schemes` run) only those schemes' tables and, with `fp8-kv`, the
/// FP8-KV decode tables; the base keeps the rest, and its notes of the earlier run about them.
pub fn merge_quant(base: GpuProfile, fresh: &Measured, schemes: &[String]) -> Result<GpuProfile> {
    let all: Vec<String> = QUANT_SCHEMES.iter().map(|s| s.to_string()).collect();
    let redo: &[String] = if schemes.is_empty() { &all } else { schemes };
    let fp8_kv = schemes.is_empty() || schemes.iter().any(|s| s == "fp8-kv");
    let mut out = base;
    let key = out.key.clone();
    let m = out.measured.as_mut().ok_or_else(|| {
        Error::BadInput(format!(
            "--quant-only merges into a measured profile; {key} has no measured block (calibrate it in full first)"
        ))
    })?;
    let quant = |s: &str| redo.iter().any(|r| r == s);
    m.gemm.retain(|t| !quant(&t.scheme));
    m.gemm
        .extend(fresh.gemm.iter().filter(|t| quant(&t.scheme)).cloned());
    if fp8_kv {
        m.attn_decode.retain(|t| t.kv != KvDtype::Fp8);
        m.attn_decode.extend(
            fresh
                .attn_decode
                .iter()
                .filter(|t| t.kv == KvDtype::Fp8)
                .cloned(),
        );
    }
    let p = &fresh.provenance;
    let partial = !schemes.is_empty();
    // A partial run keeps the earlier run's header and its notes about the other schemes.
    let stale = |n: &str| !partial || redo.iter().any(|s| n.contains(s.as_str()));
    if !partial {
        m.provenance
            .notes
            .retain(|n| !n.starts_with("quantized tables merged from"));
    }
    let what = format!(
        "quantized tables merged from a --quant-only run ({} GEMM tables{})",
        redo.join(", "),
        if fp8_kv { ", fp8-KV decode" } else { "" }
    );
    m.provenance.notes.push(merged_from(&what, p, "quant-only"));
    m.provenance
        .notes
        .retain(|n| !(n.starts_with("quant-only: ") && stale(n)));
    m.provenance
        .notes
        .extend(p.notes.iter().map(|n| format!("quant-only: {n}")));
    out.validate("merged profile")
        .map_err(|e| Error::Internal(format!("merging produced an invalid profile: {e}")))?;
    Ok(out)
}

/// The provenance note of tables merged from another run: `what` was merged, on which device,
/// driver and build, and the prefix the run's own notes carry after it.
pub(crate) fn merged_from(what: &str, p: &crate::profile::Provenance, prefix: &str) -> String {
    format!(
        "{what} on {} ({} SMs, driver {}, CUDA {}) at {}, cardplan {} {}, timing {}; that run's \
         notes follow, prefixed '{prefix}:'",
        p.device, p.sm_count, p.driver, p.cuda, p.date, p.cardplan_version, p.git_rev, p.timing
    )
}
