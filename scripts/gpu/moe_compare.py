#!/usr/bin/env python3
"""Compare cardplan's grouped MoE GEMM timings (a `calibrate --moe-only --raw` file) with the PyTorch
reference (moe_ref.py's TSV), point by point (issue 22's acceptance: within 15% at every point).

Usage: moe_compare.py RAW.json MOE_REF.tsv OUT.tsv

Per point (experts, top_k, n, k, tokens), bf16: cardplan's table value (fastest of its paths),
each of its paths (moe-grouped, moe-strided, moe-loop; moe-grouped fp16 too), torch's loop of
F.linear and torch._grouped_mm, and the ratios
  table / reference   reference = torch._grouped_mm where the torch there has it, else the loop
  table / best torch  the faster of the two torch ways
  loop / torch loop   the same computation by the same library calls
with the verdict on `table / reference` (|ratio - 1| <= 0.15). A summary follows on stdout.
"""
import csv
import json
import statistics
import sys

RAW, REF, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
ours = {}
try:
    for r in json.load(open(RAW))["timed"]:
        if r.get("job") == "moe":
            ours[(r["experts"], r["top_k"], r["n"], r["k"], r["tokens"], r["path"], r["dtype"])] = r["ms"]
except (OSError, ValueError, KeyError) as e:
    print(f"no cardplan timings ({RAW}): {e}")
refs = []
try:
    refs = list(csv.DictReader(open(REF), delimiter="\t"))
except OSError as e:
    print(f"no PyTorch reference ({REF}): {e}")


def f(x):
    return "" if x is None else f"{x:.4f}"


rows, judged, ok = [], [], 0
ratios = {"table/reference": [], "table/best-torch": [], "loop/torch-loop": [], "grouped/grouped_mm": []}
for r in refs:
    key = tuple(int(r[c]) for c in ("experts", "top_k", "n", "k", "tokens"))
    # the raw file names the paths as serde writes MoePath: grouped, strided, loop
    paths = {p: ours.get(key + (p, "bf16")) for p in ("grouped", "strided", "loop")}
    g16 = ours.get(key + ("grouped", "fp16"))
    have = [v for v in paths.values() if v]
    table = min(have) if have else None
    tl = float(r["torch_loop_ms"]) if r["torch_loop_ms"] else None
    tg = float(r["torch_grouped_mm_ms"]) if r["torch_grouped_mm_ms"] else None
    ref = tg if tg else tl
    best = min(v for v in (tl, tg) if v) if (tl or tg) else None
    rr = table / ref if (table and ref) else None
    rb = table / best if (table and best) else None
    rl = paths["loop"] / tl if (paths["loop"] and tl) else None
    rg = paths["grouped"] / tg if (paths["grouped"] and tg) else None
    for name, v in (("table/reference", rr), ("table/best-torch", rb), ("loop/torch-loop", rl),
                    ("grouped/grouped_mm", rg)):
        if v:
            ratios[name].append(v)
    verdict = "" if rr is None else ("ok" if abs(rr - 1) <= 0.15 else "OUT")
    if verdict:
        judged.append(verdict)
        ok += verdict == "ok"
    rows.append(list(key) + [r["distinct"], f(table), f(paths["grouped"]), f(paths["strided"]),
                             f(paths["loop"]), f(g16), f(tl), f(tg), f(rr), f(rb), f(rl), verdict])
with open(OUT, "w") as o:
    o.write("\t".join(["experts", "top_k", "n", "k", "tokens", "distinct", "cardplan_table_ms", "grouped_ms",
                       "strided_ms", "loop_ms", "grouped_fp16_ms", "torch_loop_ms", "torch_grouped_mm_ms",
                       "table_over_reference", "table_over_best_torch", "loop_over_torch_loop",
                       "within_15pct"]) + "\n")
    for row in rows:
        o.write("\t".join(str(x) for x in row) + "\n")
print(f"moe: {ok} of {len(judged)} points within 15% of the PyTorch reference "
      f"(torch._grouped_mm where it ran, else the F.linear loop); {len(rows)} reference points, "
      f"{len(ours)} cardplan timings")
for name, v in ratios.items():
    if v:
        print(f"  {name}: min {min(v):.3f}, median {statistics.median(v):.3f}, max {max(v):.3f} ({len(v)} points)")
for row in rows:
    if row[-1] == "OUT":
        print("  out:", "E={} k={} {}x{} T={} D={}".format(*row[:6]), "table", row[6], "reference ratio", row[13])
