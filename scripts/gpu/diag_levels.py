"""One process's F.linear level at the small points that differ most between processes.

Usage: python3 scripts/gpu/diag_levels.py LABEL  (prints one table row; run it in several fresh
processes, and between calibrator runs, on one machine)

qkv T = 1 read 0.0150 ms on one H200 and 0.0166 ms on another in this session's calls, each steady
within its call; the calibrator read 0.0157 and 0.0151 there (diag-calls-h200.md). This tells
whether the level belongs to a process (differs between fresh processes on one machine) or to the
machine and the moment (drifts smoothly).
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

dev = torch.device("cuda")
cells = []
for n, k, tokens in [(6144, 4096, (1, 64)), (4096, 4096, (16, 64))]:
    ws = b2b.weights(n, k)
    for T in tokens:
        x = (torch.rand(T, k, device=dev) * 2 - 1).half()
        cells.append(statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), len(ws)) for _ in range(3)))
    del ws
print(f"| {sys.argv[1] if len(sys.argv) > 1 else ''} | {time.strftime('%H:%M:%S')} | "
      + " | ".join(f"{c:.4f}" for c in cells) + " |", flush=True)
