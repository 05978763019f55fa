// Helpers shared by the coordinator tests: hand-written plans (no planner, no
// files), a blocking wrapper for the callback-style Ledger and LeaseScheduler
// APIs, and an in-process coordinator built the way sweepd builds it
// (Coordinator::Create). Test-only.
#ifndef SWEEPD_TESTS_COORDINATOR_COORDINATOR_TEST_UTIL_H_
#define SWEEPD_TESTS_COORDINATOR_COORDINATOR_TEST_UTIL_H_

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/hash.h"
#include "coordinator/coordinator.h"
#include "coordinator/planner.h"
#include "gtest/gtest.h"

namespace sweepd::testing {

// Starts an asynchronous call with a callback and blocks until it has run.
template <typename T, typename Start>
absl::StatusOr<T> Await(Start&& start) {
  absl::Notification done;
  absl::StatusOr<T> out = absl::UnknownError("callback never ran");
  start([&](absl::StatusOr<T> r) {
    out = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

struct PlanShape {
  std::string sweep_id = "sw-test";
  int tasks = 4;
  // Tasks i and j share a group when i / group_size == j / group_size.
  int group_size = 1;
  int priority = 0;
  int max_attempts = 3;
  int retry_backoff_ms = 1000;
  int lease_seconds = 30;
  int tensor_parallel = 0;
  std::string model_fingerprint = "model-a";
};

// A synthetic-job plan with deterministic keys derived from the sweep id and
// index.
inline Plan MakePlan(const PlanShape& shape) {
  Plan plan;
  plan.sweep_id = shape.sweep_id;
  auto& spec = plan.resolved_spec;
  spec.set_name(absl::StrCat("name-", shape.sweep_id));
  spec.mutable_model()->set_fingerprint(shape.model_fingerprint);
  spec.mutable_synthetic()->set_tasks(shape.tasks);
  spec.mutable_policy()->set_priority(shape.priority);
  spec.mutable_policy()->set_max_attempts(shape.max_attempts);
  spec.mutable_policy()->set_retry_backoff_ms(shape.retry_backoff_ms);
  spec.mutable_policy()->set_lease_seconds(shape.lease_seconds);
  spec.mutable_policy()->set_tensor_parallel(shape.tensor_parallel);
  for (int i = 0; i < shape.tasks; ++i) {
    PlannedTask t;
    t.task_key = Sha256Hex(absl::StrCat(shape.sweep_id, "/task/", i));
    t.group_key = absl::StrCat("g", i / shape.group_size);
    t.spec.set_kind(v1::JOB_KIND_SYNTHETIC);
    t.spec.set_index(i);
    *t.spec.mutable_model() = spec.model();
    *t.spec.mutable_synthetic() = spec.synthetic();
    plan.tasks.push_back(std::move(t));
  }
  return plan;
}

// A path under the test's temp dir that no earlier run used: the pid alone
// repeats on a busy machine (a reused ledger path once handed a test the
// sweeps of another test's run), so the start time goes in too.
inline std::string TempPath(const std::string& name) {
  static int counter = 0;
  static const int64_t start_ns =
      std::chrono::system_clock::now().time_since_epoch() /
      std::chrono::nanoseconds(1);
  return absl::StrCat(::testing::TempDir(), "/", name, "-", getpid(), "-",
                      start_ns, "-", ++counter);
}

// A Coordinator over a fresh ledger in the test's temp dir, serving on
// 127.0.0.1 port 0: the same Coordinator::Create path as sweepd's main.
// `options` may set anything else (clock, policy, component knobs).
inline absl::StatusOr<std::unique_ptr<Coordinator>> StartTestCoordinator(
    CoordinatorOptions options) {
  if (options.ledger_path.empty()) {
    options.ledger_path = TempPath("coordinator") + ".db";
  }
  options.listen = "127.0.0.1:0";
  return Coordinator::Create(options);
}

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_COORDINATOR_COORDINATOR_TEST_UTIL_H_
