"""Does what ran just before an fp16 GEMM point change its time in torch's harness?

Usage: python3 scripts/gpu/diag_history.py OUT.md

The FP16 acceptance compares the calibrator's cublasGemmEx times with F.linear timed by
reference.py, which (until session 8) ran the compared token counts only (1, 16, 64, 256, ...),
each after the previous one. The calibrator runs every token count of its sweep in order, each
with its other paths after it. The same call then reads up to 9% apart (o_proj T = 16 and 64 faster in the
calibrator, qkv and o_proj T = 256 slower). This times F.linear, by b2b.bench, at one point after
different histories:
- idle: 1 s of sleep before the point;
- light: the previous reference point (a light GEMM) just before;
- busy: 0.3 s of a heavy GEMM (gate_up, T = 4096) back to back just before;
- sweep: the calibrator's token counts below the point, each timed as the calibrator times it
  (sustained from 128 tokens), just before.
Each history three times; the medians and the single readings are printed.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-history.md"
dev = torch.device("cuda")
SWEEP = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]


def point(ws, k, T):
    x = (torch.rand(T, k, device=dev) * 2 - 1).half()
    return b2b.bench(lambda i: F.linear(x, ws[i % len(ws)]), len(ws), sustained=T >= 128)


heavy_w = ((torch.rand(28672, 4096, device=dev) * 2 - 1) * 0.05).half()
heavy_x = (torch.rand(4096, 4096, device=dev) * 2 - 1).half()


def busy(seconds=0.3):
    t0 = time.time()
    while time.time() - t0 < seconds:
        for _ in range(4):
            F.linear(heavy_x, heavy_w)
        torch.cuda.synchronize()


lines = [f"# F.linear after different histories, {torch.cuda.get_device_name(0)}", "",
         "ms per call (b2b.bench; sustained from 128 tokens). Each cell: median of 3 (single readings).", "",
         "| layer | T | idle 1 s | light (previous reference point) | busy 0.3 s (gate_up T=4096) | sweep (calibrator's token counts below) |",
         "|---|---|---|---|---|---|"]
for name, n, k, pts in [("o_proj", 4096, 4096, [16, 64, 256]), ("qkv_proj", 6144, 4096, [16, 256]),
                        ("gate_up_proj", 28672, 4096, [1024])]:
    ws = b2b.weights(n, k)
    prev_ref = {16: 1, 64: 16, 256: 64, 1024: 256}
    for T in pts:
        cells = []
        for hist in ("idle", "light", "busy", "sweep"):
            got = []
            for _ in range(3):
                if hist == "idle":
                    torch.cuda.synchronize()
                    time.sleep(1.0)
                elif hist == "light":
                    point(ws, k, prev_ref[T])
                elif hist == "busy":
                    busy()
                else:
                    for t in SWEEP:
                        if t >= T:
                            break
                        if t >= max(1, T // 8):
                            point(ws, k, t)
                got.append(point(ws, k, T))
            cells.append(f"{statistics.median(got):.4f} ({', '.join(f'{v:.4f}' for v in got)})")
        lines.append(f"| {name} | {T} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    del ws
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
