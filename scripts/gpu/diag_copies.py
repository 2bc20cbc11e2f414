"""Does the rotation depth move the small fp16 points? (S copies covering 2, 4 or 8 L2s)

Usage: python3 scripts/gpu/diag_copies.py [QUICK-RAW.json ...]  (prints one table; with raws of
`cardplan calibrate --quick` runs, their fp16 points at T <= 64 are printed beside)

o_proj reads ~6% faster in the calibrator than F.linear at T = 1, 16 and 64 on the H200, run
after run (calibrate-h200.md). Its 4 copies of 32 MiB cover 128 MiB, just over 2x the 60 MiB L2;
Hopper's L2 is not a strict LRU, so a cyclic stream barely over 2x L2 can still hit, by an amount
that may depend on where the copies sit. This times F.linear with the copies covering 2, 4 and
8 L2s: if F.linear does not move, it sees no hits at 2x.
"""
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

dev = torch.device("cuda")
MULT = (2, 4, 8)
raws = [json.load(open(p)) for p in sys.argv[1:]]
print(f"| n | k | T | " + " | ".join(f"F.linear, copies over {m}x L2" for m in MULT)
      + "".join(f" | cardplan run {i + 1}" for i in range(len(raws))) + " |")
print("|---|---|---|" + "---|" * (len(MULT) + len(raws)))
for n, k, tokens in [(4096, 4096, (1, 8, 16, 64)), (6144, 4096, (1, 8, 64)), (4096, 14336, (1, 8))]:
    need = {m: min(b2b.MAX_COPIES, -(-m * b2b.L2 // (2 * n * k))) for m in MULT}
    ws = b2b.weights(n, k, max(need.values()))
    for T in tokens:
        x = (torch.rand(T, k, device=dev) * 2 - 1).half()
        cells = [f"{statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), need[m]) for _ in range(3)):.4f} "
                 f"({need[m]})" for m in MULT]
        ours = []
        for r in raws:
            v = [t["ms"] for t in r["timed"] if t["job"] == "gemm" and t["path"] == "fp16-cublas-gemmex"
                 and (t["n"], t["k"], t["tokens"]) == (n, k, T)]
            ours.append(f"{v[0]:.4f}" if v else "-")
        print(f"| {n} | {k} | {T} | " + " | ".join(cells) + "".join(f" | {o}" for o in ours) + " |", flush=True)
    del ws
    torch.cuda.empty_cache()
