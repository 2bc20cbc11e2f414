//! How a kernel call is timed ([`Timing`]): back to back in a CUDA graph over rotated copies of
//! its inputs, under sustained load for compute-bound jobs, or isolated after an L2-evicting
//! memset. Everything here is independent of which kernel runs: an operation is a closure
//! `op(timer, copy)`.

use std::cell::Cell;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaEvent, CudaGraph, result as dres, sys as dsys};

use super::CudaTimer;
use super::device::{Buf, GpuErr, cfg};
use crate::calibrate::sweep::Job;
use crate::error::{Error, Result};
use crate::profile::Timing;

/// One call of an operation on copy `i` of its inputs.
pub(super) type Op<'a> = &'a dyn Fn(&CudaTimer, usize) -> Result<()>;

/// How many L2s the rotated copies of an operation's inputs cover together, so they come from
/// DRAM as in a forward pass where every layer's weights are new.
const ROTATE_L2X: u64 = 2;
/// Most copies of an operation's inputs rotated over (back-to-back timing).
pub(super) const MAX_COPIES: usize = 64;
/// Most memory spent on the extra copies of one operation's inputs.
pub(super) const MAX_ROTATION_BYTES: u64 = 4 << 30;
/// Most calls in one timed graph.
pub(super) const MAX_CALLS: usize = 64;
/// Fewest calls in one timed graph (a call with a neighbour on each side, as in a step).
pub(super) const MIN_CALLS: usize = 2;
/// Each timed graph runs at least this long, so the ~1–2 µs of event and graph-launch latency
/// left per sample is below 1% of it.
pub(super) const SAMPLE_TARGET_MS: f64 = 0.3;
/// A busy-wait before each timed sample, long enough for the host to queue the event pair and
/// the graph behind it: the start event then fires with the graph already waiting.
pub(super) const SPIN_NS: u64 = 50_000;
/// Graph replays per candidate (cuBLASLt algorithm, decode kernel variant) when choosing one;
/// the chosen one is then timed with the full count.
pub(super) const SELECT_REPS: usize = 3;
// Compute-bound jobs ([`Job::compute_bound`]) are timed under sustained load: on Hopper they
// draw the board's power cap, and the clock the power controller settles to is 7-19% below the
// boost clock a short burst after idle runs at (docs/ACCURACY.md, "How the tables are timed"). A
// serving GPU at capacity is under sustained load.
/// Heat-up before a compute-bound job's samples: its own graph replayed back to back this long.
/// The power controller has pulled the clock most of the way down by then (7-9% of the 9-12% at
/// 3 s for T = 512-1024 GEMMs on an H100). It is still moving: in a full run the time changes by
/// a median 1-1.5% (p90 5-7%) between 0.1 and 0.2 s (docs/ACCURACY.md, "How the tables are
/// timed"), hence the sampling window after it.
pub(super) const SUSTAIN_HEAT: Duration = Duration::from_millis(200);
/// After a heat-up, samples are taken for at least this long (and at least `reps` of them): under
/// the power cap the clock saws by ±7% over hundreds of milliseconds (an nvidia-smi trace on an
/// H200; docs/ACCURACY.md, "How the tables are timed"), and 30 samples of ~2 ms see one ~60 ms
/// phase of it. Later jobs of the same group (other paths) take `reps` samples at the clock this
/// one settled.
pub(super) const SUSTAIN_WINDOW: Duration = Duration::from_millis(150);
/// A later job of the same group starting within this of the last one's end needs no heat-up.
const SUSTAIN_GAP: Duration = Duration::from_millis(50);
/// A job that is not compute-bound, starting within this of a heated group's last sample
/// (the first small GEMM of a shape, after the previous shape's largest ones), first replays its
/// own graph for [`RECOVER_HEAT`]: right after sustained load the power controller holds the
/// clock down for a while, and these jobs are timed at their own steady clock.
pub(super) const RECOVER_AFTER: Duration = Duration::from_millis(1000);
/// See [`RECOVER_AFTER`].
pub(super) const RECOVER_HEAT: Duration = Duration::from_millis(200);
/// Each timed replay of a sustained job lasts at least this long, so the 30 samples span ~60 ms
/// of the controller's clock swings instead of ~9 ms.
pub(super) const SUSTAIN_SAMPLE_MS: f64 = 2.0;

/// What the back-to-back timer did, for the profile's method line.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RotationStats {
    pub(super) jobs: usize,
    /// Jobs whose copies cover less than 2 × L2 (the copy cap or the preallocated pool bit).
    pub(super) capped: usize,
    /// Largest per-copy input of a capped job, bytes.
    pub(super) capped_max_bytes: u64,
    /// Smallest rotated footprint (copies × bytes) of a capped job, bytes.
    pub(super) capped_min_footprint: u64,
    pub(super) min_calls: usize,
    pub(super) max_calls: usize,
}

/// The timing method and its state: the event pair, the L2 flush buffer, what rotation did so
/// far, and which heat-up group the GPU is under.
pub(super) struct Bench {
    pub(super) timing: Timing,
    pub(super) warmup: usize,
    pub(super) reps: usize,
    start: CudaEvent,
    end: CudaEvent,
    /// Overwritten before each isolated sample, to evict L2.
    pub(super) flush: Buf,
    pub(super) rot: Cell<RotationStats>,
    /// The job being timed's heat-up group ([`Job::sustain_group`]); `None` when it is not
    /// compute-bound.
    pub(super) sustain: Cell<Option<Job>>,
    /// (the group the GPU was last heated for, when its last bench ended): the next job of the
    /// same group within [`SUSTAIN_GAP`] needs no heat-up of its own.
    load: Cell<Option<(Job, Instant)>>,
}

impl Bench {
    pub(super) fn new(
        timing: Timing,
        reps: usize,
        start: CudaEvent,
        end: CudaEvent,
        flush: Buf,
    ) -> Bench {
        Bench {
            timing,
            warmup: 5,
            reps: reps.max(20),
            start,
            end,
            flush,
            rot: Default::default(),
            sustain: Default::default(),
            load: Default::default(),
        }
    }

    /// Milliseconds between the event pair.
    fn elapsed_ms(&self) -> Result<f64> {
        Ok(f64::from(
            self.start.elapsed_ms(&self.end).gpu("event time")?,
        ))
    }
}

impl CudaTimer {
    /// Copies of an operation's large inputs (`bytes` per call) to rotate over: enough that the
    /// copies together are at least twice the L2, at most [`MAX_COPIES`], at most
    /// [`MAX_ROTATION_BYTES`] in all and at most `room` (what preallocated buffers hold). One for
    /// isolated timing (the memset evicts L2 instead).
    pub(super) fn copies_for(&self, bytes: u64, room: usize) -> usize {
        if self.bench.timing == Timing::Isolated {
            return 1;
        }
        let bytes = bytes.max(1);
        let want = (ROTATE_L2X * self.dev.info.l2_bytes).div_ceil(bytes).max(1) as usize;
        let mem_cap = (MAX_ROTATION_BYTES / bytes).max(1) as usize;
        let copies = want.min(MAX_COPIES).min(mem_cap).min(room.max(1));
        let mut r = self.bench.rot.get();
        r.jobs += 1;
        if copies < want {
            let footprint = copies as u64 * bytes;
            r.capped_min_footprint = if r.capped == 0 {
                footprint
            } else {
                r.capped_min_footprint.min(footprint)
            };
            r.capped += 1;
            r.capped_max_bytes = r.capped_max_bytes.max(bytes);
        }
        self.bench.rot.set(r);
        copies
    }

    /// Median time of one call of `op`; `op(timer, i)` runs the call on copy `i` of `copies`.
    pub(super) fn bench(&self, copies: usize, op: Op) -> Result<f64> {
        let sustained = self.bench.sustain.get().is_some();
        self.bench_with(copies, op, self.bench.reps, sustained)
    }

    /// [`Self::bench`] with [`SELECT_REPS`] short samples and no heat-up: for choosing among
    /// candidates (the chosen one is timed again by [`Self::bench`]).
    pub(super) fn bench_select(&self, copies: usize, op: Op) -> Result<f64> {
        self.bench_with(copies, op, SELECT_REPS, false)
    }

    fn bench_with(&self, copies: usize, op: Op, reps: usize, sustained: bool) -> Result<f64> {
        let ms = match self.bench.timing {
            Timing::Isolated => self.bench_isolated(&|s| op(s, 0)),
            Timing::BackToBack => self.bench_back_to_back(copies, op, reps, sustained),
        };
        // A choice among candidates of a heated group keeps the GPU under that group's load.
        if let (Some(group), Some((heated, _))) = (self.bench.sustain.get(), self.bench.load.get())
            && group == heated
        {
            self.bench.load.set(Some((group, Instant::now())));
        }
        ms
    }

    /// Replay `graph` for [`SUSTAIN_HEAT`] unless the GPU was heated for the same group (one GEMM
    /// shape and token count, every path) less than [`SUSTAIN_GAP`] ago: the samples then see the
    /// clock the power cap settles to under this load, whatever ran before.
    /// Returns whether it heated (the first job of its group).
    fn heat(&self, graph: &CudaGraph) -> Result<bool> {
        let Some(group) = self.bench.sustain.get() else {
            return Ok(false);
        };
        let now = Instant::now();
        let warm = matches!(self.bench.load.get(), Some((g, last)) if g == group && now.duration_since(last) < SUSTAIN_GAP);
        if !warm {
            self.replay_for(graph, SUSTAIN_HEAT)?;
        }
        self.bench.load.set(Some((group, Instant::now())));
        Ok(!warm)
    }

    /// Replay `graph` for [`RECOVER_HEAT`] when a heated group's samples ended less than
    /// [`RECOVER_AFTER`] ago (then forget that group: later light jobs need no recovery).
    fn recover(&self, graph: &CudaGraph) -> Result<()> {
        if let Some((_, last)) = self.bench.load.get()
            && last.elapsed() < RECOVER_AFTER
        {
            self.replay_for(graph, RECOVER_HEAT)?;
            self.bench.load.set(None);
        }
        Ok(())
    }

    /// Replay `graph` back to back, in blocks of 8 with a synchronize after each, for `dur`.
    fn replay_for(&self, graph: &CudaGraph, dur: Duration) -> Result<()> {
        let now = Instant::now();
        while now.elapsed() < dur {
            for _ in 0..8 {
                graph.launch().gpu("graph launch")?;
            }
            self.dev.stream.synchronize().gpu("synchronize")?;
        }
        Ok(())
    }

    /// Back to back: a CUDA graph of R calls rotating over the copies, replayed `reps` times
    /// between one event pair each (after a busy-wait that lets the host queue it); median of
    /// elapsed / R. R: [`replay_calls`], sized for [`SAMPLE_TARGET_MS`] ([`SUSTAIN_SAMPLE_MS`]
    /// when `sustained`). `sustained`: the samples follow [`Self::heat`], and span at least
    /// [`SUSTAIN_WINDOW`] after a heat-up.
    fn bench_back_to_back(
        &self,
        copies: usize,
        op: Op,
        reps: usize,
        sustained: bool,
    ) -> Result<f64> {
        let target_ms = if sustained {
            SUSTAIN_SAMPLE_MS
        } else {
            SAMPLE_TARGET_MS
        };
        let copies = copies.clamp(1, MAX_COPIES);
        let calls = self.size_graph(copies, op, target_ms)?;
        let graph = self.capture(calls, copies, op)?;
        graph.upload().gpu("graph upload")?;
        graph.launch().gpu("graph launch")?;
        self.dev.stream.synchronize().gpu("synchronize")?;
        let window = if sustained && self.heat(&graph)? {
            SUSTAIN_WINDOW
        } else {
            Duration::ZERO
        };
        if self.bench.sustain.get().is_none() {
            self.recover(&graph)?;
        }
        let mut times = Vec::with_capacity(reps);
        let sampling = Instant::now();
        while times.len() < reps.max(1) || sampling.elapsed() < window {
            launch!(self.dev, "spin_ns", cfg((1, 1, 1), 32, 0); SPIN_NS)?;
            self.bench.start.record(&self.dev.stream).gpu("event")?;
            graph.launch().gpu("graph launch")?;
            self.bench.end.record(&self.dev.stream).gpu("event")?;
            times.push(self.bench.elapsed_ms()? / calls as f64);
        }
        Ok(median(times))
    }

    /// Warm up `op` (each copy once, at least `warmup` calls), estimate its time from three calls
    /// and return the calls per graph for `target_ms` ([`replay_calls`]), noting it for the
    /// method line.
    fn size_graph(&self, copies: usize, op: Op, target_ms: f64) -> Result<usize> {
        for i in 0..copies.max(self.bench.warmup) {
            op(self, i % copies)?;
        }
        // a rough per-call time, to size the graph
        self.bench.start.record(&self.dev.stream).gpu("event")?;
        for i in 0..3 {
            op(self, i % copies)?;
        }
        self.bench.end.record(&self.dev.stream).gpu("event")?;
        let est = self.bench.elapsed_ms()? / 3.0;
        let calls = replay_calls(est, target_ms, copies);
        let mut r = self.bench.rot.get();
        r.min_calls = if r.min_calls == 0 {
            calls
        } else {
            r.min_calls.min(calls)
        };
        r.max_calls = r.max_calls.max(calls);
        self.bench.rot.set(r);
        Ok(calls)
    }

    /// `calls` calls of `op` (copy `i % copies` each) captured into one graph.
    fn capture(&self, calls: usize, copies: usize, op: Op) -> Result<CudaGraph> {
        let stream = &self.dev.stream;
        stream.synchronize().gpu("synchronize")?;
        stream
            .begin_capture(dsys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .gpu("begin graph capture")?;
        let recorded = (0..calls).try_for_each(|i| op(self, i % copies));
        // end the capture also when a call failed, so the stream is usable again
        let graph = stream
            .end_capture(dsys::CUgraphInstantiate_flags(0))
            .gpu("graph capture");
        recorded?;
        graph?.ok_or_else(|| Error::Gpu("graph capture recorded nothing".into()))
    }

    /// Median of `reps` single-call CUDA-event timings, each after an L2-evicting memset.
    fn bench_isolated(&self, op: &dyn Fn(&Self) -> Result<()>) -> Result<f64> {
        for _ in 0..self.bench.warmup {
            op(self)?;
        }
        self.dev.stream.synchronize().gpu("synchronize")?;
        let flush = &self.bench.flush;
        let mut times = Vec::with_capacity(self.bench.reps);
        for i in 0..self.bench.reps {
            // SAFETY: flush is a live allocation of flush.bytes.
            unsafe {
                dres::memset_d8_async(
                    flush.ptr,
                    (i % 251 + 1) as u8,
                    flush.bytes,
                    self.dev.stream.cu_stream(),
                )
            }
            .gpu("L2 flush")?;
            self.bench.start.record(&self.dev.stream).gpu("event")?;
            op(self)?;
            self.bench.end.record(&self.dev.stream).gpu("event")?;
            times.push(self.bench.elapsed_ms()?);
        }
        Ok(median(times))
    }

    /// `calls` stream launches of `op` back to back between one event pair, median of `reps`.
    pub(super) fn bench_stream(&self, calls: usize, op: Op) -> Result<f64> {
        for i in 0..self.bench.warmup {
            op(self, i)?;
        }
        let mut times = Vec::with_capacity(self.bench.reps);
        for _ in 0..self.bench.reps {
            launch!(self.dev, "spin_ns", cfg((1, 1, 1), 32, 0); SPIN_NS)?;
            self.bench.start.record(&self.dev.stream).gpu("event")?;
            for i in 0..calls {
                op(self, i)?;
            }
            self.bench.end.record(&self.dev.stream).gpu("event")?;
            times.push(self.bench.elapsed_ms()? / calls as f64);
        }
        Ok(median(times))
    }
}

/// Calls in one timed graph: enough for `target_ms` at `est_ms` a call (at least the copies and
/// [`MIN_CALLS`], at most [`MAX_CALLS`]), then a whole number of rounds over the `copies`. With a
/// partial round the next replay would start on a copy read only a call or two before; whole
/// rounds give every copy the same reuse distance. (F.linear on an H200 showed no measurable
/// effect of the remainder: docs/ACCURACY.md, "How the tables are timed".)
pub(super) fn replay_calls(est_ms: f64, target_ms: f64, copies: usize) -> usize {
    let copies = copies.clamp(1, MAX_CALLS);
    let by_time = if est_ms > 0.0 {
        (target_ms / est_ms).ceil().min(MAX_CALLS as f64) as usize
    } else {
        MAX_CALLS
    };
    let calls = by_time.max(copies).clamp(MIN_CALLS, MAX_CALLS);
    let rounds = calls.div_ceil(copies);
    if rounds * copies <= MAX_CALLS {
        rounds * copies
    } else {
        (MAX_CALLS / copies) * copies
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[m],
        _ => (v[m - 1] + v[m]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_calls_are_whole_rounds_over_the_copies() {
        // o_proj at T = 64 on an H200: 4 copies, ~11.4 µs a call, 0.3 ms target: 27 calls by
        // time, rounded up to 28.
        assert_eq!(replay_calls(0.0114, 0.3, 4), 28);
        // qkv at T = 1: 3 copies, 20 by time -> 21.
        assert_eq!(replay_calls(0.0152, 0.3, 3), 21);
        // Rounding up would pass the cap: round down instead (64 by time, 3 copies -> 63).
        assert_eq!(replay_calls(0.001, 0.3, 3), 63);
        // One copy: at least MIN_CALLS.
        assert_eq!(replay_calls(5.0, 0.3, 1), MIN_CALLS);
        // A failed estimate sizes for the cap.
        assert_eq!(replay_calls(0.0, 0.3, 5), 60);
        for copies in 1..=MAX_COPIES {
            for est in [0.0, 0.001, 0.01, 0.05, 0.3, 3.0] {
                let calls = replay_calls(est, 2.0, copies);
                assert_eq!(calls % copies, 0, "{copies} copies, {est} ms: {calls}");
                assert!((MIN_CALLS.max(copies)..=MAX_CALLS).contains(&calls));
            }
        }
    }
}
