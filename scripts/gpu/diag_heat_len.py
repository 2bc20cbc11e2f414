"""How long must F.linear be heated before its time stops moving?

Usage: python3 scripts/gpu/diag_heat_len.py OUT.md

At T = 256 (qkv, o_proj) the calibrator's cublasGemmEx reads ~7% slower than F.linear timed by
reference.py, on both GPUs, while F.linear itself reads 0.0250 ms after idle and 0.0278 ms right
after the token counts below it (diag-history-h200.md). Both sides heat 0.25 s before timing a
compute-bound point. If the power controller has not settled by then, the reading depends on
where the clock came from. This times F.linear after 1 s idle with 0.25, 1 and 3 s of heat, and
after the calibrator's sweep below the point with 0.25 s.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-heat-len.md"
dev = torch.device("cuda")
SWEEP = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]
cols = [("idle, heat 0.25 s", "idle", 0.25), ("idle, heat 1 s", "idle", 1.0), ("idle, heat 3 s", "idle", 3.0),
        ("sweep below, heat 0.25 s", "sweep", 0.25), ("sweep below, heat 1 s", "sweep", 1.0)]
lines = [f"# Heat length vs F.linear time, {torch.cuda.get_device_name(0)}", "",
         "ms per call (b2b.bench, sustained), median of 2 (single readings).", "",
         "| layer | T | " + " | ".join(c[0] for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
for name, n, k, pts in [("qkv_proj", 6144, 4096, [256, 1024]), ("o_proj", 4096, 4096, [256, 4096])]:
    ws = b2b.weights(n, k)
    s = len(ws)
    xs = {t: (torch.rand(t, k, device=dev) * 2 - 1).half() for t in SWEEP}
    for T in pts:
        cells = []
        for _, hist, heat in cols:
            got = []
            for _ in range(2):
                b2b.SUSTAIN_HEAT_S = 0.25
                if hist == "idle":
                    torch.cuda.synchronize()
                    time.sleep(1.0)
                else:
                    for t in SWEEP:
                        if t >= T:
                            break
                        if t >= T // 8:
                            b2b.bench(lambda i: F.linear(xs[t], ws[i]), s, sustained=t >= 128)
                b2b.SUSTAIN_HEAT_S = heat
                got.append(b2b.bench(lambda i: F.linear(xs[T], ws[i]), s, sustained=True))
            cells.append(f"{statistics.median(got):.4f} ({', '.join(f'{v:.4f}' for v in got)})")
        lines.append(f"| {name} | {T} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    del ws, xs
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
