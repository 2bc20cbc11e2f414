//! `cardplan calibrate`: time the real kernels on this machine's GPU and write a measured profile.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::common::print_json;
use crate::calibrate::plan::SweepSpec;
use crate::calibrate::timer::{KernelTimer, MockTimer};
use crate::calibrate::{self, Calibration};
use crate::catalog;
use crate::error::{Error, Result};
use crate::profile::Timing;
use crate::report::table::new_table;

fn parse_timing(s: &str) -> std::result::Result<Timing, String> {
    s.parse()
}

const EXAMPLES: &str = "Examples:
  cardplan calibrate --quick
  cardplan calibrate --out profiles/gpus/h100-sxm.yaml --raw h100-raw.json
  cardplan calibrate --models llama-3.1-8b,qwen2.5-7b --gpu h200 --json
  cardplan calibrate --timing isolated --out h100-isolated.yaml
  cardplan calibrate --gpu h100-sxm --reassemble run1.json,run2.json,run3.json --out h100.yaml

Timing: `back-to-back` (default) times each kernel as a CUDA graph of many calls rotating over
copies of its inputs (what a serving step pays); `isolated` times one call after an L2-evicting
memset (the pre-0.2 method; the cost model then corrects the tables towards in-graph times).
Compute-bound kernels (GEMMs from 128 tokens, prefill attention) are timed under sustained load,
after 200 ms of the same kernel and over at least 150 ms: on Hopper the board's power cap holds
them 7-19% below the boost clock of a short burst, a GPU serving at capacity runs at the capped
clock, and that clock swings by several per cent over hundreds of milliseconds. Other kernels
that start right after such load first run for 200 ms, while the clock recovers from the cap.
Inputs are written on the CUDA legacy default stream, as PyTorch writes its tensors: a process
that has done so runs small GEMMs up to 6% slower, and a serving engine is such a process.
CARDPLAN_DEBUG_TIMING=1 prints each job's wall time and each heat-up's trajectory.

Run-to-run spread of single points is a few percent; for a profile you will rely on, calibrate
three times and merge with --reassemble (median per point), as the shipped profiles were.

Paged decode tries every kernel variant (CUDA-core ones, and for fp16 KV tensor-core ones) at
several partition sizes per point (powers of two, and those that fill one or two waves of the GPU)
on short samples and times the fastest in full; CARDPLAN_DEBUG_DECODE=1 prints each candidate's time.

Needs an NVIDIA GPU with the driver, NVRTC, cuBLAS and cuBLASLt (CUDA 13) installed; exits 4
without writing anything when they are missing.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct CalibrateArgs {
    /// Where to write the profile (default: <gpu key>.yaml in the current folder).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Models whose linear shapes, attention heads and widths are timed (comma-separated).
    #[arg(
        long,
        value_name = "LIST",
        default_value = "llama-3.1-8b",
        value_delimiter = ','
    )]
    pub models: Vec<String>,
    /// Skip the generic grid of linear shapes (only the models' own shapes).
    #[arg(long)]
    pub no_grid: bool,
    /// Smoke test: a few sizes per table, under 30 s.
    #[arg(long)]
    pub quick: bool,
    /// Catalog key whose datasheet the measurements are merged into (default: from the device name).
    #[arg(long, value_name = "GPU")]
    pub gpu: Option<String>,
    /// Timed repetitions per point (median taken; at least 20) [default: 30; 20 with --quick].
    #[arg(long, value_name = "N")]
    pub reps: Option<usize>,
    /// How each kernel is timed: back-to-back (CUDA graph, rotated inputs) or isolated.
    #[arg(long, value_name = "METHOD", default_value = "back-to-back", value_parser = parse_timing)]
    pub timing: Timing,
    /// Also write every timed call (all paths, also those that lost) as JSON; with
    /// --reassemble, the merged timings.
    #[arg(long, value_name = "FILE")]
    pub raw: Option<PathBuf>,
    /// Git revision to record (default: the one baked in at build time, else "unknown").
    #[arg(long, value_name = "REV")]
    pub git_rev: Option<String>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a JSON summary instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Re-assemble the tables of the measured profile given by --gpu (a key or a file) from raw
    /// timings (written by --raw) instead of measuring; no GPU needed. Several files (runs of the
    /// same sweep, comma-separated) give the median per point.
    #[arg(long, value_name = "RAW.json", requires = "gpu", value_delimiter = ',', num_args = 1..)]
    pub reassemble: Vec<PathBuf>,
    /// Use the CPU mock timer instead of the GPU (tests the writer; the numbers are made up).
    #[arg(long, hide = true)]
    pub mock_timer: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    out: String,
    device: &'a str,
    key: &'a str,
    timing: Timing,
    roofs: crate::profile::MeasuredRoofs,
    gemm_tables: usize,
    decode_tables: usize,
    prefill_tables: usize,
    elementwise_tables: usize,
    checks: &'a [calibrate::timer::CheckReport],
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    if !args.reassemble.is_empty() {
        return reassemble(&args, &args.reassemble);
    }
    let reps = args.reps.unwrap_or(if args.quick { 20 } else { 30 });
    if reps < 20 {
        return Err(Error::Usage(format!(
            "--reps must be at least 20 (median of >= 20 timings), got {reps}"
        )));
    }
    let models = args
        .models
        .iter()
        .map(|m| catalog::model(m))
        .collect::<Result<Vec<_>>>()?;
    if models.is_empty() {
        return Err(Error::Usage("--models needs at least one model".into()));
    }
    let spec = SweepSpec::new(&models, args.quick, !args.no_grid);
    let started = std::time::Instant::now();
    let mut timer: Box<dyn KernelTimer> = if args.mock_timer {
        let mut t = MockTimer::new("Mock GPU (no device)");
        t.timing = args.timing;
        Box::new(t)
    } else {
        Box::new(calibrate::cuda::CudaTimer::new(
            &spec,
            reps,
            args.seed,
            args.timing,
        )?)
    };
    let key = match &args.gpu {
        Some(k) => k.clone(),
        None => calibrate::catalog_key_for(&timer.device().name)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no catalog datasheet matches device '{}': pass --gpu KEY (see `cardplan list gpus`)",
                    timer.device().name
                ))
            })?,
    };
    let base = catalog::gpu(&key)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", base.key)));
    let git_rev = args
        .git_rev
        .clone()
        .unwrap_or_else(|| calibrate::build_git_rev().to_string());
    let mut phases = Phases::new(started);
    phases.lap("start + NVRTC compile");
    let total = spec.jobs().len() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {msg}")
    {
        bar.set_style(style);
    }
    let cal: Calibration =
        calibrate::calibrate(timer.as_mut(), &spec, base, &git_rev, |done, _, job| {
            bar.set_position(done as u64);
            bar.set_message(short(job));
            phases.lap(if done == 1 {
                "checks + copy"
            } else {
                kind(job)
            });
        })?;
    bar.finish_and_clear();
    eprintln!("wall time by phase: {}", phases.summary());
    if let Some(raw) = &args.raw {
        let text = serde_json::to_string_pretty(&RawOut {
            device: timer.device(),
            timing: timer.timing(),
            checks: &cal.checks,
            timed: &cal.timed,
            nf4_bnb: calibrate::nf4_bnb_points(timer.device(), &spec),
        })
        .map_err(|e| Error::Internal(format!("JSON: {e}")))?;
        crate::fsutil::write_atomic(raw, text.as_bytes())?;
    }
    cal.profile.write(&out)?;
    let m = cal
        .profile
        .measured
        .as_ref()
        .ok_or_else(|| Error::Internal("profile lost its measured block".into()))?;
    let summary = Summary {
        out: out.display().to_string(),
        device: &timer.device().name,
        key: &cal.profile.key,
        timing: m.provenance.timing,
        roofs: m.roofs,
        gemm_tables: m.gemm.len(),
        decode_tables: m.attn_decode.len(),
        prefill_tables: m.attn_prefill.len(),
        elementwise_tables: m.elementwise.len(),
        checks: &cal.checks,
    };
    if args.json {
        return print_json(&summary);
    }
    let mut t = new_table();
    t.set_header(vec!["what", "value"]);
    t.add_row(vec!["device".to_string(), summary.device.to_string()]);
    t.add_row(vec![
        "profile".to_string(),
        format!("{} ({})", summary.out, summary.key),
    ]);
    t.add_row(vec!["timing".to_string(), summary.timing.to_string()]);
    t.add_row(vec![
        "copy bandwidth".to_string(),
        format!("{:.0} GB/s (read + write)", m.roofs.copy_gbs),
    ]);
    t.add_row(vec![
        "fp16 GEMM peak".to_string(),
        format!("{:.0} TFLOP/s", m.roofs.fp16_tflops),
    ]);
    t.add_row(vec![
        "int8 GEMM peak".to_string(),
        format!("{:.0} TOP/s", m.roofs.int8_tops),
    ]);
    t.add_row(vec![
        "tables".to_string(),
        format!(
            "{} gemm, {} decode attention, {} prefill attention, {} elementwise",
            summary.gemm_tables,
            summary.decode_tables,
            summary.prefill_tables,
            summary.elementwise_tables
        ),
    ]);
    for c in &cal.checks {
        t.add_row(vec![
            format!("check {}", c.kernel),
            format!("pass ({:.2} of bound {})", c.worst_ratio, c.bound),
        ]);
    }
    println!("{t}");
    Ok(())
}

#[derive(Serialize)]
struct RawOut<'a> {
    device: &'a calibrate::timer::DeviceInfo,
    /// The timing method, so reference scripts time the libraries the same way.
    timing: Timing,
    checks: &'a [calibrate::timer::CheckReport],
    timed: &'a [calibrate::assemble::Timed],
    /// The bitsandbytes kernel each point of the faithful `nf4` table prices.
    nf4_bnb: Vec<calibrate::Nf4BnbPoint>,
}

/// Wall time spent per phase (diagnostics on stderr: where a calibration's time goes).
struct Phases {
    last: std::time::Instant,
    spent: Vec<(&'static str, f64)>,
}

impl Phases {
    fn new(start: std::time::Instant) -> Phases {
        Phases {
            last: start,
            spent: Vec::new(),
        }
    }

    fn lap(&mut self, what: &'static str) {
        let now = std::time::Instant::now();
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        match self.spent.iter_mut().find(|(w, _)| *w == what) {
            Some(e) => e.1 += dt,
            None => self.spent.push((what, dt)),
        }
    }

    fn summary(&self) -> String {
        self.spent
            .iter()
            .map(|(w, s)| format!("{w} {s:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn kind(job: &calibrate::plan::Job) -> &'static str {
    use calibrate::plan::Job;
    match job {
        Job::Copy { .. } => "copy",
        Job::Gemm { .. } => "gemm",
        Job::Decode { .. } => "decode attention",
        Job::Prefill { .. } => "prefill attention",
        Job::Elementwise { .. } => "elementwise",
    }
}

fn short(job: &calibrate::plan::Job) -> String {
    use calibrate::plan::Job;
    match job {
        Job::Copy { .. } => "copy".into(),
        Job::Gemm { path, n, k, tokens } => format!("{} {n}x{k} T={tokens}", path.key()),
        Job::Decode {
            kv, batch, context, ..
        } => format!("decode {kv} B={batch} ctx={context}"),
        Job::Prefill { tokens, .. } => format!("prefill T={tokens}"),
        Job::Elementwise {
            kind,
            width,
            tokens,
        } => format!("{kind:?} w={width} T={tokens}"),
    }
}

#[derive(serde::Deserialize)]
struct RawIn {
    timed: Vec<calibrate::assemble::Timed>,
}

/// `--reassemble RAW[,RAW…]`: rebuild the tables of an existing measured profile from raw
/// timings, the median per point when there are several runs.
fn reassemble(args: &CalibrateArgs, raws: &[PathBuf]) -> Result<()> {
    let gpu = args
        .gpu
        .as_deref()
        .ok_or_else(|| Error::Usage("--reassemble needs --gpu (the measured profile)".into()))?;
    let base = catalog::gpu(gpu)?;
    let mut runs = Vec::with_capacity(raws.len());
    let mut first_text = None;
    for raw in raws {
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
    let names: Vec<String> = raws.iter().map(|r| r.display().to_string()).collect();
    let (timed, source) = if runs.len() == 1 {
        (runs.remove(0), "this run's raw timings".to_string())
    } else {
        (
            calibrate::median_of_runs(&runs)?,
            format!(
                "the median per point of {} runs' raw timings ({})",
                runs.len(),
                names.join(", ")
            ),
        )
    };
    let git_rev = args
        .git_rev
        .clone()
        .unwrap_or_else(|| calibrate::build_git_rev().to_string());
    let profile = calibrate::reassemble(base, &timed, &source, &git_rev)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", profile.key)));
    // The merged timings as a raw file too (device and checks of the first run), so reference
    // scripts compare against what the profile holds.
    let merged_raw = match (&args.raw, first_text) {
        (Some(path), Some(text)) => {
            let mut v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Internal(format!("raw JSON re-read: {e}")))?;
            v["timed"] =
                serde_json::to_value(&timed).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
            v["merged_from"] =
                serde_json::to_value(&names).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
            let text = serde_json::to_string_pretty(&v)
                .map_err(|e| Error::Internal(format!("JSON: {e}")))?;
            Some((path, text))
        }
        _ => None,
    };
    profile.write(&out)?;
    if let Some((path, text)) = merged_raw {
        crate::fsutil::write_atomic(path, text.as_bytes())?;
    }
    eprintln!(
        "re-assembled {} from {} into {}",
        profile.key,
        names.join(", "),
        out.display()
    );
    Ok(())
}
