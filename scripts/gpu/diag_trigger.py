"""Which busy-wait before each sample moves the calibrator's method to F.linear's level?

Usage: python3 scripts/gpu/diag_trigger.py  (prints one line per variant)

diag-factors-h200.md (machine L): once torch holds its weight copies, torch's busy-wait
(`torch.cuda._sleep`) before each sample slows the calibrator's method (driver API + cuBLAS by
ctypes) at o_proj T = 8 from 0.0127 to 0.0134 ms. This holds torch's copies and times that method
with no busy-wait, with torch's `_sleep`, with a one-element torch add instead, and with the
calibrator's own busy-wait kernel (`spin_ns` from kernels/util.cu, compiled by NVRTC here and
launched through the driver API, not torch). Single measurements, ms per call.
"""
import ctypes
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402
import torch  # noqa: E402
from cuda.bindings import nvrtc  # noqa: E402

import b2b  # noqa: E402

n = k = 4096
w, x, y = dp.operands(n, k)
copies = len(w)
keep = b2b.weights(n, k, copies)  # what switches torch's busy-wait to the slow level
one = torch.zeros(1, device="cuda")
torch.cuda.synchronize()

src = b"""extern "C" __global__ void spin_ns(unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}"""
def nok(r):
    assert r[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS, r
    return r[1] if len(r) == 2 else None


prog = nok(nvrtc.nvrtcCreateProgram(src, b"spin.cu", 0, [], []))
major = dp.ok(dp.cu.cuDeviceGetAttribute(dp.cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dp.dev))
minor = dp.ok(dp.cu.cuDeviceGetAttribute(dp.cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dp.dev))
nok(nvrtc.nvrtcCompileProgram(prog, 1, [f"--gpu-architecture=sm_{major}{minor}".encode()]))
size = nok(nvrtc.nvrtcGetCUBINSize(prog))
cubin = b" " * size
nok(nvrtc.nvrtcGetCUBIN(prog, cubin))
mod = dp.ok(dp.cu.cuModuleLoadData(cubin))
kern = dp.ok(dp.cu.cuModuleGetFunction(mod, b"spin_ns"))
ns = ctypes.c_ulonglong(50_000)
args = (ctypes.c_void_p * 1)(ctypes.addressof(ns))


def torch_sleep(st):
    with torch.cuda.stream(torch.cuda.ExternalStream(int(st))):
        torch.cuda._sleep(b2b.SPIN)


def torch_add(st):
    with torch.cuda.stream(torch.cuda.ExternalStream(int(st))):
        one.add_(1)


def calib_spin(st):
    dp.ok(dp.cu.cuLaunchKernel(kern, 1, 1, 1, 32, 1, 1, 0, st, ctypes.addressof(args), 0))


for label, hook in [("no busy-wait", None), ("torch _sleep", torch_sleep), ("one-element torch add", torch_add),
                    ("calibrator's spin_ns (driver API)", calib_spin), ("no busy-wait again", None)]:
    v = [dp.bench(lambda i, st: dp.gemm(w[i], x, y, n, k, 8, st), copies, before_sample=hook) for _ in range(3)]
    print(f"{label}: " + " ".join(f"{a:.4f}" for a in v), flush=True)
