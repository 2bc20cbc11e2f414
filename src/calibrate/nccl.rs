//! The NCCL [`AllReduceTimer`]: one communicator per GPU, driven from one thread (NCCL's group
//! calls), each all-reduce timed with CUDA events on every rank (the slowest rank counts).
//!
//! NVLink multicast (NVLS) must stay off on shared machines: the calibrator refuses to start
//! unless `NCCL_NVLS_ENABLE=0` is set, rather than set it behind the user's back.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, sys::CUevent_flags};
use cudarc::nccl::safe::{Comm, ReduceOp};
use half::f16;

use super::allreduce::AllReduceTimer;
use crate::error::{Error, Result};

/// Timed all-reduces per batch, and batches per point (the median batch counts).
const CALLS: usize = 20;
const BATCHES: usize = 7;

fn gpu<T, E: std::fmt::Debug>(r: std::result::Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| Error::Gpu(format!("{what}: {e:?}")))
}

/// GPUs visible and whether NCCL can be loaded; `Ok(None)` when it cannot (said, not fatal).
pub fn probe() -> Result<(usize, Option<String>)> {
    // SAFETY: these only try to dlopen the libraries.
    let (cuda, nccl) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nccl::sys::is_culib_present(),
        )
    };
    if !cuda {
        return Err(Error::Gpu("libcuda (driver) not found".into()));
    }
    let gpus = gpu(CudaContext::device_count(), "count GPUs")? as usize;
    let version = if nccl {
        cudarc::nccl::result::get_nccl_version()
            .ok()
            .map(|v| format!("NCCL {}.{}.{}", v / 10000, (v / 100) % 100, v % 100))
    } else {
        None
    };
    Ok((gpus, version))
}

/// NCCL over the first N GPUs of this machine.
pub struct NcclTimer {
    streams: Vec<Arc<CudaStream>>,
    version: String,
    /// Communicators of the last TP timed (rebuilt when TP changes).
    comms: Option<(usize, Vec<Comm>)>,
}

impl NcclTimer {
    /// A timer over every visible GPU, with `version` as [`probe`] read it.
    pub fn new(gpus: usize, version: String) -> Result<NcclTimer> {
        if std::env::var("NCCL_NVLS_ENABLE").as_deref() != Ok("0") {
            return Err(Error::Usage(
                "set NCCL_NVLS_ENABLE=0 before timing all-reduces (NVLink multicast stays off on \
                 shared machines)"
                    .into(),
            ));
        }
        let streams = (0..gpus)
            .map(|i| {
                let ctx = gpu(CudaContext::new(i), "open GPU")?;
                gpu(ctx.new_stream(), "create stream")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(NcclTimer {
            streams,
            version,
            comms: None,
        })
    }

    fn comms(&mut self, tp: usize) -> Result<&[Comm]> {
        if self.comms.as_ref().is_none_or(|c| c.0 != tp) {
            self.comms = None;
            let comms = gpu(
                Comm::from_devices(self.streams[..tp].to_vec()),
                "create NCCL communicators",
            )?;
            self.comms = Some((tp, comms));
        }
        Ok(self.comms.as_ref().map(|c| c.1.as_slice()).unwrap_or(&[]))
    }

    /// One batch of [`CALLS`] all-reduces; its time per call on the slowest rank, µs.
    fn batch(comms: &[Comm], bufs: &mut [(CudaSlice<f16>, CudaSlice<f16>)]) -> Result<f64> {
        let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let starts = comms
            .iter()
            .map(|c| gpu(c.stream().record_event(timing), "record event"))
            .collect::<Result<Vec<_>>>()?;
        for _ in 0..CALLS {
            gpu(cudarc::nccl::result::group_start(), "group start")?;
            for (c, (send, recv)) in comms.iter().zip(bufs.iter_mut()) {
                gpu(c.all_reduce(send, recv, &ReduceOp::Sum), "all-reduce")?;
            }
            gpu(cudarc::nccl::result::group_end(), "group end")?;
        }
        let mut worst = 0.0f64;
        for (c, start) in comms.iter().zip(&starts) {
            let end = gpu(c.stream().record_event(timing), "record event")?;
            gpu(c.stream().synchronize(), "synchronize")?;
            let ms = gpu(start.elapsed_ms(&end), "elapsed time")?;
            worst = worst.max(f64::from(ms));
        }
        Ok(worst * 1e3 / CALLS as f64)
    }
}

impl AllReduceTimer for NcclTimer {
    fn gpus(&self) -> usize {
        self.streams.len()
    }

    fn time_us(&mut self, tp: usize, bytes: u64) -> Result<f64> {
        let elems = (bytes / 2).max(1) as usize;
        let streams = self.streams[..tp].to_vec();
        let mut bufs = streams
            .iter()
            .map(|s| {
                let send = gpu(s.alloc_zeros::<f16>(elems), "allocate")?;
                let recv = gpu(s.alloc_zeros::<f16>(elems), "allocate")?;
                Ok((send, recv))
            })
            .collect::<Result<Vec<_>>>()?;
        let comms = self.comms(tp)?;
        Self::batch(comms, &mut bufs)?; // warm-up
        let mut times = (0..BATCHES)
            .map(|_| Self::batch(comms, &mut bufs))
            .collect::<Result<Vec<_>>>()?;
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    fn nccl(&self) -> String {
        self.version.clone()
    }

    fn topology(&self) -> String {
        format!(
            "{} GPUs, one thread, NCCL group calls; NCCL_NVLS_ENABLE=0; NCCL_P2P_DISABLE={}",
            self.streams.len(),
            std::env::var("NCCL_P2P_DISABLE").unwrap_or_else(|_| "unset".into())
        )
    }
}
