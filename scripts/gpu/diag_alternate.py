"""F.linear at the small points of a `cardplan calibrate --quick` raw, right after that run.

Usage: python3 scripts/gpu/diag_alternate.py QUICK-RAW.json  (prints one table row per point)

The small fp16 points drift with the GPU's state by 5-7% over tens of seconds
(diag-process-h200.md). Run alternately with the calibrator, in one device call, this times
both sides close together: calibrate --quick, this, calibrate --quick, this, ... F.linear by
b2b.bench, median of 3.
"""
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

raw = json.load(open(sys.argv[1]))
dev = torch.device("cuda")
ours = {(t["n"], t["k"], t["tokens"]): t["ms"] for t in raw["timed"]
        if t["job"] == "gemm" and t["path"] == "fp16-cublas-gemmex" and t["tokens"] <= 64}
for n, k in sorted({(n, k) for n, k, _ in ours}, key=lambda s: s[0] * s[1]):
    ws = b2b.weights(n, k)
    s = len(ws)
    for T in sorted(t for nn, kk, t in ours if (nn, kk) == (n, k)):
        x = (torch.rand(T, k, device=dev) * 2 - 1).half()
        r = statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), s) for _ in range(3))
        o = ours[(n, k, T)]
        print(f"| {n} | {k} | {T} | {o:.4f} | {r:.4f} | {o / r:.3f} |", flush=True)
    del ws
    torch.cuda.empty_cache()
