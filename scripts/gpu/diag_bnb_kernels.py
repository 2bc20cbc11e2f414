"""Which kernels bitsandbytes' Linear4bit runs, and for how long, where cardplan's `nf4` path differs.

Usage: python3 scripts/gpu/diag_bnb_kernels.py OUT.md

For o_proj (4096 x 4096) and qkv (6144 x 4096) at T = 16 and 1024, captures 8 calls of a
Linear4bit (nf4, blocksize 64, double quant, fp16 compute) into a CUDA graph, replays it under the
torch profiler and lists each kernel with its mean time per call; F.linear on the fp16 weight of
the same shape is listed beside it. cardplan's `nf4-bnb-dequant-cublas` prices bitsandbytes'
unfused sequence (absmax dequantize, offset add, 4-bit dequantize, F.linear) and reads ~25-30%
faster than bitsandbytes at T = 16 (calibrate-*.md): this shows what the difference is made of.
"""
import collections
import os
import sys

import torch
import torch.nn.functional as F
import bitsandbytes as bnb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from b2b import capture  # noqa: E402

out_md = sys.argv[1] if len(sys.argv) > 1 else "diag-bnb-kernels.md"
dev = torch.device("cuda")
CALLS = 8


def profile(fn):
    g = capture(lambda i: fn(), CALLS, warm=3)
    for _ in range(20):
        g.replay()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(20):
        g.replay()
    e.record()
    e.synchronize()
    per_call = s.elapsed_time(e) / (20 * CALLS)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            g.replay()
        torch.cuda.synchronize()
    tot, cnt = collections.defaultdict(float), collections.Counter()
    for ev in prof.events():
        if ev.device_type.name == "CUDA":
            tot[ev.name[:100]] += ev.time_range.elapsed_us()
            cnt[ev.name[:100]] += 1
    rows = [(name, tot[name] / (5 * CALLS), cnt[name] / (5 * CALLS)) for name in tot]
    del g
    return per_call, sorted(rows, key=lambda r: -r[1])


lines = [f"# bitsandbytes {bnb.__version__} Linear4bit kernels vs F.linear, {torch.cuda.get_device_name(0)}", "",
         f"CUDA graph of {CALLS} calls; per-call time from CUDA events over 20 replays; kernel times (us per call) from "
         "the torch profiler over 5 replays (profiler overhead included).", ""]
for name, n, k in [("o_proj", 4096, 4096), ("qkv_proj", 6144, 4096)]:
    lin = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=torch.float16, compress_statistics=True,
                            quant_type="nf4").cuda()
    w16 = ((torch.rand(n, k, device=dev) * 2 - 1) * 0.05).half()
    for T in (16, 1024):
        x = torch.rand(T, k, device=dev, dtype=torch.float16) - 0.5
        with torch.inference_mode():
            pc, rows = profile(lambda: lin(x))
        pf, rowsf = profile(lambda: F.linear(x, w16))
        lines += [f"## {name} T = {T}: Linear4bit {pc * 1000:.1f} us per call, F.linear {pf * 1000:.1f} us", "",
                  "| side | kernel | us per call | launches per call |", "|---|---|---|---|"]
        lines += [f"| bnb | `{r[0]}` | {r[1]:.1f} | {r[2]:.2f} |" for r in rows]
        lines += [f"| F.linear | `{r[0]}` | {r[1]:.1f} | {r[2]:.2f} |" for r in rowsf]
        lines.append("")
        print("\n".join(lines[-(len(rows) + len(rowsf) + 4):]), flush=True)
    del lin, w16
open(out_md, "w").write("\n".join(lines) + "\n")
