#!/bin/bash
# One GPU run of the calibrator and its reference comparison, on the device machine.
# Usage (from the tree root there, binary and scripts copied to .gpu/calib/):
#   bash .gpu/calib/run.sh KEY [quick|full|both] [extra calibrate flags, e.g. --timing isolated]
# Writes under $OUT (8 files at most come back): nvidia-smi.txt, quick.yaml, quick.log, KEY.yaml,
# KEY-raw.json, full.log, calibrate-KEY.md, reference.log.
set -o pipefail
D=$(dirname "$0")  # the folder the binary and scripts were copied to (.gpu/calib or similar)
KEY=$1
MODE=${2:-both}
shift $(( $# < 2 ? $# : 2 ))
EXTRA=("$@")
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
chmod +x $D/cardplan
WALL=""
if [ "$MODE" = quick ] || [ "$MODE" = both ]; then
  start=$(date +%s.%N)
  $D/cardplan calibrate --quick "${EXTRA[@]}" --out "$OUT/quick.yaml" 2>&1 | tee "$OUT/quick.log" || exit 1
  q=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
  echo "quick wall: $q s" | tee -a "$OUT/quick.log"
  WALL="\`--quick\`: $q s"
fi
if [ "$MODE" = full ] || [ "$MODE" = both ]; then
  CMD="cardplan calibrate${EXTRA[*]:+ ${EXTRA[*]}} --out profiles/gpus/$KEY.yaml --raw $KEY-raw.json"
  start=$(date +%s.%N)
  $D/cardplan calibrate "${EXTRA[@]}" --out "$OUT/$KEY.yaml" --raw "$OUT/$KEY-raw.json" 2>&1 | tee "$OUT/full.log" || exit 1
  f=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
  echo "full wall: $f s" | tee -a "$OUT/full.log"
  WALL="${WALL:+$WALL; }full calibration: $f s"
  python3 $D/reference.py "$OUT/$KEY-raw.json" "$OUT/calibrate-$KEY.md" --gpu-label "$KEY" --wall "$WALL" \
    --command "$CMD; python3 scripts/gpu/reference.py $KEY-raw.json calibrate-$KEY.md --gpu-label $KEY" 2>&1 | tee "$OUT/reference.log"
fi
