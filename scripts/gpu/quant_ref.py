#!/usr/bin/env python3
"""Library references for the FP8, INT4 and LLM.int8() tables of a `cardplan calibrate --quant-only`
run, on the same GPU, and the acceptance comparisons as TSV.

Usage: quant_ref.py RAW.json OUTDIR   (RAW.json: the run's --raw timings)

Writes to OUTDIR:
  fp8.tsv       torch._scaled_mm (e4m3 x e4m3 -> bf16, tensor-wise and row-wise scales) against
                cardplan's bare cuBLASLt FP8 GEMM (paths fp8-*-gemm-only), llama-3.1-8b shapes,
                1..8192 tokens (padded to a multiple of 16, as _scaled_mm requires and cardplan
                does where cuBLASLt needs it); acceptance: within 10%.
  llm_int8.tsv  bitsandbytes Linear8bitLt (threshold 6.0, random fp16 weights, 0.5% outlier columns
                of |x| = 8, the columns cardplan uses) against cardplan's llm-int8-bnb path at
                1, 16, 256, 4096 tokens; acceptance: within +-25%.
  int4.tsv      cardplan's int4 table (min of its W4A16 kernel and dequantize + cuBLAS) against
                torch F.linear fp16 of the same shape and the measured copy bandwidth: at 1 token
                the int4 weight bytes / time as a share of the copy bandwidth (acceptance >= 0.60),
                at >= 1024 tokens fp16 time / int4 time (acceptance >= 0.7).
Timing: the calibrator's back-to-back method (scripts/gpu/b2b.py: CUDA graphs over rotated
weight copies, compute-bound points under sustained load), except bitsandbytes, whose outlier
search syncs with the host (no graph capture): CUDA events around rounds of calls over rotated
layer copies, median of 30 rounds.
"""
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), "scripts/gpu"]
import b2b  # noqa: E402

RAW, OUTDIR = sys.argv[1], sys.argv[2]
raw = json.load(open(RAW))["timed"]
SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]  # llama-3.1-8b qkv, o, gate_up, down
TOKENS = [1 << i for i in range(14)]
BNB_TOKENS = [1, 16, 256, 4096]
OUTLIER_SHARE = 0.005  # src/calibrate/sweep.rs LLM_INT8_OUTLIER_SHARE
dev = torch.device("cuda")


def cardplan(path, n, k, t):
    for r in raw:
        if r.get("job") == "gemm" and r.get("path") == path and r["n"] == n and r["k"] == k and r["tokens"] == t:
            return r["ms"]
    return None


def pad16(t):
    return -(-t // 16) * 16


def fp8_rows(n, k, count):
    return [(torch.rand(n, k, device=dev) * 2 - 1).to(torch.float8_e4m3fn) for _ in range(count)]


def bench_fp8(n, k, t, rowwise):
    tp = pad16(t)
    ws = fp8_rows(n, k, b2b.rotation_copies(n * k))
    x = (torch.rand(tp, k, device=dev) * 2 - 1).to(torch.float8_e4m3fn)
    if rowwise:
        sa = torch.rand(tp, 1, device=dev) * 1e-3 + 1e-3
        sb = torch.rand(1, n, device=dev) * 1e-3 + 1e-3
    else:
        sa = torch.tensor(1.0, device=dev)
        sb = torch.tensor(1.5e-3, device=dev)
    fn = lambda i: torch._scaled_mm(x, ws[i].t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    return b2b.bench(fn, len(ws), sustained=t >= b2b.COMPUTE_BOUND_MIN_TOKENS)


def bench_fp16(n, k, t):
    ws = b2b.weights(n, k)
    x = (torch.rand(t, k, device=dev) * 2 - 1).half()
    return b2b.bench(lambda i: F.linear(x, ws[i]), len(ws), sustained=t >= b2b.COMPUTE_BOUND_MIN_TOKENS)


def copy_gbs():
    a = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    v = []
    for _ in range(20):
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        v.append(s.elapsed_time(e))
    return 2 * (1 << 30) / (statistics.median(v) * 1e6)


def outlier_x(t, k):
    nc = max(1, round(k * OUTLIER_SHARE))
    cols = torch.arange(nc, device=dev) * (k // nc)
    x = torch.rand(t, k, device=dev) * 2 - 1
    sign = torch.where((torch.arange(t, device=dev)[:, None] + cols[None, :]) % 2 == 0, 8.0, -8.0)
    x[:, cols] = sign
    return x.half()


def bench_bnb(n, k, t):
    import bitsandbytes as bnb

    copies = max(1, min(8, -(-2 * b2b.L2 // (n * k))))
    layers = []
    for _ in range(copies):
        lin = torch.nn.Linear(k, n, bias=False).half()
        with torch.no_grad():
            lin.weight.uniform_(-0.05, 0.05)
        q = bnb.nn.Linear8bitLt(k, n, bias=False, has_fp16_weights=False, threshold=6.0)
        q.load_state_dict(lin.state_dict())
        layers.append(q.to(dev))
    x = outlier_x(t, k)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.no_grad():
        for q in layers:
            q(x)
        v = []
        for _ in range(30):
            torch.cuda.synchronize()
            s.record()
            for q in layers:
                q(x)
            e.record()
            e.synchronize()
            v.append(s.elapsed_time(e) / len(layers))
    return statistics.median(v)


def write(name, header, rows):
    with open(os.path.join(OUTDIR, name), "w") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")


def fmt(x):
    return "" if x is None else f"{x:.4f}"


def main():
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    rows = []
    for n, k in SHAPES:
        for t in TOKENS:
            for rowwise in (False, True):
                path = "fp8-row-gemm-only" if rowwise else "fp8-tensor-gemm-only"
                ref = bench_fp8(n, k, t, rowwise)
                ours = cardplan(path, n, k, t)
                ratio = ours / ref if ours else None
                rows.append((n, k, t, "row" if rowwise else "tensor", fmt(ref), fmt(ours), fmt(ratio),
                             "" if ratio is None else ("ok" if abs(ratio - 1) <= 0.10 else "OUT")))
                print("fp8", rows[-1], flush=True)
    write("fp8.tsv", ["n", "k", "tokens", "scales", "scaled_mm_ms", "cardplan_ms", "ratio", "within_10pct"], rows)

    bw = copy_gbs()
    rows = []
    for n, k in SHAPES:
        for t in TOKENS:
            ours = [cardplan(p, n, k, t) for p in ("int4-mma", "int4-dequant-cublas")]
            ours = [o for o in ours if o]
            int4 = min(ours) if ours else None
            fp16 = bench_fp16(n, k, t)
            wbytes = n * k / 2 + n * k / 128 * 2  # 4-bit weights + fp16 group scales
            read = wbytes / (int4 * 1e6) / bw if int4 else None
            speed = fp16 / int4 if int4 else None
            verdict = ""
            if t == 1 and read is not None:
                verdict = "ok" if read >= 0.60 else "OUT"
            if t >= 1024 and speed is not None:
                verdict = "ok" if speed >= 0.70 else "OUT"
            rows.append((n, k, t, fmt(int4), fmt(cardplan("int4-mma", n, k, t)),
                         fmt(cardplan("int4-dequant-cublas", n, k, t)), fmt(fp16), f"{bw:.0f}",
                         fmt(read), fmt(speed), verdict))
            print("int4", rows[-1], flush=True)
    write("int4.tsv", ["n", "k", "tokens", "int4_ms", "w4a16_kernel_ms", "dequant_cublas_ms", "fp16_flinear_ms",
                       "copy_gbs", "weight_read_share_of_copy", "fp16_over_int4", "acceptance"], rows)

    rows = []
    try:
        import bitsandbytes  # noqa: F401
        have_bnb = True
    except Exception as e:  # noqa: BLE001
        print(f"bitsandbytes not importable: {e}")
        have_bnb = False
    for n, k in SHAPES:
        for t in BNB_TOKENS:
            ref = bench_bnb(n, k, t) if have_bnb else None
            ours = cardplan("llm-int8-bnb", n, k, t)
            ratio = ours / ref if (ours and ref) else None
            rows.append((n, k, t, fmt(ref), fmt(ours), fmt(ratio),
                         "" if ratio is None else ("ok" if abs(ratio - 1) <= 0.25 else "OUT")))
            print("llm-int8", rows[-1], flush=True)
    write("llm_int8.tsv", ["n", "k", "tokens", "bnb_linear8bitlt_ms", "cardplan_ms", "ratio", "within_25pct"], rows)


if __name__ == "__main__":
    main()
