#!/usr/bin/env bash
# The embedded default, end to end on one machine without GPU: installs missing Debian
# packages, builds, generates a tiny Gemma-4-shaped model, starts `sweepd` and two
# `sweep-worker`s on loopback, submits the layer study (configs/sweeps/layer_study.yaml),
# shows its progress, prints the results, writes the HTML report and shuts everything down.
# Idempotent: reruns reuse the model and start from a fresh ledger.
#   scripts/demo.sh [SPEC.yaml]      (default: configs/sweeps/layer_study.yaml)
# SWEEPD_BIN_DIR=DIR takes sweepd, sweep-worker and sweepctl from DIR and skips installing
# and building (the CPU image runs the demo so: scripts/build_image.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
spec=${1:-$root/configs/sweeps/layer_study.yaml}
build=${SWEEPD_BUILD_DIR:-$root/build}
work=${SWEEPD_DEMO_DIR:-$root/out/demo}

if [[ -n "${SWEEPD_BIN_DIR:-}" ]]; then
  sweepd_bin=$SWEEPD_BIN_DIR/sweepd
  worker_bin=$SWEEPD_BIN_DIR/sweep-worker
  ctl_bin=$SWEEPD_BIN_DIR/sweepctl
else
  "$root/scripts/install_deps.sh"
  SWEEPD_TARGETS="sweepd sweep-worker sweepctl" "$root/scripts/build.sh"
  sweepd_bin=$build/coordinator/sweepd
  worker_bin=$build/worker/sweep-worker
  ctl_bin=$build/client/sweepctl
fi

mkdir -p "$work/models"
model=$work/models/gemma4-tiny
if [[ ! -f "$model/config.json" ]]; then
  echo "== generating the tiny model in $model"
  "$worker_bin" make-model --config "$root/configs/models/gemma4-tiny.json" --seed 1 --out "$model"
fi
rm -f "$work/ledger.db" "$work/ledger.db-wal" "$work/ledger.db-shm" "$work/port"

pids=()
cleanup() {
  # Workers drain on SIGTERM (finish or release their task), then the coordinator stops.
  for pid in "${pids[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  if ((${#pids[@]})); then kill -TERM "${pids[0]}" 2>/dev/null || true; wait "${pids[0]}" 2>/dev/null || true; fi
}
trap cleanup EXIT

echo "== starting sweepd"
"$sweepd_bin" --listen 127.0.0.1:0 --port-file "$work/port" --ledger "$work/ledger.db" \
  --model-root "$work/models" --data-root "$root/configs/data" >"$work/sweepd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
[[ -s "$work/port" ]] || { echo "sweepd did not start; see $work/sweepd.log"; exit 1; }
export SWEEPD_COORDINATOR=127.0.0.1:$(cat "$work/port")
echo "   coordinator at $SWEEPD_COORDINATOR (log: $work/sweepd.log)"

for i in 1 2; do
  # --verifier-command python3: configs/sweeps/best_of_n.yaml's example verifier may run.
  "$worker_bin" run --name "demo-worker-$i" --model "$model" --threads 1 \
    --verifier-command python3 \
    >"$work/worker-$i.log" 2>&1 &
  pids+=($!)
done
echo "== two workers started (logs: $work/worker-*.log)"

echo "== submitting $(basename "$spec")"
submit_out=$("$ctl_bin" submit "$spec")
echo "$submit_out"
sweep=$(grep -o 'sw-[0-9a-f]\{16\}' <<<"$submit_out" | head -n 1)
"$ctl_bin" watch "$sweep"
"$ctl_bin" results "$sweep" --format table >"$work/results.txt"
"$ctl_bin" results "$sweep" --format csv >"$work/results.csv"
echo "== results: $(($(wc -l <"$work/results.csv") - 1)) metric rows; the first ones:"
head -n 25 "$work/results.txt"
echo "   (all of them: $work/results.csv, or sweepctl results $sweep --format csv|json)"
echo "== workers"
"$ctl_bin" workers
"$ctl_bin" report "$sweep" --out "$work/report.html" \
  --model-config "$model/config.json" --drop-k 2,3,4 \
  --title "Layer study of the tiny demo model"
echo "== report: $work/report.html (open it in a browser; it works offline)"
