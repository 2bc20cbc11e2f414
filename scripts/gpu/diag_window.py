"""Sustained-load samples: does a longer sampling window make a power-capped point reproducible?

Usage: python3 scripts/gpu/diag_window.py OUT.md

Under the power cap the H200's SM clock saws between ~1050 and ~1500 MHz with a period near 1 s
(nvidia-smi trace of diag-settle). Both sides take 30 samples of ~2 ms right after 0.25 s of heat:
a ~60 ms window, which lands on one phase of the saw. This replays F.linear's timed graph back to
back for 0.9 s with an event between replays (GPU timeline, no host gaps), from three starts
(after the calibrator's token counts below the point, after 2 s idle, right after a heavier
GEMM), twice each, and reports the median replay time over windows that begin after 0.15 s of heat.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-window.md"
dev = torch.device("cuda")
SWEEP = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
# (label, start s, end s or None for 30 samples)
WINDOWS = [("0.25 s + 30 samples", 0.25, None), ("0.15-0.40 s", 0.15, 0.40), ("0.15-0.65 s", 0.15, 0.65),
           ("0.25-0.90 s", 0.25, 0.90)]
lines = [f"# Sampling window vs F.linear time under sustained load, {torch.cuda.get_device_name(0)}", "",
         "ms per call: median of the replays (each >= 2 ms) whose start lies in the window (s since heat "
         "began, GPU timeline). Two trials per start.", "",
         "| layer | T | start | " + " | ".join(w[0] for w in WINDOWS) + " | timeline |",
         "|---|---|---|" + "---|" * (len(WINDOWS) + 1)]


def timeline(g, calls, seconds, replay_ms):
    n = int(seconds * 1e3 / replay_ms) + 1
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
    ev[0].record()
    for i in range(n):
        g.replay()
        ev[i + 1].record()
    ev[-1].synchronize()
    t, out = 0.0, []
    for i in range(n):
        d = ev[i].elapsed_time(ev[i + 1])
        out.append((t / 1e3, d / calls))
        t += d
    return out


big = b2b.weights(28672, 4096, 1)[0]
xbig = (torch.rand(4096, 4096, device=dev) * 2 - 1).half()
for name, n, k, T in [("qkv_proj", 6144, 4096, 256), ("o_proj", 4096, 4096, 256), ("down_proj", 4096, 14336, 256),
                      ("qkv_proj", 6144, 4096, 1024)]:
    ws = b2b.weights(n, k)
    copies = len(ws)
    xs = {t: (torch.rand(t, k, device=dev) * 2 - 1).half() for t in SWEEP if t <= T}
    fn = lambda i: F.linear(xs[T], ws[i])  # noqa: E731
    calls = b2b.replay_calls(b2b.estimate(fn, copies), b2b.SUSTAIN_TARGET_MS, copies)
    g = b2b.capture(fn, calls, copies)
    est_s, est_e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    g.replay()
    est_s.record()
    g.replay()
    est_e.record()
    est_e.synchronize()
    replay_ms = est_s.elapsed_time(est_e)
    for start in ("sweep below", "idle 2 s", "after gate_up T=4096") * 2:
        if start == "idle 2 s":
            torch.cuda.synchronize()
            time.sleep(2.0)
        elif start == "sweep below":
            for t in SWEEP:
                if t >= T:
                    break
                b2b.bench(lambda i: F.linear(xs[t], ws[i]), copies, sustained=t >= b2b.COMPUTE_BOUND_MIN_TOKENS)
        else:
            t0 = time.time()
            while time.time() - t0 < 0.5:
                for _ in range(20):
                    F.linear(xbig, big)
                torch.cuda.synchronize()
        pts = timeline(g, calls, 0.9, replay_ms)
        cells = []
        for _, a, b in WINDOWS:
            v = [ms for t, ms in pts if t >= a and (b is None or t < b)]
            cells.append(statistics.median(v[:30] if b is None else v) if v else float("nan"))
        lines.append(f"| {name} | {T} | {start} | " + " | ".join(f"{c:.4f}" for c in cells)
                     + f" | {pts[-1][0]:.2f} s, {len(pts)} replays of {calls} |")
        print(lines[-1], flush=True)
    del ws, xs, g
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
