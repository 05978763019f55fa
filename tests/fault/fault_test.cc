// Fault injection against real sweepd / sweep-worker processes on loopback:
//  (a) kill -9 sweepd at 20 seeded-random moments of a 2,000-task sweep with 4
//  workers; (b) kill -9 a worker mid-task: its task is leased again after
//  expiry and completes; (c) 10% of ReportResult replies dropped by the
//  workers' fault switch: no duplicates; (d) SIGTERM a worker with a long task:
//  it drains, exits 0, and the released task
//      completes elsewhere without counting as a failed attempt.
// Real time is the subject here (processes die at moments), so these tests
// pause for seeded random intervals; every wait for an outcome polls with a
// generous deadline.
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fault/exactly_once.h"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"
#include "worker/jobs/synthetic_executor.h"

namespace sweepd::testing {
namespace {

namespace v1 = ::sweepd::v1;

std::unique_ptr<SweepCluster> NewCluster(
    const std::string& prefix, bool fixed_port,
    std::vector<std::string> sweepd_args = {}) {
  auto dir = MakeTempDir(prefix);
  EXPECT_TRUE(dir.ok()) << dir.status();
  if (!dir.ok()) return nullptr;
  SweepClusterOptions options;
  options.dir = *dir;
  options.fixed_port = fixed_port;
  options.sweepd_args = std::move(sweepd_args);
  auto cluster = SweepCluster::Create(options);
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  if (!cluster.ok()) return nullptr;
  absl::Status s = (*cluster)->StartCoordinator();
  EXPECT_TRUE(s.ok()) << s << (*cluster)->DescribeLogs();
  if (!s.ok()) return nullptr;
  return std::move(*cluster);
}

void ExpectLedgerExactlyOnce(SweepCluster& cluster, const std::string& sweep_id,
                             int n) {
  auto counts = ReadLedgerCounts(cluster.ledger_path(), sweep_id);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->tasks, n);
  EXPECT_EQ(counts->distinct_keys, n);
  EXPECT_EQ(counts->done_with_result, n);
  EXPECT_EQ(counts->not_terminal, 0);
  EXPECT_EQ(counts->worker_tasks_done,
            n);  // one increment per committed result
  EXPECT_EQ(counts->integrity_check, "ok");
}

std::string WorkerIdOf(SweepCluster& cluster, const std::string& name) {
  auto workers = cluster.ListWorkers();
  if (!workers.ok()) return "";
  std::string id;
  for (const auto& w : *workers) {
    if (w.name() == name) id = w.worker_id();  // the latest registration wins
  }
  return id;
}

// Polls until a task of the sweep is LEASED to worker `name`; returns its
// record.
absl::StatusOr<v1::TaskRecord> WaitForLeaseHeldBy(SweepCluster& cluster,
                                                  const std::string& sweep_id,
                                                  const std::string& name,
                                                  absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::string id = WorkerIdOf(cluster, name);
    if (!id.empty()) {
      auto leased = cluster.ListAllTasks(sweep_id, {v1::TASK_STATE_LEASED});
      if (leased.ok()) {
        for (const auto& t : *leased) {
          if (t.worker_id() == id) return t;
        }
      }
    }
    absl::SleepFor(absl::Milliseconds(50));  // polling the coordinator
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no task leased by ", name, "\n", cluster.DescribeLogs()));
}

TEST(FaultTest, KillNineCoordinatorTwentyTimesDuringA2000TaskSweep) {
  constexpr int kTasks = 2000;
  constexpr int kKills = 20;
  // --lease-seconds 3 also bounds the restart grace: a lease whose LeaseTasks
  // reply died with the coordinator (the worker never saw it) comes back after
  // 3 s, not 60 s.
  auto cluster = NewCluster("sweepd-fault-kill-sweepd", /*fixed_port=*/true,
                            {"--lease-seconds", "3"});
  ASSERT_NE(cluster, nullptr);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        cluster
            ->StartWorker(absl::StrCat("kw-", i),
                          {"--heartbeat-ms", "300", "--rpc-deadline-ms", "2000",
                           "--max-tasks", "4", "--seed", absl::StrCat(100 + i)})
            .ok());
  }
  // ~2,000 x 10..30 ms over 4 workers: about 10 s of work, stretched by the
  // restarts.
  auto submitted = cluster->Submit(SyntheticSweep(
      "fault-kill-sweepd", kTasks, 10, 30, 0.0, 10, /*lease_seconds=*/3));
  ASSERT_TRUE(submitted.ok()) << submitted.status() << cluster->DescribeLogs();
  ASSERT_EQ(submitted->total_tasks(), kTasks);
  const std::string sweep_id = submitted->sweep_id();

  std::mt19937 rng(20'240'601);
  std::uniform_int_distribution<int> pause_ms(100, 700);
  int kills_mid_sweep = 0;
  for (int k = 0; k < kKills; ++k) {
    absl::SleepFor(
        absl::Milliseconds(pause_ms(rng)));  // a random moment of the run
    auto status = cluster->GetSweep(sweep_id);
    if (status.ok() && status->state() == v1::SWEEP_STATE_RUNNING)
      ++kills_mid_sweep;
    cluster->KillCoordinator();
    absl::Status restarted = cluster->StartCoordinator();
    ASSERT_TRUE(restarted.ok()) << "restart " << k << ": " << restarted;
  }
  // The kills must have hit a running sweep, not a finished one.
  EXPECT_GE(kills_mid_sweep, kKills / 2);

  auto final_status = cluster->WaitForSweepEnd(sweep_id, absl::Seconds(120));
  ASSERT_TRUE(final_status.ok()) << final_status.status();
  EXPECT_EQ(final_status->state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(final_status->counts().done(), kTasks);
  ExpectExactlyOnce(*cluster, sweep_id, kTasks);
  for (int i = 0; i < 4; ++i)
    (void)cluster->worker(absl::StrCat("kw-", i))->Signal(SIGTERM);
  for (int i = 0; i < 4; ++i) {
    auto exit =
        cluster->worker(absl::StrCat("kw-", i))->Wait(absl::Seconds(30));
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_TRUE(exit->exited && exit->code == 0) << exit->ToString();
  }
  ASSERT_TRUE(cluster->StopCoordinator().ok());
  ExpectLedgerExactlyOnce(*cluster, sweep_id, kTasks);
}

TEST(FaultTest, KilledWorkersTaskIsLeasedAgainAfterExpiryAndCompletes) {
  auto cluster = NewCluster("sweepd-fault-kill-worker", /*fixed_port=*/false);
  ASSERT_NE(cluster, nullptr);
  auto submitted = cluster->Submit(SyntheticSweep(
      "fault-kill-worker", 2, 2000, 2000, 0.0, 5, /*lease_seconds=*/2));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string sweep_id = submitted->sweep_id();
  auto victim = cluster->StartWorker(
      "victim", {"--heartbeat-ms", "200", "--max-tasks", "1"});
  ASSERT_TRUE(victim.ok()) << victim.status();
  auto held =
      WaitForLeaseHeldBy(*cluster, sweep_id, "victim", absl::Seconds(20));
  ASSERT_TRUE(held.ok()) << held.status();
  const std::string victim_id = held->worker_id();
  ASSERT_TRUE((*victim)->Signal(SIGKILL).ok());
  auto exit = (*victim)->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok());
  EXPECT_TRUE(exit->signaled && exit->signal == SIGKILL) << exit->ToString();

  ASSERT_TRUE(cluster->StartWorker("rescuer", {"--heartbeat-ms", "200"}).ok());
  auto final_status = cluster->WaitForSweepEnd(sweep_id, absl::Seconds(45));
  ASSERT_TRUE(final_status.ok()) << final_status.status();
  EXPECT_EQ(final_status->state(), v1::SWEEP_STATE_DONE)
      << cluster->DescribeLogs();
  ExpectExactlyOnce(*cluster, sweep_id, 2);

  auto tasks = cluster->ListAllTasks(sweep_id);
  ASSERT_TRUE(tasks.ok());
  const std::string rescuer_id = WorkerIdOf(*cluster, "rescuer");
  for (const auto& t : *tasks) {
    if (t.task_key() != held->task_key()) continue;
    // Finished by the other worker, after the victim's lease expired.
    EXPECT_EQ(t.worker_id(), rescuer_id);
    EXPECT_NE(t.worker_id(), victim_id);
  }
  ASSERT_TRUE(cluster->StopCoordinator().ok());
  ExpectLedgerExactlyOnce(*cluster, sweep_id, 2);
  // The killed task was granted twice: the victim's lease and the rescuer's.
  auto grants = QueryLedgerInt(cluster->ledger_path(),
                               "SELECT count(*) FROM leases WHERE task_key = ?",
                               held->task_key());
  ASSERT_TRUE(grants.ok()) << grants.status();
  EXPECT_GE(*grants, 2);
}

// SIGSTOP a worker past its lease, then SIGCONT it (issue 13, worker faults):
// the lease expires, another worker is granted the task and commits it, and
// the stopped worker's late result is then refused as the ledger rules say
// (a result for a task already DONE never commits; a stale lease's result
// would commit only while nothing had), or dropped when the worker hears of
// the cancellation first. Prints how long reassignment took
// after the stop (the lease is 2 s).
TEST(FaultTest, StoppedWorkersLateResultIsRefusedAfterReassignment) {
  auto cluster = NewCluster("sweepd-fault-sigstop", /*fixed_port=*/false);
  ASSERT_NE(cluster, nullptr);
  auto submitted = cluster->Submit(SyntheticSweep(
      "fault-sigstop", 1, 1500, 1500, 0.0, 5, /*lease_seconds=*/2));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string sweep_id = submitted->sweep_id();
  auto victim = cluster->StartWorker(
      "stopped", {"--heartbeat-ms", "200", "--max-tasks", "1"});
  ASSERT_TRUE(victim.ok()) << victim.status();
  auto held =
      WaitForLeaseHeldBy(*cluster, sweep_id, "stopped", absl::Seconds(20));
  ASSERT_TRUE(held.ok()) << held.status();
  const std::string victim_id = held->worker_id();
  ASSERT_TRUE((*victim)->Signal(SIGSTOP).ok());
  const absl::Time stopped_at = absl::Now();

  ASSERT_TRUE(cluster->StartWorker("rescuer", {"--heartbeat-ms", "200"}).ok());
  auto rescued =
      WaitForLeaseHeldBy(*cluster, sweep_id, "rescuer", absl::Seconds(30));
  ASSERT_TRUE(rescued.ok()) << rescued.status();
  std::cout << "[sigstop] task reassigned "
            << absl::ToDoubleSeconds(absl::Now() - stopped_at)
            << " s after the stop (lease 2 s)" << std::endl;
  EXPECT_GT(rescued->attempts(), held->attempts());
  auto final_status = cluster->WaitForSweepEnd(sweep_id, absl::Seconds(30));
  ASSERT_TRUE(final_status.ok()) << final_status.status();
  ASSERT_EQ(final_status->state(), v1::SWEEP_STATE_DONE)
      << cluster->DescribeLogs();

  // Resume the stopped worker. Two threads of it race: the executor finishes
  // the task and the agent reports it with the old lease, which the
  // coordinator refuses (the task is DONE); or the first heartbeat after the
  // resume learns that the task was taken away ("coordinator cancelled task")
  // and the executor drops its result unreported. Either way the rescuer's
  // result stays the only one committed, which the checks below assert.
  ASSERT_TRUE((*victim)->Signal(SIGCONT).ok());
  const std::string refused_line = "was a duplicate (already committed)";
  const std::string dropped_line =
      "coordinator cancelled task " + held->task_key();
  std::string outcome;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (outcome.empty() && absl::Now() < deadline) {
    std::ifstream log((*victim)->log_path());
    std::stringstream text;
    text << log.rdbuf();
    if (text.str().find(refused_line) != std::string::npos) {
      outcome = "late result refused";
    } else if (text.str().find(dropped_line) != std::string::npos) {
      outcome = "result dropped on the cancellation";
    } else {
      absl::SleepFor(absl::Milliseconds(100));  // polling a log
    }
  }
  ASSERT_FALSE(outcome.empty())
      << "the resumed worker neither reported nor dropped its result"
      << cluster->DescribeLogs();
  std::cout << "[sigstop] resumed worker: " << outcome << std::endl;
  ExpectExactlyOnce(*cluster, sweep_id, 1);
  auto tasks = cluster->ListAllTasks(sweep_id);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0].worker_id(), WorkerIdOf(*cluster, "rescuer"));
  EXPECT_NE((*tasks)[0].worker_id(), victim_id);
  ASSERT_TRUE((*victim)->Signal(SIGTERM).ok());
  ASSERT_TRUE(cluster->StopCoordinator().ok());
  ExpectLedgerExactlyOnce(*cluster, sweep_id, 1);
}

TEST(FaultTest, DroppedReportRepliesProduceNoDuplicates) {
  constexpr int kTasks = 600;
  auto cluster = NewCluster("sweepd-fault-drop-replies", /*fixed_port=*/false);
  ASSERT_NE(cluster, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        cluster
            ->StartWorker(absl::StrCat("dw-", i),
                          {"--fault-drop-report-reply", "0.1", "--seed",
                           absl::StrCat(7 + i), "--heartbeat-ms", "300"})
            .ok());
  }
  auto submitted =
      cluster->Submit(SyntheticSweep("fault-drop-replies", kTasks, 0, 2));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string sweep_id = submitted->sweep_id();
  auto final_status = cluster->WaitForSweepEnd(sweep_id, absl::Seconds(120));
  ASSERT_TRUE(final_status.ok()) << final_status.status();
  EXPECT_EQ(final_status->state(), v1::SWEEP_STATE_DONE);
  ExpectExactlyOnce(*cluster, sweep_id, kTasks);

  int dropped = 0, duplicates = 0;
  for (int i = 0; i < 3; ++i) {
    Process* w = cluster->worker(absl::StrCat("dw-", i));
    ASSERT_TRUE(w->Signal(SIGTERM).ok());
    auto exit = w->Wait(absl::Seconds(30));
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_TRUE(exit->exited && exit->code == 0) << exit->ToString();
    dropped += CountInFile(w->log_path(),
                           "fault switch: dropping the ReportResult reply");
    duplicates +=
        CountInFile(w->log_path(), "was a duplicate (already committed)");
  }
  // ~10% of 600 reports lost their reply and were resent; the coordinator
  // answered committed=false to the resends that reached it after the first
  // commit.
  EXPECT_GT(dropped, 20);
  EXPECT_GT(duplicates, 0);
  EXPECT_LE(duplicates, dropped);
  ASSERT_TRUE(cluster->StopCoordinator().ok());
  ExpectLedgerExactlyOnce(*cluster, sweep_id, kTasks);
}

TEST(FaultTest, SigtermDrainsReleasesTheLongTaskAndItCompletesElsewhere) {
  auto cluster = NewCluster("sweepd-fault-drain", /*fixed_port=*/false);
  ASSERT_NE(cluster, nullptr);
  // max_attempts = 1: if the release counted as a failed attempt the task would
  // end FAILED. lease_seconds = 60: only a release (not an expiry) lets it
  // finish within the deadline.
  auto submitted = cluster->Submit(SyntheticSweep("fault-drain", 1, 4000, 4000,
                                                  0.0, /*max_attempts=*/1, 60));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string sweep_id = submitted->sweep_id();
  auto drainer = cluster->StartWorker(
      "drainer", {"--drain-grace-s", "0.5", "--heartbeat-ms", "200"});
  ASSERT_TRUE(drainer.ok());
  auto held =
      WaitForLeaseHeldBy(*cluster, sweep_id, "drainer", absl::Seconds(20));
  ASSERT_TRUE(held.ok()) << held.status();

  absl::Time sent = absl::Now();
  ASSERT_TRUE((*drainer)->Signal(SIGTERM).ok());
  auto exit = (*drainer)->Wait(absl::Seconds(15));
  ASSERT_TRUE(exit.ok()) << exit.status() << cluster->DescribeLogs();
  EXPECT_TRUE(exit->exited && exit->code == 0) << exit->ToString();
  EXPECT_LT(absl::Now() - sent,
            absl::Seconds(4));  // gave the task up, did not finish it
  EXPECT_EQ(CountInFile((*drainer)->log_path(), "released 1 task(s)"), 1);

  ASSERT_TRUE(cluster->StartWorker("finisher", {"--heartbeat-ms", "200"}).ok());
  auto final_status = cluster->WaitForSweepEnd(sweep_id, absl::Seconds(30));
  ASSERT_TRUE(final_status.ok()) << final_status.status();
  EXPECT_EQ(final_status->state(), v1::SWEEP_STATE_DONE)
      << cluster->DescribeLogs();
  auto tasks = cluster->ListAllTasks(sweep_id);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ(tasks->at(0).state(), v1::TASK_STATE_DONE);
  EXPECT_EQ(tasks->at(0).worker_id(), WorkerIdOf(*cluster, "finisher"));
  EXPECT_EQ(tasks->at(0).error(), "");
  ASSERT_TRUE(cluster->StopCoordinator().ok());
  ExpectLedgerExactlyOnce(*cluster, sweep_id, 1);
}

TEST(FaultTest, SigtermLetsATaskFinishWithinTheGrace) {
  auto cluster = NewCluster("sweepd-fault-drain-finish", /*fixed_port=*/false);
  ASSERT_NE(cluster, nullptr);
  auto submitted = cluster->Submit(
      SyntheticSweep("fault-drain-finish", 1, 1500, 1500, 0.0, 1, 60));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string sweep_id = submitted->sweep_id();
  auto worker = cluster->StartWorker("patient", {"--drain-grace-s", "20"});
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(
      WaitForLeaseHeldBy(*cluster, sweep_id, "patient", absl::Seconds(20))
          .ok());
  ASSERT_TRUE((*worker)->Signal(SIGTERM).ok());
  auto exit = (*worker)->Wait(absl::Seconds(20));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited && exit->code == 0) << exit->ToString();
  // It reported before exiting: the sweep is done without any other worker.
  auto status = cluster->GetSweep(sweep_id);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), v1::SWEEP_STATE_DONE) << cluster->DescribeLogs();
  EXPECT_EQ(CountInFile((*worker)->log_path(), "released 1 task(s)"), 0);
}

// A worker running engine-backed eval tasks (tensor-parallel rank threads,
// libtorch's pools) drains on SIGTERM and exits 0. The worker blocks the
// signals before it creates the engine: on CUDA machines libtorch starts
// threads when the model loads, and one of those receiving SIGTERM would kill
// the process (seen on an H200 before the fix). On CPU the engine's threads
// start lazily, so this test checks the drain, not that ordering.
TEST(FaultTest, SigtermDrainsAWorkerWithAModelLoaded) {
  auto dir = MakeTempDir("sweepd-fault-model");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto cluster = NewCluster(
      "sweepd-fault-drain-model", /*fixed_port=*/false,
      {"--model-root", *dir, "--data-root", SourceDir() + "/configs/data"});
  ASSERT_NE(cluster, nullptr);
  auto worker_bin = BuildBinary("worker/sweep-worker");
  ASSERT_TRUE(worker_bin.ok()) << worker_bin.status();
  absl::Status made = MakeTinyModelWithWorker(
      *worker_bin, *dir + "/gemma4-tiny", *dir + "/make-model.log");
  ASSERT_TRUE(made.ok()) << made;

  // An eval sweep, so the engine has run forwards (and started its threads)
  // by the time the signal comes.
  v1::SweepSpec spec;
  spec.set_name("fault-drain-model");
  spec.mutable_model()->set_path("gemma4-tiny");
  auto* ds = spec.add_datasets();
  ds->set_name("prose");
  ds->set_path("corpus_prose.txt");
  spec.mutable_eval()->mutable_windowing()->set_context_length(64);
  auto* layers = spec.mutable_grid()->add_axes()->mutable_layers();
  layers->set_op("skip");
  layers->set_select("all");
  layers->set_include_baseline(true);
  auto submitted = cluster->Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status() << cluster->DescribeLogs();
  auto worker = cluster->StartWorker(
      "engine", {"--model", *dir + "/gemma4-tiny", "--tp", "2", "--threads",
                 "1", "--max-tasks", "1"});
  ASSERT_TRUE(worker.ok()) << worker.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while ((*worker)->Running() && absl::Now() < deadline) {
    auto status = cluster->GetSweep(submitted->sweep_id());
    if (status.ok() && status->counts().done() >= 1) break;
    absl::SleepFor(absl::Milliseconds(50));  // waiting for a process, not time
  }
  auto status = cluster->GetSweep(submitted->sweep_id());
  ASSERT_TRUE(status.ok() && status->counts().done() >= 1)
      << cluster->DescribeLogs();
  ASSERT_TRUE((*worker)->Signal(SIGTERM).ok());
  auto exit = (*worker)->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited && exit->code == 0)
      << exit->ToString() << cluster->DescribeLogs();
  EXPECT_GT(CountInFile((*worker)->log_path(), "draining"), 0);
}

}  // namespace
}  // namespace sweepd::testing
