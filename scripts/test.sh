#!/usr/bin/env bash
# Installs what the tests need, builds, and runs every ctest suite (unit, integration, fault).
# Idempotent; works on a fresh Debian 12 machine as root.
#   scripts/test.sh            all suites
#   scripts/test.sh -L unit    only one label (any ctest arguments are passed through)
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
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
