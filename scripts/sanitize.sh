#!/usr/bin/env bash
# Sanitizer builds and runs (docs/DURABILITY.md, "Sanitizers").
#
#   scripts/sanitize.sh           the CI set (scripts/test.sh runs it): unit tests that do not
#                                 link libtorch
#     ASan+UBSan ($SWEEPD_ASAN_BUILD_DIR, default build-asan/): the unit tests of common,
#       coordinator, client, dashboard, the executor core and the agent
#     TSan ($SWEEPD_TSAN_BUILD_DIR, default build-tsan/): the multi-threaded torch-free tests
#       (coordinator, agent, dashboard, sweepctl's in-process ones, tls_rotation_test)
#   scripts/sanitize.sh --processes  the CI set plus, in both builds, the fault and
#                                 integration tests that drive processes, with the sanitized
#                                 sweepd and the main build's sweep-worker ($SWEEPD_BUILD_DIR,
#                                 default build/; it must exist). ~5 more minutes on 2 cores
#                                 for ASan+UBSan, more for TSan (docs/DURABILITY.md).
#   scripts/sanitize.sh --full    every test target of both builds, libtorch code included
#                                 (ASan+UBSan: unit, integration and fault labels with the
#                                 sanitized sweep-worker; TSan: coordinator, agent, dashboard
#                                 and the fault suite). Hours on a 2-core machine; not in CI.
#   --asan / --tsan               only one of the two builds
# Tests that assert wall-clock targets (DurabilityTest.WorkersCommitWithinASecond...) are
# filtered out: sanitizers slow everything 2-15x. Each run gets a fresh TEST_TMPDIR.
# Extra arguments after `--` go to ctest. Sanitizer options and suppression files
# (tests/sanitizers/) reach every test through ctest's environment (cmake/SweepdSanitizers.cmake).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
full=0
processes=0
builds=(asan tsan)
ctest_args=()
while (($# > 0)); do
  case "$1" in
    --full) full=1 ;;
    --processes) processes=1 ;;
    --asan) builds=(asan) ;;
    --tsan) builds=(tsan) ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "usage: scripts/sanitize.sh [--full|--processes] [--asan|--tsan] [-- CTEST_ARGS]" >&2; exit 2 ;;
  esac
  shift
done
main_build=${SWEEPD_BUILD_DIR:-$root/build}

# Unit tests without libtorch, by folder.
common_tests="safetensors_test tokenizer_test fs_test layer_selector_test model_config_test
  model_fingerprint_test file_digest_cache_test utf8_test best_of_k_test token_bans_test
  chat_format_test logging_test"
coordinator_tests="planner_test planner_grid_test planner_paths_test planner_validation_test
  ledger_test scheduler_test service_test stages_test drop_plan_test task_states_test
  sweep_policy_test coordinator_test auth_test service_limits_test disk_full_test"
client_tests="spec_loader_test ctl_test ctl_args_test best_of_k_table_test ledger_command_test
  report_test report_command_test report_render_test"
dashboard_tests="progress_tracker_test dashboard_api_test"
agent_tests="synthetic_executor_test agent_test jobs_dataset_test jobs_windowing_test"
# TSan's set: the torch-free tests whose code runs on several threads: the ledger writer and
# readers, the scheduler, the gRPC services (sync and callback API, interceptors, TLS reloads),
# the disk-full recovery, the worker agent's loops, the dashboard's HTTP server and the
# in-process clients of sweepctl; tls_rotation_test rotates certificates under live streams.
tsan_tests="ledger_test scheduler_test service_test coordinator_test auth_test
  service_limits_test disk_full_test artifact_service_test agent_test progress_tracker_test
  dashboard_api_test dashboard_auth_test ctl_test tls_rotation_test absl_tsan_annotations_test"
# Processes: sweepd from the sanitizer build, sweep-worker from the main build.
process_tests="tls_rotation_test sweep_integration_test fault_test durability_test"

# configure BUILD_DIR SANITIZERS
configure() {
  local dir=$1 sanitize=$2
  if [[ ! -f "$dir/build.ninja" ]]; then
    # -O1: the sanitizers' recommended level; a third faster to compile than -O2 and the
    # stacks stay readable. Asserts stay on (no NDEBUG).
    cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g" \
      -DSWEEPD_BUILD_TESTS=ON "-DSWEEPD_SANITIZE=$sanitize" >/dev/null
  fi
}

# Wall-clock assertions (see the header) and, under TSan, the call deadlines that its 5-15x
# slowdown overruns at load: FetchStreamsChunksAndDetectsCorruption streams 2.5 MiB through
# SHA-256 in instrumented code, 12 s alone under TSan, past its 20 s deadline beside another
# test on a loaded 2-core machine (ASan+UBSan runs it).
wallclock_filter='-DurabilityTest.WorkersCommitWithinASecondOfACoordinatorRestart'
tsan_filter="$wallclock_filter:ArtifactServiceTest.FetchStreamsChunksAndDetectsCorruption"

# run BUILD_DIR "TARGETS" [GTEST_FILTER] → builds them (empty: all) and runs their tests.
run() {
  local dir=$1 targets=$2 filter=${3:-$wallclock_filter}
  local start=$SECONDS
  # shellcheck disable=SC2086
  ninja -C "$dir" -j "$(nproc)" $targets
  echo "sanitize: built $(basename "$dir") in $((SECONDS - start)) s"
  start=$SECONDS
  local select=()
  if [[ -n "$targets" ]]; then
    local names
    names=$(tr -s ' \n' '\n' <<<"$targets" | grep '_test$' | paste -sd'|')
    select=(-R "^($names)\$")
  else
    select=(-LE gpu)
  fi
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/sweepd-sanitize-XXXXXX")
  local rc=0
  (cd "$dir" && SWEEPD_FALLBACK_BUILD_DIR=$main_build TEST_TMPDIR=$tmp \
    GTEST_FILTER=$filter \
    ctest --output-on-failure -j "$(nproc)" --timeout 900 "${select[@]}" "${ctest_args[@]}") ||
    rc=$?
  rm -rf "$tmp"
  ((rc == 0)) || exit "$rc"
  echo "sanitize: ran $(basename "$dir")'s tests in $((SECONDS - start)) s"
}

for b in "${builds[@]}"; do
  case $b in
    asan)
      dir=${SWEEPD_ASAN_BUILD_DIR:-$root/build-asan}
      configure "$dir" address,undefined
      if ((full)); then
        run "$dir" ""
      else
        extra=""
        if ((processes)); then
          if [[ ! -x "$main_build/worker/sweep-worker" ]]; then
            echo "sanitize: $main_build/worker/sweep-worker is missing (scripts/build.sh first)" >&2
            exit 1
          fi
          extra="sweepd $process_tests"
        fi
        run "$dir" "$common_tests $coordinator_tests $client_tests $dashboard_tests
          $agent_tests $extra"
      fi
      ;;
    tsan)
      dir=${SWEEPD_TSAN_BUILD_DIR:-$root/build-tsan}
      configure "$dir" thread
      if ((full)); then
        run "$dir" "sweepd sweep-worker $coordinator_tests $dashboard_tests $agent_tests
          $process_tests worker_assembly_test" "$tsan_filter"
      else
        extra=""
        if ((processes)); then
          if [[ ! -x "$main_build/worker/sweep-worker" ]]; then
            echo "sanitize: $main_build/worker/sweep-worker is missing (scripts/build.sh first)" >&2
            exit 1
          fi
          extra="sweepd $process_tests"
        fi
        run "$dir" "$tsan_tests $extra" "$tsan_filter"
      fi
      ;;
  esac
done
echo "sanitize: no findings"
