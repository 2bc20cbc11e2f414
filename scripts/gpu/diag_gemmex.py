"""cublasGemmEx from Python vs F.linear, same harness: where does cardplan's fp16 gap come from?

Usage: python3 scripts/gpu/diag_gemmex.py OUT.md [--tokens 16,1024,4096] [--sustained] [--kernels]

--sustained times every column under sustained load (b2b.bench's sustained mode, as the calibrator
times compute-bound jobs); --kernels adds, per point, the CUDA kernel each variant launches (torch
profiler), to tell a different cuBLAS algorithm from a different clock.

Times, by the calibrator's back-to-back method (b2b.bench), on the llama-3.1-8b shapes:
  F.linear            torch's call (new output tensor per call)
  matmul out=         the same GEMM into one preallocated output, as cardplan writes it
  GemmEx (ctypes)     cardplan's exact cuBLAS call on a handle of our own (32 MB workspace), one
                      preallocated output
with torch-style data (uniform, cast from fp32, weights ±0.05, activations ±1).
"""
import argparse
import ctypes
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from b2b import L2, bench  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("out_md", nargs="?", default="diag-gemmex.md")
ap.add_argument("--tokens", default="16,1024,4096")
ap.add_argument("--sustained", action="store_true")
ap.add_argument("--kernels", action="store_true")
args = ap.parse_args()
out_md = args.out_md
TOKENS = [int(t) for t in args.tokens.split(",")]

dev = torch.device("cuda")
torch.ones(1, device=dev)
(torch.ones(8, 8, device=dev, dtype=torch.float16) @ torch.ones(8, 8, device=dev, dtype=torch.float16)).sum().item()
path = [ln.split()[-1] for ln in open("/proc/self/maps") if "libcublas.so" in ln.split()[-1]][0]
lib = ctypes.CDLL(path)
handle = ctypes.c_void_p()
assert lib.cublasCreate_v2(ctypes.byref(handle)) == 0
ws_bytes = 32 << 20
ws = torch.empty(ws_bytes, dtype=torch.uint8, device=dev)
assert lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(ws.data_ptr()), ctypes.c_size_t(ws_bytes)) == 0
alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)


# torch's own handle, and what can be read of its settings
th = ctypes.c_void_p(torch.cuda.current_blas_handle())
state = {}
for getter in ["cublasGetSmCountTarget", "cublasGetMathMode", "cublasGetAtomicsMode", "cublasGetPointerMode_v2"]:
    v = ctypes.c_int(-1)
    st = getattr(lib, getter)(th, ctypes.byref(v))
    state[getter] = (st, v.value)
print("torch handle:", state, flush=True)
sm_count = torch.cuda.get_device_properties(0).multi_processor_count
h_sm = ctypes.c_void_p()
assert lib.cublasCreate_v2(ctypes.byref(h_sm)) == 0
assert lib.cublasSetWorkspace_v2(h_sm, ctypes.c_void_p(ws.data_ptr()), ctypes.c_size_t(ws_bytes)) == 0
assert lib.cublasSetSmCountTarget(h_sm, sm_count) == 0


def gemmex(x, w, y, h=None):
    h = handle if h is None else h
    T, k = x.shape
    n = w.shape[0]
    lib.cublasSetStream_v2(h, ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
    r = lib.cublasGemmEx(h, 1, 0, n, T, k, ctypes.byref(alpha), ctypes.c_void_p(w.data_ptr()), 2, k,
                         ctypes.c_void_p(x.data_ptr()), 2, k, ctypes.byref(beta), ctypes.c_void_p(y.data_ptr()),
                         2, n, 68, 99)
    assert r == 0, r


lines = ["# cublasGemmEx (ctypes) vs F.linear, same harness", "", f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, {path}", "",
         f"torch's handle (status, value): {state}", "",
         "Columns: F.linear; matmul into one preallocated output; GemmEx on a fresh handle (32 MB workspace), one output; "
         "the same with cublasSetSmCountTarget(SM count); the same (fresh handle) writing a new output each call (8 rotating); "
         "GemmEx on torch's own handle, one output.", "",
         "| n | k | T | F.linear | matmul out= | GemmEx | + SmCountTarget | + new output per call | torch's handle | F.linear again |",
         "|---|---|---|---|---|---|---|---|---|---|"]
kern_lines = ["", "Kernels launched (torch profiler, one call each, same column order):", "",
              "| n | k | T | F.linear | matmul out= | GemmEx | + SmCountTarget | + new output | torch's handle |",
              "|---|---|---|---|---|---|---|---|---|"]
for n, k in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    S = max(1, min(64, -(-2 * L2 // (2 * n * k))))
    ws_ = [((torch.rand(n, k, device=dev) * 2 - 1) * 0.05).half() for _ in range(S)]
    for T in TOKENS:
        x = (torch.rand(T, k, device=dev) * 2 - 1).half()
        y = torch.empty(T, n, device=dev, dtype=torch.float16)
        ys = [torch.empty(T, n, device=dev, dtype=torch.float16) for _ in range(8)]
        cnt = [0]

        def rot(i):
            cnt[0] += 1
            gemmex(x, ws_[i], ys[cnt[0] % 8])

        sus = args.sustained
        variants = [lambda i: F.linear(x, ws_[i]), lambda i: torch.matmul(x, ws_[i].t(), out=y),
                    lambda i: gemmex(x, ws_[i], y), lambda i: gemmex(x, ws_[i], y, h_sm), rot,
                    lambda i: gemmex(x, ws_[i], y, th)]
        got = [bench(f, S, sus) for f in variants]
        again = bench(variants[0], S, sus)  # F.linear once more: drift over the row
        lines.append(f"| {n} | {k} | {T} | " + " | ".join(f"{v:.4f}" for v in got) + f" | {again:.4f} |")
        if args.kernels:
            names = []
            for f in variants:
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                    f(0)
                    torch.cuda.synchronize()
                names.append("; ".join(sorted({e.name[:90] for e in prof.events() if e.device_type.name == "CUDA"})))
            kern_lines.append(f"| {n} | {k} | {T} | " + " | ".join(f"`{nm}`" for nm in names) + " |")
        del ys
        print(lines[-1], flush=True)
    del ws_
    torch.cuda.empty_cache()
if args.sustained:
    lines.insert(4, "All columns timed under sustained load (b2b.bench sustained mode).\n")
if args.kernels:
    lines += kern_lines
open(out_md, "w").write("\n".join(lines) + "\n")
