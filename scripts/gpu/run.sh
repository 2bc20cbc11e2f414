#!/bin/bash
# One GPU run of the calibrator and its reference comparison, on the device machine.
# Usage (from the tree root there, binary and scripts copied to .gpu/calib/):
#   [RUNS=N] bash .gpu/calib/run.sh KEY [quick|full|both] [extra calibrate flags, e.g. --timing isolated]
# RUNS=N (default 1) calibrates N times and keeps the median per point (`--reassemble`); the
# reference compares against that. Writes under $OUT: nvidia-smi.txt, quick.yaml, quick.log,
# runI.yaml, runI-raw.json, fullI.log, KEY.yaml, KEY-raw.json, calibrate-KEY.md, reference.log
# (only 8 files come back from the device: tar them).
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
  RUNS=${RUNS:-1}
  if [ "$RUNS" -gt 1 ]; then
    CMD="for i in \$(seq $RUNS); do cardplan calibrate${EXTRA[*]:+ ${EXTRA[*]}} --gpu $KEY --out run\$i.yaml --raw run\$i-raw.json; done; cardplan calibrate --gpu run1.yaml --reassemble run1-raw.json,...,run$RUNS-raw.json --out profiles/gpus/$KEY.yaml --raw $KEY-raw.json"
  else
    CMD="cardplan calibrate${EXTRA[*]:+ ${EXTRA[*]}} --out profiles/gpus/$KEY.yaml --raw $KEY-raw.json"
  fi
  RAWS=""
  for i in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    $D/cardplan calibrate "${EXTRA[@]}" --gpu "$KEY" --out "$OUT/run$i.yaml" --raw "$OUT/run$i-raw.json" 2>&1 | tee "$OUT/full$i.log" || exit 1
    f=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
    echo "full wall: $f s" | tee -a "$OUT/full$i.log"
    WALL="${WALL:+$WALL; }full calibration: $f s"
    RAWS="${RAWS:+$RAWS,}$OUT/run$i-raw.json"
  done
  if [ "$RUNS" -gt 1 ]; then
    $D/cardplan calibrate --gpu "$OUT/run1.yaml" --reassemble "$RAWS" --out "$OUT/$KEY.yaml" --raw "$OUT/$KEY-raw.json" || exit 1
  else
    mv "$OUT/run1.yaml" "$OUT/$KEY.yaml"; mv "$OUT/run1-raw.json" "$OUT/$KEY-raw.json"
  fi
  python3 $D/reference.py "$OUT/$KEY-raw.json" "$OUT/calibrate-$KEY.md" --gpu-label "$KEY" --wall "$WALL" \
    --command "$CMD; python3 scripts/gpu/reference.py $KEY-raw.json calibrate-$KEY.md --gpu-label $KEY" 2>&1 | tee "$OUT/reference.log"
fi
