#!/bin/bash
# The INT4 W4A16 and LLM.int8() GPU run alone (issue 21, round 2), on the device machine, from
# the tree root (under 5 minutes):
#   bash scripts/gpu/int4-run.sh .gpu/calib/cardplan "$OUT" [GPU_KEY, default h200]
# With the bitsandbytes 0.50.2 wheel in .whl/ (carried), it installs it offline first.
# 1. `cardplan calibrate --quant-only --quant-schemes int4,llm-int8`: checks the W4A16 GEMV, mma
#    and dequantize kernels and the bitsandbytes LLM.int8() sequence against the CPU references,
#    times them (fp16 beside them) on the llama-3.1-8b shapes at 1..8192 tokens, and merges the
#    int4 and llm-int8 tables into the GPU's shipped profile (its other tables, fp8 included, kept).
# 2. scripts/gpu/quant_ref.py (parts int4, llm-int8): F.linear fp16 and bitsandbytes Linear8bitLt
#    on the same shapes, the acceptance TSVs and llm_int8_host.txt (bitsandbytes' per-call host
#    cost, measured on probe token counts the acceptance does not judge).
# Writes under OUT (8 files at most come back): KEY.yaml (the merged profile), quant-raw.json,
# calibrate.log, reference.log, int4.tsv, llm_int8.tsv, llm_int8_host.txt, summary.txt.
# Each step is cut off by `timeout`, so what finished still comes back; a failing part of the
# reference script leaves the other part's files.
set -o pipefail
BIN=${1:?binary}
OUT=${2:-$OUT}
KEY=${3:-h200}
D=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && echo "installed: $(ls .whl)"
  fi
} 2>&1 | tee "$OUT/calibrate.log"
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
chmod +x "$BIN"
start=$(date +%s)
timeout 170 "$BIN" calibrate --quant-only --quant-schemes int4,llm-int8 --gpu "$KEY" --out "$OUT/$KEY.yaml" \
  --raw "$OUT/quant-raw.json" 2>&1 | tee -a "$OUT/calibrate.log"
echo "calibrate: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/calibrate.log"
if [ -f "$OUT/quant-raw.json" ]; then
  start=$(date +%s)
  timeout 110 python3 "$D/quant_ref.py" "$OUT/quant-raw.json" "$OUT" int4,llm-int8 2>&1 | tee "$OUT/reference.log"
  echo "references: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/reference.log"
fi
python3 "$D/quant_summary.py" "$OUT" 2>&1 | tee "$OUT/summary.txt"
if [ -s "$OUT/llm_int8_host.txt" ] && [ -f "$OUT/$KEY.yaml" ]; then
  python3 "$D/set_host_us.py" "$OUT/$KEY.yaml" "$OUT/llm_int8_host.txt" 2>&1 | tee -a "$OUT/summary.txt"
  "$BIN" step --gpu "$OUT/$KEY.yaml" --quant llm-int8 --batch 8 >/dev/null 2>>"$OUT/summary.txt" \
    && echo "profile with host_us_per_call reads back" | tee -a "$OUT/summary.txt"
fi
