#!/usr/bin/env python3
"""Summarise the TSVs of scripts/gpu/quant_ref.py (a sibling of compare_raw.py for the quantized
paths): per file, points within the acceptance band, and the worst ratio.

Usage: python3 scripts/gpu/quant_summary.py OUTDIR
"""
import csv
import os
import sys

out = sys.argv[1]
for name, col, verdict in [("fp8.tsv", "ratio", "within_10pct"), ("llm_int8.tsv", "ratio", "within_25pct"),
                           ("int4.tsv", None, "acceptance")]:
    path = os.path.join(out, name)
    if not os.path.exists(path):
        print(f"{name}: missing")
        continue
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    judged = [r for r in rows if r[verdict] and r[verdict] != "probe"]
    ok = sum(r[verdict] == "ok" for r in judged)
    print(f"{name}: {ok} of {len(judged)} judged points within the acceptance band")
    if col:
        vals = [float(r[col]) for r in judged if r.get(col)]
        if vals:
            print(f"  ratio cardplan/reference: min {min(vals):.3f}, median {sorted(vals)[len(vals) // 2]:.3f}, max {max(vals):.3f}")
    for r in judged:
        if r[verdict] != "ok":
            print("  out:", {k: v for k, v in r.items() if v})
