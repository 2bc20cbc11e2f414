#!/usr/bin/env python3
"""Write bitsandbytes' measured per-call host cost (llm_int8_host.txt from quant_ref.py) into a
profile's llm-int8 GEMM tables (`host_us_per_call`, which the cost model adds to every call) and
its source into the provenance notes. Text edit of cardplan's own YAML layout (no PyYAML needed);
`cardplan` validates the result when it reads it.

Usage: python3 scripts/gpu/set_host_us.py PROFILE.yaml llm_int8_host.txt
"""
import json
import sys

prof, host = sys.argv[1], sys.argv[2]
vals = dict(line.rstrip("\n").split("\t", 1) for line in open(host) if "\t" in line)
us = vals.get("host_us_per_call", "")
if not us:
    sys.exit(f"{host}: no host_us_per_call measured")
us = float(us)
lines = open(prof).read().split("\n")
out, in_llm, tables, noted, in_prov = [], False, 0, False, False
for line in lines:
    if line.startswith("  - scheme: "):
        in_llm = line.strip() == "- scheme: llm-int8"
    if in_llm and line.startswith("    host_us_per_call:") or line.startswith('    - "llm-int8 host_us_per_call'):
        continue  # replaced below
    if in_llm and line == "    points:":
        out.append(f"    host_us_per_call: {us:.1f}")
        tables += 1
        in_llm = False
    out.append(line)
    if line == "  provenance:":
        in_prov = True
    if in_prov and not noted and line == "    notes:":
        out.append("    - " + json.dumps(f"llm-int8 host_us_per_call {us:.1f}: {vals.get('source', '')}",
                                        ensure_ascii=False))
        noted = True
        in_prov = False
if not tables or not noted:
    sys.exit(f"{prof}: found {tables} llm-int8 tables, notes {'found' if noted else 'missing'}")
open(prof, "w").write("\n".join(out))
print(f"{prof}: host_us_per_call {us:.1f} in {tables} llm-int8 tables")
