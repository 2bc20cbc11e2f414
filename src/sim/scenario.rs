//! Workload scenarios: request-length distributions, the user-session model behind `--users`,
//! and the SLO a scenario is judged by. Defaults live in `scenarios/*.yaml`, embedded in the
//! binary; a path to a YAML file may be given wherever a name is accepted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use crate::error::{Error, Result};

/// Embedded scenarios: (key, YAML text).
pub const SCENARIOS: &[(&str, &str)] = &[
    ("chat", include_str!("../../scenarios/chat.yaml")),
    (
        "backprop-short",
        include_str!("../../scenarios/backprop-short.yaml"),
    ),
    (
        "backprop-long",
        include_str!("../../scenarios/backprop-long.yaml"),
    ),
    ("sharegpt", include_str!("../../scenarios/sharegpt.yaml")),
    ("rag-long", include_str!("../../scenarios/rag-long.yaml")),
    (
        "code-assist",
        include_str!("../../scenarios/code-assist.yaml"),
    ),
];

/// z of the 90th percentile of the standard normal.
const Z90: f64 = 1.281_551_565_544_600_4;

/// A workload: what requests look like and how users behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub key: String,
    /// One line for `cardplan list scenarios`.
    pub description: String,
    /// Every assumption in words, each with where it comes from.
    #[serde(default)]
    pub assumptions: Vec<String>,
    /// References (URLs, papers, published benchmarks).
    #[serde(default)]
    pub sources: Vec<String>,
    pub slo: Slo,
    /// New prompt tokens of a request (of one turn, for sessions).
    pub prompt_tokens: Dist,
    /// Output tokens of a request (the `max_tokens` cap included).
    pub output_tokens: Dist,
    /// How users behave under `--users`.
    pub session: Session,
    /// Closed loop (`--concurrency`): time from a response's last token to the client's next
    /// request, and from the start to each client's first request (client and HTTP overhead,
    /// API-server tokenization). None = 0: every client sends at once, in lockstep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_gap_s: Option<Dist>,
}

/// Service-level objective: the share of requests that must stream fast enough, and TTFT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Tokens/s each request must at least stream at (output tokens / E2E).
    pub min_request_tok_s: f64,
    /// Percentile of the per-request rate that must meet `min_request_tok_s` (5 → p05).
    pub request_tok_s_percentile: f64,
    /// Upper bound on the TTFT p95, seconds.
    pub ttft_p95_s: f64,
}

/// The user-population model: at the peak, `active_share` of all users are in a session; a
/// session is `turns` requests separated by `think_time_s`; with `context_growth`, a turn's
/// prompt carries every earlier prompt and answer of the session (as chat front-ends resend
/// the history), truncated to the model's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub active_share: f64,
    pub turns: Dist,
    pub think_time_s: Dist,
    #[serde(default = "yes")]
    pub context_growth: bool,
    /// Pause between one session's end and the next user's first request in the same slot,
    /// seconds (keeps the number of users in a session constant at the peak).
    #[serde(default)]
    pub gap_s: Option<Dist>,
}

fn yes() -> bool {
    true
}

/// A distribution of a positive quantity (token counts are rounded and at least 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Dist {
    Fixed {
        value: f64,
    },
    /// Uniform on `[min, max]`; integers `min..=max` for token counts.
    Uniform {
        min: f64,
        max: f64,
    },
    /// Log-normal given by its median and 90th percentile, optionally clamped to `[min, max]`.
    Lognormal {
        median: f64,
        p90: f64,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    /// A finite set of values with weights (equal weights when omitted).
    Empirical {
        values: Vec<f64>,
        #[serde(default)]
        weights: Option<Vec<f64>>,
    },
}

impl Dist {
    /// Check the parameters; `field` names the field in error messages.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "{field}.{name}: must be a finite number >= 0, got {v}"
                ))
            }
        };
        match self {
            Dist::Fixed { value } => pos("value", *value),
            Dist::Uniform { min, max } => {
                pos("min", *min)?;
                pos("max", *max)?;
                if min > max {
                    return Err(format!("{field}: min ({min}) is above max ({max})"));
                }
                Ok(())
            }
            Dist::Lognormal {
                median,
                p90,
                min,
                max,
            } => {
                pos("median", *median)?;
                pos("p90", *p90)?;
                if *median <= 0.0 {
                    return Err(format!("{field}.median: must be > 0"));
                }
                if p90 < median {
                    return Err(format!(
                        "{field}.p90 ({p90}) must be at least the median ({median})"
                    ));
                }
                if let Some(m) = min {
                    pos("min", *m)?;
                }
                if let Some(m) = max {
                    pos("max", *m)?;
                }
                if let (Some(a), Some(b)) = (min, max)
                    && a > b
                {
                    return Err(format!("{field}: min ({a}) is above max ({b})"));
                }
                Ok(())
            }
            Dist::Empirical { values, weights } => {
                if values.is_empty() {
                    return Err(format!("{field}.values: must not be empty"));
                }
                for v in values {
                    pos("values", *v)?;
                }
                if let Some(w) = weights {
                    if w.len() != values.len() {
                        return Err(format!(
                            "{field}.weights: {} weights for {} values",
                            w.len(),
                            values.len()
                        ));
                    }
                    for x in w {
                        pos("weights", *x)?;
                    }
                    if w.iter().sum::<f64>() <= 0.0 {
                        return Err(format!("{field}.weights: must not all be zero"));
                    }
                }
                Ok(())
            }
        }
    }

    /// One draw as a real number.
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match self {
            Dist::Fixed { value } => *value,
            Dist::Uniform { min, max } => min + (max - min) * rng.f64(),
            Dist::Lognormal {
                median,
                p90,
                min,
                max,
            } => {
                let sigma = (p90.ln() - median.ln()) / Z90;
                let v = (median.ln() + sigma * rng.normal()).exp();
                v.max(min.unwrap_or(0.0)).min(max.unwrap_or(f64::INFINITY))
            }
            Dist::Empirical { values, weights } => match weights {
                None => values[rng.range_inclusive(0, values.len() as u64 - 1) as usize],
                Some(w) => {
                    let total: f64 = w.iter().sum();
                    let mut x = rng.f64() * total;
                    for (v, wi) in values.iter().zip(w) {
                        if x < *wi {
                            return *v;
                        }
                        x -= wi;
                    }
                    values[values.len() - 1]
                }
            },
        }
    }

    /// One draw as a count (tokens, turns): integers for `uniform`, rounded otherwise, >= 1.
    pub fn sample_count(&self, rng: &mut Rng) -> u32 {
        let v = match self {
            Dist::Uniform { min, max } => {
                let lo = min.ceil() as u64;
                let hi = (max.floor() as u64).max(lo);
                rng.range_inclusive(lo, hi) as f64
            }
            _ => self.sample(rng).round(),
        };
        v.clamp(1.0, f64::from(u32::MAX)) as u32
    }

    /// The mean, for echoing assumptions (clamping of log-normals is ignored: approximate).
    pub fn mean(&self) -> f64 {
        match self {
            Dist::Fixed { value } => *value,
            Dist::Uniform { min, max } => (min + max) / 2.0,
            Dist::Lognormal { median, p90, .. } => {
                let sigma = (p90.ln() - median.ln()) / Z90;
                median * (sigma * sigma / 2.0).exp()
            }
            Dist::Empirical { values, weights } => match weights {
                None => values.iter().sum::<f64>() / values.len() as f64,
                Some(w) => {
                    values.iter().zip(w).map(|(v, w)| v * w).sum::<f64>() / w.iter().sum::<f64>()
                }
            },
        }
    }
}

impl Scenario {
    /// A scenario by catalog key, or from a YAML file.
    pub fn load(name_or_path: &str) -> Result<Scenario> {
        if looks_like_path(name_or_path) {
            let path = Path::new(name_or_path);
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
            return Scenario::parse(&text, path);
        }
        let key = name_or_path.trim().to_ascii_lowercase();
        match SCENARIOS.iter().find(|(k, _)| *k == key) {
            Some((k, text)) => Scenario::parse(text, &embedded_origin(k)),
            None => Err(Error::Usage(crate::catalog::unknown_name(
                "scenario",
                name_or_path,
                SCENARIOS.iter().map(|(k, _)| *k),
            ))),
        }
    }

    /// Parse and check YAML text read from `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<Scenario> {
        let s: Scenario = crate::yaml::from_str(text, origin)?;
        s.validate().map_err(|m| Error::file(origin, m))?;
        Ok(s)
    }

    /// Check every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.key.trim().is_empty() {
            return Err("key: must not be empty".into());
        }
        self.prompt_tokens.validate("prompt_tokens")?;
        self.output_tokens.validate("output_tokens")?;
        self.session.turns.validate("session.turns")?;
        self.session.think_time_s.validate("session.think_time_s")?;
        if let Some(g) = &self.session.gap_s {
            g.validate("session.gap_s")?;
        }
        if let Some(g) = &self.client_gap_s {
            g.validate("client_gap_s")?;
        }
        let share = self.session.active_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(format!(
                "session.active_share: must be in (0, 1], got {share}"
            ));
        }
        let slo = &self.slo;
        if !(slo.min_request_tok_s.is_finite() && slo.min_request_tok_s >= 0.0) {
            return Err("slo.min_request_tok_s: must be a finite number >= 0".into());
        }
        if !(slo.request_tok_s_percentile > 0.0 && slo.request_tok_s_percentile < 100.0) {
            return Err("slo.request_tok_s_percentile: must be in (0, 100)".into());
        }
        if !(slo.ttft_p95_s.is_finite() && slo.ttft_p95_s > 0.0) {
            return Err("slo.ttft_p95_s: must be a finite number > 0".into());
        }
        Ok(())
    }
}

/// Every embedded scenario.
pub fn catalog() -> Result<Vec<Scenario>> {
    SCENARIOS
        .iter()
        .map(|(k, text)| Scenario::parse(text, &embedded_origin(k)))
        .collect()
}

/// Keys and one-line descriptions, for `cardplan list scenarios`.
pub fn scenario_list() -> Result<Vec<(String, String)>> {
    Ok(catalog()?
        .into_iter()
        .map(|s| (s.key, s.description))
        .collect())
}

fn looks_like_path(arg: &str) -> bool {
    arg.contains('/') || arg.contains('\\') || arg.ends_with(".yaml") || arg.ends_with(".yml")
}

fn embedded_origin(key: &str) -> PathBuf {
    PathBuf::from(format!("<embedded scenarios/{key}.yaml>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_scenarios_parse_and_keys_match() {
        let all = catalog().unwrap();
        assert_eq!(all.len(), SCENARIOS.len());
        for (s, (k, _)) in all.iter().zip(SCENARIOS) {
            assert_eq!(&s.key, k);
            assert!(!s.assumptions.is_empty(), "{k} states no assumptions");
            assert!(!s.sources.is_empty(), "{k} names no sources");
        }
    }

    #[test]
    fn lognormal_hits_median_and_p90() {
        let d = Dist::Lognormal {
            median: 200.0,
            p90: 800.0,
            min: None,
            max: None,
        };
        let mut r = Rng::stream(3, 0);
        let mut v: Vec<f64> = (0..100_000).map(|_| d.sample(&mut r)).collect();
        v.sort_by(f64::total_cmp);
        let med = v[50_000];
        let p90 = v[90_000];
        assert!((med / 200.0 - 1.0).abs() < 0.03, "{med}");
        assert!((p90 / 800.0 - 1.0).abs() < 0.04, "{p90}");
    }

    #[test]
    fn uniform_counts_are_inclusive_integers() {
        let d = Dist::Uniform {
            min: 92.0,
            max: 100.0,
        };
        let mut r = Rng::stream(3, 1);
        let v: Vec<u32> = (0..10_000).map(|_| d.sample_count(&mut r)).collect();
        assert_eq!(*v.iter().min().unwrap(), 92);
        assert_eq!(*v.iter().max().unwrap(), 100);
    }

    #[test]
    fn semantic_errors_name_file_and_field() {
        let text = SCENARIOS[0]
            .1
            .replace("active_share: 0.1", "active_share: 1.5");
        assert_ne!(
            text, SCENARIOS[0].1,
            "fixture must contain active_share: 0.1"
        );
        let e = Scenario::parse(&text, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.yaml") && e.contains("session.active_share"),
            "{e}"
        );
    }
}
