#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/) at once for SECONDS, each with libFuzzer's
# -fork=JOBS (JOBS child fuzzers per target, so 7×JOBS cores busy), and writes one summary of
# CPU-seconds, executions, coverage and findings per target (docs/DURABILITY.md, "Fuzzing").
# Meant for a machine with idle cores (the GPU box while the GPU works: .carry3/run.sh), or
# for this VM at `nice -n 19`. Exits 1 when any target left a crash, leak, timeout or OOM
# input, 2 on usage errors or a missing binary.
#
#   scripts/fuzz_parallel.sh SECONDS JOBS [TARGET...]
#
# Environment:
#   FUZZ_BIN_DIR     the fuzzer binaries (default build-fuzz/tests/fuzz; scripts/fuzz.sh builds)
#   FUZZ_CORPUS_DIR  seed corpora, one folder per target (default tests/fuzz/corpus)
#   FUZZ_OUT         results (default build-fuzz/fuzz-parallel): <target>/log.txt,
#                    <target>/crashes/ (inputs that failed), <target>/corpus/ (the seeds plus
#                    every input libFuzzer kept; reused by the next run), summary.txt
#   FUZZ_RSS_MB      per-process RSS limit (default 4096)
# Every input runs with -timeout=10 s. The committed seeds are never written to.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if (($# < 2)) || ! [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] || (($2 < 1)); then
  echo "usage: scripts/fuzz_parallel.sh SECONDS JOBS [TARGET...]" >&2
  exit 2
fi
seconds=$1
jobs=$2
shift 2
bin=${FUZZ_BIN_DIR:-$root/build-fuzz/tests/fuzz}
seeds=${FUZZ_CORPUS_DIR:-$root/tests/fuzz/corpus}
out=${FUZZ_OUT:-$root/build-fuzz/fuzz-parallel}
rss=${FUZZ_RSS_MB:-4096}
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(safetensors_header_fuzzer safetensors_index_fuzzer tokenizer_fuzzer
    model_config_fuzzer dataset_jsonl_fuzzer spec_loader_fuzzer rpc_fuzzer)
fi
for t in "${targets[@]}"; do
  if [[ ! -x "$bin/$t" ]]; then
    echo "fuzz_parallel: $bin/$t is missing (scripts/fuzz.sh 0 builds the targets)" >&2
    exit 2
  fi
done

# run_one TARGET: fuzzes it in fork mode, then appends "user sys" CPU seconds of the whole
# process tree (libFuzzer's parent waits for every child, so the shell's children times hold
# them all) to <target>/cpu.txt.
run_one() {
  local t=$1 work="$out/$1"
  mkdir -p "$work/corpus" "$work/crashes"
  cp -n "$seeds/$t/"* "$work/corpus/" 2>/dev/null || true
  # -ignore_*: keep fuzzing after a finding (every input lands in crashes/); fork mode then
  # exits 0, so findings are counted from crashes/.
  "$bin/$t" -fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss" \
    -print_funcs=0 -artifact_prefix="$work/crashes/" "$work/corpus" >"$work/log.txt" 2>&1
  echo "exit $?" >>"$work/log.txt"
  # `times` prints the shell's own, then its children's, user and system time (redirected,
  # not piped: a pipeline would run it in a fork without those children).
  times >"$work/times.txt"
  tail -n 1 "$work/times.txt" | awk '{
      split($1, u, /m|s/); split($2, s, /m|s/);
      printf "%.1f %.1f\n", u[1] * 60 + u[2], s[1] * 60 + s[2] }' >"$work/cpu.txt"
}

mkdir -p "$out"
start=$SECONDS
pids=()
for t in "${targets[@]}"; do
  (run_one "$t") &
  pids+=($!)
done
echo "fuzz_parallel: ${#targets[@]} targets × -fork=$jobs for ${seconds}s, results in $out"
for p in "${pids[@]}"; do wait "$p"; done
wall=$((SECONDS - start))

summary="$out/summary.txt"
findings=0
{
  echo "fuzz_parallel $(date -u +%FT%TZ): ${seconds}s × -fork=$jobs per target, wall ${wall}s, $(nproc) cores"
  printf '%-26s %9s %12s %9s %9s %8s %s\n' target cpu_s execs cov_start cov_end corpus \
    "findings (oom/timeout/crash; files in crashes/)"
  total_cpu=0
  total_execs=0
  for t in "${targets[@]}"; do
    work="$out/$t"
    cpu=$(awk '{printf "%.0f", $1 + $2}' "$work/cpu.txt" 2>/dev/null || echo 0)
    # Fork-mode progress lines: "#EXECS: cov: C ft: F corp: N exec/s: E
    # oom/timeout/crash: O/T/X time: Ss job: J dft_time: D".
    first=$(grep -m1 -E '^#[0-9]+: cov:' "$work/log.txt" || true)
    last=$(grep -E '^#[0-9]+: cov:' "$work/log.txt" | tail -n 1 || true)
    # INITED line of the parent's first pass (before any child ran).
    inited=$(grep -m1 -E 'INITED' "$work/log.txt" || true)
    execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    cov0=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"${inited:-$first}")
    cov1=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
    otc=$(sed -nE 's|.*oom/timeout/crash: ([0-9]+/[0-9]+/[0-9]+).*|\1|p' <<<"$last")
    ncorp=$(find "$work/corpus" -type f | wc -l)
    nfind=$(find "$work/crashes" -type f | wc -l)
    ((nfind > 0)) && findings=$((findings + nfind))
    printf '%-26s %9s %12s %9s %9s %8s %s; %s\n' "$t" "$cpu" "${execs:-?}" "${cov0:-?}" \
      "${cov1:-?}" "$ncorp" "${otc:-?}" "$nfind"
    total_cpu=$((total_cpu + ${cpu:-0}))
    total_execs=$((total_execs + ${execs:-0}))
  done
  echo "total: ${total_cpu} CPU-seconds ($(awk -v c="$total_cpu" 'BEGIN{printf "%.2f", c/3600}') CPU-hours), ${total_execs} executions, ${findings} finding inputs"
  if ((findings > 0)); then
    echo "findings:"
    find "$out" -path '*/crashes/*' -type f | sort | sed 's/^/  /'
  fi
} | tee "$summary"
((findings == 0)) || exit 1
