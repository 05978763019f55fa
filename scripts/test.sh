#!/usr/bin/env bash
# Installs what the tests need, builds, and runs every ctest suite (unit, integration, fault).
# Idempotent; works on a fresh Debian 12 machine as root.
#   scripts/test.sh            all suites
#   scripts/test.sh -L unit    only one label (any ctest arguments are passed through; the
#                              sanitizer builds then do not run)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SWEEPD_BUILD_DIR:-$root/build}
export SWEEPD_BUILD_DIR=$build

"$root/scripts/install_deps.sh" --test

# JavaScript references and drivers used by tests (tokenizer cross-check, report rendering).
for dir in tests/tokenizer tests/client/report; do
  if [[ -f "$root/$dir/package.json" ]]; then
    if [[ -f "$root/$dir/package-lock.json" ]]; then
      (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
    else
      (cd "$root/$dir" && npm install --no-audit --no-fund --loglevel=error)
    fi
  fi
done

"$root/scripts/build.sh" -DSWEEPD_BUILD_TESTS=ON

# Thread-safety analysis: the coordinator's ledger, scheduler and services (their
# ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations) compiled by clang with
# -Wthread-safety as errors. Only those object files are built, nothing is linked.
tsa=${SWEEPD_TSA_BUILD_DIR:-$build-tsa}
# Configured every time (a few seconds) so the object list below sees new files.
CC=clang CXX=clang++ cmake -S "$root" -B "$tsa" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DSWEEPD_BUILD_TESTS=OFF "-DCMAKE_CXX_FLAGS=-Wthread-safety -Werror=thread-safety" >/dev/null
mapfile -t tsa_objects < <(ninja -C "$tsa" -t targets all |
  grep -oE '^coordinator/CMakeFiles/sweepd_coordinator\.dir/(ledger|scheduler|service|coordinator|snapshot|task_states|sweep_policy|thread_pool|auth|server_security)[a-z_]*\.cc\.o' |
  sort -u)
if ((${#tsa_objects[@]} == 0)); then
  echo "test.sh: no coordinator objects found for the thread-safety build" >&2
  exit 1
fi
cmake --build "$tsa" -j "$(nproc)" --target "${tsa_objects[@]}"
cd "$build"
rc=0
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@" || rc=$?

# Test cases that skipped themselves (GTEST_SKIP: a missing tool, node package or GPU) pass in
# ctest's count; list them so a missing install step shows in the log instead of passing
# silently. SWEEPD_TEST_FAIL_ON_SKIP=1 makes any skip a failure.
if [[ -f Testing/Temporary/LastTest.log ]]; then
  skipped=$(grep -E '^\[  SKIPPED \] [^ ]+\.[^ ]+' Testing/Temporary/LastTest.log |
    sed -E 's/^\[  SKIPPED \] ([^ ]+).*/\1/' | sort -u || true)
  if [[ -n "$skipped" ]]; then
    echo "test.sh: $(wc -l <<<"$skipped") test case(s) skipped themselves:"
    sed 's/^/  /' <<<"$skipped"
    if [[ "${SWEEPD_TEST_FAIL_ON_SKIP:-0}" == 1 ]]; then rc=1; fi
  fi
fi

# Sanitizers (docs/DURABILITY.md, "Sanitizers"): the CI set of scripts/sanitize.sh, the
# ASan+UBSan build of the torch-free common, coordinator, client, dashboard and agent unit
# tests, then the TSan build of the multi-threaded torch-free tests (coordinator, agent,
# dashboard, sweepctl's in-process ones, tls_rotation_test; ~12 more minutes on an idle 2-core
# machine). The process tests under both (--processes) and everything (--full) are not in CI.
# Skipped when only some tests were asked for (arguments given) or with SWEEPD_TEST_SANITIZE=0.
if (($# == 0)) && [[ "${SWEEPD_TEST_SANITIZE:-1}" != 0 ]]; then
  "$root/scripts/sanitize.sh" --asan || rc=$?
  "$root/scripts/sanitize.sh" --tsan || rc=$?
fi
exit "$rc"
