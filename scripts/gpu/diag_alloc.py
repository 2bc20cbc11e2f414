"""Does how torch places the weights change a small GEMM's time?

Usage: python3 scripts/gpu/diag_alloc.py OUT.md  (run again with
PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync for the stream-ordered pool the calibrator uses)

At T = 16 and 64 the calibrator's cublasGemmEx reads 5-8% below F.linear on the H200, with the
same kernel; busy-wait length, replay length and history do not explain it (diag-spin, diag-history).
This times F.linear with the weight copies placed three ways: as reference.py makes them (an
fp32 draw cast to fp16, per copy), drawn in place in fp16 (no fp32 temporary between copies), and
as slices of one contiguous allocation.
"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-alloc.md"
dev = torch.device("cuda")
conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default")
lines = [f"# Weight placement vs F.linear time, {torch.cuda.get_device_name(0)}, allocator {conf}", "",
         "ms per call, b2b.bench, median of 3 measurements.", "",
         "| layer | T | fp32 draw cast per copy | fp16 in place | slices of one allocation |", "|---|---|---|---|---|"]


def placements(n, k, s):
    yield b2b.weights(n, k, s)
    yield [torch.empty(n, k, device=dev, dtype=torch.half).uniform_(-0.05, 0.05) for _ in range(s)]
    big = torch.empty(s, n, k, device=dev, dtype=torch.half).uniform_(-0.05, 0.05)
    yield [big[i] for i in range(s)]


for name, n, k in [("qkv_proj", 6144, 4096), ("o_proj", 4096, 4096), ("down_proj", 4096, 14336)]:
    s = b2b.rotation_copies(2 * n * k)
    res = {T: [] for T in (16, 64)}
    for ws in placements(n, k, s):
        for T in res:
            x = (torch.rand(T, k, device=dev) * 2 - 1).half()
            res[T].append(statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), s) for _ in range(3)))
        del ws
        torch.cuda.empty_cache()
    for T, v in res.items():
        lines.append(f"| {name} | {T} | " + " | ".join(f"{t:.4f}" for t in v) + " |")
        print(lines[-1], flush=True)
open(out_md, "w").write("\n".join(lines) + "\n")
