#!/usr/bin/env bash
# Whole-command A/B timing, in the manner of hyperfine: each case runs A, B, A, B, ... (after one
# warm-up of each) so that drift in a shared machine's speed hits both alike; prints the median
# wall time, CPU time (user + sys: the work, whatever else the machine runs) and peak RSS of
# each, and the median of the per-pair wall ratios B/A.
#
#   benches/commands.sh BIN_A [BIN_B]     # B defaults to A (a plain timing)
#   RUNS=7 CASES=plan benches/commands.sh target/release/cardplan /tmp/new/cardplan
#
# CASES selects by name: plan, whatif3x3, whatif70b, sim1e5, sim1e6 (default: all but whatif70b,
# which takes minutes a run). Uses /usr/bin/time -f.
set -euo pipefail
A="${1:?usage: benches/commands.sh BIN_A [BIN_B]}"
B="${2:-$A}"
RUNS="${RUNS:-5}"
CASES="${CASES:-plan whatif3x3 sim1e5 sim1e6}"
GPUS12="rtx3090,rtx4090,rtx-a4000,t4,a10g,l4,l40s,a100-40g,a100-80g,h100-pcie,h100-sxm,h200"  # the first 12 of `cardplan list gpus`

args_for() {
  case "$1" in
    plan) echo "plan --users 5000 --gpu rtx3090" ;;
    whatif3x3) echo "whatif --gpu rtx3090,rtx4090,l40s --quant fp16,int8,nf4 --users 5000" ;;
    whatif70b) echo "whatif --gpu $GPUS12 --quant fp16,int8,nf4 --model llama-3.1-70b --tp auto --users 5000" ;;
    # open loop (Poisson arrivals at a rate the H100 sustains), 10^5 and 10^6 measured requests
    sim1e5) echo "simulate --gpu h100-sxm --rate 20 --scenario sharegpt --requests 100000" ;;
    sim1e6) echo "simulate --gpu h100-sxm --rate 20 --scenario sharegpt --requests 1000000" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
  esac
}

# One run: "wall_s max_rss_kb cpu_s" on stdout; the command's own output is discarded.
once() {
  local bin="$1"; shift
  local f; f=$(mktemp)
  /usr/bin/time -f "%e %M %U %S" -o "$f" "$bin" "$@" >/dev/null 2>&1 || { echo "failed: $bin $*" >&2; rm -f "$f"; exit 1; }
  tail -n 1 "$f" | awk '{print $1, $2, $3 + $4}'; rm -f "$f"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(uname -sr); load average: $(cut -d' ' -f1-3 /proc/loadavg); runs: $RUNS"
echo "A=$A"; echo "B=$B"
printf '%-10s %9s %9s %9s %9s %9s %9s %7s\n' case "A wall s" "B wall s" "A cpu s" "B cpu s" "A RSS MB" "B RSS MB" "B/A"
for c in $CASES; do
  read -r -a args <<<"$(args_for "$c")"
  once "$A" "${args[@]}" >/dev/null; once "$B" "${args[@]}" >/dev/null
  wa=(); wb=(); ra=(); rb=(); ca=(); cb=(); ratio=()
  for _ in $(seq "$RUNS"); do
    read -r ta ma ua < <(once "$A" "${args[@]}")
    read -r tb mb ub < <(once "$B" "${args[@]}")
    wa+=("$ta"); wb+=("$tb"); ra+=("$ma"); rb+=("$mb"); ca+=("$ua"); cb+=("$ub")
    ratio+=("$(awk -v a="$ta" -v b="$tb" 'BEGIN {print (a > 0 ? b / a : 0)}')")
  done
  printf '%-10s %9s %9s %9s %9s %9.1f %9.1f %7.3f\n' "$c" \
    "$(printf '%s\n' "${wa[@]}" | median)" "$(printf '%s\n' "${wb[@]}" | median)" \
    "$(printf '%s\n' "${ca[@]}" | median)" "$(printf '%s\n' "${cb[@]}" | median)" \
    "$(printf '%s\n' "${ra[@]}" | median | awk '{print $1/1024}')" \
    "$(printf '%s\n' "${rb[@]}" | median | awk '{print $1/1024}')" \
    "$(printf '%s\n' "${ratio[@]}" | median)"
done
