"""How does a power-capped GEMM's time move while it is heated, and when could a timer stop?

Usage: python3 scripts/gpu/diag_settle.py OUT.md

0.25 s of heat leaves qkv T = 256 anywhere between 0.0238 and 0.0299 ms on an H200, depending on
what ran before (diag-heat-len-h200.md); the settled figure is ~0.026 ms. This replays F.linear's
timed graph (>= 2 ms a replay, as b2b.bench sizes it) back to back for 3 s and times every
block of 4 replays, from two starts: right after the calibrator's token counts below the point
(each timed once, as reference.py runs them), and after 2 s idle. It prints the trajectory and,
for a stopping rule "two successive 100 ms windows within X%", when it would stop and what it
would read there.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-settle.md"
dev = torch.device("cuda")
SWEEP = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
MARKS = [0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
RULES = [0.01, 0.02]
lines = [f"# F.linear under continuous heat, {torch.cuda.get_device_name(0)}", "",
         "ms per call, mean of the 4-replay blocks within ±25 ms of each mark (s since heat began).",
         "Rule X%: stop at the end of the first 100 ms window whose mean is within X% of the previous "
         "window's, after at least 0.25 s; (stop s, ms there).", "",
         "| layer | T | start | " + " | ".join(f"{m} s" for m in MARKS) + " | "
         + " | ".join(f"rule {r:.0%}" for r in RULES) + " |",
         "|---|---|---|" + "---|" * (len(MARKS) + len(RULES))]


def trajectory(fn, copies, calls, seconds=3.0):
    g = b2b.capture(fn, calls, copies)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    pts, t0 = [], time.time()
    while time.time() - t0 < seconds:
        s.record()
        for _ in range(4):
            g.replay()
        e.record()
        e.synchronize()
        pts.append((time.time() - t0, s.elapsed_time(e) / (4 * calls)))
    del g
    return pts


def at(pts, m):
    v = [ms for t, ms in pts if abs(t - m) <= 0.025]
    return statistics.mean(v) if v else float("nan")


def rule(pts, tol):
    prev, w = None, 0.25
    while w + 0.1 <= pts[-1][0]:
        cur = [ms for t, ms in pts if w < t <= w + 0.1]
        if cur:
            m = statistics.mean(cur)
            if prev is not None and abs(m - prev) <= tol * prev:
                return f"{w + 0.1:.2f} s, {m:.4f}"
            prev = m
        w += 0.1
    return "never"


for name, n, k, T in [("qkv_proj", 6144, 4096, 256), ("o_proj", 4096, 4096, 256), ("qkv_proj", 6144, 4096, 1024)]:
    ws = b2b.weights(n, k)
    copies = len(ws)
    xs = {t: (torch.rand(t, k, device=dev) * 2 - 1).half() for t in SWEEP if t <= T}
    fn = lambda i: F.linear(xs[T], ws[i])  # noqa: E731
    for start in ("sweep below", "idle 2 s"):
        if start == "idle 2 s":
            torch.cuda.synchronize()
            time.sleep(2.0)
        else:
            for t in SWEEP:
                if t >= T:
                    break
                b2b.bench(lambda i: F.linear(xs[t], ws[i]), copies, sustained=t >= b2b.COMPUTE_BOUND_MIN_TOKENS)
        # size the graph as b2b.bench does for a sustained point (estimate from 3 eager calls)
        calls = b2b.replay_calls(b2b.estimate(fn, copies, warm=False), b2b.SUSTAIN_TARGET_MS, copies)
        pts = trajectory(fn, copies, calls)
        lines.append(f"| {name} | {T} | {start} | " + " | ".join(f"{at(pts, m):.4f}" for m in MARKS) + " | "
                     + " | ".join(rule(pts, r) for r in RULES) + " |")
        print(lines[-1], flush=True)
    del ws, xs
    torch.cuda.empty_cache()
open(out_md, "w").write("\n".join(lines) + "\n")
