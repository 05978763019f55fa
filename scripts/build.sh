#!/usr/bin/env bash
# Configures and builds sweepd into build/ (or $SWEEPD_BUILD_DIR). Extra args go to cmake
# (first configure only). SWEEPD_TARGETS="a b" builds just those targets.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SWEEPD_BUILD_DIR:-$root/build}
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
fi
jobs=$(nproc)
# libtorch translation units need ~1.5 GB each; keep parallelism within memory.
mem_gb=$(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo)
if ((jobs * 2 > mem_gb)); then jobs=$((mem_gb / 2 > 0 ? mem_gb / 2 : 1)); fi
targets=()
for t in ${SWEEPD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}"
