#!/bin/bash
# The FP8 / INT4 / LLM.int8() GPU run (issue 21), on the device machine, from the tree root:
#   bash scripts/gpu/quant-run.sh .gpu/calib/cardplan "$OUT" [GPU_KEY, default h200]
# With the bitsandbytes 0.50.2 wheel in .whl/ (carried), it installs it offline first.
# 1. `cardplan calibrate --quant-only`: checks every kernel against the CPU references (a failing
#    quantized kernel turns its paths off, with the reason in the profile's notes), times the FP8,
#    INT4 and LLM.int8() GEMMs (fp16 beside them) on the llama-3.1-8b shapes at 1..8192 tokens and
#    FP8-KV decode attention, and merges their tables into the GPU's shipped measured profile.
# 2. scripts/gpu/quant_ref.py: torch._scaled_mm, F.linear fp16 and bitsandbytes Linear8bitLt on the
#    same shapes, and the acceptance TSVs.
# Writes under OUT (8 files at most come back): KEY.yaml (the merged profile), quant-raw.json,
# calibrate.log, reference.log, fp8.tsv, int4.tsv, llm_int8.tsv, summary.txt.
# Budget: about 4 minutes of calibration and 2 of references; each step is cut off by `timeout`
# so that what finished still comes back.
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
timeout 330 "$BIN" calibrate --quant-only --gpu "$KEY" --out "$OUT/$KEY.yaml" --raw "$OUT/quant-raw.json" 2>&1 \
  | tee -a "$OUT/calibrate.log"
echo "calibrate: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/calibrate.log"
if [ -f "$OUT/quant-raw.json" ]; then
  start=$(date +%s)
  timeout 130 python3 "$D/quant_ref.py" "$OUT/quant-raw.json" "$OUT" 2>&1 | tee "$OUT/reference.log"
  echo "references: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/reference.log"
fi
python3 "$D/quant_summary.py" "$OUT" 2>&1 | tee "$OUT/summary.txt"
