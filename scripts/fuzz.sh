#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang into build-fuzz/ (or
# $SWEEPD_FUZZ_BUILD_DIR) and runs each for SECONDS_PER_TARGET seconds (default 60) on a
# scratch copy of its seed corpus tests/fuzz/corpus/<target>/. Crash, leak and timeout inputs
# go to $SWEEPD_FUZZ_OUT/<target>/ (default build-fuzz/fuzz-out); the exit status is non-zero
# when any target found one. Not run by CI. SWEEPD_FUZZ_TARGETS="a b" runs only those.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
build=${SWEEPD_FUZZ_BUILD_DIR:-$root/build-fuzz}
out=${SWEEPD_FUZZ_OUT:-$build/fuzz-out}
all_targets="safetensors_header_fuzzer safetensors_index_fuzzer tokenizer_fuzzer
             model_config_fuzzer dataset_jsonl_fuzzer spec_loader_fuzzer rpc_fuzzer"
targets=${SWEEPD_FUZZ_TARGETS:-$all_targets}
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DSWEEPD_BUILD_FUZZERS=ON -DSWEEPD_BUILD_TESTS=ON
fi
# shellcheck disable=SC2086
ninja -C "$build" $targets
failed=()
for t in $targets; do
  work="$out/$t"
  mkdir -p "$work/corpus" "$work/crashes"
  # New inputs libFuzzer finds land in the scratch corpus, never in the committed seeds.
  cp -n "$root/tests/fuzz/corpus/$t/"* "$work/corpus/" 2>/dev/null || true
  echo "== $t: ${seconds}s, crashes to $work/crashes"
  if ! "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -artifact_prefix="$work/crashes/" -print_final_stats=1 "$work/corpus" \
      > "$work/log.txt" 2>&1; then
    failed+=("$t")
    tail -n 40 "$work/log.txt"
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' "$work/log.txt" || true
done
if ((${#failed[@]} > 0)); then
  echo "fuzz: findings in ${failed[*]} (inputs under $out/<target>/crashes/)" >&2
  exit 1
fi
echo "fuzz: no findings"
