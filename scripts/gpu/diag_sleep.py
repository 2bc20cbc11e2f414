"""Does launching torch's busy-wait kernel before each sample slow F.linear's small points?

Usage: python3 scripts/gpu/diag_sleep.py  (prints one table)

diag-factors-h200.md: with torch's weight copies allocated in the process, b2b.bench's busy-wait
(torch.cuda._sleep) before each sample moved the calibrator's own method, replayed through the
driver API, from 0.0127 to 0.0134 ms at o_proj T = 8; without the busy-wait it read 0.0127 ms
again. This times F.linear by b2b.bench with the busy-wait as reference.py uses it (~50 us), with
a zero-length one (the kernel launched, no wait) and with none (no kernel; the host's launch
latency then falls inside the sample), in that order and back. Median of 3, ms per call.
"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

VARIANTS = [("~50 us busy-wait", None), ("_sleep(0)", 0), ("no busy-wait", -1), ("~50 us again", None)]
print("| layer | T | " + " | ".join(v[0] for v in VARIANTS) + " |")
print("|---|---|" + "---|" * len(VARIANTS))
for name, n, k, tokens in [("o_proj", 4096, 4096, (8, 16, 64)), ("qkv_proj", 6144, 4096, (1, 64))]:
    ws = b2b.weights(n, k)
    for t in tokens:
        x = (torch.rand(t, k, device="cuda") * 2 - 1).half()
        v = [statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), len(ws), spin=sp) for _ in range(3))
             for _, sp in VARIANTS]
        print(f"| {name} | {t} | " + " | ".join(f"{a:.4f}" for a in v) + " |", flush=True)
    del ws
