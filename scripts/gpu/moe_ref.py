#!/usr/bin/env python3
"""PyTorch reference for the grouped MoE GEMM table of `cardplan calibrate --moe-only` (issue 22).

Usage: moe_ref.py OUTDIR [RAW.json]

Times, in bf16 on the same GPU, the computation cardplan's moe_gemm jobs time: one MoE layer's
expert linear (E experts of n x k weights, top-k) at T tokens, the T*k rows routed uniformly and
evenly to D = round(E*(1-(1-k/E)^T)) distinct experts (at least k, at most min(E, T*k); the first
T*k mod D experts one row more: src/calibrate/moe.rs `routing`), x already in expert order:
  loop        a loop of F.linear over the touched experts, each on its rows of x
  grouped_mm  torch._grouped_mm(x, W[first:first+D].transpose(-2, -1), offs) where torch has it
The touched experts rotate over all E (copy i starts at expert i*D) as cardplan rotates them, and
each op is timed by cardplan's back-to-back method (b2b.py: CUDA graphs, sustained load for
compute-bound points = at least 128 rows per expert on average).

Writes OUTDIR/moe_ref.tsv: case, tokens, D, the two torch times (ms). With RAW.json absent the
cases are the default ones below (the catalog's MoE models).
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), "scripts/gpu"]
import b2b  # noqa: E402

OUTDIR = sys.argv[1]
RAW = sys.argv[2] if len(sys.argv) > 2 else None
TOKENS = [1 << i for i in range(14)]
# (experts, top_k, n, k): mixtral-8x7b, qwen3-30b-a3b, gpt-oss-20b, gpt-oss-120b gate_up and down
DEFAULT_CASES = [
    (8, 2, 28672, 4096), (8, 2, 4096, 14336),
    (128, 8, 1536, 2048), (128, 8, 2048, 768),
    (32, 4, 5760, 2880), (32, 4, 2880, 2880),
    (128, 4, 5760, 2880), (128, 4, 2880, 2880),
]
MAX_ROTATION_BYTES = 4 << 30  # src/calibrate/cuda/timing.rs
dev = torch.device("cuda")


def cases_from_raw():
    if not RAW or not os.path.exists(RAW):
        return DEFAULT_CASES, TOKENS
    timed = [r for r in json.load(open(RAW))["timed"] if r.get("job") == "moe"]
    if not timed:
        return DEFAULT_CASES, TOKENS
    cases, toks = [], set()
    for r in timed:
        c = (r["experts"], r["top_k"], r["n"], r["k"])
        if c not in cases:
            cases.append(c)
        toks.add(r["tokens"])
    return cases, sorted(toks)


def routing(e, k, t):
    """Rows per touched expert, as src/calibrate/moe.rs routes them."""
    rows = t * k
    expected = e * (1 - (1 - k / e) ** t)
    hi = max(1, min(e, rows))
    lo = min(k, hi)
    d = min(hi, max(lo, math.floor(expected + 0.5)))
    base, extra = divmod(rows, d)
    return [base + (1 if i < extra else 0) for i in range(d)]


def copies_for(d, e, expert_bytes):
    """cardplan's rotation depth: copies covering 2x L2, at most 64, 4 GB and E // D."""
    nbytes = d * expert_bytes
    want = max(1, -(-2 * b2b.L2 // nbytes))
    return max(1, min(want, b2b.MAX_COPIES, max(1, MAX_ROTATION_BYTES // nbytes), max(1, e // d)))


def has_grouped_mm():
    if not hasattr(torch, "_grouped_mm"):
        return False
    try:
        w = torch.randn(2, 16, 32, device=dev, dtype=torch.bfloat16)
        x = torch.randn(24, 32, device=dev, dtype=torch.bfloat16)
        offs = torch.tensor([8, 24], device=dev, dtype=torch.int32)
        y = torch._grouped_mm(x, w.transpose(-2, -1), offs=offs)
        ref = torch.cat([F.linear(x[:8].float(), w[0].float()), F.linear(x[8:].float(), w[1].float())])
        err = ((y.float() - ref).norm() / ref.norm()).item()
        print(f"torch._grouped_mm check: relative error {err:.2e}")
        return err < 1e-2
    except Exception as ex:  # noqa: BLE001
        print(f"torch._grouped_mm unusable: {ex}")
        return False


def bench_case(e, k, n, kk, tokens, grouped):
    w = ((torch.rand(e, n, kk, device=dev) * 2 - 1) * 0.05).to(torch.bfloat16)
    xmax = max(tokens) * k
    x = (torch.rand(xmax, kk, device=dev) * 2 - 1).to(torch.bfloat16)
    out = []
    for t in tokens:
        rows = routing(e, k, t)
        d, total = len(rows), t * k
        starts = [0]
        for r in rows:
            starts.append(starts[-1] + r)
        copies = copies_for(d, e, 2 * n * kk)
        sustained = total // d >= b2b.COMPUTE_BOUND_MIN_TOKENS  # Job::compute_bound
        xs = [x[starts[j]:starts[j + 1]] for j in range(d)]

        def loop(i):
            first = i * d
            for j in range(d):
                F.linear(xs[j], w[first + j])

        t_loop = b2b.bench(loop, copies, sustained=sustained)
        t_gmm = None
        if grouped:
            offs = torch.tensor(starts[1:], device=dev, dtype=torch.int32)
            xa = x[:total]
            wt = w.transpose(-2, -1)
            t_gmm = b2b.bench(lambda i: torch._grouped_mm(xa, wt[i * d:(i + 1) * d], offs=offs), copies,
                              sustained=sustained)
        out.append((t, d, max(rows), t_loop, t_gmm))
        print(f"E={e} k={k} {n}x{kk} T={t} D={d}: loop {t_loop:.4f} ms, grouped_mm "
              f"{'-' if t_gmm is None else f'{t_gmm:.4f}'} ms", flush=True)
    del w, x
    torch.cuda.empty_cache()
    return out


def main():
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, L2 {b2b.L2 >> 20} MB")
    cases, tokens = cases_from_raw()
    grouped = has_grouped_mm()
    path = os.path.join(OUTDIR, "moe_ref.tsv")
    with open(path, "w") as f:
        f.write("experts\ttop_k\tn\tk\ttokens\tdistinct\tmax_rows\ttorch_loop_ms\ttorch_grouped_mm_ms\n")
        for e, k, n, kk in cases:
            try:
                rows = bench_case(e, k, n, kk, tokens, grouped)
            except Exception as ex:  # noqa: BLE001
                print(f"E={e} k={k} {n}x{kk}: failed: {ex}", flush=True)
                continue
            for t, d, mx, tl, tg in rows:
                f.write(f"{e}\t{k}\t{n}\t{kk}\t{t}\t{d}\t{mx}\t{tl:.5f}\t{'' if tg is None else f'{tg:.5f}'}\n")
            f.flush()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
