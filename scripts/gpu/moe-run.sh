#!/bin/bash
# The grouped MoE GEMM GPU run (issue 22), on the device machine, from the tree root:
#   bash scripts/gpu/moe-run.sh .gpu/calib/cardplan "$OUT" [GPU_KEY, default h200]
# 1. `cardplan calibrate --moe-only`: checks every kernel against the CPU references (the MoE paths
#    too: grouped, strided-batched and loop, bf16 and fp16; a failing path is turned off, its
#    jobs skipped with the reason), times the expert GEMMs of mixtral-8x7b, qwen3-30b-a3b,
#    gpt-oss-20b and gpt-oss-120b at 1..8192 tokens and merges the moe_gemm tables into a copy
#    of the GPU's shipped measured profile (OUT/KEY.yaml).
# 2. scripts/gpu/moe_ref.py: the same computation in PyTorch (a loop of F.linear over the touched
#    experts, torch._grouped_mm where it exists), bf16, by the same timing method.
# 3. scripts/gpu/moe_compare.py: the point-by-point comparison (acceptance: within 15%).
# Writes under OUT (8 files at most come back): KEY.yaml, moe-raw.json, calibrate.log,
# reference.log, moe_ref.tsv, moe.tsv, summary.txt. Each step is cut off by `timeout` so that
# what finished still comes back; a step that fails leaves the others' outputs.
set -o pipefail
BIN=${1:?binary}
OUT=${2:-$OUT}
KEY=${3:-h200}
MODELS=mixtral-8x7b,qwen3-30b-a3b,gpt-oss-20b,gpt-oss-120b
D=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/calibrate.log"
chmod +x "$BIN"
start=$(date +%s)
timeout 200 "$BIN" calibrate --moe-only --models "$MODELS" --gpu "$KEY" --out "$OUT/$KEY.yaml" \
  --raw "$OUT/moe-raw.json" 2>&1 | tee -a "$OUT/calibrate.log"
echo "calibrate: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/calibrate.log"
start=$(date +%s)
timeout 140 python3 "$D/moe_ref.py" "$OUT" "$OUT/moe-raw.json" 2>&1 | tee "$OUT/reference.log"
echo "reference: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/reference.log"
python3 "$D/moe_compare.py" "$OUT/moe-raw.json" "$OUT/moe_ref.tsv" "$OUT/moe.tsv" 2>&1 | tee "$OUT/summary.txt"
if [ -f "$OUT/$KEY.yaml" ]; then
  "$BIN" step --model qwen3-30b-a3b --gpu "$OUT/$KEY.yaml" --batch 64 2>&1 | tail -n 25 | tee -a "$OUT/summary.txt"
fi
