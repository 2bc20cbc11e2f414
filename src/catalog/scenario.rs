//! Workload scenarios: request-length distributions, the user-session model behind `--users`,
//! and the SLO a scenario proposes. Defaults live in `scenarios/*.yaml`, embedded in the
//! binary; a path to a YAML file may be given wherever a name is accepted.
//!
//! Here rather than in the simulator, which is handed a resolved [`Scenario`] and only samples
//! its distributions.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::unknown_name;
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
    pub slo: ScenarioSlo,
    /// New prompt tokens of a request (of one turn, for sessions).
    pub prompt_tokens: Dist,
    /// Output tokens of a request (the `max_tokens` cap included).
    pub output_tokens: Dist,
    /// How users behave under `--users`.
    pub session: Session,
    /// Tokens of a system prompt every request (every session's first turn) starts with, on top
    /// of `prompt_tokens`; requests with the same one share its KV blocks under prefix caching.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub system_prompt_tokens: u32,
    /// Distinct system prompts; each session (or single request) uses one, uniformly at random.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub system_prompts: u32,
    /// Repeated questions (benchmarks' shared-prefix generators): each system prompt comes with
    /// this many questions and every request asks one of them. Absent: every question is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions_per_system_prompt: Option<u32>,
    /// Closed loop (`--concurrency`): time from a response's last token to the client's next
    /// request, and from the start to each client's first request (client and HTTP overhead,
    /// API-server tokenization). None = 0: every client sends at once, in lockstep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_gap_s: Option<Dist>,
}

/// Which per-request rate an SLO holds to its tokens/s limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateMetric {
    /// Tokens after the first over the time after the first (1 / TPOT): the rate a reader sees
    /// once the answer streams, whatever its length. "≥ 10 tokens/s each" means this.
    #[default]
    Streaming,
    /// Output tokens over the whole request, first token included (Backprop's "tokens per
    /// second"): short answers score low because TTFT weighs on them.
    EndToEnd,
}

impl RateMetric {
    /// The rate in words, for SLO sentences.
    pub fn describe(self) -> &'static str {
        match self {
            RateMetric::Streaming => "stream at",
            RateMetric::EndToEnd => "get, over their whole request,",
        }
    }
}

/// The service-level objective a scenario proposes: the share of requests that must stream fast
/// enough, and TTFT. `cardplan plan` builds its own `plan::slo::Slo` from it, flags overriding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSlo {
    /// Tokens/s each request must at least get, by `rate`.
    pub min_request_tok_s: f64,
    /// Which rate: `streaming` (default) or `end-to-end`.
    #[serde(default)]
    pub rate: RateMetric,
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
    /// Share of each new prompt that repeats the start of the session's context (0–1): code
    /// assistants resend the file around the cursor, which changes little between requests of
    /// one burst, so with prefix caching only the rest is prefilled. 0 (default): nothing.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub prompt_reuse: f64,
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn is_zero(x: &u32) -> bool {
    *x == 0
}

fn is_one(x: &u32) -> bool {
    *x == 1
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

    /// σ of the underlying normal of a log-normal with this median and 90th percentile.
    pub fn lognormal_sigma(median: f64, p90: f64) -> f64 {
        (p90.ln() - median.ln()) / Z90
    }

    /// The mean, for echoing assumptions (clamping of log-normals is ignored: approximate).
    pub fn mean(&self) -> f64 {
        match self {
            Dist::Fixed { value } => *value,
            Dist::Uniform { min, max } => (min + max) / 2.0,
            Dist::Lognormal { median, p90, .. } => {
                let sigma = Dist::lognormal_sigma(*median, *p90);
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
            None => Err(Error::Usage(unknown_name(
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
        let reuse = self.session.prompt_reuse;
        if !(0.0..=1.0).contains(&reuse) {
            return Err(format!(
                "session.prompt_reuse: {reuse} is not a share in 0..=1"
            ));
        }
        if reuse > 0.0 && self.session.context_growth {
            return Err(
                "session.prompt_reuse: only for sessions without context_growth (a growing \
                 conversation already reuses its history)"
                    .into(),
            );
        }
        if let Some(g) = &self.session.gap_s {
            g.validate("session.gap_s")?;
        }
        if let Some(g) = &self.client_gap_s {
            g.validate("client_gap_s")?;
        }
        if self.system_prompt_tokens > 1_000_000 {
            return Err("system_prompt_tokens: must be at most 1000000".into());
        }
        if !(1..=1_000_000).contains(&self.system_prompts) {
            return Err("system_prompts: must be 1..=1000000".into());
        }
        if let Some(q) = self.questions_per_system_prompt
            && !(1..=1_000_000).contains(&q)
        {
            return Err("questions_per_system_prompt: must be 1..=1000000".into());
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
pub fn scenarios() -> Result<Vec<Scenario>> {
    SCENARIOS
        .iter()
        .map(|(k, text)| Scenario::parse(text, &embedded_origin(k)))
        .collect()
}

/// Keys and one-line descriptions, for `cardplan list scenarios`.
pub fn scenario_list() -> Result<Vec<(String, String)>> {
    Ok(scenarios()?
        .into_iter()
        .map(|s| (s.key, s.description))
        .collect())
}

/// Unlike models, a scenario is never read from a `.json` file.
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
        let all = scenarios().unwrap();
        assert_eq!(all.len(), SCENARIOS.len());
        for (s, (k, _)) in all.iter().zip(SCENARIOS) {
            assert_eq!(&s.key, k);
            assert!(!s.assumptions.is_empty(), "{k} states no assumptions");
            assert!(!s.sources.is_empty(), "{k} names no sources");
        }
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
