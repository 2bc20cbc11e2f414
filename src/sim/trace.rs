//! Request traces: one JSON object per line, `{"arrival_s": 0.25, "prompt_tokens": 812,
//! "output_tokens": 164}`, replayed open-loop at the recorded arrival times.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One recorded request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// Seconds since the start of the trace.
    pub arrival_s: f64,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
}

/// Read a JSONL trace; errors name the file, line and column and the reason.
/// Blank lines and lines starting with `#` are skipped. Requests are sorted by arrival time
/// (stable, so equal times keep file order).
pub fn read(path: &Path) -> Result<Vec<TraceRequest>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    parse(&text, path)
}

/// Parse trace text read from `origin`.
pub fn parse(text: &str, origin: &Path) -> Result<Vec<TraceRequest>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let r: TraceRequest = serde_json::from_str(trimmed).map_err(|e| {
            let indent = line.len() - line.trim_start().len();
            // serde_json appends its own position (always line 1 here): drop it.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Error::file_at(origin, line_no, e.column() + indent, msg)
        })?;
        let bad = |m: String| Error::file_at(origin, line_no, 1, m);
        if !(r.arrival_s.is_finite() && r.arrival_s >= 0.0) {
            return Err(bad(format!(
                "arrival_s must be a finite number >= 0, got {}",
                r.arrival_s
            )));
        }
        if r.arrival_s > 1e9 {
            return Err(bad(format!(
                "arrival_s {} is beyond 10^9 s; times are seconds since the trace start",
                r.arrival_s
            )));
        }
        if r.prompt_tokens == 0 {
            return Err(bad("prompt_tokens must be at least 1".into()));
        }
        if r.output_tokens == 0 {
            return Err(bad("output_tokens must be at least 1".into()));
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(Error::file(origin, "the trace holds no requests"));
    }
    out.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sorts() {
        let t = "{\"arrival_s\": 1.5, \"prompt_tokens\": 10, \"output_tokens\": 5}\n\n\
                 {\"arrival_s\": 0.5, \"prompt_tokens\": 20, \"output_tokens\": 7}\n";
        let v = parse(t, Path::new("t.jsonl")).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].prompt_tokens, 20);
    }

    #[test]
    fn errors_name_line_and_reason() {
        let t = "{\"arrival_s\": 0, \"prompt_tokens\": 10, \"output_tokens\": 5}\n\
                 {\"arrival_s\": 1, \"prompt_tokens\": -3, \"output_tokens\": 5}\n";
        let e = parse(t, Path::new("t.jsonl")).unwrap_err().to_string();
        assert!(e.starts_with("t.jsonl") && e.contains("2:"), "{e}");
        assert!(!e.contains("at line 1"), "{e}");
        let t = "{\"arrival_s\": 1, \"prompt_tokens\": 3, \"output_tokens\": 0}\n";
        let e = parse(t, Path::new("t.jsonl")).unwrap_err().to_string();
        assert!(e.contains("1:") && e.contains("output_tokens"), "{e}");
    }
}
