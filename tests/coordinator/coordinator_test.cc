#include "coordinator/coordinator.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/clock.h"
#include "coordinator/snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Await;
using ::sweepd::testing::MakePlan;
using ::sweepd::testing::StartTestCoordinator;
using ::sweepd::testing::TempPath;
using ::testing::HasSubstr;
using ::testing::SizeIs;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

TEST(CoordinatorTest, MissingLedgerPathIsInvalidArgument) {
  CoordinatorOptions options;
  auto c = Coordinator::Create(options);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("ledger_path"));
}

TEST(CoordinatorTest, ServesOnAChosenPortAndShutsDownOnce) {
  auto c = StartTestCoordinator(CoordinatorOptions());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_GT((*c)->port(), 0);
  EXPECT_EQ((*c)->address(), absl::StrCat("127.0.0.1:", (*c)->port()));
  EXPECT_TRUE((*c)->Tick().ok());
  EXPECT_TRUE((*c)->Shutdown().ok());
  EXPECT_TRUE((*c)->Shutdown().ok());  // idempotent
}

TEST(CoordinatorTest, SnapshotsWhenDueOnItsClockAndRestoresOntoAMissingLedger) {
  FakeClock clock;
  const std::string dir = TempPath("snapshots");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  const std::string ledger = TempPath("coordinator") + ".db";
  CoordinatorOptions options;
  options.clock = &clock;
  options.ledger_path = ledger;
  options.snapshot_dir = dir;
  options.snapshot_interval_ms = 60'000;
  {
    auto c = StartTestCoordinator(options);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->Tick().ok());
    EXPECT_EQ((*c)->last_snapshot(), "");  // not due yet
    clock.AdvanceMs(60'000);
    ASSERT_TRUE((*c)->Tick().ok());
    EXPECT_THAT((*c)->last_snapshot(), HasSubstr(dir));
    EXPECT_TRUE(Exists((*c)->last_snapshot()));
    ASSERT_TRUE((*c)->Shutdown().ok());
  }
  auto listed = ListSnapshots(dir);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed, SizeIs(1));

  // A coordinator started on a box whose ledger is gone restores it.
  ASSERT_EQ(unlink(ledger.c_str()), 0);
  unlink((ledger + "-wal").c_str());
  unlink((ledger + "-shm").c_str());
  auto restored = StartTestCoordinator(options);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(Exists(ledger));
  auto version = (*restored)->ledger()->SchemaVersion();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, kLedgerSchemaVersion);
}

TEST(CoordinatorTest, SecondCoordinatorOnTheSameLedgerRefusesNamingTheHolder) {
  CoordinatorOptions options;
  options.ledger_path = TempPath("locked") + ".db";
  auto first = StartTestCoordinator(options);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = StartTestCoordinator(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("pid ", getpid(), " on host ")));
  EXPECT_THAT(second.status().message(),
              HasSubstr(options.ledger_path + ".lock"));
  // The lock goes with the first coordinator's shutdown.
  ASSERT_TRUE((*first)->Shutdown().ok());
  auto third = StartTestCoordinator(options);
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(CoordinatorTest, BindingAPortInUseFails) {
  auto first = StartTestCoordinator(CoordinatorOptions());
  ASSERT_TRUE(first.ok()) << first.status();
  CoordinatorOptions options;
  options.ledger_path = TempPath("other-ledger") + ".db";
  options.listen = (*first)->address();
  auto second = Coordinator::Create(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(
      second.status().message(),
      HasSubstr(absl::StrCat("cannot listen on ", (*first)->address())));
}

CoordinatorOptions SnapshottingOptions(FakeClock* clock) {
  CoordinatorOptions options;
  options.clock = clock;
  options.ledger_path = TempPath("snapshotting") + ".db";
  options.snapshot_dir = TempPath("snapshots");
  options.snapshot_interval_ms = 3'600'000;  // never due in these tests
  return options;
}

TEST(CoordinatorTest, ShutdownSnapshotsAChangedLedgerBeforeClosing) {
  FakeClock clock;
  const CoordinatorOptions options = SnapshottingOptions(&clock);
  auto c = StartTestCoordinator(options);
  ASSERT_TRUE(c.ok()) << c.status();
  auto submitted = Await<SubmitOutcome>([&](auto cb) {
    (*c)->scheduler()->SubmitPlan(MakePlan({.tasks = 3}), cb);
  });
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ASSERT_TRUE((*c)->Tick().ok());
  EXPECT_EQ((*c)->last_snapshot(), "");  // nothing finished, nothing due
  ASSERT_TRUE((*c)->Shutdown().ok());
  ASSERT_NE((*c)->last_snapshot(), "");
  // The snapshot holds the sweep: a new box restores it.
  unlink(options.ledger_path.c_str());
  unlink((options.ledger_path + "-wal").c_str());
  unlink((options.ledger_path + "-shm").c_str());
  auto restored = StartTestCoordinator(options);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto counts = (*restored)->ledger()->CountTasks("sw-test");
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->pending(), 3);
}

TEST(CoordinatorTest, SnapshotsWhenASweepFinishesWithoutWaitingForTheInterval) {
  FakeClock clock;
  auto c = StartTestCoordinator(SnapshottingOptions(&clock));
  ASSERT_TRUE(c.ok()) << c.status();
  LeaseScheduler* scheduler = (*c)->scheduler();
  ASSERT_TRUE(Await<SubmitOutcome>([&](auto cb) {
                scheduler->SubmitPlan(MakePlan({.tasks = 1}), cb);
              }).ok());
  ASSERT_TRUE((*c)->Tick().ok());
  EXPECT_EQ((*c)->last_snapshot(), "");
  v1::WorkerCapabilities caps;
  caps.set_device_kind("cpu");
  auto worker = Await<v1::RegisterWorkerResponse>(
      [&](auto cb) { scheduler->RegisterWorker("w", caps, cb); });
  ASSERT_TRUE(worker.ok()) << worker.status();
  auto lease = Await<LeaseBatch>([&](auto cb) {
    scheduler->LeaseTasks(worker->worker_id(), 1, std::nullopt, cb);
  });
  ASSERT_TRUE(lease.ok() && lease->tasks.size() == 1);
  ResultReport report;
  report.worker_id = worker->worker_id();
  report.task_key = lease->tasks[0].task_key();
  report.fencing_token = lease->tasks[0].fencing_token();
  report.result.emplace();
  ASSERT_TRUE(
      Await<bool>([&](auto cb) { scheduler->ReportResult(report, cb); }).ok());
  ASSERT_TRUE((*c)->Tick().ok());
  ASSERT_NE((*c)->last_snapshot(), "");
  // The sweep is DONE in the snapshot.
  const std::string taken = (*c)->last_snapshot();
  ASSERT_TRUE((*c)->Shutdown().ok());
  EXPECT_EQ((*c)->last_snapshot(), taken);  // nothing changed since
  LedgerOptions ledger_options;
  ledger_options.clock = &clock;
  auto copy = Ledger::Open(taken, ledger_options);
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto counts = (*copy)->CountTasks("sw-test");
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->done(), 1);
}

}  // namespace
}  // namespace sweepd
