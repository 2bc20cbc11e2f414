//! `cardplan calibrate --allreduce`: time NCCL all-reduce over this machine's GPUs and add the
//! tables to a measured profile (the all-reduce half of calibration, runnable on its own).

use std::path::PathBuf;

use crate::calibrate::allreduce::{AllReduceSweep, AllReduceTimer, MockAllReduce, sweep};
use crate::calibrate::nccl::{NcclTimer, probe};
use crate::error::{Error, Result};

/// Time the all-reduce and write `profile` with its tables to `out`. `mock_gpus` replaces the
/// machine's GPUs with a CPU stand-in (dry runs and tests).
pub fn run(gpu: &str, out: Option<&PathBuf>, mock_gpus: Option<usize>) -> Result<()> {
    let mut p = crate::catalog::gpu(gpu)?;
    if p.measured.is_none() {
        return Err(Error::BadInput(format!(
            "--gpu {gpu}: has no measured tables; run `cardplan calibrate` first and add \
             all-reduce tables to its output"
        )));
    }
    let mut timer: Box<dyn AllReduceTimer> = match mock_gpus {
        Some(gpus) => Box::new(MockAllReduce {
            gpus,
            latency_us: 8.0,
            busbw_gbs: 400.0,
        }),
        None => {
            let (gpus, version) = probe()?;
            if gpus < 2 {
                println!("{gpus} GPU(s): no all-reduce to time; profile unchanged");
                return Ok(());
            }
            let Some(version) = version else {
                return Err(Error::Gpu(
                    "libnccl.so.2 not found: put NCCL's library folder on LD_LIBRARY_PATH".into(),
                ));
            };
            Box::new(NcclTimer::new(gpus, version)?)
        }
    };
    let bar = super::progress::counter("all-reduce sizes timed");
    let outcome = sweep(timer.as_mut(), &mut |_, _| bar.inc(1));
    bar.finish_and_clear();
    let tables = match outcome? {
        AllReduceSweep::Skipped(why) => {
            println!("{why}; profile unchanged");
            return Ok(());
        }
        AllReduceSweep::Tables(t) => t,
    };
    for t in &tables {
        println!("TP {}: {} sizes, {}", t.tp, t.points.len(), summary(t));
    }
    if let Some(m) = p.measured.as_mut() {
        m.allreduce = tables;
    }
    let out = out
        .cloned()
        .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", p.key)));
    p.write(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `8 µs at 4 KB … 612 µs at 256 MB (bus 411 GB/s)`.
fn summary(t: &crate::profile::AllReduceTable) -> String {
    let (Some(first), Some(last)) = (t.points.first(), t.points.last()) else {
        return String::new();
    };
    let n = f64::from(t.tp);
    let busbw = 2.0 * (n - 1.0) / n * last.0 as f64 / (last.1 * 1e3);
    format!(
        "{:.1} µs at {} KB … {:.0} µs at {} MB (bus bandwidth {busbw:.0} GB/s)",
        first.1,
        first.0 >> 10,
        last.1,
        last.0 >> 20
    )
}
