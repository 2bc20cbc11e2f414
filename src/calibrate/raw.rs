//! The raw timings file: every timed call of a run (all paths, also those that lost) with the
//! device, the timing method and the checks. Runs of one sweep re-assemble from it and merge
//! (median per point); the reference scripts read it to time the libraries the same way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::assemble::Timed;
use super::sweep::SweepSpec;
use super::timer::{CheckReport, DeviceInfo};
use super::{Calibration, Nf4BnbPoint, nf4_bnb_points};
use crate::error::{Error, Result};
use crate::profile::Timing;

#[derive(Serialize)]
struct RawOut<'a> {
    device: &'a DeviceInfo,
    /// The timing method, so reference scripts time the libraries the same way.
    timing: Timing,
    checks: &'a [CheckReport],
    timed: &'a [Timed],
    /// The bitsandbytes kernel each point of the faithful `nf4` table prices.
    nf4_bnb: Vec<Nf4BnbPoint>,
}

#[derive(Deserialize)]
struct RawIn {
    timed: Vec<Timed>,
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Internal(format!("JSON: {e}"))
}

/// Write the raw timings of `cal`, measured on `device` by the `timing` method over `spec`.
pub fn write(
    path: &Path,
    device: &DeviceInfo,
    timing: Timing,
    cal: &Calibration,
    spec: &SweepSpec,
) -> Result<()> {
    let text = serde_json::to_string_pretty(&RawOut {
        device,
        timing,
        checks: &cal.checks,
        timed: &cal.timed,
        nf4_bnb: nf4_bnb_points(device, spec),
    })
    .map_err(json_err)?;
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// The raw timings files at `paths`: each one's timed jobs, and the first one's text.
pub fn read(paths: &[PathBuf]) -> Result<(Vec<Vec<Timed>>, Option<String>)> {
    let mut runs = Vec::with_capacity(paths.len());
    let mut first_text = None;
    for raw in paths {
        let text = std::fs::read_to_string(raw)
            .map_err(|e| Error::file(raw, format!("cannot read: {e}")))?;
        let parsed: RawIn = serde_json::from_str(&text).map_err(|e| {
            Error::file_at(
                raw,
                e.line(),
                e.column(),
                format!("not a raw timings file: {e}"),
            )
        })?;
        runs.push(parsed.timed);
        first_text.get_or_insert(text);
    }
    Ok((runs, first_text))
}

/// A raw timings file holding `timed` (merged from the files `names`), with the device and
/// checks of `first_text` (the first run's file), so reference scripts compare against what a
/// merged profile holds.
pub fn merged(first_text: &str, timed: &[Timed], names: &[String]) -> Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(first_text)
        .map_err(|e| Error::Internal(format!("raw JSON re-read: {e}")))?;
    v["timed"] = serde_json::to_value(timed).map_err(json_err)?;
    v["merged_from"] = serde_json::to_value(names).map_err(json_err)?;
    serde_json::to_string_pretty(&v).map_err(json_err)
}
