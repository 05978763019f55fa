#!/usr/bin/env bash
# Coordinator soak (not run by CI): kill -9 sweepd many times at random moments of
# a synthetic sweep with several workers, then report lost and duplicate results
# (both must be 0), PRAGMA integrity_check and restart-to-serving times. The run
# is tests/fault/durability_test's DISABLED_Soak, parameterised from here.
#
#   scripts/soak.sh                          200 kills, 10,000 tasks, 8 workers
#   scripts/soak.sh --kills 10 --tasks 1000  a short run
#
# Options (defaults in brackets): --kills N [200] --tasks N [10000] --workers N [8]
# --min-ms N [20] --max-ms N [60] (task length), --max-pause-ms N [700] (longest
# pause between kills), --seed N. Builds the needed targets first unless
# --no-build. Uses $SWEEPD_BUILD_DIR (default build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SWEEPD_BUILD_DIR:-$root/build}
kills=200 tasks=10000 workers=8 min_ms=20 max_ms=60 max_pause_ms=700 seed=20240601
do_build=1
while (($#)); do
  case "$1" in
    --kills) kills=$2; shift 2 ;;
    --tasks) tasks=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --min-ms) min_ms=$2; shift 2 ;;
    --max-ms) max_ms=$2; shift 2 ;;
    --max-pause-ms) max_pause_ms=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ((do_build)); then
  SWEEPD_BUILD_DIR=$build SWEEPD_TARGETS="sweepd sweep-worker durability_test" \
    "$root/scripts/build.sh" -DSWEEPD_BUILD_TESTS=ON
fi
export SWEEPD_BUILD_DIR=$build SWEEPD_SOURCE_DIR=$root
export SOAK_KILLS=$kills SOAK_TASKS=$tasks SOAK_WORKERS=$workers SOAK_MIN_MS=$min_ms \
  SOAK_MAX_MS=$max_ms SOAK_MAX_PAUSE_MS=$max_pause_ms SOAK_SEED=$seed
exec "$build/tests/fault/durability_test" --gtest_also_run_disabled_tests \
  --gtest_filter='DurabilityTest.DISABLED_Soak'
