"""Does host launch latency leak into torch's back-to-back samples of small GEMMs?

Usage: python3 scripts/gpu/diag_spin.py OUT.md

b2b.bench (and the calibrator) queue each timed graph replay behind a ~50 us busy-wait, so that
the start event fires with the graph already queued. If recording the event and launching the
graph from the host takes longer than the busy-wait (Python, a sandboxed driver), part of the
host latency lands inside the sample, once per replay: a larger share for short replays. This
times F.linear at small token counts with longer busy-waits and longer replays.
"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-spin.md"
dev = torch.device("cuda")
base_spin = b2b.SPIN
variants = [("spin 50 us, replay 0.3 ms", 1, 0.3), ("spin 0", 0, 0.3), ("spin 300 us", 6, 0.3),
            ("spin 1 ms", 20, 0.3), ("spin 50 us, replay 1 ms", 1, 1.0), ("spin 50 us, replay 0.3 ms again", 1, 0.3)]
lines = [f"# Busy-wait and replay length vs F.linear time, {torch.cuda.get_device_name(0)}", "",
         "ms per call, b2b.bench, median of 3 measurements.", "",
         "| layer | T | " + " | ".join(v[0] for v in variants) + " |", "|---|---|" + "---|" * len(variants)]
for name, n, k in [("qkv_proj", 6144, 4096), ("o_proj", 4096, 4096), ("gate_up_proj", 28672, 4096),
                   ("down_proj", 4096, 14336)]:
    ws = b2b.weights(n, k)
    s = len(ws)
    for T in (1, 16, 64):
        x = (torch.rand(T, k, device=dev) * 2 - 1).half()
        cells = []
        for _, mult, target in variants:
            b2b.SPIN, b2b.TARGET_MS = base_spin * mult, target
            cells.append(statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), s) for _ in range(3)))
        lines.append(f"| {name} | {T} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
        print(lines[-1], flush=True)
    del ws
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
