//! One error type for the whole library, with stable process exit codes.
//!
//! The CLI maps every failure to one of four codes so scripts can tell a typo (2) from a bad
//! file (3) from a machine without a GPU (4) from a bug in cardplan (1).

use std::path::PathBuf;

/// Exit code for a usage error (unknown flag value, conflicting options).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for bad input: unreadable or malformed files, out-of-range values.
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code when a GPU or the CUDA libraries are needed but unavailable.
pub const EXIT_GPU: i32 = 4;
/// Exit code for an internal error (a bug).
pub const EXIT_INTERNAL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something cardplan cannot do (bad combination, unknown name).
    #[error("{0}")]
    Usage(String),
    /// A value given on the command line or in a file is out of range or malformed.
    #[error("{0}")]
    BadInput(String),
    /// A file could not be read or parsed; `location` is `line:column` when known.
    #[error("{}{}: {message}", path.display(), location.as_ref().map(|l| format!(":{l}")).unwrap_or_default())]
    File {
        path: PathBuf,
        location: Option<String>,
        message: String,
    },
    /// No usable GPU or CUDA library on this machine.
    #[error("{0}")]
    Gpu(String),
    /// Not yet built: the subcommand or feature exists in the interface only.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// Anything else: a bug or an I/O failure that is not the user's input.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::NotImplemented(_) => EXIT_USAGE,
            Error::BadInput(_) | Error::File { .. } => EXIT_BAD_INPUT,
            Error::Gpu(_) => EXIT_GPU,
            Error::Internal(_) => EXIT_INTERNAL,
        }
    }

    /// A file error without a position.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            location: None,
            message: message.into(),
        }
    }

    /// A file error at `line:column` (1-based).
    pub fn file_at(
        path: impl Into<PathBuf>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Error::File {
            path: path.into(),
            location: Some(format!("{line}:{column}")),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Check that a user-supplied number is finite and inside `[min, max]`; name the flag (or
/// field) if not.
pub fn check_range(flag: &str, value: f64, min: f64, max: f64) -> Result<f64> {
    if !value.is_finite() {
        return Err(Error::BadInput(format!(
            "{flag} must be a finite number, got {value}"
        )));
    }
    if value < min || value > max {
        return Err(Error::BadInput(format!(
            "{flag} must be between {} and {}, got {}",
            compact(min),
            compact(max),
            compact(value)
        )));
    }
    Ok(value)
}

/// A number as a person would write it back: 1e308 rather than its 309 digits, 0.000001 as 1e-6.
pub fn compact(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e7).contains(&a) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_values_are_echoed_short() {
        let e = check_range("--rate", 1e308, 1e-9, 1e9)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--rate must be between 1e-9 and 1e9, got 1e308");
        assert_eq!(compact(0.95), "0.95");
        assert_eq!(compact(86400.0), "86400");
    }
}
