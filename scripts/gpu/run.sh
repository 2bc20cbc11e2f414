#!/bin/bash
# One GPU run of the calibrator and its reference comparison, on the device machine.
# Usage (from the tree root there, binary and scripts copied to .gpu/calib/):
#   bash .gpu/calib/run.sh KEY [quick|full|both]
# Writes under $OUT: KEY.yaml (profile), KEY-raw.json, calibrate-KEY.md, logs.
set -o pipefail
D=.gpu/calib
KEY=$1
MODE=${2:-both}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
chmod +x $D/cardplan
if [ "$MODE" = quick ] || [ "$MODE" = both ]; then
  start=$(date +%s.%N)
  $D/cardplan calibrate --quick --out "$OUT/quick.yaml" --raw "$OUT/quick-raw.json" 2>&1 | tee "$OUT/quick.log" || exit 1
  echo "quick wall: $(awk "BEGIN{print $(date +%s.%N) - $start}") s" | tee -a "$OUT/quick.log"
fi
if [ "$MODE" = full ] || [ "$MODE" = both ]; then
  CMD="cardplan calibrate --out profiles/gpus/$KEY.yaml --raw $KEY-raw.json"
  start=$(date +%s.%N)
  $D/cardplan calibrate --out "$OUT/$KEY.yaml" --raw "$OUT/$KEY-raw.json" 2>&1 | tee "$OUT/full.log" || exit 1
  echo "full wall: $(awk "BEGIN{print $(date +%s.%N) - $start}") s" | tee -a "$OUT/full.log"
  python3 $D/reference.py "$OUT/$KEY-raw.json" "$OUT/calibrate-$KEY.md" --gpu-label "$KEY" \
    --command "$CMD; python3 scripts/gpu/reference.py $KEY-raw.json calibrate-$KEY.md --gpu-label $KEY" 2>&1 | tee "$OUT/reference.log"
fi
