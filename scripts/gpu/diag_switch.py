"""Does something torch does in a process slow the calibrator's small GEMMs down?

Usage: python3 scripts/gpu/diag_switch.py OUT.md

In diag-process-h200.md (session 8, calls 4 and 5) the calibrator's method, replayed through the
driver API and cuBLAS by ctypes in a Python process, read o_proj T = 8 at the calibrator's level
(0.0127-0.0128 ms) until the column captured by torch.cuda.graph ran, and at F.linear's level
(0.0132-0.0138 ms) in every column after it. This times that driver-API method (diag_process.py's
`bench`, no torch involved) in one process: before torch is imported, then after each step torch
takes (import and CUDA init, one eager F.linear, one torch.cuda.graph capture and replay), and
finally F.linear itself by b2b.bench. Median of 3 per cell, ms per call.
"""
import os
import statistics
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402  (the driver context, cuBLAS handle and `bench`)

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-switch.md"
POINTS = [(4096, 4096, 8), (4096, 4096, 16), (4096, 4096, 64), (6144, 4096, 1)]
bufs = {}
for n, k in {(n, k) for n, k, _ in POINTS}:
    bufs[(n, k)] = dp.operands(n, k)


def driver_row():
    cells = []
    for n, k, t in POINTS:
        w, x, y = bufs[(n, k)]
        cells.append(statistics.median(
            dp.bench(lambda i, st: dp.gemm(w[i], x, y, n, k, t, st), len(w)) for _ in range(3)))
    return cells


rows = [("driver API, before torch is imported", driver_row())]
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.zeros(1, device="cuda")
torch.cuda.synchronize()
rows.append(("after `import torch` and CUDA init", driver_row()))
tw = {(n, k): ((torch.rand(n, k, device="cuda") * 2 - 1) * 0.05).half() for n, k in bufs}
tx = {(n, k): (torch.rand(64, k, device="cuda") * 2 - 1).half() for n, k in bufs}
for key in bufs:
    F.linear(tx[key][:8], tw[key])
torch.cuda.synchronize()
rows.append(("after one eager F.linear per shape", driver_row()))
for key in bufs:
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        F.linear(tx[key][:8], tw[key])
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        F.linear(tx[key][:8], tw[key])
    g.replay()
    torch.cuda.synchronize()
    del g
rows.append(("after a torch.cuda.graph capture and replay per shape", driver_row()))
import b2b  # noqa: E402

fl = []
for n, k, t in POINTS:
    ws = b2b.weights(n, k)
    x = (torch.rand(t, k, device="cuda") * 2 - 1).half()
    fl.append(statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), len(ws)) for _ in range(3)))
    del ws
rows.append(("F.linear (b2b.bench)", fl))
rows.append(("driver API again", driver_row()))

lines = [f"# The calibrator's method by driver API, around torch's steps in one process, {dp.name}", "",
         "ms per call, median of 3 (diag_process.py's `bench`: the calibrator's steps, no busy-wait).", "",
         "| step | " + " | ".join(f"{'o_proj' if n == 4096 else 'qkv'} T={t}" for n, k, t in POINTS) + " |",
         "|---|" + "---|" * len(POINTS)]
for label, cells in rows:
    lines.append(f"| {label} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    print(lines[-1], flush=True)
open(out_md, "w").write("\n".join(lines) + "\n")
