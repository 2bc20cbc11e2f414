#!/usr/bin/env python3
"""Reference serving-step times for a llama-3.1-8b-shaped model, measured directly in PyTorch.

The cost model (`cardplan step`) predicts the GPU time of one serving step from per-kernel tables;
this script measures the same step end to end so the two can be compared
(scripts/compare_cost_vs_pytorch.py).

What is timed, per point: ONE forward step of a Llama-3.1-8B-shaped decoder (32 layers, hidden
4096, GQA 32/8 heads, head_dim 128, intermediate 14336, vocab 128256), fp16, random weights
(N(0, 0.02)), captured in a CUDA graph; the graph is replayed >= 20 times, each replay between its
own pair of CUDA events, and the median is reported (p10/p90 too).

- decode(B, C): B sequences each decode one token over a context of C tokens (the new token's K/V
  is written at position C-1 and attention reads all C positions).
- prefill(P): one prompt of P tokens, no cached prefix, causal attention; logits for the last token.

Per layer: RMSNorm(+residual) -> fused QKV GEMM -> rotary -> KV write -> attention -> O GEMM ->
residual + RMSNorm -> fused gate/up GEMM -> SiLU*mul -> down GEMM -> residual. Then final RMSNorm and
the LM head on the last token of each sequence. No sampling, no scheduler: this is GPU time only.

Simplifications (stated in the output JSON too):
- ONE KV buffer is shared by all 32 layers, so that B=256 x C=4096 fits in memory. Bytes read per
  layer are the same as with per-layer buffers, and at large shapes the per-layer KV is far larger
  than L2 (50 MB), so the timing is that of distinct buffers. At tiny shapes (B*C*4 KiB < L2) some of
  a layer's KV may still be in L2 from the previous layer: that makes the reference slightly FAST.
- KV is contiguous per sequence ([B, kv_heads, C, head_dim]), not paged.
- Decode attention: at each point both formulations are timed on the point's own shape and the
  faster runs (the JSON's "attention" per row): SDPA with native GQA (enable_gqa), or the
  GQA-as-batch trick (the 4 query heads sharing a KV head become 4 query positions of one
  non-causal SDPA call, exact for a single decoding position). Either way K/V are not repeated.
- Elementwise ops (RMSNorm, rotary, SiLU*mul) are fused with torch.compile when that works on the
  machine (as serving engines fuse them); else eager (more kernels; noted in the output).

Usage: python3 ref_step.py --out ref_step_h100.json [--quick] [--budget-s 330]
"""

import argparse
import json
import math
import statistics
import sys
import time

DECODE_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
DECODE_CONTEXTS = [256, 512, 1024, 2048, 4096]
PREFILL_TOKENS = [128, 256, 512, 1024, 2048, 4096, 8192]

ARCH = dict(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128,
            intermediate=14336, vocab=128256, eps=1e-5, rope_theta=500000.0)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write (rewritten after every point)")
    ap.add_argument("--reps", type=int, default=25, help="timed graph replays per point (>= 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=330.0,
                    help="stop starting new points after this many seconds (partial results are kept)")
    ap.add_argument("--quick", action="store_true", help="a few points only (smoke test)")
    ap.add_argument("--layers", type=int, default=ARCH["layers"], help="override layer count (testing)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile for elementwise ops")
    ap.add_argument("--profile-prefill", default="",
                    help="comma-separated prompt lengths: print each prefill step's GPU time per kernel "
                         "(torch.profiler, one eager step) and skip the timed points")
    return ap.parse_args()


def main():
    args = parse_args()
    if args.reps < 20:
        sys.exit("--reps must be >= 20")
    import torch
    import torch.nn.functional as F

    t_start = time.time()
    dev = torch.device("cuda")
    torch.manual_seed(1234)
    a = dict(ARCH)
    a["layers"] = args.layers
    H, NH, KVH, HD, I, V = a["hidden"], a["heads"], a["kv_heads"], a["head_dim"], a["intermediate"], a["vocab"]
    dt = torch.float16
    props = torch.cuda.get_device_properties(0)
    result = {
        "what": "llama-3.1-8b-shaped fp16 serving step, random weights, CUDA graph, median of CUDA-event timings",
        "device": props.name,
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "arch": a,
        "reps": args.reps,
        "notes": [
            "one KV buffer shared by all layers (bytes per layer identical; per-layer KV >> L2 at large shapes)",
            "contiguous KV, not paged; decode attention: the faster of SDPA native GQA and GQA-as-batch per point",
            "GPU time only: no sampling, no scheduler, no host overhead",
        ],
        "decode": [],
        "prefill": [],
        "errors": [],
    }

    def save():
        with open(args.out + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        import os
        os.replace(args.out + ".tmp", args.out)

    # ---- weights (distinct per layer, so every layer streams its own weights from DRAM) ----
    def rnd(*shape):
        return (torch.randn(*shape, device=dev, dtype=dt) * 0.02)

    layers = []
    for _ in range(a["layers"]):
        layers.append(dict(
            n1=torch.ones(H, device=dev, dtype=dt) + rnd(H),
            n2=torch.ones(H, device=dev, dtype=dt) + rnd(H),
            wqkv=rnd(NH * HD + 2 * KVH * HD, H),
            wo=rnd(H, NH * HD),
            wgu=rnd(2 * I, H),
            wd=rnd(H, I),
        ))
    nf = torch.ones(H, device=dev, dtype=dt)
    wlm = rnd(V, H)
    emb = rnd(V, H)
    torch.cuda.synchronize()
    print(f"weights ready in {time.time() - t_start:.1f}s on {props.name}", flush=True)

    inv_freq = 1.0 / (a["rope_theta"] ** (torch.arange(0, HD, 2, device=dev, dtype=torch.float32) / HD))

    # ---- elementwise ops (fused by torch.compile when possible) ----
    eps = a["eps"]

    def add_rmsnorm(x, r, w):
        s = x + r
        sf = s.float()
        y = sf * torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + eps)
        return y.to(dt) * w, s

    def rmsnorm(x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(dt) * w

    def silu_mul(gu):
        g, u = gu.chunk(2, dim=-1)
        return F.silu(g) * u

    def rope(q, k, cos, sin):
        # q: [T, NH, HD], k: [T, KVH, HD]; cos/sin: [T, HD/2] fp32
        def rot(x):
            xf = x.float()
            x1, x2 = xf[..., : HD // 2], xf[..., HD // 2:]
            c, s = cos[:, None, :], sin[:, None, :]
            return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(dt)
        return rot(q), rot(k)

    fused = {"add_rmsnorm": add_rmsnorm, "rmsnorm": rmsnorm, "silu_mul": silu_mul, "rope": rope}
    elementwise_mode = "eager"
    if not args.no_compile:
        try:
            import torch._dynamo
            torch._dynamo.config.cache_size_limit = 64
            comp = {k: torch.compile(v, dynamic=True) for k, v in fused.items()}
            x = rnd(5, H)
            comp["add_rmsnorm"](x, x, nf)
            comp["rmsnorm"](x, nf)
            comp["silu_mul"](rnd(5, 2 * I))
            cs = torch.zeros(5, HD // 2, device=dev)
            comp["rope"](rnd(5, NH, HD), rnd(5, KVH, HD), cs, cs)
            torch.cuda.synchronize()
            fused = comp
            elementwise_mode = "torch.compile (inductor)"
        except Exception as e:  # noqa: BLE001 - any failure means: run eager
            result["errors"].append(f"torch.compile unavailable, elementwise ops eager: {e!r}"[:500])
    result["elementwise"] = elementwise_mode
    print(f"elementwise ops: {elementwise_mode} ({time.time() - t_start:.1f}s)", flush=True)

    # ---- prefill attention backend: flash with native GQA if it works, else cuDNN, else repeat KV ----
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def prefill_attn_candidates():
        def gqa(backend):
            def f(q, k, v):
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            return f

        def repeat(q, k, v):
            rep = NH // KVH
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return [("flash+gqa", gqa(SDPBackend.FLASH_ATTENTION)),
                ("cudnn+gqa", gqa(SDPBackend.CUDNN_ATTENTION)),
                ("efficient+gqa", gqa(SDPBackend.EFFICIENT_ATTENTION)),
                ("flash, K/V repeated", repeat)]

    prefill_attn, prefill_attn_name = None, None
    for name, f in prefill_attn_candidates():
        try:
            q = rnd(1, NH, 64, HD)
            k = rnd(1, KVH, 64, HD)
            o = f(q, k, k.clone())
            torch.cuda.synchronize()
            if o.shape == q.shape and torch.isfinite(o).all():
                prefill_attn, prefill_attn_name = f, name
                break
        except Exception as e:  # noqa: BLE001
            result["errors"].append(f"prefill attention {name}: {e!r}"[:300])
    result["prefill_attention"] = prefill_attn_name
    print(f"prefill attention: {prefill_attn_name}", flush=True)

    # Decode attention, two formulations of the same math; each point runs the faster (timed on
    # the point's own shape), as an autotuned engine would: (a) GQA folded into the query rows,
    # (b) SDPA's native GQA (one query row per head, enable_gqa).
    def decode_attn_rows(q, kc, vc):
        # q: [B, NH, HD] -> [B, KVH, NH/KVH, HD]; kc, vc: [B, KVH, C, HD]
        B = q.shape[0]
        qg = q.view(B, KVH, NH // KVH, HD)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            o = F.scaled_dot_product_attention(qg, kc, vc)
        return o.reshape(B, NH * HD)

    def decode_attn_gqa(q, kc, vc):
        B = q.shape[0]
        o = F.scaled_dot_product_attention(q.view(B, NH, 1, HD), kc, vc, enable_gqa=True)
        return o.reshape(B, NH * HD)

    decode_candidates = {"gqa-as-rows": decode_attn_rows, "native-gqa": decode_attn_gqa}

    def pick_decode_attn(q, kc, vc):
        best = None
        for name, f in decode_candidates.items():
            try:
                for _ in range(3):
                    f(q, kc, vc)
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(10):
                    f(q, kc, vc)
                e1.record()
                e1.synchronize()
                ms = e0.elapsed_time(e1) / 10
            except Exception as e:  # noqa: BLE001
                result["errors"].append(f"decode attention {name}: {e!r}"[:300])
                continue
            if best is None or ms < best[0]:
                best = (ms, name)
        if best is None:
            raise RuntimeError("no decode attention formulation works")
        return best[1]

    # ---- one forward step ----
    def layer_core(x, resid, L, attn_fn, cos, sin):
        """x: [T, H] (input to norm); resid: [T, H] residual or None. Returns new (x, resid)."""
        if resid is None:
            h, resid = fused["rmsnorm"](x, L["n1"]), x
        else:
            h, resid = fused["add_rmsnorm"](x, resid, L["n1"])
        qkv = h @ L["wqkv"].t()
        T = qkv.shape[0]
        q = qkv[:, : NH * HD].view(T, NH, HD)
        k = qkv[:, NH * HD: NH * HD + KVH * HD].view(T, KVH, HD)
        v = qkv[:, NH * HD + KVH * HD:].view(T, KVH, HD)
        q, k = fused["rope"](q, k, cos, sin)
        o = attn_fn(q, k, v)
        o = o @ L["wo"].t()
        h, resid = fused["add_rmsnorm"](o, resid, L["n2"])
        m = fused["silu_mul"](h @ L["wgu"].t())
        return m @ L["wd"].t(), resid

    def make_decode(B, C):
        kc = rnd(B, KVH, C, HD)
        vc = rnd(B, KVH, C, HD)
        tok = torch.randint(0, V, (B,), device=dev)
        pos = torch.full((B,), C - 1, device=dev, dtype=torch.float32)
        ang = pos[:, None] * inv_freq[None, :]
        cos, sin = ang.cos(), ang.sin()
        out = {}

        chosen = pick_decode_attn(rnd(B, NH, HD), kc, vc)
        decode_attn = decode_candidates[chosen]
        out["attention"] = chosen

        def attn_fn(q, k, v):
            kc[:, :, C - 1, :] = k
            vc[:, :, C - 1, :] = v
            return decode_attn(q, kc, vc)

        def step():
            x = emb[tok]
            resid = None
            for L in layers:
                x, resid = layer_core(x, resid, L, attn_fn, cos, sin)
            x, _ = fused["add_rmsnorm"](x, resid, nf)
            out["logits"] = x @ wlm.t()
        return step, (kc, vc, out)

    def make_prefill(P):
        tok = torch.randint(0, V, (P,), device=dev)
        pos = torch.arange(P, device=dev, dtype=torch.float32)
        ang = pos[:, None] * inv_freq[None, :]
        cos, sin = ang.cos(), ang.sin()
        out = {}

        def attn_fn(q, k, v):
            o = prefill_attn(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None])
            return o[0].transpose(0, 1).reshape(P, NH * HD)

        def step():
            x = emb[tok]
            resid = None
            for L in layers:
                x, resid = layer_core(x, resid, L, attn_fn, cos, sin)
            x, _ = fused["add_rmsnorm"](x[-1:], resid[-1:], nf)
            out["logits"] = x @ wlm.t()
        return step, ()

    def capture(step):
        """One step captured into a CUDA graph (after two warm-up calls on a side stream)."""
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()
        return g

    def time_graph(step):
        g = capture(step)
        for _ in range(args.warmup):
            g.replay()
        torch.cuda.synchronize()
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(args.reps)]
        for e0, e1 in ev:
            e0.record()
            g.replay()
            e1.record()
        torch.cuda.synchronize()
        ts = sorted(e0.elapsed_time(e1) for e0, e1 in ev)
        del g
        return {
            "ms": statistics.median(ts),
            "ms_p10": ts[max(0, math.floor(0.1 * len(ts)))],
            "ms_p90": ts[min(len(ts) - 1, math.ceil(0.9 * len(ts)) - 1)],
            "ms_min": ts[0],
        }

    if args.profile_prefill:
        from torch.profiler import profile, ProfilerActivity

        def kernel_table(run, title, top):
            """Profile one call of `run`; print and return (µs, calls, kernel) rows, largest first."""
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                run()
                torch.cuda.synchronize()
            rows = []
            for ev in prof.key_averages():
                us = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
                if us > 0:
                    rows.append((us, ev.count, ev.key))
            rows.sort(reverse=True)
            print(f"{title}: {sum(r[0] for r in rows) / 1e3:.3f} ms of kernels")
            for us, n, key in rows[:top]:
                print(f"  {us / 1e3:8.3f} ms  x{n:4d}  {key[:110]}")
            return rows

        for P in [int(x) for x in args.profile_prefill.split(",")]:
            step, _ = make_prefill(P)
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            rows = kernel_table(step, f"profile prefill P={P}", 30)
            total = sum(r[0] for r in rows)
            # The same step replayed from a CUDA graph, as the timed points run it.
            g = capture(step)
            g.replay()
            torch.cuda.synchronize()
            kernel_table(g.replay, f"profile prefill P={P}, graph replay", 12)
            del g
            result.setdefault("profile", []).append(
                {"tokens": P, "kernel_ms": total / 1e3,
                 "top": [{"ms": us / 1e3, "calls": n, "kernel": key} for us, n, key in rows[:30]]})
        save()
        return

    points = [("prefill", p, 0) for p in PREFILL_TOKENS]
    points += [("decode", b, c) for c in DECODE_CONTEXTS for b in DECODE_BATCHES]
    if args.quick:
        points = [("prefill", 128, 0), ("prefill", 1024, 0), ("decode", 1, 256), ("decode", 64, 1024)]

    for kind, x, c in points:
        if time.time() - t_start > args.budget_s:
            result["errors"].append(f"time budget reached: skipped {kind} {x} {c} and later points")
            print("time budget reached, stopping", flush=True)
            break
        bufs = ()
        try:
            if kind == "decode":
                step, bufs = make_decode(x, c)
            elif prefill_attn is None:
                raise RuntimeError("no prefill attention backend works")
            else:
                step, bufs = make_prefill(x)
            r = time_graph(step)
            if kind == "decode":
                row = {"batch": x, "context": c, "attention": bufs[2].get("attention"), **r}
                result["decode"].append(row)
                print(f"decode  B={x:4d} C={c:5d}: {r['ms']:8.3f} ms (p10 {r['ms_p10']:.3f}, p90 {r['ms_p90']:.3f}) {row['attention']}", flush=True)
            else:
                row = {"tokens": x, **r}
                result["prefill"].append(row)
                print(f"prefill P={x:5d}:        {r['ms']:8.3f} ms (p10 {r['ms_p10']:.3f}, p90 {r['ms_p90']:.3f})", flush=True)
        except torch.cuda.OutOfMemoryError as e:
            result["errors"].append(f"{kind} {x} {c}: out of memory: {str(e)[:200]}")
            print(f"{kind} {x} {c}: OOM, skipped", flush=True)
        except Exception as e:  # noqa: BLE001 - record and go on with the next point
            result["errors"].append(f"{kind} {x} {c}: {e!r}"[:400])
            print(f"{kind} {x} {c}: error {e!r}"[:400], flush=True)
        del bufs
        torch.cuda.empty_cache()
        save()
    result["wall_s"] = round(time.time() - t_start, 1)
    save()
    print(f"done in {result['wall_s']} s; {len(result['decode'])} decode + {len(result['prefill'])} prefill points;"
          f" errors: {len(result['errors'])}", flush=True)
    for e in result["errors"]:
        print("  error:", e)


if __name__ == "__main__":
    main()
