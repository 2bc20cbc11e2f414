"""The calibrator's back-to-back timing method in PyTorch, for reference.py and flinear_worker.py.

A CUDA graph of R calls rotating over S copies of the op's large inputs (R a whole number of
rounds over the copies), replayed between one event pair after a ~50 us busy-wait;
time = elapsed / R; median of 30 replays (see src/calibrate/cuda/timing.rs, `bench_back_to_back`).
Compute-bound ops (`sustained=True`: GEMMs at >= 128 tokens, prefill attention) are timed as the
calibrator times them, under sustained load: each replay lasts >= 2 ms, and the samples follow
0.2 s of the graph replayed back to back and span at least 0.15 s, so the clock is the one the
board's power cap settles to, not a burst's boost clock, averaged over its swings; a light op
timed within 1 s of such samples first replays its own graph for 0.2 s (the clock recovers from
the cap). Why: docs/ACCURACY.md, "How the tables are timed". Copy it next to reference.py and
flinear_worker.py when they run from a copy (scripts/gpu/run.sh).
"""
import math
import statistics
import time

import torch

props = torch.cuda.get_device_properties(0)
L2 = getattr(props, "L2_cache_size", 50 << 20)
REPS, WARM, MAX_COPIES, MAX_CALLS, TARGET_MS = 30, 5, 64, 64, 0.3
SUSTAIN_TARGET_MS, SUSTAIN_HEAT_S, SUSTAIN_WINDOW_S, COMPUTE_BOUND_MIN_TOKENS = 2.0, 0.2, 0.15, 128
RECOVER_AFTER_S, RECOVER_HEAT_S = 1.0, 0.2
_last_sustained = [0.0]  # when the last sustained bench's samples ended (time.time())
SPIN = int(50e-6 * props.clock_rate * 1e3) if getattr(props, "clock_rate", 0) else 100_000


def rotation_copies(nbytes):
    """Copies of an input of `nbytes` that together cover 2x L2 (at most MAX_COPIES): the
    calibrator's rotation depth."""
    return max(1, min(MAX_COPIES, -(-2 * L2 // max(1, int(nbytes)))))


def weights(n, k, count=None):
    """`count` fp16 n x k weight copies (default: rotation_copies(2nk)), drawn as cardplan draws
    its own: uniform in [-0.05, 0.05), drawn in fp32, then cast."""
    count = rotation_copies(2 * n * k) if count is None else count
    return [((torch.rand(n, k, device="cuda") * 2 - 1) * 0.05).half() for _ in range(count)]


def capture(fn, calls, copies=1, warm=None):
    """`calls` calls of `fn(i)` (copy i % copies) captured into one CUDA graph, after `warm`
    warm-up calls (default: each copy once, at most 3) on a side stream, as torch requires."""
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        for i in range(min(copies, 3) if warm is None else warm):
            fn(i % copies)
    torch.cuda.current_stream().wait_stream(st)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i % copies)
    return g


def replay_calls(est, target, copies):
    """Calls in one timed graph, as the calibrator sizes it (`replay_calls` in src/calibrate/cuda/timing.rs): enough
    for `target` ms at `est` ms a call, at least `copies` and 2, at most MAX_CALLS, then a whole
    number of rounds over the copies."""
    calls = min(MAX_CALLS, max(2, copies, math.ceil(target / est) if est > 0 else MAX_CALLS))
    up = -(-calls // copies) * copies
    return up if up <= MAX_CALLS else MAX_CALLS // copies * copies


def estimate(fn, copies, warm=True):
    """A rough time of one call (ms): three calls of `fn(i)` launched back to back, after a warm-up
    of each copy once (at least WARM calls) unless `warm` is False. It sizes the timed graph."""
    copies = max(1, min(copies, MAX_COPIES))
    if warm:
        for i in range(max(copies, WARM)):
            fn(i % copies)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for i in range(3):
        fn(i % copies)
    e.record()
    e.synchronize()
    return s.elapsed_time(e) / 3


def bench(fn, copies, sustained=False, heat_s=None):
    """Median time of one call of `fn(i)` (i = the copy to use, of `copies`), back to back;
    `sustained`: under sustained load, as the calibrator times compute-bound jobs (heated for
    `heat_s`, default SUSTAIN_HEAT_S)."""
    copies = max(1, min(copies, MAX_COPIES))
    est = estimate(fn, copies)
    calls = replay_calls(est, SUSTAIN_TARGET_MS if sustained else TARGET_MS, copies)
    g = capture(fn, calls, copies)
    g.replay()
    torch.cuda.synchronize()
    heat = SUSTAIN_HEAT_S if heat_s is None else heat_s
    if not sustained and time.time() - _last_sustained[0] < RECOVER_AFTER_S:
        heat = RECOVER_HEAT_S  # right after sustained load: let the clock recover, as the calibrator does
        _last_sustained[0] = 0.0
    elif not sustained:
        heat = 0.0
    t0 = time.time()
    while time.time() - t0 < heat:
        for _ in range(8):
            g.replay()
        torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    t0 = time.time()
    while len(ts) < REPS or (sustained and time.time() - t0 < SUSTAIN_WINDOW_S):
        torch.cuda._sleep(SPIN)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) / calls)
    if sustained:
        _last_sustained[0] = time.time()
    del g
    return statistics.median(ts)
