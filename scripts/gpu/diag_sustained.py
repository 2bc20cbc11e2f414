"""Burst vs sustained speed of the same fp16 GEMM (H100/H200 run power-limited under tensor-core load).

Usage: python3 scripts/gpu/diag_sustained.py OUT.md

For each shape: a CUDA graph of back-to-back F.linear calls (rotating weight copies over 2x L2).
"burst" = the median of the first 3 replays after 2 s idle; "sustained" = the median of the
last 10 replays of 3 s of continuous replays. Their ratio is the derating a long compute-bound
step (a large prefill) sees against the calibrator's per-point timings.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from b2b import L2  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-sustained.md"
dev = torch.device("cuda")
lines = [f"# Burst vs sustained fp16 GEMM on {torch.cuda.get_device_name(0)}", "",
         "| n | k | T | burst ms/call | sustained ms/call | sustained / burst |", "|---|---|---|---|---|---|"]
for n, k, T in [(6144, 4096, 512), (28672, 4096, 512), (4096, 14336, 512), (28672, 4096, 4096), (4096, 14336, 4096)]:
    S = max(1, min(64, -(-2 * L2 // (2 * n * k))))
    ws = [((torch.rand(n, k, device=dev) * 2 - 1) * 0.05).half() for _ in range(S)]
    x = (torch.rand(T, k, device=dev) * 2 - 1).half()
    calls = max(8, S)
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        for i in range(S):
            F.linear(x, ws[i])
    torch.cuda.current_stream().wait_stream(st)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            F.linear(x, ws[i % S])
    g.replay()
    torch.cuda.synchronize()

    def one():
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        return s.elapsed_time(e) / calls

    time.sleep(2.0)
    burst = statistics.median([one() for _ in range(3)])
    t0, tail = time.time(), []
    while time.time() - t0 < 3.0:
        tail.append(one())
    sus = statistics.median(tail[-10:])
    lines.append(f"| {n} | {k} | {T} | {burst:.4f} | {sus:.4f} | {sus / burst:.3f} |")
    print(lines[-1], flush=True)
    del g, ws, x
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
