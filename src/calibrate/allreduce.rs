//! Timing the tensor-parallel all-reduce: NCCL all-reduce (fp16, sum) over every group of GPUs
//! the machine can form, at message sizes from a decode step's few KB to a prefill's hundreds of
//! MB. The sweep is independent of the timer ([`AllReduceTimer`]): tests drive it with a mock,
//! the calibrator with NCCL (`super::nccl`).

use crate::catalog::shard::TP_SIZES;
use crate::error::Result;
use crate::profile::AllReduceTable;

/// Message sizes per rank, bytes: 4 KB to 256 MB by factors of 4, plus the activations a decode
/// step all-reduces (`2 × hidden × batch` for hidden 4096 and 8192 at batch 1, 8, 32, 128).
pub fn sizes() -> Vec<u64> {
    let mut v: Vec<u64> = (0..=8).map(|i| 4096u64 << (2 * i)).collect();
    for hidden in [4096u64, 8192] {
        for batch in [1u64, 8, 32, 128] {
            v.push(2 * hidden * batch);
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// What times an all-reduce on this machine.
pub trait AllReduceTimer {
    /// GPUs visible to the timer.
    fn gpus(&self) -> usize;
    /// Median time of one all-reduce of `bytes` fp16 bytes per rank over the first `tp` GPUs, µs.
    fn time_us(&mut self, tp: usize, bytes: u64) -> Result<f64>;
    /// NCCL version and the topology NCCL reported.
    fn nccl(&self) -> String;
    fn topology(&self) -> String;
}

/// The outcome of the sweep: tables, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub enum AllReduceSweep {
    Tables(Vec<AllReduceTable>),
    /// One GPU (or none): nothing to time.
    Skipped(String),
}

/// The TP sizes `gpus` GPUs can form (2 and up).
pub fn tp_sizes(gpus: usize) -> Vec<u32> {
    TP_SIZES
        .iter()
        .copied()
        .filter(|&n| n >= 2 && n as usize <= gpus)
        .collect()
}

/// Time every size at every TP the timer's GPUs can form; `progress` hears each point.
pub fn sweep(
    timer: &mut dyn AllReduceTimer,
    progress: &mut dyn FnMut(u32, u64),
) -> Result<AllReduceSweep> {
    let gpus = timer.gpus();
    let tps = tp_sizes(gpus);
    if tps.is_empty() {
        return Ok(AllReduceSweep::Skipped(format!(
            "{gpus} GPU{}: no all-reduce to time",
            if gpus == 1 { "" } else { "s" }
        )));
    }
    let mut tables = Vec::new();
    for tp in tps {
        let mut points = Vec::new();
        for bytes in sizes() {
            points.push((bytes, timer.time_us(tp as usize, bytes)?));
            progress(tp, bytes);
        }
        tables.push(AllReduceTable {
            tp,
            points,
            nccl: timer.nccl(),
            topology: timer.topology(),
        });
    }
    Ok(AllReduceSweep::Tables(tables))
}

/// A stand-in for machines without GPUs: a ring with `latency_us` and `busbw_gbs`.
#[derive(Debug, Clone)]
pub struct MockAllReduce {
    pub gpus: usize,
    pub latency_us: f64,
    pub busbw_gbs: f64,
}

impl AllReduceTimer for MockAllReduce {
    fn gpus(&self) -> usize {
        self.gpus
    }

    fn time_us(&mut self, tp: usize, bytes: u64) -> Result<f64> {
        let n = tp as f64;
        Ok(
            self.latency_us * n.log2()
                + 2.0 * (n - 1.0) / n * bytes as f64 / (self.busbw_gbs * 1e3),
        )
    }

    fn nccl(&self) -> String {
        "mock".into()
    }

    fn topology(&self) -> String {
        format!("mock ring, {} GB/s", self.busbw_gbs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cover_decode_to_prefill_in_order() {
        let s = sizes();
        assert_eq!(s.first(), Some(&4096));
        assert_eq!(s.last(), Some(&(256 << 20)));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        // a decode step of 8 sequences at hidden 8192
        assert!(s.contains(&(2 * 8192 * 8)));
    }

    #[test]
    fn one_gpu_has_nothing_to_time() {
        let mut t = MockAllReduce {
            gpus: 1,
            latency_us: 8.0,
            busbw_gbs: 400.0,
        };
        let out = sweep(&mut t, &mut |_, _| {}).unwrap();
        assert_eq!(
            out,
            AllReduceSweep::Skipped("1 GPU: no all-reduce to time".into())
        );
    }

    #[test]
    fn eight_gpus_give_three_valid_tables_the_model_reads_back() {
        let mut t = MockAllReduce {
            gpus: 8,
            latency_us: 8.0,
            busbw_gbs: 400.0,
        };
        let mut heard = 0;
        let AllReduceSweep::Tables(tables) = sweep(&mut t, &mut |_, _| heard += 1).unwrap() else {
            panic!("tables expected");
        };
        assert_eq!(tables.iter().map(|t| t.tp).collect::<Vec<_>>(), [2, 4, 8]);
        assert_eq!(heard, 3 * sizes().len());
        for table in &tables {
            table.validate("mock").unwrap();
            // the table prices a measured size as measured
            let (b, us) = table.points[4];
            assert!((table.seconds(b as f64) - us * 1e-6).abs() < 1e-12);
        }
    }
}
