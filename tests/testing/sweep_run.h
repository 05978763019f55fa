// RunSweepToEnd: the example tests' shared "submit a sweep and wait for it"
// step over a SweepCluster (sweep_cluster.h), with its GoogleTest assertions:
// the submit, the wait and the task listing succeed, every task ends DONE
// (one failure per task that did not, naming its stage, key and error) and
// the sweep ends DONE. Call it under ASSERT_NO_FATAL_FAILURE; `run` holds
// whatever was read before a failure (the tasks even when the sweep did not
// end DONE).
//
// Header-only, test code only (like status_matchers.h); use from the test's
// thread.
#ifndef SWEEPD_TESTS_TESTING_SWEEP_RUN_H_
#define SWEEPD_TESTS_TESTING_SWEEP_RUN_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "sweepd/v1/coordinator.grpc.pb.h"
#include "tests/testing/sweep_cluster.h"

namespace sweepd::testing {

// What RunSweepToEnd read.
struct SweepRun {
  std::string sweep_id;
  sweepd::v1::SweepStatus status;
  std::vector<sweepd::v1::TaskRecord> tasks;
};

// Submits `spec` to `cluster`, waits up to `timeout` for the sweep to leave
// RUNNING and lists every task into `run`.
inline void RunSweepToEnd(SweepCluster& cluster,
                          const sweepd::v1::SweepSpec& spec,
                          absl::Duration timeout, SweepRun* run) {
  namespace v1 = ::sweepd::v1;
  auto submitted = cluster.Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status() << cluster.DescribeLogs();
  run->sweep_id = submitted->sweep_id();
  auto status = cluster.WaitForSweepEnd(run->sweep_id, timeout);
  ASSERT_TRUE(status.ok()) << status.status() << cluster.DescribeLogs();
  run->status = *status;
  auto tasks = cluster.ListAllTasks(run->sweep_id);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  run->tasks = *std::move(tasks);
  for (const v1::TaskRecord& t : run->tasks) {
    EXPECT_EQ(t.state(), v1::TASK_STATE_DONE)
        << t.spec().stage() << " " << t.task_key() << ": " << t.error();
  }
  ASSERT_EQ(run->status.state(), v1::SWEEP_STATE_DONE)
      << cluster.DescribeLogs();
}

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_SWEEP_RUN_H_
