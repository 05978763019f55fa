#!/usr/bin/env bash
# GPU benchmarks (issues 5 and 6), run by build_and_test.sh or by hand after sourcing env.sh:
#   deploy/gpu/bench.sh BUILD_DIR OUT_DIR
# Runs, in one session on one GPU, each with its log in OUT_DIR:
#   golden_gpu.log      golden_gpu_test again, printing the differences it measured
#   nccl.log            nccl_communicator_test again with NCCL_DEBUG=INFO (NCCL's own view of
#                       the TP = 1 communicator and its collectives)
#   engine_forward.log  engine_bench, 31B shape, random bf16 weights: forward 4 x 2048 with
#                       autotuned GEMMs and the phase profile, the attention paths and the
#                       heuristic GEMMs compared in the same run, and the 60-layer skip sweep
#                       with probe statistics at 1 x 2048 (naive and prefix reuse)
#   jobs_sweep.log      jobs_bench on CUDA: the same sweep through the job code (LmBackend +
#                       LmExecutor, probe tasks), prefix reuse off and on
#   anchor.log          transformers' anchor (.carry/anchors/hf_gemma4_anchor.py or
#                       $SWEEPD_ANCHOR), same GPU, same run
#   gram.log            gram_bench, 31B shape, random bf16 weights: forward 4 x 2048 with the
#                       float64 Gram (and XᵀY) of the first full layer's attn_heads vs a
#                       plain forward in the same run, Gram memory, ReadGram, heal solve
#   kernels.log         kernels_bench (LM-head pass)
#   cuda_ops.log        cuda_ops_bench (each fused engine kernel alone vs a device copy)
# SWEEPD_DEADLINE (epoch seconds, optional) caps every step so the whole script ends by then;
# steps that no longer fit are skipped and say so.
set -uo pipefail
build=${1:?usage: bench.sh BUILD_DIR OUT_DIR}
out=${2:?usage: bench.sh BUILD_DIR OUT_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
config=$root/configs/models/gemma4-31b.json
deadline=${SWEEPD_DEADLINE:-0}

# run NAME MAX_SECONDS CMD...: logs to OUT/NAME.log, keeps going on failure.
run() {
  local name=$1 limit=$2
  shift 2
  if ((deadline > 0)); then
    local left=$((deadline - $(date +%s)))
    ((left < limit)) && limit=$left
    if ((limit < 20)); then
      echo "== $name skipped: ${left}s left before SWEEPD_DEADLINE" | tee "$out/$name.log"
      return
    fi
  fi
  echo "== $name (limit ${limit}s, $(date -u +%FT%TZ)): $*"
  local t0=$(date +%s)
  PYTHONUNBUFFERED=1 timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  grep -v '^[WI][0-9]' "$out/$name.log" | tail -n 40
  echo "== $name exit $rc after $(($(date +%s) - t0))s"
}

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv |
  tee "$out/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' |
  tee -a "$out/gpu.txt"

if [[ -x "$build/tests/comm/nccl_communicator_test" ]]; then
  NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,COLL run nccl 60 \
    "$build/tests/comm/nccl_communicator_test"
fi
if [[ -x "$build/tests/golden/golden_gpu_test" ]]; then
  SWEEPD_SOURCE_DIR=$root run golden_gpu 120 "$build/tests/golden/golden_gpu_test"
  grep '^\[golden\]' "$out/golden_gpu.log" | grep -E 'logits|nll|argmax|lens' | head -n 20
fi
if [[ -x "$build/tests/bench/engine_bench" ]]; then
  run engine_forward 240 "$build/tests/bench/engine_bench" --random-weights \
    --config "$config" --device cuda --dtype bfloat16 --batch 4 --seq 2048 --iters 5 \
    --gemm-tuning autotune --compare-attention --ablation-sweep --sweep-batch 1 \
    --sweep-seq 2048 --prefix-budget-mb 8192
fi
anchor=${SWEEPD_ANCHOR:-$root/.carry/anchors/hf_gemma4_anchor.py}
if [[ -f "$anchor" && -z "${SWEEPD_SKIP_ANCHOR:-}" ]]; then
  run anchor 200 python3 "$anchor"
fi
if [[ -x "$build/tests/bench/jobs_bench" ]]; then
  run jobs_sweep 200 "$build/tests/bench/jobs_bench" --random-weights --config "$config" \
    --device cuda --dtype bfloat16 --kind probe --seq 2048 --prefix-budget-mb 8192
fi
if [[ -x "$build/tests/bench/gram_bench" ]]; then
  run gram 300 "$build/tests/bench/gram_bench" --random-weights --config "$config" \
    --device cuda --dtype bfloat16 --batch 4 --seq 2048 --iters 5 --layers first-full \
    --target --heal
fi
if [[ -x "$build/tests/bench/cuda_ops_bench" ]]; then
  run cuda_ops 60 "$build/tests/bench/cuda_ops_bench"
fi
if [[ -x "$build/tests/bench/kernels_bench" ]]; then
  run kernels 60 "$build/tests/bench/kernels_bench"
fi
