"""Does the size of the timed graph (R calls over S weight copies) move a small GEMM's time?

Usage: python3 scripts/gpu/diag_calls.py OUT.md

With R not a multiple of S, a replay ends part-way through a round and the next replay starts on
a copy read only a call or two before. Where a copy is smaller than L2 (o_proj: 32 MiB, qkv:
48 MiB, against 60 MiB on an H200) that call can find its weights still in L2. The two sides
sized R from their own first estimate (the calibrator's Rust launches are faster than torch's
eager ones), so they could land on different remainders. This times F.linear at the small points
with R forced to each value in a range, three passes (up, down, up), median per cell.
"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-calls.md"
dev = torch.device("cuda")
CALLS = list(range(16, 30))
POINTS = [("qkv_proj", 6144, 4096, (1, 64)), ("o_proj", 4096, 4096, (16, 64)), ("down_proj", 4096, 14336, (16,))]
lines = [f"# Timed-graph size vs F.linear time, {torch.cuda.get_device_name(0)}", "",
         "ms per call, b2b.bench with R forced; median of 3 passes (R up, down, up). S = weight copies; "
         "`auto` = b2b.bench's own R (whole rounds) and its time.", "",
         "| layer | T | S | " + " | ".join(f"R={c}" for c in CALLS) + " | auto R | auto ms |",
         "|---|---|---|" + "---|" * (len(CALLS) + 2)]
for name, n, k, tokens in POINTS:
    ws = b2b.weights(n, k)
    s = len(ws)
    for T in tokens:
        x = (torch.rand(T, k, device=dev) * 2 - 1).half()
        fn = lambda i: F.linear(x, ws[i])  # noqa: E731
        res = {c: [] for c in CALLS}
        for p in range(3):
            for c in (CALLS if p % 2 == 0 else CALLS[::-1]):
                res[c].append(b2b.bench(fn, s, calls=c))
        # b2b.bench's own R: the same estimate it makes, then whole rounds
        auto_r = b2b.replay_calls(b2b.estimate(fn, s, warm=False), b2b.TARGET_MS, s)
        auto = statistics.median(b2b.bench(fn, s) for _ in range(3))
        lines.append(f"| {name} | {T} | {s} | " + " | ".join(f"{statistics.median(res[c]):.4f}" for c in CALLS)
                     + f" | {auto_r} | {auto:.4f} |")
        print(lines[-1], flush=True)
    del ws
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
