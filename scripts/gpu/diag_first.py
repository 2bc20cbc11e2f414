"""When does the calibrator's method at o_proj T = 8 leave its fast level in a Python process?

Usage: python3 scripts/gpu/diag_first.py [handle|weights|both]  (prints one line per step; with an
argument: first take torch's cuBLAS handle, draw b2b's weight copies, or both, as diag_factors.py
did before its first column, then measure five times, five with b2b's busy-wait before each
sample, and five without again)

diag-factors-h200.md: in two fresh processes the first measurement read 0.0128 ms (the
calibrator's level) and every later one 0.0136 ms (F.linear's), whatever changed between them.
This repeats the same driver-API measurement (diag_process.py's `bench`, no torch) six times,
then after importing torch and initialising CUDA in it, after one torch kernel (a busy-wait), after
one eager F.linear, with b2b.bench's busy-wait before each sample, and without it again. ms per
call, each a single measurement.
"""
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402

n = k = 4096
w, x, y = dp.operands(n, k)
copies = len(w)


def run(label, times=3, before_sample=None):
    v = [dp.bench(lambda i, st: dp.gemm(w[i], x, y, n, k, 8, st), copies, before_sample=before_sample)
         for _ in range(times)]
    print(f"{label}: " + " ".join(f"{a:.4f}" for a in v), flush=True)


PRE = sys.argv[1] if len(sys.argv) > 1 else ""
if PRE:  # what diag_factors.py did before its first column, one piece at a time
    import torch  # noqa: E402

    sys.argv = sys.argv[:1]
    import b2b  # noqa: E402

    if PRE in ("handle", "both"):
        torch.cuda.current_blas_handle()
    if PRE in ("weights", "both"):
        keep = b2b.weights(n, k, copies), (torch.rand(64, k, device="cuda") * 2 - 1).half()
    torch.cuda.synchronize()
    run(f"after {PRE}", 5)

    def spin(st):
        with torch.cuda.stream(torch.cuda.ExternalStream(int(st))):
            torch.cuda._sleep(b2b.SPIN)

    run("  with b2b's busy-wait before each sample", 5, before_sample=spin)
    run("  without it again", 5)
    sys.exit(0)
run("fresh process, no torch", 6)
import torch  # noqa: E402

torch.zeros(1, device="cuda")
torch.cuda.synchronize()
run("after import torch + torch.zeros on cuda")
torch.cuda._sleep(1000)
torch.cuda.synchronize()
run("after one torch.cuda._sleep")
import torch.nn.functional as F  # noqa: E402

F.linear(torch.rand(8, k, device="cuda").half(), torch.rand(n, k, device="cuda").half())
torch.cuda.synchronize()
run("after one eager F.linear")
SPIN = int(50e-6 * torch.cuda.get_device_properties(0).clock_rate * 1e3)


def spin(st):
    with torch.cuda.stream(torch.cuda.ExternalStream(int(st))):
        torch.cuda._sleep(SPIN)


run("with torch's busy-wait before each sample, on the timing stream", before_sample=spin)
run("without it again")
