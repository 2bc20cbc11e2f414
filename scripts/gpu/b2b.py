"""The calibrator's back-to-back timing method in PyTorch, for the diagnosis scripts.

A CUDA graph of R calls rotating over S copies of the op's large inputs, replayed between one
event pair after a ~50 us busy-wait; time = elapsed / R; median of 30 replays (see
src/calibrate/cuda.rs, `bench_back_to_back`). Used by reference.py (the acceptance comparison)
and the diagnosis scripts; copy it next to them when they run from a copy.
"""
import math
import statistics

import torch

props = torch.cuda.get_device_properties(0)
L2 = getattr(props, "L2_cache_size", 50 << 20)
REPS, WARM, MAX_COPIES, MAX_CALLS, TARGET_MS = 30, 5, 64, 64, 0.3
SPIN = int(50e-6 * props.clock_rate * 1e3) if getattr(props, "clock_rate", 0) else 100_000


def bench(fn, copies):
    """Median time of one call of `fn(i)` (i = the copy to use, of `copies`), back to back."""
    copies = max(1, min(copies, MAX_COPIES))
    for i in range(max(copies, WARM)):
        fn(i % copies)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for i in range(3):
        fn(i % copies)
    e.record()
    e.synchronize()
    est = s.elapsed_time(e) / 3
    calls = min(MAX_CALLS, max(2, copies, math.ceil(TARGET_MS / est) if est > 0 else MAX_CALLS))
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        for i in range(min(copies, 3)):
            fn(i)
    torch.cuda.current_stream().wait_stream(st)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i % copies)
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(REPS):
        torch.cuda._sleep(SPIN)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) / calls)
    del g
    return statistics.median(ts)
