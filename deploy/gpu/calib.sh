#!/usr/bin/env bash
# Issue 12's GPU checks and Scale figures (docs/CALIBRATION.md, "Scale figures"), on one GPU
# machine with transformers installed, from the repository root after deploy/gpu/env.sh's
# prerequisites (.deps/debs from deploy/gpu/gather_debs.sh):
#   deploy/gpu/calib.sh [OUT_DIR]          (default /tmp/calib_out; CALIB_BUDGET_S, default 600)
# Builds build-gpu (CUDA + NCCL) if needed, then runs, each with its log in OUT_DIR:
#   xcheck           transformers' fp32 forward of materialized checkpoints against this engine's
#                    masked(-and-healed) forward of the base (tests/golden/check_materialized.py,
#                    max abs difference <= 1e-4): the tiny model with a heal, and the
#                    transformers-saved bf16 sharded fixture
#   executors_cuda   the calibration and generate executor tests on CUDA (ctest -L gpu -R _cuda)
#   head_importance  head_importance_bench, 31B shape: the batched executor on layers 0 and 5
#                    (the 60-layer time extrapolated by token-layers) against the naive estimate
#   gram             gram_bench: the Gram overhead over a plain forward (target <= 15 %)
#   heal             heal_bench: the ridge solve per layer at the 31B sizes
#   materialize      materialize_bench on a 2-layer cut of the 31B base against a plain copy
# Each step gets min(its limit, what is left of the budget); steps that no longer fit are
# skipped and say so. The step summaries are printed.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
t_start=$(date +%s)
budget=${CALIB_BUDGET_S:-600}
OUT=${1:-${OUT:-/tmp/calib_out}}
mkdir -p "$OUT"
source deploy/gpu/env.sh || exit 1
export SWEEPD_SOURCE_DIR=$root
if [[ ! -f build-gpu/build.ninja ]]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWEEPD_ENABLE_CUDA=ON \
    -DSWEEPD_ENABLE_NCCL=ON -DSWEEPD_BUILD_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    "-DCMAKE_CUDA_COMPILER=$CUDACXX" "-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH" \
    "-DNCCL_ROOT=$NCCL_ROOT" >"$OUT/cfg.log" 2>&1 || { tail -20 "$OUT/cfg.log"; exit 1; }
fi
cmake --build build-gpu -j "$(nproc)" --target sweep-worker head_importance_bench heal_bench \
  materialize_bench gram_bench retrain_executor_test capture_executor_test \
  heal_executor_test generate_executor_test >"$OUT/build.log" 2>&1 ||
  { grep -E "error|FAILED" "$OUT/build.log" | head -20; exit 1; }
echo "== built after $(($(date +%s) - t_start)) s"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# step NAME LIMIT_S CMD...: runs CMD with a bounded time, log in $OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - ($(date +%s) - t_start)))
  ((left < limit)) && limit=$left
  if ((limit < 15)); then
    echo "== $name SKIPPED: ${left} s left of the ${budget} s budget" | tee "$OUT/$name.log"
    return
  fi
  local t0
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name exit $rc after $(($(date +%s) - t0)) s (limit $limit s)"
  grep -v -E '^[WI][0-9 ]|^\[ RUN|^\[       OK' "$OUT/$name.log" | grep -v '^$' | tail -n 14
}

B=build-gpu/tests/bench
W=build-gpu/worker/sweep-worker
M="--config configs/models/gemma4-31b.json --random-weights --device cuda --dtype bf16"

xcheck() {
  set -e
  local T
  T=$(mktemp -d /tmp/calib_xcheck.XXXXXX)
  "$W" make-model --config configs/models/gemma4-tiny.json --seed 1 --out "$T/base"
  # A heal of layer 1 for pruned head 0: the base o_proj scaled, head 0's columns zero.
  python3 - "$T" <<'PY'
import sys, glob
import numpy as np
from safetensors.numpy import load_file, save_file
t = sys.argv[1]
for f in sorted(glob.glob(t + "/base/*.safetensors")):
    for k, v in load_file(f).items():
        if k.endswith("layers.1.self_attn.o_proj.weight"):
            w = v.astype(np.float32) * 1.25 + 0.01
            w[:, : w.shape[1] // 4] = 0  # gemma4-tiny: 4 heads, head 0 pruned
            save_file({"self_attn.o_proj.weight": np.ascontiguousarray(w)}, t + "/heal1.safetensors")
PY
  "$W" materialize --base "$T/base" --out "$T/mat" --prune 1:0 --prune 2:1,3 \
    --heal "1:$T/heal1.safetensors"
  "$W" dump-logits --model "$T/base" --mask 1:0 --mask 2:1,3 \
    --replace-layer "1:$T/heal1.safetensors" --out "$T/base_masked_healed.safetensors"
  echo "--- tiny fp32, pruned 1:0 2:1,3, layer 1 healed"
  python3 tests/golden/check_materialized.py --model "$T/mat" --base "$T/base" \
    --engine-logits "$T/base_masked_healed.safetensors"
  local F=tests/golden/fixtures/tiny_sharded
  "$W" materialize --base "$F" --out "$T/mat_sharded" --prune 1:0,2 --prune 2:3 --layers 0-2
  "$W" dump-logits --model "$F" --mask 1:0,2 --mask 2:3 --out "$T/sharded_masked.safetensors"
  echo "--- tiny_sharded bf16 fixture, pruned 1:0,2 2:3"
  python3 tests/golden/check_materialized.py --model "$T/mat_sharded" --base "$F" \
    --engine-logits "$T/sharded_masked.safetensors"
  rm -rf "$T"
}
step xcheck 90 bash -c "$(declare -f xcheck); W=$W; xcheck"
step executors_cuda 120 ctest --test-dir build-gpu -L gpu -R _cuda --output-on-failure
step head_importance 120 "$B/head_importance_bench" $M --tokens 2048 --window 2048 \
  --layers 0,5 --heads-per-forward 8 --max-batch-tokens 16384 --naive-forwards 3
step gram 90 "$B/gram_bench" $M --batch 1 --seq 2048 --iters 3 --layers first-full --target --heal
step heal 60 "$B/heal_bench" --config configs/models/gemma4-31b.json --device cuda --iters 1
step materialize 90 "$B/materialize_bench" --config configs/models/gemma4-31b.json --layers 2 \
  --edit-layers all --dir /tmp
echo "== done after $(($(date +%s) - t_start)) s; logs in $OUT"
