"""cardplan's small fp16 GEMM points, timed from a third process: is torch or cardplan the odd one?

Usage: python3 scripts/gpu/diag_process.py OUT.md [--torch]
  --torch: initialise torch in the process first, and add graph capture by torch.cuda.graph,
  torch-allocated operands, and F.linear timed by b2b.bench (as reference.py times it) as columns.

At T <= 64 on the H200 the calibrator reads o_proj and qkv 5-8% below F.linear, with the same
cuBLAS call and kernel, and neither side moves with its harness mechanics (diag-spin, diag-alloc,
and a calibrator build that launched on the legacy stream or captured in global mode). This
process has no torch and no cudarc: the CUDA driver API (cuda-python) and cuBLAS through ctypes,
the calibrator's method step by step (non-blocking stream, thread-local capture of R calls rotating
over S weight copies, graph upload, median of 30 replays between an event pair). If it reads like
the calibrator, something in torch's process slows the small GEMMs; if like F.linear, something
in cardplan's. (Session 8: it read like either, a minute apart on one machine, in every mode:
diag-process-h200.md.)
"""
import ctypes
import math
import os
import statistics
import sys

import numpy as np
from cuda.bindings import driver as cu

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-process.md"
WITH_TORCH = "--torch" in sys.argv  # initialise torch's CUDA state in this process first
if WITH_TORCH:
    import torch
    import torch.nn.functional as F
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import b2b


def ok(r):
    r = r if isinstance(r, tuple) else (r,)
    if r[0] != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"CUDA error {r[0]}")
    return r[1] if len(r) == 2 else r[1:]


ok(cu.cuInit(0))
dev = ok(cu.cuDeviceGet(0))
ctx = ok(cu.cuDevicePrimaryCtxRetain(dev))
ok(cu.cuCtxSetCurrent(ctx))
name = ok(cu.cuDeviceGetName(128, dev)).split(b"\0")[0].decode()
l2 = ok(cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev))
stream = ok(cu.cuStreamCreate(1))  # CU_STREAM_NON_BLOCKING
e0, e1 = ok(cu.cuEventCreate(0)), ok(cu.cuEventCreate(0))
elapsed = getattr(cu, "cuEventElapsedTime_v2", None) or cu.cuEventElapsedTime

blas = ctypes.CDLL("libcublas.so.13")
handle = ctypes.c_void_p()
assert blas.cublasCreate_v2(ctypes.byref(handle)) == 0
ws_bytes = 32 << 20
ws = ok(cu.cuMemAlloc(ws_bytes))
assert blas.cublasSetStream_v2(handle, ctypes.c_void_p(int(stream))) == 0
assert blas.cublasSetWorkspace_v2(handle, ctypes.c_void_p(int(ws)), ctypes.c_size_t(ws_bytes)) == 0
alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
rng = np.random.default_rng(1)
MODES = ["driver", "autofree", "noupload", "legacy"] + (["torch"] if WITH_TORCH else []) + ["driver"]
COLS = MODES + (["driver, torch weights", "driver, torch weights + x + y", "F.linear (b2b.bench)"] if WITH_TORCH else [])


def device_alloc(nbytes):
    """cuMemAlloc, or with DIAG_POOL=1 the stream-ordered pool (cuMemAllocAsync), as the
    calibrator allocates."""
    if os.environ.get("DIAG_POOL"):
        ptr = ok(cu.cuMemAllocAsync(nbytes, stream))
        ok(cu.cuStreamSynchronize(stream))
        return ptr
    return ok(cu.cuMemAlloc(nbytes))


def upload(a):
    ptr = device_alloc(a.nbytes)
    ok(cu.cuMemcpyHtoD(ptr, a.ctypes.data, a.nbytes))
    return ptr


def operands(n, k, rows=64):
    """The calibrator's rotated weight copies (covering 2x L2, at most 64) of an n x k fp16 layer,
    uniform in [-0.05, 0.05), an activation of `rows` x k in [-1, 1) and an output, all by
    `device_alloc`: (w, x, y)."""
    copies = max(1, min(64, -(-2 * l2 // (2 * n * k))))
    w = [upload((rng.random((n, k), dtype=np.float32) * 0.1 - 0.05).astype(np.float16)) for _ in range(copies)]
    x = upload((rng.random((rows, k), dtype=np.float32) * 2 - 1).astype(np.float16))
    return w, x, device_alloc(2 * rows * n)


def gemm(w, x, y, n, k, t, st, h=None):
    h = handle if h is None else ctypes.c_void_p(h)
    blas.cublasSetStream_v2(h, ctypes.c_void_p(int(st)))
    r = blas.cublasGemmEx(h, 1, 0, n, t, k, ctypes.byref(alpha), ctypes.c_void_p(int(w)), 2, k,
                          ctypes.c_void_p(int(x)), 2, k, ctypes.byref(beta), ctypes.c_void_p(int(y)), 2, n, 68, 99)
    assert r == 0, r


def ms_between():
    ok(cu.cuEventSynchronize(e1))
    return ok(elapsed(e0, e1))


def bench(call, copies, mode="driver", before_sample=None):
    """mode: driver (the calibrator's steps), autofree (instantiated with AUTO_FREE_ON_LAUNCH, as
    torch does), noupload (no cuGraphUpload), legacy (launched and timed on the legacy stream), torch
    (captured and replayed by torch.cuda.graph, timed on torch's current stream).
    before_sample(stream): called before each timed replay (e.g. b2b.bench's busy-wait)."""
    for i in range(max(copies, 5)):
        call(i % copies, stream)
    ok(cu.cuEventRecord(e0, stream))
    for i in range(3):
        call(i % copies, stream)
    ok(cu.cuEventRecord(e1, stream))
    est = ms_between() / 3
    calls = min(64, max(2, copies, math.ceil(0.3 / est) if est > 0 else 64))
    ok(cu.cuStreamSynchronize(stream))
    if mode == "torch":
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            cs = torch.cuda.current_stream().cuda_stream
            for i in range(calls):
                call(i % copies, cs)
        g.replay()
        torch.cuda.synchronize()
        launch, ts_stream = g.replay, torch.cuda.current_stream().cuda_stream
    else:
        ok(cu.cuStreamBeginCapture(stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))
        for i in range(calls):
            call(i % copies, stream)
        graph = ok(cu.cuStreamEndCapture(stream))
        exe = ok(cu.cuGraphInstantiate(graph, 1 if mode == "autofree" else 0))
        ts_stream = 1 if mode == "legacy" else stream  # CU_STREAM_LEGACY
        if mode != "noupload":
            ok(cu.cuGraphUpload(exe, stream))

        def launch():
            ok(cu.cuGraphLaunch(exe, ts_stream))
        launch()
        ok(cu.cuCtxSynchronize())
    ts = []
    for _ in range(30):
        if before_sample is not None:
            before_sample(ts_stream)
        ok(cu.cuEventRecord(e0, ts_stream))
        launch()
        ok(cu.cuEventRecord(e1, ts_stream))
        ts.append(ms_between() / calls)
    if mode != "torch":
        ok(cu.cuGraphExecDestroy(exe))
        ok(cu.cuGraphDestroy(graph))
    return statistics.median(ts)


SPIN_SRC = b"""extern "C" __global__ void spin_ns(unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}"""


def spin_hook(ns=50_000):
    """The calibrator's busy-wait kernel (`spin_ns` of kernels/util.cu), compiled by NVRTC here and
    launched through the driver API: a `before_sample` for `bench`."""
    from cuda.bindings import nvrtc

    def nok(r):
        assert r[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS, r
        return r[1] if len(r) == 2 else None
    prog = nok(nvrtc.nvrtcCreateProgram(SPIN_SRC, b"spin.cu", 0, [], []))
    cc = [ok(cu.cuDeviceGetAttribute(a, dev)) for a in (cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                                         cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)]
    nok(nvrtc.nvrtcCompileProgram(prog, 1, [f"--gpu-architecture=sm_{cc[0]}{cc[1]}".encode()]))
    cubin = b" " * nok(nvrtc.nvrtcGetCUBINSize(prog))
    nok(nvrtc.nvrtcGetCUBIN(prog, cubin))
    kern = ok(cu.cuModuleGetFunction(ok(cu.cuModuleLoadData(cubin)), b"spin_ns"))
    arg = ctypes.c_ulonglong(ns)
    args = (ctypes.c_void_p * 1)(ctypes.addressof(arg))

    def hook(st):
        ok(cu.cuLaunchKernel(kern, 1, 1, 1, 32, 1, 1, 0, st, ctypes.addressof(args), 0))
    hook.keep = (arg, args)  # the argument buffers live as long as the hook
    return hook


def main():
    lines = [f"# cardplan's cublasGemmEx from a process with {'torch initialised' if WITH_TORCH else 'neither torch'} (no cudarc), {name}", "",
             "ms per call: the calibrator's back-to-back method through the driver API (cuda-python) and "
             "cuBLAS (ctypes, libcublas.so.13 from the loader path); median of 3 measurements. Columns: "
             "graph modes (see `bench`), the plain driver one first and last.", "",
             "| layer | n | k | T | copies | " + " | ".join(COLS) + " |", "|---|---|---|---|---|" + "---|" * len(COLS)]
    for layer, n, k, tokens in [("qkv_proj", 6144, 4096, (8, 16, 64)), ("o_proj", 4096, 4096, (8, 16, 64)),
                                ("gate_up_proj", 28672, 4096, (64,)), ("down_proj", 4096, 14336, (64,))]:
        w, x, y = operands(n, k)
        copies = len(w)
        if WITH_TORCH:  # the same draws in torch tensors, as reference.py makes them
            tw = [((torch.rand(n, k, device="cuda") * 2 - 1) * 0.05).half() for _ in range(copies)]
            tx = (torch.rand(64, k, device="cuda") * 2 - 1).half()
            ty = torch.empty(64, n, device="cuda", dtype=torch.half)
            torch.cuda.synchronize()
        for t in tokens:
            v = [statistics.median(bench(lambda i, st: gemm(w[i], x, y, n, k, t, st), copies, m) for _ in range(3))
                 for m in MODES]
            if WITH_TORCH:
                tv = [statistics.median(bench(lambda i, st: gemm(tw[i].data_ptr(), x, y, n, k, t, st), copies) for _ in range(3)),
                      statistics.median(bench(lambda i, st: gemm(tw[i].data_ptr(), tx.data_ptr(), ty.data_ptr(), n, k, t, st), copies)
                                        for _ in range(3))]
                v += tv + [statistics.median(b2b.bench(lambda i: F.linear(tx[:t], tw[i]), copies) for _ in range(3))]
            lines.append(f"| {layer} | {n} | {k} | {t} | {copies} | " + " | ".join(f"{a:.4f}" for a in v) + " |")
            print(lines[-1], flush=True)
        for p in w + [x, y]:
            ok(cu.cuMemFree(p))
        if WITH_TORCH:
            del tw, tx, ty
            torch.cuda.empty_cache()
    open(out_md, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
