#!/usr/bin/env python3
"""Compare two calibrator raw timing files job by job: new/old time ratio per kernel family.

Usage: python3 scripts/gpu/compare_raw.py NEW-raw.json OLD-raw.json (e.g. a fresh run against
benches/gpu-results/h200-raw.json, to check that a change to the calibrator did not move its times).
"""
import json, sys, statistics as st
a = json.load(open(sys.argv[1]))['timed']; b = json.load(open(sys.argv[2]))['timed']
def key(t): return tuple(sorted((k, v) for k, v in t.items() if k != 'ms'))
old = {key(t): t['ms'] for t in b}
fam = {}
for t in a:
    k = key(t)
    if k in old:
        f = t['job'] + ':' + str(t.get('path', t.get('kind', t.get('kv', ''))))
        fam.setdefault(f, []).append(t['ms'] / old[k])
print(f"{'family':40} {'n':>5} {'median':>7} {'p10':>6} {'p90':>6}")
allr = []
for f, r in sorted(fam.items()):
    r.sort(); allr += r
    q = lambda p: r[min(len(r) - 1, int(p * len(r)))]
    print(f"{f:40} {len(r):5} {st.median(r):7.3f} {q(0.1):6.3f} {q(0.9):6.3f}")
allr.sort()
print('all', len(allr), 'median', round(st.median(allr), 3), 'p05', round(allr[int(.05*len(allr))], 3), 'p95', round(allr[int(.95*len(allr))], 3), 'unmatched', len(a) - len(allr))
