"""Does the memory a process holds move the small fp16 GEMMs (o_proj, qkv at T = 1-64)?

Usage: python3 scripts/gpu/diag_ballast.py  (prints one line per step)

diag-factors-h200.md: the calibrator's method (driver API + cuBLAS by ctypes) reads o_proj T = 8
at 0.0126-0.0130 ms, and at F.linear's 0.0133-0.0140 ms once torch holds its weight copies and a
kernel runs before each timed replay. This process holds more and more device memory from
cuMemAlloc (filled, no torch), and times that method with and without the calibrator's busy-wait
(`spin_ns` through the driver API) after each step; then torch's weight copies as a control, and
F.linear as reference.py times it. Medians of 3 measurements, ms per call.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402

cu = dp.cu
LAYERS = [("qkv_proj", 6144, 4096), ("o_proj", 4096, 4096)]
TOKENS = (1, 8, 16, 64)
ops = {name: (n, k, dp.operands(n, k)) for name, n, k in LAYERS}
spin = dp.spin_hook()


def row(label):
    for hook_name, hook in (("plain", None), ("spin", spin)):
        cells = []
        for name, (n, k, (w, x, y)) in ops.items():
            for t in TOKENS:
                v = statistics.median(dp.bench(lambda i, st: dp.gemm(w[i], x, y, n, k, t, st), len(w),
                                               before_sample=hook) for _ in range(3))
                cells.append(f"{name} T={t} {v:.4f}")
        print(f"{label}, {hook_name}: " + " | ".join(cells), flush=True)


row("no ballast")
free, total = dp.ok(cu.cuMemGetInfo())
held = []
for gb in (0.5, 8, None):  # None: all but 4 GB of what is free
    free = dp.ok(cu.cuMemGetInfo())[0]
    nbytes = int(gb * 2**30) if gb is not None else free - (4 << 30)
    p = dp.ok(cu.cuMemAlloc(nbytes))
    dp.ok(cu.cuMemsetD8(p, 0x3C, nbytes))
    held.append(p)
    row(f"+ {nbytes / 2**30:.1f} GB cuMemAlloc (held {sum(1 for _ in held)} blocks)")
for p in held:
    dp.ok(cu.cuMemFree(p))
row("ballast freed")
row("ballast freed, again")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import b2b  # noqa: E402

keep = {name: b2b.weights(n, k, len(w)) for name, (n, k, (w, x, y)) in ops.items()}
torch.cuda.synchronize()
row("torch weight copies held (control)")
cells = []
for name, (n, k, (w, x, y)) in ops.items():
    tx = (torch.rand(64, k, device="cuda") * 2 - 1).half()
    for t in TOKENS:
        v = statistics.median(b2b.bench(lambda i: F.linear(tx[:t], keep[name][i]), len(w)) for _ in range(3))
        cells.append(f"{name} T={t} {v:.4f}")
print("F.linear (b2b.bench): " + " | ".join(cells), flush=True)
