"""Which part of making torch's weight copies puts the small GEMMs on F.linear's level?

Usage: python3 scripts/gpu/diag_torchalloc.py STEPS  (prints one line per step)
  STEPS: comma-separated, applied in order in this process, each followed by a measurement:
    init      import torch, CUDA init (torch.zeros(1))
    empty     torch.empty of the weight copies (fp16, no kernel writes them)
    memset    fill those by cuMemsetD8 (driver API)
    fill      fill those by a torch kernel (fill_)
    temps     fp32 n x k draws made and dropped (torch keeps their blocks cached)
    weights   b2b.weights: the copies as reference.py makes them (the known trigger)
    free      drop every torch tensor and torch.cuda.empty_cache()
    small     a torch tensor of 512 KB, filled by a torch kernel
    dblk:N:MB[:nofill|:async]  N allocations of MB each from cuMemAlloc (driver API), filled by
              cuMemsetD8 (legacy stream), not at all (nofill), or by cuMemsetD8Async on the
              timing stream
    dballast  = dblk:1:320;  dtouch = dblk:1:320:nofill;  dballast8 = dblk:8:40
    rtballast 8 x 40 MB from cudaMalloc (CUDA runtime through ctypes), filled by cudaMemset
    vmm       320 MB mapped through the virtual memory API (cuMemCreate, cuMemMap, cuMemSetAccess:
              what torch's expandable segments use), filled by cuMemsetD8
    segments  print torch's allocator segments (size, expandable)
    cudart    CUDA runtime init through ctypes (libcudart.so.13, cudaFree(0)), no torch
    wait      sleep 5 s (a large free slows every GEMM for a few seconds: diag-ballast-h200.md)

diag-ballast-h200.md: with torch's weight copies held, a kernel before each timed replay moves
the calibrator's method (driver API + cuBLAS by ctypes) at o_proj T = 1-16 to F.linear's level;
memory held from cuMemAlloc does not. Each measurement: o_proj T = 1, 8, 16 and qkv T = 1, plain
(no kernel before each replay) and with the calibrator's spin_ns; median of 3, ms per call.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_process as dp  # noqa: E402

cu = dp.cu
POINTS = [("o_proj", 4096, 4096, 1), ("o_proj", 4096, 4096, 8), ("o_proj", 4096, 4096, 16), ("qkv", 6144, 4096, 1)]
ops = {(n, k): dp.operands(n, k) for _, n, k, _ in POINTS}
spin = dp.spin_hook()
held = []
torch = None


def measure(label):
    for hook_name, hook in (("plain", None), ("spin", spin)):
        cells = []
        for name, n, k, t in POINTS:
            w, x, y = ops[(n, k)]
            v = statistics.median(dp.bench(lambda i, st: dp.gemm(w[i], x, y, n, k, t, st), len(w),
                                           before_sample=hook) for _ in range(3))
            cells.append(f"{name} T={t} {v:.4f}")
        print(f"{label}, {hook_name}: " + " | ".join(cells), flush=True)


# named steps that are one dblk each (the names the session-10 tables use)
ALIASES = {"dballast": "dblk:1:320", "dtouch": "dblk:1:320:nofill", "dballast8": "dblk:8:40"}

measure("start")
for label in sys.argv[1].split(","):
    step = ALIASES.get(label, label)
    if step == "init":
        import torch
        torch.zeros(1, device="cuda")
    elif step == "empty":
        held += [torch.empty(n, k, device="cuda", dtype=torch.half) for n, k in ops for _ in ops[(n, k)][0]]
    elif step == "memset":
        for t in held:
            dp.ok(cu.cuMemsetD8(t.data_ptr(), 0x2C, t.numel() * t.element_size()))
    elif step == "fill":
        for t in held:
            t.fill_(0.01)
    elif step == "temps":
        for n, k in ops:
            for _ in ops[(n, k)][0]:
                (torch.rand(n, k, device="cuda") * 2 - 1) * 0.05
    elif step == "weights":
        import b2b
        held += [c for n, k in ops for c in b2b.weights(n, k, len(ops[(n, k)][0]))]
    elif step == "free":
        held.clear()
        torch.cuda.empty_cache()
    elif step == "small":
        held.append(torch.empty(1 << 18, device="cuda", dtype=torch.half).fill_(0.01))
    elif step.startswith("dblk:"):
        parts = step.split(":")
        count, mb = int(parts[1]), int(parts[2])
        for _ in range(count):
            p = dp.ok(cu.cuMemAlloc(mb << 20))
            if "async" in parts:
                dp.ok(cu.cuMemsetD8Async(p, 0x2C, mb << 20, dp.stream))
            elif "nofill" not in parts:
                dp.ok(cu.cuMemsetD8(p, 0x2C, mb << 20))
        dp.ok(cu.cuCtxSynchronize())
    elif step == "rtballast":
        import ctypes
        rt = ctypes.CDLL("libcudart.so.13")
        for _ in range(8):
            p = ctypes.c_void_p()
            assert rt.cudaMalloc(ctypes.byref(p), ctypes.c_size_t(40 << 20)) == 0
            assert rt.cudaMemset(p, 0x2C, ctypes.c_size_t(40 << 20)) == 0
        assert rt.cudaDeviceSynchronize() == 0
    elif step == "vmm":
        prop = cu.CUmemAllocationProp()
        prop.type = cu.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
        prop.location.type = cu.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
        prop.location.id = 0
        gran = dp.ok(cu.cuMemGetAllocationGranularity(prop, cu.CUmemAllocationGranularity_flags.CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
        size = -(-(320 << 20) // gran) * gran
        h = dp.ok(cu.cuMemCreate(size, prop, 0))
        va = dp.ok(cu.cuMemAddressReserve(size, 0, 0, 0))
        dp.ok(cu.cuMemMap(va, size, 0, h, 0))
        acc = cu.CUmemAccessDesc()
        acc.location.type = cu.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
        acc.location.id = 0
        acc.flags = cu.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_READWRITE
        dp.ok(cu.cuMemSetAccess(va, size, [acc], 1))
        dp.ok(cu.cuMemsetD8(va, 0x2C, size))
        dp.ok(cu.cuCtxSynchronize())
        print(f"vmm: {size >> 20} MB, granularity {gran >> 10} KB", flush=True)
    elif step == "segments":
        segs = torch.cuda.memory._snapshot()["segments"]
        print("segments: " + ", ".join(f"{s_['total_size'] >> 20} MB {s_.get('segment_type')}"
                                       f"{' expandable' if s_.get('is_expandable') else ''}" for s_ in segs), flush=True)
        print("alloc conf:", os.environ.get("PYTORCH_CUDA_ALLOC_CONF"), flush=True)
        continue
    elif step == "cudart":
        import ctypes
        rt = ctypes.CDLL("libcudart.so.13")
        assert rt.cudaFree(ctypes.c_void_p(0)) == 0
    elif step == "wait":
        time.sleep(5)
    else:
        sys.exit(f"unknown step {step!r}")
    if torch is not None:
        torch.cuda.synchronize()
    measure(f"+ {label}")
