//! `cardplan calibrate`: time the real kernels on this machine's GPU and write a measured profile.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::common::print_json;
use crate::calibrate::sweep::SweepSpec;
use crate::calibrate::timer::{CheckReport, DeviceInfo, KernelTimer, MockTimer};
use crate::calibrate::{self, Calibration};
use crate::catalog;
use crate::error::{Error, Result};
use crate::profile::{GpuProfile, Timing};
use crate::report::calibrate::{self as report, CalibrationOutcome, KernelCheck, Phases};

fn parse_timing(s: &str) -> std::result::Result<Timing, String> {
    s.parse()
}

const EXAMPLES: &str = "Examples:
  cardplan calibrate --quick
  cardplan calibrate --out profiles/gpus/h100-sxm.yaml --raw h100-raw.json
  cardplan calibrate --models llama-3.1-8b,qwen2.5-7b --gpu h200 --json
  cardplan calibrate --timing isolated --out h100-isolated.yaml
  cardplan calibrate --gpu h100-sxm --reassemble run1.json,run2.json,run3.json --out h100.yaml
  cardplan calibrate --quant-only --gpu h200 --out h200.yaml --raw quant-raw.json
  cardplan calibrate --moe-only --models mixtral-8x7b,qwen3-30b-a3b --gpu h200 --out h200.yaml
  cardplan calibrate --moe-only --gpu profiles/gpus/h200.yaml --reassemble moe-raw.json --out h200.yaml

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

Run-to-run spread of single points is a few percent; for a profile you will rely on, calibrate
three times and merge with --reassemble (median per point), as the shipped profiles were.

Paged decode tries every kernel variant (CUDA-core ones, and for fp16 KV tensor-core ones) at
several partition sizes per point (powers of two, and those that fill one or two waves of the GPU)
on short samples and times the fastest in full.

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
    /// Time only the FP8, INT4 and LLM.int8() GEMMs (fp16 beside them) and FP8-KV decode
    /// attention on the models' shapes, and merge their tables into the measured profile of
    /// --gpu (a key or a file), keeping its other tables.
    #[arg(long, requires = "gpu", conflicts_with = "quick")]
    pub quant_only: bool,
    /// Time only the grouped MoE GEMMs of the MoE models in --models (their expert linears at
    /// 1..8192 tokens) and merge the `moe_gemm` tables into the measured profile of --gpu; with
    /// --reassemble, merge them from a --moe-only run's raw timings instead (no GPU needed).
    #[arg(long, requires = "gpu", conflicts_with_all = ["quick", "quant_only"])]
    pub moe_only: bool,
    /// With --quant-only: only these schemes' paths (fp8, fp8-tensor, int4, llm-int8; fp8-kv for
    /// FP8-KV decode attention); the merged profile keeps its tables of the others.
    #[arg(
        long,
        requires = "quant_only",
        value_delimiter = ',',
        value_name = "SCHEMES"
    )]
    pub quant_schemes: Vec<String>,
    /// Use the CPU mock timer instead of the GPU (tests the writer; the numbers are made up).
    #[arg(long, hide = true)]
    pub mock_timer: bool,
    /// Time NCCL all-reduce (fp16, sum) over every TP this machine's GPUs can form and add the
    /// tables to the measured profile named by --gpu (needs two or more GPUs and
    /// NCCL_NVLS_ENABLE=0).
    #[arg(long, requires = "gpu")]
    pub allreduce: bool,
    /// With --allreduce: a CPU stand-in for N GPUs (a dry run).
    #[arg(long, hide = true, value_name = "N")]
    pub mock_gpus: Option<usize>,
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    if args.allreduce {
        let gpu = args.gpu.as_deref().unwrap_or_default();
        return super::allreduce::run(gpu, args.out.as_ref(), args.mock_gpus);
    }
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
    let mut spec = SweepSpec::new(&models, args.quick, !args.no_grid);
    if args.quant_only {
        spec = spec.quant_only();
        spec.quant_schemes = calibrate::merge::check_quant_schemes(&args.quant_schemes)?;
    }
    if args.moe_only {
        spec = spec.moe_only();
        if spec.moe.is_empty() {
            return Err(Error::Usage(format!(
                "--moe-only needs a mixture-of-experts model in --models (got {})",
                args.models.join(",")
            )));
        }
    }
    let started = std::time::Instant::now();
    let mut timer = new_timer(&args, &spec, reps)?;
    let base = catalog::gpu(&gpu_key(&args, timer.device())?)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", base.key)));
    let original = base.clone();
    let mut cal = measure(timer.as_mut(), &spec, base, &git_rev(&args), started)?;
    if let Some(raw) = &args.raw {
        calibrate::raw::write(raw, timer.device(), timer.timing(), &cal, &spec)?;
    }
    if args.quant_only
        && let Some(fresh) = &cal.profile.measured
    {
        cal.profile = calibrate::merge::merge_quant(original, fresh, &spec.quant_schemes)?;
    } else if args.moe_only
        && let Some(fresh) = &cal.profile.measured
    {
        cal.profile = calibrate::moe::merge_moe(original, fresh)?;
    }
    cal.profile.write(&out)?;
    let device = &timer.device().name;
    let checks = kernel_checks(&cal.checks);
    let outcome = CalibrationOutcome::new(out.display().to_string(), device, &cal.profile, checks)?;
    if args.json {
        return print_json(&outcome);
    }
    println!("{}", report::terminal(&outcome));
    Ok(())
}

/// The checks as the outcome reports them.
fn kernel_checks(checks: &[CheckReport]) -> Vec<KernelCheck<'_>> {
    checks
        .iter()
        .map(|c| KernelCheck {
            kernel: &c.kernel,
            worst_ratio: c.worst_ratio,
            max_abs_err: c.max_abs_err,
            bound: &c.bound,
        })
        .collect()
}

/// The GPU's timer, or with `--mock-timer` the CPU stand-in.
fn new_timer(args: &CalibrateArgs, spec: &SweepSpec, reps: usize) -> Result<Box<dyn KernelTimer>> {
    Ok(if args.mock_timer {
        let mut t = MockTimer::new("Mock GPU (no device)");
        t.timing = args.timing;
        Box::new(t)
    } else {
        Box::new(calibrate::cuda::CudaTimer::new(
            spec,
            reps,
            args.seed,
            args.timing,
        )?)
    })
}

/// `--gpu`, or the catalog key of the device the timer runs on.
fn gpu_key(args: &CalibrateArgs, device: &DeviceInfo) -> Result<String> {
    match &args.gpu {
        Some(k) => Ok(k.clone()),
        None => calibrate::catalog_key_for(&device.name)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no catalog datasheet matches device '{}': pass --gpu KEY (see `cardplan list gpus`)",
                    device.name
                ))
            }),
    }
}

/// `--git-rev`, else the revision baked in at build time.
fn git_rev(args: &CalibrateArgs) -> String {
    args.git_rev
        .clone()
        .unwrap_or_else(|| calibrate::build_git_rev().to_string())
}

/// The calibration, with a progress bar and the wall time per phase on stderr.
fn measure(
    timer: &mut dyn KernelTimer,
    spec: &SweepSpec,
    base: GpuProfile,
    git_rev: &str,
    started: std::time::Instant,
) -> Result<Calibration> {
    let mut phases = Phases::new(started);
    phases.lap("start + NVRTC compile");
    let total = spec.jobs().len() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {msg}")
    {
        bar.set_style(style);
    }
    let cal = calibrate::calibrate(timer, spec, base, git_rev, |done, _, job| {
        bar.set_position(done as u64);
        bar.set_message(job.short_label());
        phases.lap(if done == 1 {
            "checks + copy"
        } else {
            job.family()
        });
    })?;
    bar.finish_and_clear();
    eprintln!("wall time by phase: {}", phases.summary());
    Ok(cal)
}

/// `--reassemble RAW[,RAW…]`: rebuild the tables of an existing measured profile from raw
/// timings, the median per point when there are several runs.
fn reassemble(args: &CalibrateArgs, raws: &[PathBuf]) -> Result<()> {
    let gpu = args
        .gpu
        .as_deref()
        .ok_or_else(|| Error::Usage("--reassemble needs --gpu (the measured profile)".into()))?;
    let base = catalog::gpu(gpu)?;
    let (mut runs, first_text) = calibrate::raw::read(raws)?;
    // File names only: a profile is shared, the folders it was made in are not.
    let names: Vec<String> = raws
        .iter()
        .map(|r| {
            r.file_name().map_or_else(
                || r.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
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
    let profile = if args.moe_only {
        let device = first_text
            .as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| v["device"]["name"].as_str().map(str::to_string))
            .unwrap_or_else(|| "an unnamed device".into());
        calibrate::moe::reassemble(base, &timed, &source, &device)?
    } else {
        calibrate::reassemble(base, &timed, &source, &git_rev(args))?
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", profile.key)));
    // The merged timings as a raw file too (device and checks of the first run), so reference
    // scripts compare against what the profile holds.
    let merged_raw = match (&args.raw, first_text) {
        (Some(path), Some(text)) => Some((path, calibrate::raw::merged(&text, &timed, &names)?)),
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
