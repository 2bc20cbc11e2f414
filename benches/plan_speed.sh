#!/usr/bin/env bash
# Wall time of `cardplan plan --users 5000 --gpu rtx3090` (release build). Target: under 1 s on a
# 2-core machine. Uses hyperfine when installed, else a loop with `time`.
#
#   benches/plan_speed.sh            # build release, then time 10 runs
#   RUNS=20 benches/plan_speed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
cargo build --release --quiet
BIN=target/release/cardplan
CMDS=(
  "$BIN plan --users 5000 --gpu rtx3090"
  "$BIN plan --users 5000 --gpu rtx3090 --json"
)
echo "machine: $(nproc) cores; $(uname -sr)"
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 2 --runs "$RUNS" --shell=none "${CMDS[@]}"
else
  for c in "${CMDS[@]}"; do
    echo "== $c ($RUNS runs)"
    start=$(date +%s.%N)
    for _ in $(seq "$RUNS"); do $c >/dev/null; done
    end=$(date +%s.%N)
    echo "mean wall: $(echo "($end - $start) / $RUNS" | bc -l | cut -c1-6) s"
  done
fi
