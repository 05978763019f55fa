// sweepd + three sweep-worker processes on loopback run a 1,000-task synthetic
// sweep; every task ends with exactly one committed result, checked through
// ListResults (all pages) and directly in the SQLite ledger.
#include <signal.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"
#include "worker/jobs/synthetic_executor.h"

namespace sweepd::testing {
namespace {

namespace v1 = ::sweepd::v1;

const v1::Metric* FindMetric(const v1::TaskResult& r, const std::string& name) {
  for (const auto& m : r.metrics()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

TEST(SweepIntegrationTest,
     ThreeWorkersRunA1000TaskSweepWithExactlyOneResultPerTask) {
  constexpr int kTasks = 1000;
  auto dir = MakeTempDir("sweepd-integration");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto cluster_or = SweepCluster::Create(SweepClusterOptions{*dir});
  ASSERT_TRUE(cluster_or.ok()) << cluster_or.status();
  SweepCluster& cluster = **cluster_or;
  ASSERT_TRUE(cluster.StartCoordinator().ok()) << cluster.DescribeLogs();
  for (int i = 0; i < 3; ++i) {
    auto w = cluster.StartWorker(absl::StrCat("int-worker-", i),
                                 {"--heartbeat-ms", "300", "--max-tasks", "8",
                                  "--seed", absl::StrCat(i + 1)});
    ASSERT_TRUE(w.ok()) << w.status();
  }

  // 2% transient failures with 10 attempts: every task ends DONE, some after
  // retries.
  v1::SweepSpec spec =
      SyntheticSweep("integration-1000", kTasks, 0, 3,
                     /*failure_rate=*/0.02, /*max_attempts=*/10);
  auto submitted = cluster.Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status() << cluster.DescribeLogs();
  EXPECT_EQ(submitted->total_tasks(), kTasks);
  EXPECT_FALSE(submitted->already_existed());
  const std::string sweep_id = submitted->sweep_id();

  auto final_status = cluster.WaitForSweepEnd(sweep_id, absl::Seconds(180));
  ASSERT_TRUE(final_status.ok()) << final_status.status();
  EXPECT_EQ(final_status->state(), v1::SWEEP_STATE_DONE)
      << cluster.DescribeLogs();
  EXPECT_EQ(final_status->counts().total(), kTasks);
  EXPECT_EQ(final_status->counts().done(), kTasks);
  EXPECT_EQ(final_status->counts().failed(), 0);

  // Every page of ListResults; an odd page size so the last page is partial.
  auto tasks = cluster.ListAllTasks(sweep_id, {}, /*page_size=*/170);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_EQ(tasks->size(), static_cast<size_t>(kTasks));
  std::set<std::string> keys;
  std::set<int64_t> indices;
  int min_attempts = 1 << 30;
  for (const v1::TaskRecord& t : *tasks)
    min_attempts = std::min(min_attempts, t.attempts());
  int retried = 0;
  for (const v1::TaskRecord& t : *tasks) {
    keys.insert(t.task_key());
    EXPECT_EQ(t.sweep_id(), sweep_id);
    ASSERT_EQ(t.state(), v1::TASK_STATE_DONE) << t.task_key();
    const v1::Metric* value = FindMetric(t.result(), "value");
    const v1::Metric* index = FindMetric(t.result(), "index");
    ASSERT_NE(value, nullptr) << t.task_key();
    ASSERT_NE(index, nullptr) << t.task_key();
    // The synthetic value is a function of the key alone (docs/SYNTHETIC.md).
    EXPECT_DOUBLE_EQ(value->value(), SyntheticValue(t.task_key()))
        << t.task_key();
    EXPECT_EQ(static_cast<int64_t>(index->value()), t.spec().index());
    indices.insert(t.spec().index());
    if (t.attempts() > min_attempts) ++retried;
  }
  EXPECT_EQ(keys.size(), static_cast<size_t>(kTasks));
  EXPECT_EQ(indices.size(), static_cast<size_t>(kTasks));
  EXPECT_EQ(*indices.begin(), 0);
  EXPECT_EQ(*indices.rbegin(), kTasks - 1);
  // ~2% of tasks fail their first attempt and are retried.
  EXPECT_GT(retried, 0);

  // Submitting the identical sweep again changes nothing.
  auto again = cluster.Submit(spec);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->sweep_id(), sweep_id);
  EXPECT_TRUE(again->already_existed());

  auto workers = cluster.ListWorkers();
  ASSERT_TRUE(workers.ok()) << workers.status();
  int64_t done_by_workers = 0;
  for (const auto& w : *workers) done_by_workers += w.tasks_done();
  EXPECT_EQ(done_by_workers, kTasks);

  // Workers drain on SIGTERM and exit 0.
  for (int i = 0; i < 3; ++i) {
    Process* w = cluster.worker(absl::StrCat("int-worker-", i));
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(w->Signal(SIGTERM).ok());
    auto exit = w->Wait(absl::Seconds(30));
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_TRUE(exit->exited && exit->code == 0) << exit->ToString();
  }
  ASSERT_TRUE(cluster.StopCoordinator().ok());

  auto counts = ReadLedgerCounts(cluster.ledger_path(), sweep_id);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->tasks, kTasks);
  EXPECT_EQ(counts->distinct_keys, kTasks);
  EXPECT_EQ(counts->done, kTasks);
  EXPECT_EQ(counts->done_with_result, kTasks);
  EXPECT_EQ(counts->failed, 0);
  EXPECT_EQ(counts->not_terminal, 0);
  // One tasks_done increment per committed result: no result was committed
  // twice.
  EXPECT_EQ(counts->worker_tasks_done, kTasks);
  EXPECT_EQ(counts->integrity_check, "ok");
}

// `sweepd --lease-seconds 17` reaches a sweep submitted without
// policy.lease_seconds (it used to be planned with 60), and a sweep no live
// worker can run says so in GetSweep.
TEST(SweepIntegrationTest, LeaseSecondsFlagReachesASubmittedSweep) {
  auto dir = MakeTempDir("sweepd-lease-flag");
  ASSERT_TRUE(dir.ok()) << dir.status();
  SweepClusterOptions options{*dir};
  options.sweepd_args = {"--lease-seconds", "17"};
  auto cluster_or = SweepCluster::Create(options);
  ASSERT_TRUE(cluster_or.ok()) << cluster_or.status();
  SweepCluster& cluster = **cluster_or;
  ASSERT_TRUE(cluster.StartCoordinator().ok()) << cluster.DescribeLogs();
  auto submitted = cluster.Submit(SyntheticSweep("lease-flag", 2, 0, 1));
  ASSERT_TRUE(submitted.ok()) << submitted.status() << cluster.DescribeLogs();
  auto status = cluster.GetSweep(submitted->sweep_id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->spec().policy().lease_seconds(), 17);
  EXPECT_THAT(status->blocked_reason(),
              ::testing::HasSubstr("no live worker is registered"));
}

}  // namespace
}  // namespace sweepd::testing
