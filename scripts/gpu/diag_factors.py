"""Which of F.linear's differences from the calibrator's method moves o_proj's small points?

Usage: python3 scripts/gpu/diag_factors.py OUT.md

In one process, the calibrator's method through the driver API and cuBLAS by ctypes reads o_proj
T = 8-16 3-6% below F.linear (diag-switch-h200.md), with node-for-node identical graphs. This
changes one thing at a time, from the driver-API method towards b2b.bench's F.linear: the
busy-wait before each sample, torch's cuBLAS handle, torch-allocated weights, torch's capture and
replay, and then F.linear itself. Median of 3 per cell, ms per call.
"""
import os
import statistics
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

dp.torch = torch  # diag_process's "torch" mode uses it
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-factors.md"
n = k = 4096
w, x, y = dp.operands(n, k)
copies = len(w)
tw = b2b.weights(n, k, copies)
tx = (torch.rand(64, k, device="cuda") * 2 - 1).half()
torch.cuda.synchronize()
th = torch.cuda.current_blas_handle()


def spin(st):
    if int(st) in (0, 1):  # the legacy stream: torch's current one in "torch" mode
        torch.cuda._sleep(b2b.SPIN)
        return
    with torch.cuda.stream(torch.cuda.ExternalStream(int(st))):
        torch.cuda._sleep(b2b.SPIN)


cols = ["driver API (calibrator's steps)", "+ busy-wait", "+ torch's cuBLAS handle", "+ torch's weights",
        "+ torch.cuda.graph capture and replay", "F.linear (b2b.bench)", "driver API again"]
lines = [f"# From the calibrator's method to F.linear, one change at a time, {dp.name}", "",
         "o_proj (4096 x 4096), ms per call, median of 3; each column keeps the changes to its left.", "",
         "| T | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
med = lambda f: statistics.median(f() for _ in range(3))  # noqa: E731
for t in (8, 16, 64):
    plain = lambda i, st: dp.gemm(w[i], x, y, n, k, t, st)  # noqa: E731
    own_w = lambda i, st: dp.gemm(w[i], x, y, n, k, t, st, th)  # noqa: E731
    torch_w = lambda i, st: dp.gemm(tw[i].data_ptr(), x, y, n, k, t, st, th)  # noqa: E731
    xt = tx[:t]
    v = [med(lambda: dp.bench(plain, copies)),
         med(lambda: dp.bench(plain, copies, before_sample=spin)),
         med(lambda: dp.bench(own_w, copies, before_sample=spin)),
         med(lambda: dp.bench(torch_w, copies, before_sample=spin)),
         med(lambda: dp.bench(torch_w, copies, "torch", before_sample=spin)),
         med(lambda: b2b.bench(lambda i: F.linear(xt, tw[i]), copies)),
         med(lambda: dp.bench(plain, copies))]
    lines.append(f"| {t} | " + " | ".join(f"{a:.4f}" for a in v) + " |")
    print(lines[-1], flush=True)
open(out_md, "w").write("\n".join(lines) + "\n")
