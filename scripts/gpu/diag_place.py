"""Does where a weight set lands in memory move a small GEMM's time?

Usage: python3 scripts/gpu/diag_place.py OUT.md

The small fp16 points differ between the calibrator and F.linear by up to 8%, in either direction
from one machine to the next (diag-alternate-h200.md, diag-calls-h200.md); gate_up at T = 1 (one
copy, no rotation) shows two steady levels 9% apart. Each process allocates its own weights. This
times F.linear on 8 weight sets drawn one after another and all kept alive (so each lands on new
memory), then the first set again, median of 3 each.
"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-place.md"
dev = torch.device("cuda")
SETS = 8
lines = [f"# Weight placement (fresh sets, all kept alive) vs F.linear time, {torch.cuda.get_device_name(0)}", "",
         "ms per call, b2b.bench, median of 3; S = copies per set.", "",
         "| layer | T | S | " + " | ".join(f"set {i}" for i in range(SETS)) + " | set 0 again | spread |",
         "|---|---|---|" + "---|" * (SETS + 2)]
for name, n, k, T in [("o_proj", 4096, 4096, 16), ("o_proj", 4096, 4096, 64), ("qkv_proj", 6144, 4096, 1),
                      ("gate_up_proj", 28672, 4096, 1)]:
    x = (torch.rand(T, k, device=dev) * 2 - 1).half()
    sets = [b2b.weights(n, k) for _ in range(SETS)]
    s = len(sets[0])
    ts = [statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), s) for _ in range(3)) for ws in sets]
    again = statistics.median(b2b.bench(lambda i: F.linear(x, sets[0][i]), s) for _ in range(3))
    lines.append(f"| {name} | {T} | {s} | " + " | ".join(f"{t:.4f}" for t in ts)
                 + f" | {again:.4f} | {max(ts) / min(ts) - 1:.1%} |")
    print(lines[-1], flush=True)
    del sets
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
