#!/usr/bin/env bash
# Run on a GPU machine (Ubuntu 24.04 + CUDA + PyTorch 2.11, no package registry) in the repo
# root, after gather_debs.sh's folder travelled along as .deps/debs:
#   deploy/gpu/build_and_test.sh OUT_DIR [--no-bench] [--bench-only]
# Unpacks the .debs into a private prefix (never into /), configures with CUDA and NCCL against
# the machine's PyTorch, builds, runs the gpu- and unit-labelled tests, then the benchmarks,
# writing every log to OUT_DIR. Source deploy/gpu/env.sh to reuse the environment by hand.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: build_and_test.sh OUT_DIR [--no-bench]}
shift
mkdir -p "$out"
source "$root/deploy/gpu/env.sh" || exit 1

bench=1
for a in "$@"; do [[ "$a" == "--no-bench" ]] && bench=0; done

build=${SWEEPD_GPU_BUILD_DIR:-$root/build-gpu}
{
  echo "== configure"; date
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSWEEPD_ENABLE_CUDA=ON -DSWEEPD_ENABLE_NCCL=ON -DSWEEPD_BUILD_TESTS=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$CUDACXX" \
    -DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH" -DNCCL_ROOT="$NCCL_ROOT" &&
  echo "== build" && date && cmake --build "$build" -j "$(nproc)"
} 2>&1 | tee "$out/build.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "BUILD FAILED (see $out/build.log)"; exit 1; }

(cd "$build" && ctest --output-on-failure -L 'gpu|unit' -j 4 --timeout 600) 2>&1 |
  tee "$out/ctest.log"
test_rc=${PIPESTATUS[0]}

if ((bench)) && [[ -x "$root/deploy/gpu/bench.sh" ]]; then
  "$root/deploy/gpu/bench.sh" "$build" "$out" 2>&1 | tee "$out/bench.log"
fi
exit $test_rc
