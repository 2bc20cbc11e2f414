//! YAML reading and writing, with errors that name the file, line and column.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Parse `text` (read from `origin`, a path or an `<embedded …>` label) into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let message = first_line(&e.to_string());
        match e.location() {
            Some(loc) if loc.line() > 0 => {
                Error::file_at(origin, loc.line() as usize, loc.column() as usize, message)
            }
            _ => Error::file(origin, message),
        }
    })
}

/// Read and parse a YAML file.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    from_str(&text, path)
}

/// Serialize to YAML text.
pub fn to_string<T: Serialize>(value: &T) -> Result<String> {
    serde_saphyr::to_string(value).map_err(|e| Error::Internal(format!("cannot write YAML: {e}")))
}

/// The first line of a (possibly multi-line, snippet-decorated) parser message, without the
/// parser's own "error: line L column C:" prefix (the position is reported separately).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or("malformed YAML").trim();
    let line = line.strip_prefix("error:").unwrap_or(line).trim_start();
    let line = match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, rest)) if position.contains("column") => rest,
        _ => line,
    };
    line.to_string()
}
