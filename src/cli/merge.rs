//! `cardplan merge`: join the outputs of `whatif --shard K/N --json` into the comparison a
//! single `whatif` run prints, byte for byte.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};
use crate::fsutil::check_writable;
use crate::report::whatif::{Comparison, SHARD_FORMAT, ShardOutput};

const EXAMPLES: &str = "Examples:
  for k in 1 2 3 4; do cardplan whatif --gpu l4,l40s,a100-80g --quant fp16,int8,nf4 \\
      --users 5000 --shard $k/4 --json > shard-$k.json; done
  cardplan merge shard-*.json
  cardplan merge shard-*.json --json > whatif.json
  cardplan merge shard-*.json --report out/

Every shard of the command must be given once; shards of different commands are refused.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct MergeArgs {
    /// Shard outputs of one `cardplan whatif --shard K/N --json` command, all N of them.
    #[arg(value_name = "SHARD.json", required = true)]
    pub files: Vec<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write report.md, report.html and SVG charts into this folder.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// With --report, also write each chart as PNG.
    #[arg(long, requires = "report")]
    pub png: bool,
}

pub fn run(args: MergeArgs) -> Result<()> {
    if let Some(dir) = &args.report {
        check_writable(dir)?;
    }
    let shards = args
        .files
        .iter()
        .map(|p| Ok((p.clone(), read_shard(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let cmp = merge(shards)?;
    super::whatif::emit(&cmp, args.json, args.report.as_deref(), args.png)
}

/// One shard file, parsed and checked to be a shard output.
fn read_shard(path: &Path) -> Result<ShardOutput> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file_at(path, e.line(), e.column(), e.to_string()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(SHARD_FORMAT) {
        return Err(Error::file(
            path,
            "not the output of `cardplan whatif --shard K/N --json`",
        ));
    }
    serde_json::from_value(value).map_err(|e| Error::file(path, format!("shard output: {e}")))
}

/// The comparison of the whole grid from all of its shards (in any order).
pub fn merge(shards: Vec<(PathBuf, ShardOutput)>) -> Result<Comparison> {
    let Some((_, first)) = shards.first() else {
        return Err(Error::Usage("merge needs at least one shard file".into()));
    };
    let (of, users, grid) = (first.of, first.users, first.grid.clone());
    check_shards(&shards)?;
    let mut plans = vec![None; grid.len()];
    for (path, s) in shards {
        for e in s.entries {
            let own = e.index % of == s.shard - 1;
            match plans.get_mut(e.index) {
                Some(slot @ None) if own => *slot = Some(e.plan),
                _ => {
                    return Err(Error::file(
                        &path,
                        format!(
                            "grid position {} does not belong to shard {}/{of} or is repeated",
                            e.index, s.shard
                        ),
                    ));
                }
            }
        }
    }
    let plans = plans
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            p.ok_or_else(|| {
                Error::BadInput(format!(
                    "grid position {i} ({}) is in no shard",
                    grid.get(i).map_or("?", |s| s.as_str())
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Comparison::new(users, plans))
}

/// Every shard of one command, each once: the same grid, settings and shard count as the first.
fn check_shards(shards: &[(PathBuf, ShardOutput)]) -> Result<()> {
    let Some((first_path, first)) = shards.first() else {
        return Ok(());
    };
    let (of, users, grid) = (first.of, first.users, &first.grid);
    let mut owner: Vec<Option<&Path>> = vec![None; of];
    for (path, s) in shards {
        let differs = if s.of != of {
            Some(format!("{} shards, not {of}", s.of))
        } else if s.users != users {
            Some(format!("{} users, not {users}", s.users))
        } else if &s.grid != grid {
            Some("another grid of GPUs, schemes and TP sizes".to_string())
        } else if s.settings != first.settings {
            Some(format!("other settings ({})", s.settings))
        } else {
            None
        };
        if let Some(why) = differs {
            return Err(Error::BadInput(format!(
                "{} is not a shard of the same command as {}: {why}",
                path.display(),
                first_path.display()
            )));
        }
        let slot = s
            .shard
            .checked_sub(1)
            .and_then(|k| owner.get_mut(k))
            .ok_or_else(|| {
                Error::file(path, format!("shard {} of {of} is out of range", s.shard))
            })?;
        if let Some(other) = slot {
            return Err(Error::BadInput(format!(
                "shard {}/{of} given twice: {} and {}",
                s.shard,
                other.display(),
                path.display()
            )));
        }
        *slot = Some(path.as_path());
    }
    let missing: Vec<String> = (1..=of)
        .filter(|k| owner[k - 1].is_none())
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::BadInput(format!(
            "missing shard(s) {} of {of}: merge needs every shard of the command",
            missing.join(", ")
        )));
    }
    Ok(())
}
