#!/usr/bin/env python3
"""Compare `cardplan step` predictions with the PyTorch reference step times (scripts/gpu/ref_step.py).

For every point of the reference JSON it runs
  cardplan step --gpu GPU --model llama-3.1-8b --quant fp16 --kv fp16 --batch B --context C --json
(or --batch 0 --context 0 --prefill-tokens P for prefill points), takes `gpu_ms` (the step time
without engine overhead: the reference has no scheduler either), and writes a Markdown report with
the reference table, the predicted table, the errors, and the median / max absolute error.

Usage:
  cargo build && python3 scripts/compare_cost_vs_pytorch.py \
      --ref benches/gpu-results/ref-step-h100.json --gpu h100-sxm \
      --out benches/gpu-results/cost-vs-pytorch-h100.md [--ref-md benches/gpu-results/ref-step-h100.md]
"""

import argparse
import json
import statistics
import subprocess
import sys

GOAL_MEDIAN, GOAL_MAX = 7.0, 15.0


def step(cardplan, gpu, batch, context, prefill):
    cmd = [cardplan, "step", "--gpu", gpu, "--model", "llama-3.1-8b", "--quant", "fp16", "--kv", "fp16",
           "--batch", str(batch), "--context", str(context), "--json"]
    if prefill:
        cmd += ["--prefill-tokens", str(prefill)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def grid_table(title, rows, cols, cell):
    lines = [f"**{title}**", "", "| batch \\ context | " + " | ".join(str(c) for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(cell(r, c) for c in cols) + " |")
    return lines + [""]


def ref_markdown(ref):
    dec = {(d["batch"], d["context"]): d for d in ref["decode"]}
    batches = sorted({b for b, _ in dec})
    ctxs = sorted({c for _, c in dec})
    lines = [f"# PyTorch reference step times: {ref['device']}", "",
             f"{ref['what']}; torch {ref['torch']}, CUDA {ref['cuda']}; {ref['reps']} timed replays per point;",
             f"elementwise ops: {ref.get('elementwise')}; prefill attention: {ref.get('prefill_attention')}.",
             "Produced by scripts/gpu/ref_step.py; raw numbers in ref-step-h100.json.", "",
             "Notes: " + "; ".join(ref["notes"]) + ".", ""]
    lines += grid_table("Decode step, median ms (p10–p90)", batches, ctxs,
                        lambda b, c: f"{dec[(b, c)]['ms']:.3f} ({dec[(b, c)]['ms_p10']:.2f}–{dec[(b, c)]['ms_p90']:.2f})"
                        if (b, c) in dec else "–")
    lines += ["**Prefill step (one prompt), median ms**", "", "| tokens | ms | p10 | p90 |", "|---|---|---|---|"]
    for p in ref["prefill"]:
        lines.append(f"| {p['tokens']} | {p['ms']:.3f} | {p['ms_p10']:.3f} | {p['ms_p90']:.3f} |")
    if ref.get("errors"):
        lines += ["", "Errors during the run:"] + [f"- {e}" for e in ref["errors"]]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True)
    ap.add_argument("--gpu", default="h100-sxm", help="cardplan GPU key or profile path")
    ap.add_argument("--cardplan", default="target/debug/cardplan")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ref-md", help="also write the reference table alone here")
    a = ap.parse_args()
    ref = json.load(open(a.ref))
    if a.ref_md:
        with open(a.ref_md, "w") as f:
            f.write(ref_markdown(ref))

    dec, pre, errs, profile = {}, {}, [], None
    for d in ref["decode"]:
        j = step(a.cardplan, a.gpu, d["batch"], d["context"], 0)
        profile = j["profile"]
        e = 100.0 * (j["gpu_ms"] - d["ms"]) / d["ms"]
        dec[(d["batch"], d["context"])] = (d["ms"], j["gpu_ms"], e, j["breakdown"])
        errs.append(e)
    for p in ref["prefill"]:
        j = step(a.cardplan, a.gpu, 0, 0, p["tokens"])
        profile = j["profile"]
        e = 100.0 * (j["gpu_ms"] - p["ms"]) / p["ms"]
        pre[p["tokens"]] = (p["ms"], j["gpu_ms"], e, j["breakdown"])
        errs.append(e)
    abs_errs = [abs(e) for e in errs]
    med, mx = statistics.median(abs_errs), max(abs_errs)
    dmed = statistics.median(abs(v[2]) for v in dec.values()) if dec else float("nan")
    pmed = statistics.median(abs(v[2]) for v in pre.values()) if pre else float("nan")

    batches = sorted({b for b, _ in dec})
    ctxs = sorted({c for _, c in dec})
    lines = [f"# cardplan step vs PyTorch reference: llama-3.1-8b fp16 on {ref['device']}", "",
             f"Profile used: **{profile['gpu']} ({profile['kind']})**: {profile['source']}", "",
             "Predicted = `gpu_ms` of `cardplan step ... --json` (step time without engine overhead; the "
             "reference has no scheduler). Reference = median of CUDA-event timings of one CUDA-graph "
             "replay of the same model shape (scripts/gpu/ref_step.py, ref-step-h100.md). "
             "Error = (predicted − reference) / reference.", "",
             f"**Median |error| {med:.1f}% (goal ≤ {GOAL_MEDIAN}%), max |error| {mx:.1f}% (goal ≤ {GOAL_MAX}%)** "
             f"over {len(errs)} points; decode median {dmed:.1f}%, prefill median {pmed:.1f}%.", "",
             "Command: `" + " ".join(sys.argv) + "`", ""]
    lines += grid_table("Decode, reference ms", batches, ctxs, lambda b, c: f"{dec[(b, c)][0]:.3f}" if (b, c) in dec else "–")
    lines += grid_table("Decode, predicted ms", batches, ctxs, lambda b, c: f"{dec[(b, c)][1]:.3f}" if (b, c) in dec else "–")
    lines += grid_table("Decode, error %", batches, ctxs, lambda b, c: f"{dec[(b, c)][2]:+.1f}" if (b, c) in dec else "–")
    lines += ["**Prefill (one prompt)**", "",
              "| tokens | reference ms | predicted ms | error | linear | attention | lm head | elementwise |",
              "|---|---|---|---|---|---|---|---|"]
    for t, (r, p, e, b) in sorted(pre.items()):
        lines.append(f"| {t} | {r:.3f} | {p:.3f} | {e:+.1f}% | {b['linear']:.2f} | {b['attention']:.2f} | "
                     f"{b['lm_head']:.2f} | {b['elementwise']:.2f} |")
    lines += ["", "**Decode breakdown of the prediction (ms), context 1024**", "",
              "| batch | linear | attention | lm head | elementwise |", "|---|---|---|---|---|"]
    for b in batches:
        if (b, 1024) in dec:
            br = dec[(b, 1024)][3]
            lines.append(f"| {b} | {br['linear']:.3f} | {br['attention']:.3f} | {br['lm_head']:.3f} | {br['elementwise']:.3f} |")
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(errs)} points: median |error| {med:.1f}%, max {mx:.1f}% (decode median {dmed:.1f}%, "
          f"prefill median {pmed:.1f}%); profile {profile['kind']}; wrote {a.out}")


if __name__ == "__main__":
    main()
