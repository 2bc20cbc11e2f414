"""qkv_proj at 1 token reads 0.0154 or 0.0164 ms, by process: is it the kernel cuBLAS picks?

Usage: python3 scripts/gpu/diag_qkvlevel.py OUTDIR  (one line per process; run it several times)

diag-legacy-h200.md: in fresh processes both the calibrator and F.linear land on one of two levels
about 6% apart at qkv T = 1 (6144 x 4096). This times F.linear there as reference.py does
(b2b.bench, median of 3), then captures one F.linear call with torch.cuda.graph and prints the
graph's kernels (name, grid, block) from cuGraphDebugDotPrint, and where the weight copies lie.
"""
import os
import re
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import b2b  # noqa: E402
from cuda.bindings import driver as cu  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out, exist_ok=True)
n, k = 6144, 4096
w = b2b.weights(n, k)
x = (torch.rand(64, k, device="cuda") * 2 - 1).half()
levels = {t: statistics.median(b2b.bench(lambda i: F.linear(x[:t], w[i]), len(w)) for _ in range(3)) for t in (1, 4, 8)}
g = torch.cuda.CUDAGraph(keep_graph=True)
st = torch.cuda.Stream()
st.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(st):
    F.linear(x[:1], w[0])
torch.cuda.current_stream().wait_stream(st)
with torch.cuda.graph(g):
    F.linear(x[:1], w[0])
path = os.path.join(out, f"qkv-T1-{os.getpid()}.dot")
r = cu.cuGraphDebugDotPrint(cu.CUgraph(g.raw_cuda_graph()), path.encode(), 1)
assert r[0] == cu.CUresult.CUDA_SUCCESS, r
kernels = []
try:
    graph = cu.CUgraph(g.raw_cuda_graph())
    _, _, count = cu.cuGraphGetNodes(graph, 0)
    _, nodes, count = cu.cuGraphGetNodes(graph, count)
    for node in nodes[:count]:
        _, kind = cu.cuGraphNodeGetType(node)
        if kind != cu.CUgraphNodeType.CU_GRAPH_NODE_TYPE_KERNEL:
            kernels.append(str(kind).rsplit("_", 1)[-1])
            continue
        _, prm = cu.cuGraphKernelNodeGetParams(node)
        _, name = cu.cuFuncGetName(prm.func)
        name = name.decode() if isinstance(name, bytes) else str(name)
        kernels.append(f"{name[:80]} grid {prm.gridDimX}x{prm.gridDimY}x{prm.gridDimZ} block {prm.blockDimX}")
except Exception as e:  # the dot file stays for reading offline
    kernels.append(f"node listing failed: {e!r}; see {path}")
ptrs = " ".join(f"{t.data_ptr() >> 20:#x}" for t in w)
print(f"T=1 {levels[1]:.4f} T=4 {levels[4]:.4f} T=8 {levels[8]:.4f} ms | weights at MB {ptrs} | "
      + " ; ".join(kernels), flush=True)
