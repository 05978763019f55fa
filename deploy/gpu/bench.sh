#!/usr/bin/env bash
# GPU benchmarks (issue 5), run by build_and_test.sh or by hand after sourcing env.sh:
#   deploy/gpu/bench.sh BUILD_DIR OUT_DIR
# Runs, in one session on one GPU: the transformers anchor (../shared/anchors, copied into
# .carry/anchors when it travels), the engine forward benchmark (31B shape, random bf16
# weights, 4 x 2048 tokens), the 60-layer ablation sweep through the job code, and the
# LM-head kernel benchmark. Each writes its log to OUT_DIR.
set -uo pipefail
build=${1:?usage: bench.sh BUILD_DIR OUT_DIR}
out=${2:?usage: bench.sh BUILD_DIR OUT_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
config=$root/configs/models/gemma4-31b.json

run() {  # run NAME CMD...: logs to OUT/NAME.log, keeps going on failure
  local name=$1; shift
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "== $name exit $rc"
}

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
if [[ -x "$build/kernels/kernels_bench" ]]; then run kernels "$build/kernels/kernels_bench"; fi
if [[ -x "$build/worker/engine/engine_bench" ]]; then
  run engine_forward "$build/worker/engine/engine_bench" --random-weights --config "$config" \
    --device cuda --dtype bfloat16 --batch 4 --seq 2048 --iters 5
fi
if [[ -x "$build/worker/jobs/jobs_bench" ]]; then
  run ablation_sweep "$build/worker/jobs/jobs_bench" --random-weights --config "$config" \
    --device cuda --dtype bfloat16 --seq 2048
fi
anchor=${SWEEPD_ANCHOR:-$root/.carry/anchors/hf_gemma4_anchor.py}
if [[ -f "$anchor" ]]; then
  run anchor python3 "$anchor"
fi
