"""How fast a kernel's time settles after the GPU has been idle: the warm-up curve under load.

Usage: python3 scripts/gpu/diag_heat.py OUT.md

For each op: 2 s idle, then one CUDA graph of back-to-back calls (rotating weight copies over
2x L2, ~2 ms per replay) replayed continuously for 3 s, an event after every replay. The table
gives the median time per call in windows of elapsed load time, as a ratio to the first window.
How long the ratio takes to settle is how long a calibrator must keep an op running before its
timed samples describe a GPU under sustained load (serving at capacity). Run nvidia-smi beside
it to see clocks, power and temperature (scripts/gpu/run_diag_heat.sh does).
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from b2b import L2, capture  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-heat.md"
dev = torch.device("cuda")
WINDOWS_MS = [0, 5, 20, 50, 100, 200, 500, 1000, 2000, 3000]


def gemm_op(n, k, T):
    S = max(1, min(64, -(-2 * L2 // (2 * n * k))))
    ws = [((torch.rand(n, k, device=dev) * 2 - 1) * 0.05).half() for _ in range(S)]
    x = (torch.rand(T, k, device=dev) * 2 - 1).half()
    return (lambda i: F.linear(x, ws[i % S])), S, f"fp16 GEMM n={n} k={k} T={T}"


def decode_op(batch, ctx, heads=32, kv_heads=8):
    per = 2 * batch * ctx * kv_heads * 128 * 2
    S = max(1, min(64, -(-2 * L2 // per)))
    kvs = [(torch.rand(batch, kv_heads, ctx, 128, device=dev).half(),
            torch.rand(batch, kv_heads, ctx, 128, device=dev).half()) for _ in range(S)]
    q = torch.rand(batch, heads, 1, 128, device=dev).half()

    def f(i):
        k, v = kvs[i % S]
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    return f, S, f"SDPA decode batch={batch} context={ctx} (32/8 heads)"


def curve(fn, S):
    for i in range(max(S, 3)):
        fn(i)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for i in range(4):
        fn(i)
    e.record()
    e.synchronize()
    est = s.elapsed_time(e) / 4
    calls = max(S, 2, int(2.0 / max(est, 1e-3)))
    g = capture(fn, calls, S)
    g.replay()
    torch.cuda.synchronize()
    replays = int(3000 / (est * calls)) + 1
    evs = [torch.cuda.Event(enable_timing=True) for _ in range(replays + 1)]
    time.sleep(2.0)
    evs[0].record()
    for i in range(replays):
        g.replay()
        evs[i + 1].record()
    torch.cuda.synchronize()
    per = [evs[i].elapsed_time(evs[i + 1]) / calls for i in range(replays)]
    at, t = [], 0.0
    for p in per:
        at.append(t)
        t += p * calls
    rows = []
    for lo, hi in zip(WINDOWS_MS, WINDOWS_MS[1:]):
        w = [p for a, p in zip(at, per) if lo <= a < hi]
        rows.append(statistics.median(w) if w else float("nan"))
    del g
    return rows, calls


lines = [f"# Warm-up curve under continuous load on {torch.cuda.get_device_name(0)}", "",
         "Median ms per call in each window of elapsed load time after 2 s idle (ratio to the first window).", "",
         "| op | calls/replay | " + " | ".join(f"{lo}-{hi} ms" for lo, hi in zip(WINDOWS_MS, WINDOWS_MS[1:])) + " |",
         "|---|---|" + "---|" * (len(WINDOWS_MS) - 1)]
ops = [lambda: gemm_op(28672, 4096, 4096), lambda: gemm_op(6144, 4096, 1024), lambda: gemm_op(4096, 14336, 512),
       lambda: gemm_op(28672, 4096, 256), lambda: gemm_op(28672, 4096, 1), lambda: decode_op(256, 4096),
       lambda: decode_op(16, 4096)]
for make in ops:
    fn, S, label = make()
    rows, calls = curve(fn, S)
    first = rows[0]
    cells = " | ".join(f"{r:.4f} ({r / first:.3f})" for r in rows)
    lines.append(f"| {label} | {calls} | {cells} |")
    print(lines[-1], flush=True)
    del fn
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
