"""Kernel time and the gaps between kernels inside F.linear's timed graph (torch profiler, CUPTI).

Usage: python3 scripts/gpu/diag_gaps.py OUT.md

The calibrator reads small GEMMs 0.5-1 us per call faster than F.linear, with the same kernels
(diag-copies-h200.md). If F.linear's graph spends that time between kernels (launch gaps) and
its kernels run as long as the calibrator's whole per-call time, the difference is in how the
graphs launch, not in the kernels. This replays b2b's graph under the profiler and splits each
call's time into kernel execution and the gap before the next kernel.
"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-gaps.md"
dev = torch.device("cuda")
lines = [f"# Kernels and gaps in F.linear's timed graph, {torch.cuda.get_device_name(0)}", "",
         "b2b.bench: ms per call (CUDA events). Profiled: 5 replays of the same graph under torch.profiler; "
         "kernels per call, their summed duration per call, and the idle time between consecutive kernels "
         "per call (all in us).", "",
         "| layer | T | b2b ms/call | kernels/call | kernel us/call | gap us/call | gaps: min, median, max us |",
         "|---|---|---|---|---|---|---|"]
for name, n, k, T in [("o_proj", 4096, 4096, 1), ("o_proj", 4096, 4096, 16), ("o_proj", 4096, 4096, 64),
                      ("qkv_proj", 6144, 4096, 1), ("qkv_proj", 6144, 4096, 64), ("down_proj", 4096, 14336, 16),
                      ("gate_up_proj", 28672, 4096, 1)]:
    ws = b2b.weights(n, k)
    s = len(ws)
    x = (torch.rand(T, k, device=dev) * 2 - 1).half()
    fn = lambda i: F.linear(x, ws[i])  # noqa: E731
    t = statistics.median(b2b.bench(fn, s) for _ in range(3))
    calls = b2b.replay_calls(t, b2b.TARGET_MS, s)
    g = b2b.capture(fn, calls, s)
    g.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            torch.cuda._sleep(b2b.SPIN)
            g.replay()
        torch.cuda.synchronize()
    ev = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                 and "sleep" not in e.name.lower() and e.time_range.elapsed_us() > 0),
                key=lambda e: e.time_range.start)
    kern = [e for e in ev if "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
    per_replay = len(kern) / 5
    gaps = []
    for a, b in zip(kern, kern[1:]):
        gap = b.time_range.start - a.time_range.end
        if gap < 20:  # within a replay (replays are separated by the ~50 us sleep)
            gaps.append(gap)
    busy = sum(e.time_range.elapsed_us() for e in kern) / (5 * calls)
    lines.append(f"| {name} | {T} | {t:.4f} | {per_replay / calls:.1f} | {busy:.2f} | "
                 f"{sum(gaps) / (5 * calls):.2f} | {min(gaps) if gaps else 0:.2f}, {statistics.median(gaps) if gaps else 0:.2f}, "
                 f"{max(gaps) if gaps else 0:.2f} |")
    print(lines[-1], flush=True)
    del ws, g
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
