"""Which busy-wait before each sample moves the calibrator's method to F.linear's level?

Usage: python3 scripts/gpu/diag_trigger.py  (prints one line per variant)

diag-factors-h200.md (machine L): once torch holds its weight copies, torch's busy-wait
(`torch.cuda._sleep`) before each sample slows the calibrator's method (driver API + cuBLAS by
ctypes) at o_proj T = 8 from 0.0127 to 0.0134 ms. This holds torch's copies and times that method
with no busy-wait, with torch's `_sleep`, with a one-element torch add instead, and with the
calibrator's own busy-wait kernel (`spin_ns` from kernels/util.cu, compiled by NVRTC here and
launched through the driver API, not torch). Single measurements, ms per call.
"""
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402
import torch  # noqa: E402

import b2b  # noqa: E402

n = k = 4096
w, x, y = dp.operands(n, k)
copies = len(w)
keep = b2b.weights(n, k, copies)  # what switches torch's busy-wait to the slow level
one = torch.zeros(1, device="cuda")
torch.cuda.synchronize()

calib_spin = dp.spin_hook()


def torch_sleep(st):
    with torch.cuda.stream(torch.cuda.ExternalStream(int(st))):
        torch.cuda._sleep(b2b.SPIN)


def torch_add(st):
    with torch.cuda.stream(torch.cuda.ExternalStream(int(st))):
        one.add_(1)


for label, hook in [("no busy-wait", None), ("torch _sleep", torch_sleep), ("one-element torch add", torch_add),
                    ("calibrator's spin_ns (driver API)", calib_spin), ("no busy-wait again", None)]:
    v = [dp.bench(lambda i, st: dp.gemm(w[i], x, y, n, k, 8, st), copies, before_sample=hook) for _ in range(3)]
    print(f"{label}: " + " ".join(f"{a:.4f}" for a in v), flush=True)
