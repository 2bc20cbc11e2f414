#!/usr/bin/env bash
# Capture the outputs a behaviour-preserving change must not move, into DIR (one file per command),
# so two builds can be compared with `diff -r`. Usage: scripts/golden.sh BINARY DIR
set -euo pipefail
bin=$1 out=$2
mkdir -p "$out"
run() { local name=$1; shift; "$bin" "$@" >"$out/$name" 2>&1 || echo "exit $?" >>"$out/$name"; }

run plan-rtx3090.json plan --users 5000 --gpu rtx3090 --json
run plan-rtx3090.txt plan --users 5000 --gpu rtx3090
for sc in chat backprop-short backprop-long sharegpt rag-long code-assist; do
  for eng in vllm vllm-v0 hf-static; do
    run "sim-$sc-$eng.json" simulate --gpu rtx4090 --scenario "$sc" --engine "$eng" --concurrency 32 --requests 300 --json
  done
  run "sim-$sc-users.txt" simulate --gpu rtx3090 --scenario "$sc" --users 2000 --duration 120
done
for gpu in rtx3090 rtx4090 l4 h100-sxm h200; do
  for q in fp16 int8 llm-int8 nf4; do
    run "step-$gpu-$q.json" step --gpu "$gpu" --quant "$q" --batch 64 --context 1024 --prefill-tokens 256 --json
  done
  run "step-$gpu.txt" step --gpu "$gpu" --batch 8 --context 2048
done
run fit-3090-70b-nf4.json fit --gpu rtx3090 --model llama-3.1-70b --quant nf4 --json
run fit-3090.txt fit --gpu rtx3090
run fit-h200-int8.txt fit --gpu h200 --quant int8 --kv int8
run validate.json validate --json
run validate.md validate --markdown
run whatif.txt whatif --gpu rtx3090,l4 --quant fp16,nf4 --users 3000
run list-gpus.txt list gpus
run list-models.txt list models
