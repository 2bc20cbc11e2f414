//! Catalogs of models, GPUs, quantization schemes and engines.
//!
//! The defaults are YAML files under `profiles/`, embedded in the binary so cardplan works from
//! any directory. Wherever a name is accepted, a path to a file may be given instead.

pub mod engine;
pub mod gpu;
pub mod hf;
pub mod hf_quant;
pub mod interconnect;
pub mod model;
pub mod moe;
pub mod mxfp4;
pub mod quant;
pub mod scenario;
pub mod shard;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::profile::GpuProfile;
use model::ModelArch;

pub use scenario::{Dist, Scenario, ScenarioSlo, Session, scenario_list, scenarios};

macro_rules! embedded {
    ($dir:literal; $($key:literal),* $(,)?) => {
        &[$(($key, include_str!(concat!("../../profiles/", $dir, "/", $key, ".yaml")))),*]
    };
}

/// Embedded model architectures: (key, YAML text).
pub const MODELS: &[(&str, &str)] = embedded!("models";
    "llama-3.1-8b", "llama-3-8b", "llama-3.1-70b", "mistral-7b", "phi-2", "phi-4",
    "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "gemma-2-9b",
    "llama-3.3-70b", "llama-2-7b", "llama-2-70b", "codellama-34b", "qwen3-8b", "qwen3-32b", "gemma-3-27b",
    "mistral-small-24b", "mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b", "gpt-oss-20b",
    "gpt-oss-120b", "llama-4-scout",
);

/// Embedded GPU profiles: (key, YAML text).
pub const GPUS: &[(&str, &str)] = embedded!("gpus";
    "rtx3090", "rtx4090", "rtx-a4000", "t4", "a10g", "l4", "l40s",
    "a100-40g", "a100-80g", "h100-pcie", "h100-sxm", "h200",
    "b200", "h100-nvl", "h200-nvl", "l40", "a40", "rtx-a5000", "rtx-a6000", "rtx-6000-ada",
    "rtx5090", "rtx-pro-6000",
);

/// Whether `arg` should be read as a file path rather than a catalog key.
fn looks_like_path(arg: &str) -> bool {
    arg.contains('/')
        || arg.contains('\\')
        || arg.ends_with(".yaml")
        || arg.ends_with(".yml")
        || arg.ends_with(".json")
}

fn embedded_origin(kind: &str, key: &str) -> PathBuf {
    PathBuf::from(format!("<embedded profiles/{kind}/{key}.yaml>"))
}

/// Every embedded model.
pub fn models() -> Result<Vec<ModelArch>> {
    MODELS
        .iter()
        .map(|(key, text)| parse_model(text, &embedded_origin("models", key)))
        .collect()
}

/// The measured profiles of the embedded catalog (what unmeasured GPUs are derived from),
/// parsed once per process.
pub fn measured_gpus() -> Result<&'static [GpuProfile]> {
    static MEASURED: OnceLock<std::result::Result<Vec<GpuProfile>, String>> = OnceLock::new();
    MEASURED
        .get_or_init(|| {
            gpus()
                .map(|v| v.into_iter().filter(|g| g.measured.is_some()).collect())
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(|e| Error::Internal(format!("embedded GPU catalog: {e}")))
}

/// A model by catalog key, or from a YAML file or a Hugging Face `config.json`.
pub fn model(arg: &str) -> Result<ModelArch> {
    if looks_like_path(arg) {
        let path = Path::new(arg);
        if arg.ends_with(".json") {
            return hf::import(path);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        return parse_model(&text, path);
    }
    let key = arg.trim().to_ascii_lowercase();
    match MODELS.iter().find(|(k, _)| *k == key) {
        Some((k, text)) => parse_model(text, &embedded_origin("models", k)),
        None => Err(Error::Usage(unknown_name(
            "model",
            arg,
            MODELS.iter().map(|(k, _)| *k),
        ))),
    }
}

fn parse_model(text: &str, origin: &Path) -> Result<ModelArch> {
    let m: ModelArch = crate::yaml::from_str(text, origin)?;
    m.validate(&origin.display().to_string())
        .map_err(Error::BadInput)?;
    Ok(m)
}

/// Every embedded GPU profile.
pub fn gpus() -> Result<Vec<GpuProfile>> {
    GPUS.iter()
        .map(|(key, text)| parse_gpu(text, &embedded_origin("gpus", key)))
        .collect()
}

/// A GPU profile by catalog key, or from a YAML file.
pub fn gpu(arg: &str) -> Result<GpuProfile> {
    if looks_like_path(arg) {
        let path = Path::new(arg);
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        return parse_gpu(&text, path);
    }
    let key = arg.trim().to_ascii_lowercase();
    match GPUS.iter().find(|(k, _)| *k == key) {
        Some((k, text)) => parse_gpu(text, &embedded_origin("gpus", k)),
        None => Err(Error::Usage(unknown_name(
            "GPU",
            arg,
            GPUS.iter().map(|(k, _)| *k),
        ))),
    }
}

fn parse_gpu(text: &str, origin: &Path) -> Result<GpuProfile> {
    let g: GpuProfile = crate::yaml::from_str(text, origin)?;
    g.validate(&origin.display().to_string())
        .map_err(Error::BadInput)?;
    Ok(g)
}

/// "unknown GPU 'rtx309'; did you mean 'rtx3090'? valid: …"
pub fn unknown_name<'a>(kind: &str, given: &str, valid: impl Iterator<Item = &'a str>) -> String {
    let valid: Vec<&str> = valid.collect();
    let lower = given.to_ascii_lowercase();
    let best = valid
        .iter()
        .map(|v| (edit_distance(&lower, v), *v))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, v)| *d <= (v.len() / 2).max(2));
    let hint = best
        .map(|(_, v)| format!("; did you mean '{v}'?"))
        .unwrap_or_default();
    format!(
        "unknown {kind} '{given}'{hint} (valid: {})",
        valid.join(", ")
    )
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_closest_name() {
        let msg = unknown_name("GPU", "rtx309", ["rtx3090", "rtx4090", "t4"].into_iter());
        assert!(msg.contains("did you mean 'rtx3090'"), "{msg}");
        assert!(msg.contains("valid: rtx3090, rtx4090, t4"), "{msg}");
    }

    #[test]
    fn no_suggestion_for_far_names() {
        let msg = unknown_name("GPU", "banana-split", ["rtx3090", "t4"].into_iter());
        assert!(!msg.contains("did you mean"), "{msg}");
    }
}
