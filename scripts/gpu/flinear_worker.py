"""F.linear at the light (not compute-bound) compared points, in a process of its own.

Usage: python3 scripts/gpu/flinear_worker.py SPEC_JSON  (prints one JSON list: [name, T, ms]...)
  SPEC_JSON: [[name, n, k, sweep, compared, repeat], ...]: each layer's token counts below
  b2b.COMPUTE_BOUND_MIN_TOKENS in the calibrator's order (`sweep`), those to report (`compared`),
  and how many measurements each reported point's median takes (`repeat`).

reference.py takes F.linear at these points as the median over several processes, as the
calibrator's profile is the median of several processes: some points (qkv at 1 token on the
H200) have two levels about 6% apart, and a fresh process of either side lands on either one
(docs/ACCURACY.md, "FP16 GEMMs against F.linear"). Weights and inputs are drawn as reference.py draws
them (b2b.weights, activations uniform in [-1, 1)), rotated over b2b.rotation_copies copies.
"""
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402

out = []
for name, n, k, sweep, compared, repeat in json.loads(sys.argv[1]):
    copies = b2b.rotation_copies(2 * n * k)
    ws = b2b.weights(n, k, copies)
    for t in sweep:
        x = (torch.rand(t, k, device="cuda") * 2 - 1).half()
        if t not in compared:
            b2b.bench(lambda i: F.linear(x, ws[i]), copies)  # the history, as in reference.py
            continue
        ms = statistics.median(b2b.bench(lambda i: F.linear(x, ws[i]), copies) for _ in range(max(1, repeat)))
        out.append([name, t, ms])
    del ws
print(json.dumps(out))
