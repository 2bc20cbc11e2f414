"""The same cuBLAS calls captured by the driver API and by torch.cuda.graph: what is in each graph?

Usage: python3 scripts/gpu/diag_graphdot.py OUTDIR  (writes driver-T.dot, torch-T.dot and a summary)

Timed the calibrator's way, a cublasGemmEx graph captured through the driver API reads o_proj
T = 8-16 3-6% faster than the same calls captured by torch.cuda.graph or than F.linear, in one
process (diag-switch-h200.md; diag-process-h200.md calls 4-5). This dumps both graphs with
cuGraphDebugDotPrint (verbose) for o_proj at T = 16 and 64, four calls each, and times both.
"""
import os
import re
import statistics
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out, exist_ok=True)
import torch  # noqa: E402

torch.zeros(1, device="cuda")
dp.torch = torch  # diag_process's "torch" mode uses it
n = k = 4096
w, x, y = dp.operands(n, k)
copies = len(w)
summary = []
for t in (16, 64):
    call = lambda i, st: dp.gemm(w[i], x, y, n, k, t, st)  # noqa: E731
    for i in range(copies):
        call(i, dp.stream)
    dp.ok(dp.cu.cuStreamSynchronize(dp.stream))
    # driver capture, as the calibrator does
    dp.ok(dp.cu.cuStreamBeginCapture(dp.stream, dp.cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))
    for i in range(4):
        call(i % copies, dp.stream)
    graph = dp.ok(dp.cu.cuStreamEndCapture(dp.stream))
    dpath = os.path.join(out, f"driver-T{t}.dot")
    dp.ok(dp.cu.cuGraphDebugDotPrint(graph, dpath.encode(), 1))
    dp.ok(dp.cu.cuGraphDestroy(graph))
    # torch capture of the same calls
    g = torch.cuda.CUDAGraph(keep_graph=True)
    with torch.cuda.graph(g):
        cs = torch.cuda.current_stream().cuda_stream
        for i in range(4):
            call(i % copies, cs)
    tpath = os.path.join(out, f"torch-T{t}.dot")
    dp.ok(dp.cu.cuGraphDebugDotPrint(dp.cu.CUgraph(g.raw_cuda_graph()), tpath.encode(), 1))
    del g
    for label, path in (("driver", dpath), ("torch", tpath)):
        text = open(path).read()
        nodes = re.findall(r'^\s*"?graph_\d+_node_\d+"?\s*\[', text, re.M)
        kinds = sorted(set(re.findall(r"(KERNEL|MEMSET|MEMCPY|EVENT_RECORD|WAIT_EVENT|EMPTY|HOST|MEM_ALLOC|MEM_FREE)", text)))
        summary.append(f"T={t} {label}: {len(nodes)} nodes, kinds {kinds}, {len(text)} bytes")
    d = [statistics.median(dp.bench(call, copies, m) for _ in range(3)) for m in ("driver", "torch", "driver")]
    summary.append(f"T={t} timed (ms/call): driver {d[0]:.4f}, torch-captured {d[1]:.4f}, driver again {d[2]:.4f}")
open(os.path.join(out, "summary.txt"), "w").write("\n".join(summary) + "\n")
print("\n".join(summary))
