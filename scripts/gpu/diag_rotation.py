"""Does the number of rotated weight copies change a small memory-bound GEMM's time?

Usage: python3 scripts/gpu/diag_rotation.py OUT.md

The calibrator and the references rotate over S copies of a layer's weights with S x bytes >= 2x L2
(b2b.py). For the smallest llama-3.1-8b layer (o_proj, 32 MB) that is 4 copies, 2.6x (H100) or 2.1x
(H200) the L2, and cardplan's o_proj T = 16 point sits ~9% below F.linear's on both GPUs. This
times F.linear at T = 1, 16, 64 with S = 2x, 4x and 8x L2 worth of copies: if the time moves with
S, part of the weight reads hit in L2 and the 2x rule is too tight for small layers.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from b2b import L2, bench  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-rotation.md"
dev = torch.device("cuda")
lines = [f"# Rotated copies vs time, {torch.cuda.get_device_name(0)} (L2 {L2 >> 20} MB)", "",
         "| n | k | T | S (2x L2) ms | S (4x L2) ms | S (8x L2) ms | copies |", "|---|---|---|---|---|---|---|"]
for n, k in [(4096, 4096), (6144, 4096)]:
    nbytes = 2 * n * k
    counts = [min(64, -(-f * L2 // nbytes)) for f in (2, 4, 8)]
    ws = [((torch.rand(n, k, device=dev) * 2 - 1) * 0.05).half() for _ in range(max(counts))]
    for T in (1, 16, 64):
        x = (torch.rand(T, k, device=dev) * 2 - 1).half()
        got = [bench(lambda i: F.linear(x, ws[i]), S) for S in counts]
        lines.append(f"| {n} | {k} | {T} | " + " | ".join(f"{v:.4f}" for v in got) + f" | {counts} |")
        print(lines[-1], flush=True)
    del ws
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
