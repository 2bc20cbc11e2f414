"""Why do cardplan's cublasGemmEx timings differ from torch's F.linear? A diagnosis, on the device.

Usage: python3 scripts/gpu/diag_fp16.py OUT.md LABEL=RAW.json [LABEL=RAW.json ...]

1. Which cuBLAS / cuBLASLt libraries torch loads, their versions, and the system's (the ones
   cardplan's dynamic loading finds through the loader path).
2. F.linear on the fp16 GEMM points of the first RAW.json (a `cardplan calibrate --raw` file),
   timed by the calibrator's back-to-back method, next to cardplan's cublasGemmEx from each RAW
   (e.g. runs with another cuBLAS on LD_LIBRARY_PATH or another CARDPLAN_GEMMEX_WORKSPACE).
3. The cuBLAS API and cuBLASLt logs of one F.linear call (down_proj at 4096 tokens): which entry
   point torch calls and which algorithm cuBLAS picks.
"""
import ctypes
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

out_md = sys.argv[1]
runs = [a.split("=", 1) for a in sys.argv[2:]]
dev = torch.device("cuda")
props = torch.cuda.get_device_properties(0)
L2 = getattr(props, "L2_cache_size", 50 << 20)
lines = [f"# fp16 GEMM diagnosis on {props.name}", "", f"torch {torch.__version__}, CUDA {torch.version.cuda}", ""]

# ---- 1. libraries
a = torch.randn(256, 256, device=dev, dtype=torch.float16)
(a @ a).sum().item()
loaded = sorted({ln.split()[-1] for ln in open("/proc/self/maps") if "cublas" in ln.split()[-1]})


def lib_versions(path):
    lib = ctypes.CDLL(path)
    if "cublasLt" in os.path.basename(path):
        lib.cublasLtGetVersion.restype = ctypes.c_size_t
        return f"cublasLtGetVersion = {lib.cublasLtGetVersion()}"
    v = []
    for t in range(3):
        x = ctypes.c_int()
        lib.cublasGetProperty(t, ctypes.byref(x))
        v.append(x.value)
    return "cublasGetProperty = " + ".".join(map(str, v))


lines.append("## Libraries")
lines.append("")
for p in loaded:
    lines.append(f"- torch loads `{p}`: {lib_versions(p)}")
sysv = subprocess.run(
    [sys.executable, "-c",
     "import ctypes; l = ctypes.CDLL('libcublasLt.so.13'); l.cublasLtGetVersion.restype = ctypes.c_size_t; "
     "print(l.cublasLtGetVersion()); import os; "
     "print([x.split()[-1] for x in open('/proc/self/maps') if 'cublas' in x][:1])"],
    capture_output=True, text=True)
lines.append(f"- the loader path's `libcublasLt.so.13` (what cardplan loads): {sysv.stdout.strip()} {sysv.stderr.strip()[:200]}")
lines.append("")

# ---- 2. F.linear vs cardplan GemmEx
from b2b import MAX_COPIES, bench  # noqa: E402


def load(p):
    return {(t["n"], t["k"], t["tokens"]): t["ms"] for t in json.load(open(p))["timed"]
            if t["job"] == "gemm" and t.get("path") == "fp16-cublas-gemmex"}


runs = [(label, load(p)) for label, p in runs if os.path.exists(p)]
lines += ["## cublasGemmEx (cardplan) vs F.linear, back to back", "",
          "| n | k | T | F.linear ms | " + " | ".join(f"{lab} ms | ratio" for lab, _ in runs) + " |",
          "|---|---|---|---|" + "---|---|" * len(runs)]
ratios = {lab: [] for lab, _ in runs}
for (n, k, T) in sorted(runs[0][1]) if runs else []:
    wbytes = n * k * 2
    S = max(1, min(MAX_COPIES, -(-2 * L2 // wbytes)))
    x = (torch.rand(T, k, device=dev, dtype=torch.float32) - 0.5).half()
    ws = [(torch.rand(n, k, device=dev, dtype=torch.float32) - 0.5).half() for _ in range(S)]
    t = bench(lambda i: F.linear(x, ws[i]), S)
    del ws, x
    torch.cuda.empty_cache()
    cells = []
    for lab, d in runs:
        o = d.get((n, k, T))
        if o:
            ratios[lab].append(o / t)
            cells.append(f"{o:.4f} | {o / t:.3f}")
        else:
            cells.append(" | ")
    lines.append(f"| {n} | {k} | {T} | {t:.4f} | " + " | ".join(cells) + " |")
    print(lines[-1], flush=True)


def within(rs):
    return f"{sum(1 for r in rs if abs(r - 1) <= 0.05)} of {len(rs)} within 5%, {min(rs):.3f}–{max(rs):.3f}" if rs else "n/a"


lines += [""] + [f"- {lab}: {within(rs)}" for lab, rs in ratios.items()] + [""]

# ---- 3. logs of one F.linear call
code = ("import torch, torch.nn.functional as F; x = torch.randn(4096, 14336, device='cuda', dtype=torch.float16); "
        "w = torch.randn(4096, 14336, device='cuda', dtype=torch.float16); F.linear(x, w); torch.cuda.synchronize()")
env = dict(os.environ, CUBLAS_LOGINFO_DBG="1", CUBLAS_LOGDEST_DBG="/tmp/cublas_api.log",
           CUBLASLT_LOG_LEVEL="2", CUBLASLT_LOG_FILE="/tmp/cublaslt.log")
subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
for name in ["/tmp/cublas_api.log", "/tmp/cublaslt.log"]:
    lines += [f"## {name} (F.linear, down_proj, T = 4096)", "", "```"]
    try:
        lines += open(name).read()[-4000:].splitlines()
    except OSError as e:
        lines.append(f"(none: {e})")
    lines += ["```", ""]
open(out_md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines[:12]))
