#!/usr/bin/env bash
# The 10,000-request generation sweep of issue 11 on the tiny model, not run by CI:
#   [SWEEPD_SCALE_DEVICE=cpu|cuda] scripts/generate_scale.sh [REQUESTS] [SHARDS] [NEW_TOKENS]
# (default cpu; cuda runs the engine and the worker on GPU 0, float32 either way)
# Writes REQUESTS prompts (default 10000) to a JSONL file, runs them once through the engine
# alone (generate_bench --prompts-jsonl: one decode session, continuous batching) and once as a
# `generate` sweep through sweepd and one sweep-worker (SHARDS tasks, default 20), with the same
# model, threads, sampling and batch, and prints both wall times and the sweep's overhead:
# sweep wall (submit to done) / engine wall - 1. Both sides are timed warm: the engine's
# figure is its second pass over the prompts (the first, printed too, also pays the
# process's one-time costs), and the worker has run a warm-up sweep of BATCH prompts first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
requests=${1:-10000}
shards=${2:-20}
new_tokens=${3:-16}
build=${SWEEPD_BUILD_DIR:-$root/build}
device=${SWEEPD_SCALE_DEVICE:-cpu}
case "$device" in cpu | cuda) ;; *)
  echo "SWEEPD_SCALE_DEVICE must be cpu or cuda, got '$device'" >&2
  exit 2
  ;;
esac
SWEEPD_TARGETS="sweepd sweep-worker sweepctl generate_bench" "$root/scripts/build.sh" >/dev/null
work=$(mktemp -d /tmp/sweepd-genscale.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
mkdir -p "$work/models" "$work/data"
"$build/worker/sweep-worker" make-model --config "$root/configs/models/gemma4-tiny.json" \
  --seed 1 --out "$work/models/tiny" >/dev/null
python3 - "$requests" >"$work/data/prompts.jsonl" <<'PY'
import json, random, sys
random.seed(7)
words = "the a river stone light north coast tower river snow valley farm village bell".split()
for i in range(int(sys.argv[1])):
    n = random.randint(3, 12)
    print(json.dumps({"id": f"r{i}", "prompt": " ".join(random.choice(words) for _ in range(n))}))
PY
batch=64
head -n "$batch" "$work/data/prompts.jsonl" >"$work/data/warmup.jsonl"
echo "== engine alone: $requests prompts, $new_tokens new tokens, batch $batch"
"$build/tests/bench/generate_bench" --model "$work/models/tiny" --device "$device" --dtype float32 \
  --threads 1 --prompts-jsonl "$work/data/prompts.jsonl" --samples 1 \
  --new-tokens "$new_tokens" --max-batch "$batch" --passes 2 | tee "$work/engine.txt"
engine_s=$(grep 'pass 2 of 2' "$work/engine.txt" | grep -o ', [0-9.]* s,' | tr -dc '0-9.')

"$build/coordinator/sweepd" --listen 127.0.0.1:0 --port-file "$work/port" \
  --ledger "$work/ledger.db" --model-root "$work/models" --data-root "$work/data" \
  >"$work/sweepd.log" 2>&1 &
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
export SWEEPD_COORDINATOR=127.0.0.1:$(cat "$work/port")
"$build/worker/sweep-worker" run --name scale-worker --model "$work/models/tiny" --threads 1 \
  --device "$device" --dtype float32 \
  >"$work/worker.log" 2>&1 &
for _ in $(seq 200); do
  "$build/client/sweepctl" workers 2>/dev/null | grep -q scale-worker && break
  sleep 0.1
done
write_sweep() {  # write_sweep NAME DATASET SHARDS
  cat >"$work/$1.yaml" <<YAML
name: generate-$1
model: {path: tiny, dtype: float32}
datasets:
  - {name: prompts, path: $2, shards: $3}
generate:
  samples: 1
  max_new_tokens: $new_tokens
  temperature: 1.0
  max_batch: $batch
policy: {lease_seconds: 600}
YAML
}
write_sweep warmup warmup.jsonl 1
write_sweep scale prompts.jsonl "$shards"
warmup=$("$build/client/sweepctl" submit "$work/warmup.yaml" | grep -o 'sw-[0-9a-f]\{16\}' | head -n 1)
"$build/client/sweepctl" watch "$warmup" >/dev/null
echo "== sweep: $shards tasks through sweepd + 1 worker (warmed up by $batch prompts)"
t0=$(date +%s.%N)
sweep=$("$build/client/sweepctl" submit "$work/scale.yaml" | grep -o 'sw-[0-9a-f]\{16\}' | head -n 1)
"$build/client/sweepctl" watch "$sweep" >/dev/null
t1=$(date +%s.%N)
sweep_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
samples=$("$build/client/sweepctl" results "$sweep" --samples --format json |
  python3 -c 'import json, sys; print(len({r["prompt_id"] for r in json.load(sys.stdin)}))')
echo "sweep: $sweep_s s (submit to done), samples of $samples distinct prompts; engine alone: $engine_s s"
python3 -c "print(f'overhead: {($sweep_s / $engine_s - 1) * 100:.1f} %')"
echo "(logs and ledger in $work)"
