//! Serving-engine presets: scheduler policy, limits, prefix caching and the host (CPU) time of
//! a step. A preset is data, `engines/*.yaml` embedded in the binary, so that a new engine
//! version is a file, not a code change; `--engine path/to/engine.yaml` reads one from disk.
//!
//! The host-time numbers are named parameters, each stated in the preset with where it comes
//! from; one fitted on a validation row says so in `fitted` (and the row leaves the summary).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Embedded presets: (key, YAML text).
pub const ENGINES: &[(&str, &str)] = &[
    ("vllm", include_str!("../../engines/vllm.yaml")),
    ("vllm-0.15", include_str!("../../engines/vllm-0.15.yaml")),
    ("vllm-v0", include_str!("../../engines/vllm-v0.yaml")),
    ("hf-static", include_str!("../../engines/hf-static.yaml")),
];

/// How the scheduler forms batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// vLLM V1: running decodes first, then prefill chunks fill the remaining token budget.
    ChunkedDecodeFirst,
    /// vLLM V0 (0.5.x default): a step either prefills whole waiting prompts or decodes; waiting
    /// prefills go first.
    PrefillFirst,
    /// Hugging Face `generate`: a static batch runs until its longest output finishes.
    Static,
}

/// A named engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnginePreset {
    pub key: String,
    /// The engine versions the preset stands for.
    #[serde(default)]
    pub version: String,
    pub policy: Policy,
    /// Most sequences in one step (vLLM `max_num_seqs`; batch size for `hf-static`).
    pub max_num_seqs: u32,
    /// Token budget of one step (vLLM `max_num_batched_tokens`).
    pub max_num_batched_tokens: u32,
    /// Share of GPU memory the engine may use (vLLM `gpu_memory_utilization`).
    pub gpu_memory_utilization: f64,
    /// Paged KV-cache block size in tokens.
    pub block_size: u32,
    /// Automatic prefix caching (vLLM `--enable-prefix-caching`; on by default in V1).
    #[serde(default)]
    pub prefix_caching: bool,
    /// Host time per step, seconds (scheduling, input preparation, sampling launch).
    pub step_overhead_s: f64,
    /// Host time per scheduled sequence per step, seconds.
    pub per_seq_overhead_s: f64,
    /// Host time per prompt token computed in the step, seconds (input preparation, hashing).
    #[serde(default)]
    pub per_prefill_token_s: f64,
    /// Host time per output token emitted by the step, seconds (detokenization, streaming).
    #[serde(default)]
    pub per_output_token_s: f64,
    /// Share (0 to 1) of the host time that runs while the GPU computes (async scheduling):
    /// a step takes max(GPU, overlap × host) + (1 − overlap) × host.
    #[serde(default)]
    pub cpu_overlap: f64,
    /// `cpu_overlap` when the model is split over several GPUs (TP > 1), if it differs: the
    /// engine then runs its workers in their own processes, beside the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tp_cpu_overlap: Option<f64>,
    /// Async scheduling (vLLM V1 `--async-scheduling`): the next step is planned while the
    /// current one runs, so a request that arrives during a step waits one more step.
    #[serde(default)]
    pub async_scheduling: bool,
    /// What was fitted to a validation row, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<String>,
    /// Where the numbers come from, in one line.
    pub source: String,
    /// Every number with its source.
    #[serde(default)]
    pub assumptions: Vec<String>,
}

impl EnginePreset {
    pub const KEYS: [&'static str; 4] = ["vllm", "vllm-0.15", "vllm-v0", "hf-static"];

    /// The built-in preset named `key`.
    pub fn builtin(key: &str) -> Option<EnginePreset> {
        let (k, text) = ENGINES.iter().find(|(k, _)| *k == key)?;
        EnginePreset::parse(text, &embedded_origin(k)).ok()
    }

    /// A preset by key, or from a YAML file (a name with `/` or ending in `.yaml`/`.yml`).
    pub fn load(name_or_path: &str) -> Result<EnginePreset> {
        let arg = name_or_path.trim();
        if arg.contains('/')
            || arg.contains('\\')
            || arg.ends_with(".yaml")
            || arg.ends_with(".yml")
        {
            let path = Path::new(arg);
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
            return EnginePreset::parse(&text, path);
        }
        let key = arg.to_ascii_lowercase();
        match ENGINES.iter().find(|(k, _)| *k == key) {
            Some((k, text)) => EnginePreset::parse(text, &embedded_origin(k)),
            None => Err(Error::Usage(super::unknown_name(
                "engine preset",
                name_or_path,
                EnginePreset::KEYS.into_iter(),
            ))),
        }
    }

    /// Parse and check YAML text read from `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<EnginePreset> {
        let e: EnginePreset = crate::yaml::from_str(text, origin)?;
        e.validate().map_err(|m| Error::file(origin, m))?;
        Ok(e)
    }

    /// Check every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.key.trim().is_empty() {
            return Err("key: must not be empty".into());
        }
        if self.max_num_seqs == 0 || self.max_num_batched_tokens == 0 {
            return Err("max_num_seqs and max_num_batched_tokens must be at least 1".into());
        }
        if self.block_size == 0 || self.block_size > 1024 {
            return Err(format!(
                "block_size: must be 1..=1024, got {}",
                self.block_size
            ));
        }
        let u = self.gpu_memory_utilization;
        if !(u > 0.0 && u <= 1.0) {
            return Err(format!(
                "gpu_memory_utilization: must be in (0, 1], got {u}"
            ));
        }
        for (name, v) in [
            ("step_overhead_s", self.step_overhead_s),
            ("per_seq_overhead_s", self.per_seq_overhead_s),
            ("per_prefill_token_s", self.per_prefill_token_s),
            ("per_output_token_s", self.per_output_token_s),
        ] {
            if !(v.is_finite() && (0.0..=10.0).contains(&v)) {
                return Err(format!(
                    "{name}: must be a number of seconds in [0, 10], got {v}"
                ));
            }
        }
        for (name, v) in [
            ("cpu_overlap", Some(self.cpu_overlap)),
            ("tp_cpu_overlap", self.tp_cpu_overlap),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(format!("{name}: must be in [0, 1], got {v}"));
            }
        }
        if self.async_scheduling && self.policy != Policy::ChunkedDecodeFirst {
            return Err(format!(
                "async_scheduling: modelled for the chunked-decode-first (vLLM V1) policy only, not {}",
                self.policy
            ));
        }
        if self.prefix_caching && self.policy != Policy::ChunkedDecodeFirst {
            return Err(format!(
                "prefix_caching: modelled for the chunked-decode-first (vLLM V1) policy only, not {}",
                self.policy
            ));
        }
        Ok(())
    }

    /// The preset as it runs a model split over `tp` GPUs: `tp_cpu_overlap` replaces
    /// `cpu_overlap` when there is more than one.
    pub fn for_tp(mut self, tp: u32) -> EnginePreset {
        if tp > 1
            && let Some(f) = self.tp_cpu_overlap
        {
            self.cpu_overlap = f;
        }
        self
    }

    /// Whether the step time needs more than the cost model's per-step and per-sequence terms.
    #[inline]
    pub fn extra_host_time(&self) -> bool {
        self.per_prefill_token_s > 0.0 || self.per_output_token_s > 0.0 || self.cpu_overlap > 0.0
    }

    /// The host-time model in one line, for reports.
    pub fn host_summary(&self) -> String {
        format!(
            "host time {} ms/step + {} us/sequence + {} us/prefill token + {} us/output token, {}% overlapped with the GPU",
            crate::error::compact(self.step_overhead_s * 1e3),
            crate::error::compact(self.per_seq_overhead_s * 1e6),
            crate::error::compact(self.per_prefill_token_s * 1e6),
            crate::error::compact(self.per_output_token_s * 1e6),
            crate::error::compact(self.cpu_overlap * 100.0)
        )
    }
}

fn embedded_origin(key: &str) -> PathBuf {
    PathBuf::from(format!("<embedded engines/{key}.yaml>"))
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::ChunkedDecodeFirst => "chunked prefill, decodes first",
            Policy::PrefillFirst => "prefill first, no chunking",
            Policy::Static => "static batches",
        })
    }
}

impl FromStr for EnginePreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EnginePreset::load(s).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_presets_parse_with_sources() {
        for key in EnginePreset::KEYS {
            let e = EnginePreset::load(key).unwrap();
            assert_eq!(e.key, key);
            assert!(!e.assumptions.is_empty(), "{key} states no assumptions");
            assert_eq!(EnginePreset::builtin(key), Some(e));
        }
        assert_eq!(ENGINES.len(), EnginePreset::KEYS.len());
    }

    #[test]
    fn bad_fields_name_the_file_and_field() {
        let text = ENGINES[0].1.replace("block_size: 16", "block_size: 0");
        assert_ne!(text, ENGINES[0].1);
        let e = EnginePreset::parse(&text, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.yaml") && e.contains("block_size"), "{e}");
        let e = EnginePreset::load("vlm").unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
