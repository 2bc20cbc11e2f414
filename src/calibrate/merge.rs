//! A `--quant-only` run merged into a measured profile: its FP8, INT4 and LLM.int8() GEMM tables
//! and FP8-KV decode tables replace (or join) the profile's own, everything else stays as it was
//! measured, and the provenance says what came from which run.

use crate::catalog::quant::KvDtype;
use crate::error::{Error, Result};
use crate::profile::{GpuProfile, Measured};

/// Schemes whose GEMM tables a `--quant-only` run provides.
pub const QUANT_SCHEMES: [&str; 4] = ["fp8", "fp8-tensor", "int4", "llm-int8"];

/// `base` (a measured profile) with the quantized tables of `fresh` merged in.
pub fn merge_quant(base: GpuProfile, fresh: &Measured) -> Result<GpuProfile> {
    let mut out = base;
    let key = out.key.clone();
    let m = out.measured.as_mut().ok_or_else(|| {
        Error::BadInput(format!(
            "--quant-only merges into a measured profile; {key} has no measured block (calibrate it in full first)"
        ))
    })?;
    let quant = |s: &str| QUANT_SCHEMES.contains(&s);
    m.gemm.retain(|t| !quant(&t.scheme));
    m.gemm
        .extend(fresh.gemm.iter().filter(|t| quant(&t.scheme)).cloned());
    m.attn_decode.retain(|t| t.kv != KvDtype::Fp8);
    m.attn_decode.extend(
        fresh
            .attn_decode
            .iter()
            .filter(|t| t.kv == KvDtype::Fp8)
            .cloned(),
    );
    let p = &fresh.provenance;
    m.provenance
        .notes
        .retain(|n| !n.starts_with("quantized tables merged from"));
    m.provenance.notes.push(format!(
        "quantized tables merged from a --quant-only run ({} GEMM tables, fp8-KV decode) on {} ({} SMs, \
         driver {}, CUDA {}) at {}, cardplan {} {}, timing {}; that run's notes follow, prefixed 'quant-only:'",
        QUANT_SCHEMES.join(", "),
        p.device,
        p.sm_count,
        p.driver,
        p.cuda,
        p.date,
        p.cardplan_version,
        p.git_rev,
        p.timing
    ));
    m.provenance
        .notes
        .retain(|n| !n.starts_with("quant-only: "));
    m.provenance
        .notes
        .extend(p.notes.iter().map(|n| format!("quant-only: {n}")));
    out.validate("merged profile")
        .map_err(|e| Error::Internal(format!("merging produced an invalid profile: {e}")))?;
    Ok(out)
}
