#include "coordinator/scheduler.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Await;
using ::sweepd::testing::MakePlan;
using ::sweepd::testing::PlanShape;
using ::sweepd::testing::TempPath;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TempPath("sched") + ".db";
    Open();
  }
  void Open() {
    scheduler_.reset();
    ledger_.reset();
    LedgerOptions lo;
    lo.clock = &clock_;
    auto l = Ledger::Open(path_, lo);
    ASSERT_TRUE(l.ok()) << l.status();
    ledger_ = std::move(l).value();
    SchedulerOptions so;
    so.clock = &clock_;
    so.worker_timeout_ms = 60'000;
    so.restart_grace_ms = restart_grace_ms_;
    auto s = LeaseScheduler::Create(ledger_.get(), so);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(s).value();
  }
  void Submit(const PlanShape& shape) {
    auto r = Await<SubmitOutcome>(
        [&](auto cb) { scheduler_->SubmitPlan(MakePlan(shape), cb); });
    ASSERT_TRUE(r.ok()) << r.status();
  }
  std::string Register(const std::string& model = "", int tp = 1) {
    v1::WorkerCapabilities caps;
    caps.set_device_kind("cpu");
    caps.set_tensor_parallel(tp);
    caps.set_model_fingerprint(model);
    auto r = Await<v1::RegisterWorkerResponse>(
        [&](auto cb) { scheduler_->RegisterWorker("w", caps, cb); });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->worker_id() : "";
  }
  LeaseBatch Lease(const std::string& worker, int n) {
    auto r = Await<LeaseBatch>(
        [&](auto cb) { scheduler_->LeaseTasks(worker, n, std::nullopt, cb); });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : LeaseBatch{};
  }
  int Expire() {
    auto r = Await<int>([&](auto cb) { scheduler_->ExpireLeases(cb); });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : -1;
  }
  bool Report(const std::string& worker, const v1::TaskAssignment& a, bool ok,
              bool retryable = true) {
    ResultReport rep;
    rep.worker_id = worker;
    rep.task_key = a.task_key();
    rep.fencing_token = a.fencing_token();
    if (ok) {
      rep.result.emplace();
    } else {
      rep.failure.emplace();
      rep.failure->set_message("synthetic failure");
      rep.failure->set_retryable(retryable);
    }
    auto r = Await<bool>([&](auto cb) { scheduler_->ReportResult(rep, cb); });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r;
  }
  v1::TaskCounts Counts(const std::string& sweep = "sw-test") {
    auto s = scheduler_->GetSweep(sweep);
    EXPECT_TRUE(s.has_value());
    return s.has_value() ? s->counts : v1::TaskCounts();
  }

  FakeClock clock_;
  int64_t restart_grace_ms_ = 5'000;
  std::string path_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<LeaseScheduler> scheduler_;
};

TEST_F(SchedulerTest, UnknownWorkerIsNotFound) {
  auto r = Await<LeaseBatch>(
      [&](auto cb) { scheduler_->LeaseTasks("w-ghost", 1, std::nullopt, cb); });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("w-ghost"));
}

TEST_F(SchedulerTest, ExpiredLeaseReturnsToPendingAndIsLeasedAgain) {
  Submit({.tasks = 1, .lease_seconds = 10});
  const std::string w1 = Register();
  const std::string w2 = Register();
  LeaseBatch a = Lease(w1, 1);
  ASSERT_THAT(a.tasks, SizeIs(1));
  EXPECT_EQ(a.tasks[0].attempt(), 1);
  EXPECT_EQ(a.tasks[0].lease_expires_unix_ms(), clock_.NowMs() + 10'000);
  EXPECT_THAT(Lease(w2, 1).tasks, IsEmpty());
  clock_.AdvanceMs(9'999);
  EXPECT_EQ(Expire(), 0);
  clock_.AdvanceMs(1);
  EXPECT_EQ(Expire(), 1);
  EXPECT_EQ(Counts().pending(), 1);
  LeaseBatch b = Lease(w2, 1);
  ASSERT_THAT(b.tasks, SizeIs(1));
  EXPECT_EQ(b.tasks[0].attempt(), 2);
  EXPECT_GT(b.tasks[0].fencing_token(), a.tasks[0].fencing_token());
  // The old worker learns through its heartbeat that the lease is gone.
  auto hb = Await<HeartbeatOutcome>([&](auto cb) {
    scheduler_->Heartbeat(
        w1, {{a.tasks[0].task_key(), a.tasks[0].fencing_token()}}, false, cb);
  });
  ASSERT_TRUE(hb.ok());
  EXPECT_THAT(hb->cancelled_task_keys, ElementsAre(a.tasks[0].task_key()));
}

TEST_F(SchedulerTest, HeartbeatRenewalPreventsExpiry) {
  Submit({.tasks = 1, .lease_seconds = 10});
  const std::string w = Register();
  LeaseBatch a = Lease(w, 1);
  ASSERT_THAT(a.tasks, SizeIs(1));
  for (int i = 0; i < 3; ++i) {
    clock_.AdvanceMs(8'000);
    auto hb = Await<HeartbeatOutcome>([&](auto cb) {
      scheduler_->Heartbeat(
          w, {{a.tasks[0].task_key(), a.tasks[0].fencing_token()}}, false, cb);
    });
    ASSERT_TRUE(hb.ok());
    EXPECT_THAT(hb->cancelled_task_keys, IsEmpty());
    EXPECT_EQ(hb->lease_expires_ms, clock_.NowMs() + 10'000);
    EXPECT_EQ(Expire(), 0);
  }
  EXPECT_TRUE(Report(w, a.tasks[0], true));
  EXPECT_EQ(Counts().done(), 1);
}

TEST_F(SchedulerTest, RetryableFailureWaitsForExponentialBackoff) {
  Submit({.tasks = 1, .max_attempts = 4, .retry_backoff_ms = 1000});
  const std::string w = Register();
  int64_t backoff = 1000;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    LeaseBatch a = Lease(w, 1);
    ASSERT_THAT(a.tasks, SizeIs(1)) << "attempt " << attempt;
    EXPECT_EQ(a.tasks[0].attempt(), attempt);
    EXPECT_TRUE(Report(w, a.tasks[0], false));
    LeaseBatch none = Lease(w, 1);
    EXPECT_THAT(none.tasks, IsEmpty());
    EXPECT_EQ(none.retry_after_ms, std::min<int64_t>(backoff, 500));
    clock_.AdvanceMs(backoff - 1);
    EXPECT_THAT(Lease(w, 1).tasks, IsEmpty())
        << "backoff " << backoff << " not over yet";
    clock_.AdvanceMs(1);
    if (attempt < 3) {
      backoff *= 2;
      continue;
    }
    LeaseBatch last = Lease(w, 1);
    ASSERT_THAT(last.tasks, SizeIs(1));
    EXPECT_EQ(last.tasks[0].attempt(), 4);
  }
}

TEST_F(SchedulerTest, MaxAttemptsFailsTheTaskAndTheSweep) {
  Submit({.tasks = 1, .max_attempts = 2, .retry_backoff_ms = 10});
  const std::string w = Register();
  LeaseBatch a = Lease(w, 1);
  ASSERT_THAT(a.tasks, SizeIs(1));
  EXPECT_TRUE(Report(w, a.tasks[0], false));
  clock_.AdvanceMs(10);
  LeaseBatch b = Lease(w, 1);
  ASSERT_THAT(b.tasks, SizeIs(1));
  EXPECT_TRUE(Report(w, b.tasks[0], false));
  EXPECT_EQ(Counts().failed(), 1);
  EXPECT_EQ(scheduler_->GetSweep("sw-test")->state, v1::SWEEP_STATE_FAILED);
  clock_.AdvanceMs(100'000);
  EXPECT_THAT(Lease(w, 1).tasks, IsEmpty());
  auto rec = ledger_->GetTask("sw-test", a.tasks[0].task_key());
  ASSERT_TRUE(rec.ok());
  EXPECT_THAT(rec->error(), HasSubstr("max_attempts 2 reached"));
}

TEST_F(SchedulerTest, ExpiryAtMaxAttemptsFails) {
  Submit({.tasks = 1, .max_attempts = 1, .lease_seconds = 5});
  const std::string w = Register();
  ASSERT_THAT(Lease(w, 1).tasks, SizeIs(1));
  clock_.AdvanceMs(5'000);
  EXPECT_EQ(Expire(), 1);
  EXPECT_EQ(Counts().failed(), 1);
}

TEST_F(SchedulerTest, ReleasedTaskDoesNotCountAnAttempt) {
  Submit({.tasks = 1, .max_attempts = 1});
  const std::string w1 = Register();
  const std::string w2 = Register();
  LeaseBatch a = Lease(w1, 1);
  ASSERT_THAT(a.tasks, SizeIs(1));
  auto released = Await<int>([&](auto cb) {
    scheduler_->ReleaseTasks(
        w1, {{a.tasks[0].task_key(), a.tasks[0].fencing_token()}}, cb);
  });
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(*released, 1);
  LeaseBatch b = Lease(w2, 1);
  ASSERT_THAT(b.tasks, SizeIs(1));
  EXPECT_EQ(b.tasks[0].attempt(),
            1);  // max_attempts=1 and it is still allowed to run
  EXPECT_TRUE(Report(w2, b.tasks[0], true));
  EXPECT_EQ(Counts().done(), 1);
}

TEST_F(SchedulerTest, CancellationReachesWorkersThroughHeartbeats) {
  Submit({.tasks = 3});
  const std::string w = Register();
  LeaseBatch a = Lease(w, 2);
  ASSERT_THAT(a.tasks, SizeIs(2));
  auto n =
      Await<int64_t>([&](auto cb) { scheduler_->CancelSweep("sw-test", cb); });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3);
  auto hb = Await<HeartbeatOutcome>([&](auto cb) {
    scheduler_->Heartbeat(w,
                          {{a.tasks[0].task_key(), a.tasks[0].fencing_token()},
                           {a.tasks[1].task_key(), a.tasks[1].fencing_token()}},
                          false, cb);
  });
  ASSERT_TRUE(hb.ok());
  EXPECT_THAT(hb->cancelled_task_keys,
              ElementsAre(a.tasks[0].task_key(), a.tasks[1].task_key()));
  EXPECT_THAT(Lease(w, 5).tasks, IsEmpty());
  EXPECT_EQ(scheduler_->GetSweep("sw-test")->state, v1::SWEEP_STATE_CANCELLED);
  EXPECT_FALSE(Report(w, a.tasks[0], true));
  auto missing =
      Await<int64_t>([&](auto cb) { scheduler_->CancelSweep("sw-none", cb); });
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, GroupStaysWithOneWorker) {
  // Two groups of three tasks.
  Submit({.tasks = 6, .group_size = 3});
  const std::string a = Register();
  const std::string b = Register();
  LeaseBatch first = Lease(a, 2);
  ASSERT_THAT(first.tasks, SizeIs(2));
  EXPECT_EQ(first.tasks[0].group_key(), "g0");
  EXPECT_EQ(first.tasks[1].group_key(), "g0");
  // b does not get the rest of a's group while another group is available.
  LeaseBatch other = Lease(b, 3);
  ASSERT_THAT(other.tasks, SizeIs(3));
  for (const auto& t : other.tasks) EXPECT_EQ(t.group_key(), "g1");
  // a gets the rest of its group.
  LeaseBatch rest = Lease(a, 5);
  ASSERT_THAT(rest.tasks, SizeIs(1));
  EXPECT_EQ(rest.tasks[0].group_key(), "g0");
}

TEST_F(SchedulerTest, PinnedGroupIsSharedWhenNothingElseIsEligible) {
  Submit({.tasks = 4, .group_size = 4});
  const std::string a = Register();
  const std::string b = Register();
  ASSERT_THAT(Lease(a, 1).tasks, SizeIs(1));
  LeaseBatch helped = Lease(b, 2);
  ASSERT_THAT(helped.tasks, SizeIs(2));
  EXPECT_EQ(helped.tasks[0].group_key(), "g0");
}

TEST_F(SchedulerTest, WholeGroupInOneCall) {
  Submit({.tasks = 5, .group_size = 5});
  const std::string a = Register();
  LeaseBatch all = Lease(a, 10);
  ASSERT_THAT(all.tasks, SizeIs(5));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(all.tasks[i].spec().index(), i);
}

TEST_F(SchedulerTest, PrefersLoadedModelThenPriority) {
  Submit({.sweep_id = "sw-a", .tasks = 2, .model_fingerprint = "model-a"});
  Submit({.sweep_id = "sw-b", .tasks = 2, .model_fingerprint = "model-b"});
  const std::string wb = Register("model-b");
  LeaseBatch got = Lease(wb, 1);
  ASSERT_THAT(got.tasks, SizeIs(1));
  EXPECT_EQ(got.tasks[0].sweep_id(), "sw-b");
  // A higher-priority sweep wins over model affinity.
  Submit({.sweep_id = "sw-hi",
          .tasks = 1,
          .priority = 5,
          .model_fingerprint = "model-a"});
  LeaseBatch hi = Lease(wb, 1);
  ASSERT_THAT(hi.tasks, SizeIs(1));
  EXPECT_EQ(hi.tasks[0].sweep_id(), "sw-hi");
}

TEST_F(SchedulerTest, TensorParallelRequirementIsRespected) {
  Submit({.tasks = 1, .tensor_parallel = 2});
  const std::string tp1 = Register("", 1);
  const std::string tp2 = Register("", 2);
  EXPECT_THAT(Lease(tp1, 1).tasks, IsEmpty());
  EXPECT_THAT(Lease(tp2, 1).tasks, SizeIs(1));
}

TEST_F(SchedulerTest, DrainingWorkerGetsNothing) {
  Submit({.tasks = 2});
  const std::string w = Register();
  auto hb = Await<HeartbeatOutcome>(
      [&](auto cb) { scheduler_->Heartbeat(w, {}, true, cb); });
  ASSERT_TRUE(hb.ok());
  EXPECT_THAT(Lease(w, 2).tasks, IsEmpty());
  auto workers = scheduler_->ListWorkers();
  ASSERT_THAT(workers, SizeIs(1));
  EXPECT_TRUE(workers[0].draining());
}

TEST_F(SchedulerTest, RestartKeepsLeasesAndHeartbeatsRenewThem) {
  Submit({.tasks = 3, .lease_seconds = 10});
  const std::string w = Register();
  LeaseBatch a = Lease(w, 2);
  ASSERT_THAT(a.tasks, SizeIs(2));
  ASSERT_TRUE(Report(w, a.tasks[0], true));
  ASSERT_TRUE(ledger_->Close().ok());
  Open();  // a new process on the same ledger
  EXPECT_EQ(Counts().done(), 1);
  EXPECT_EQ(Counts().leased(), 1);
  EXPECT_EQ(Counts().pending(), 1);
  // The surviving lease is not handed out again; the worker's heartbeat renews
  // it.
  const std::string w2 = Register();
  LeaseBatch b = Lease(w2, 5);
  ASSERT_THAT(b.tasks, SizeIs(1));
  EXPECT_NE(b.tasks[0].task_key(), a.tasks[1].task_key());
  EXPECT_GT(b.tasks[0].fencing_token(), a.tasks[1].fencing_token());
  clock_.AdvanceMs(9'000);
  auto hb = Await<HeartbeatOutcome>([&](auto cb) {
    scheduler_->Heartbeat(
        w, {{a.tasks[1].task_key(), a.tasks[1].fencing_token()}}, false, cb);
  });
  ASSERT_TRUE(hb.ok());
  EXPECT_THAT(hb->cancelled_task_keys, IsEmpty());
  clock_.AdvanceMs(9'000);
  // Only w2's lease (never renewed) expires; its late result is still accepted.
  EXPECT_EQ(Expire(), 1);
  EXPECT_TRUE(Report(w, a.tasks[1], true));
  EXPECT_TRUE(Report(w2, b.tasks[0], true));
  EXPECT_EQ(Counts().done(), 3);
  EXPECT_EQ(scheduler_->GetSweep("sw-test")->state, v1::SWEEP_STATE_DONE);
}

// A lease loaded after a restart gets its own sweep's lease length as grace
// (not a fixed coordinator-wide one): a lease whose grant reply died with the
// old process comes back after lease_seconds.
TEST_F(SchedulerTest, RestartGraceIsTheSweepsOwnLeaseLength) {
  restart_grace_ms_ = 0;
  Open();
  Submit({.tasks = 1, .lease_seconds = 10});
  const std::string w = Register();
  LeaseBatch a = Lease(w, 1);
  ASSERT_THAT(a.tasks, SizeIs(1));
  EXPECT_EQ(a.tasks[0].lease_expires_unix_ms(), clock_.NowMs() + 10'000);
  clock_.AdvanceMs(9'000);
  ASSERT_TRUE(ledger_->Close().ok());
  Open();  // restarted 9 s into the 10 s lease: 10 s from now, not 60 s
  clock_.AdvanceMs(9'500);
  EXPECT_EQ(Expire(), 0);
  clock_.AdvanceMs(1'000);
  EXPECT_EQ(Expire(), 1);
  EXPECT_EQ(Counts().pending(), 1);
  const std::string w2 = Register();
  LeaseBatch b = Lease(w2, 1);
  ASSERT_THAT(b.tasks, SizeIs(1));
  EXPECT_EQ(b.tasks[0].attempt(), 2);
  EXPECT_GT(b.tasks[0].fencing_token(), a.tasks[0].fencing_token());
}

// Leases are granted from the mirror with tokens from the ledger's durable
// block: the reply comes before the lease's own write, every token is at most
// the persisted mark, tokens never repeat across a restart, and reports that
// follow the grant find it recorded.
TEST_F(SchedulerTest, MirrorGrantsUseDurablyReservedTokens) {
  Submit({.tasks = 40, .group_size = 1});
  const std::string w = Register();
  std::set<int64_t> tokens;
  std::vector<v1::TaskAssignment> held;
  for (int i = 0; i < 20; ++i) {
    LeaseBatch b = Lease(w, 1);
    ASSERT_THAT(b.tasks, SizeIs(1));
    auto mark = ledger_->LastFencingToken();
    ASSERT_TRUE(mark.ok()) << mark.status();
    EXPECT_LE(b.tasks[0].fencing_token(), *mark);
    EXPECT_TRUE(tokens.insert(b.tasks[0].fencing_token()).second);
    EXPECT_EQ(b.tasks[0].spec().kind(), v1::JOB_KIND_SYNTHETIC);
    EXPECT_EQ(b.tasks[0].group_key(),
              absl::StrCat("g", b.tasks[0].spec().index()));
    EXPECT_EQ(b.tasks[0].attempt(), 1);
    held.push_back(b.tasks[0]);
  }
  EXPECT_EQ(Counts().leased(), 20);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Report(w, held[i], true));
  ASSERT_TRUE(ledger_->Close().ok());
  Open();
  EXPECT_EQ(Counts().done(), 10);
  EXPECT_EQ(Counts().leased(), 10);
  const std::string w2 = Register();
  for (int i = 0; i < 20; ++i) {
    LeaseBatch b = Lease(w2, 1);
    ASSERT_THAT(b.tasks, SizeIs(1));
    EXPECT_GT(b.tasks[0].fencing_token(), *tokens.rbegin());
    // Specs of tasks loaded from the ledger are handed out as well.
    EXPECT_EQ(b.tasks[0].spec().kind(), v1::JOB_KIND_SYNTHETIC);
    EXPECT_EQ(b.tasks[0].group_key(),
              absl::StrCat("g", b.tasks[0].spec().index()));
    ASSERT_TRUE(Report(w2, b.tasks[0], true));
  }
  for (int i = 10; i < 20; ++i) ASSERT_TRUE(Report(w, held[i], true));
  EXPECT_EQ(Counts().done(), 40);
  EXPECT_EQ(scheduler_->GetSweep("sw-test")->state, v1::SWEEP_STATE_DONE);
}

// ---- Why pending tasks wait (defect: a sweep no worker can run stayed
// PENDING silently) ----

std::string RegisterKinds(LeaseScheduler* scheduler, const std::string& name,
                          std::vector<v1::JobKind> kinds, int tp) {
  v1::WorkerCapabilities caps;
  caps.set_device_kind("cpu");
  caps.set_tensor_parallel(tp);
  for (v1::JobKind k : kinds) caps.add_job_kinds(k);
  auto r = Await<v1::RegisterWorkerResponse>(
      [&](auto cb) { scheduler->RegisterWorker(name, caps, cb); });
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->worker_id() : "";
}

TEST_F(SchedulerTest, SweepNoWorkerRunsSaysWhichKindWaitsAndWhatWorkersOffer) {
  Submit({.tasks = 3});  // synthetic
  auto before = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(before.has_value());
  ASSERT_THAT(before->waiting, SizeIs(1));
  EXPECT_EQ(before->waiting[0].kind(), v1::JOB_KIND_SYNTHETIC);
  EXPECT_EQ(before->waiting[0].pending(), 3);
  EXPECT_TRUE(before->waiting[0].no_capable_worker());
  EXPECT_THAT(before->blocked_reason,
              HasSubstr("no live worker is registered"));

  const std::string eval_only =
      RegisterKinds(scheduler_.get(), "eval-box", {v1::JOB_KIND_EVAL}, 1);
  EXPECT_THAT(Lease(eval_only, 3).tasks, IsEmpty());
  auto blocked = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(blocked.has_value());
  EXPECT_EQ(blocked->state, v1::SWEEP_STATE_RUNNING);
  EXPECT_THAT(blocked->blocked_reason, HasSubstr("3 pending synthetic"));
  EXPECT_THAT(blocked->blocked_reason, HasSubstr("eval-box runs eval"));
  ASSERT_THAT(blocked->live_workers, SizeIs(1));
  EXPECT_EQ(blocked->live_workers[0].worker_id(), eval_only);
  EXPECT_THAT(blocked->live_workers[0].job_kinds(),
              ElementsAre(v1::JOB_KIND_EVAL));
  // ListSweeps says the same.
  auto all = scheduler_->ListSweeps();
  ASSERT_THAT(all, SizeIs(1));
  EXPECT_EQ(all[0].blocked_reason, blocked->blocked_reason);

  // A worker that runs the kind clears it; the counts stay as they are.
  const std::string any = RegisterKinds(scheduler_.get(), "any-box", {}, 1);
  auto unblocked = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(unblocked.has_value());
  EXPECT_EQ(unblocked->blocked_reason, "");
  EXPECT_THAT(unblocked->live_workers, IsEmpty());
  ASSERT_THAT(unblocked->waiting, SizeIs(1));
  EXPECT_FALSE(unblocked->waiting[0].no_capable_worker());
  EXPECT_THAT(Lease(any, 3).tasks, SizeIs(3));
  auto leased = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(leased.has_value());
  EXPECT_THAT(leased->waiting, IsEmpty());
}

TEST_F(SchedulerTest, TensorParallelMismatchIsNamedWithTheWorkersTpSize) {
  Submit({.tasks = 2, .tensor_parallel = 2});
  const std::string tp1 = RegisterKinds(scheduler_.get(), "tp1-box", {}, 1);
  EXPECT_THAT(Lease(tp1, 2).tasks, IsEmpty());
  auto s = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(s.has_value());
  ASSERT_THAT(s->waiting, SizeIs(1));
  EXPECT_EQ(s->waiting[0].tensor_parallel(), 2);
  EXPECT_THAT(s->blocked_reason,
              HasSubstr("2 pending synthetic (tensor_parallel 2)"));
  EXPECT_THAT(s->blocked_reason,
              HasSubstr("tp1-box runs every kind with tensor_parallel 1"));
}

TEST_F(SchedulerTest, SilentWorkerNoLongerCountsAsOffering) {
  Submit({.tasks = 1});
  RegisterKinds(scheduler_.get(), "gone", {}, 1);
  auto live = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ(live->blocked_reason, "");
  clock_.AdvanceMs(60'001);  // past worker_timeout_ms
  auto silent = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(silent.has_value());
  EXPECT_THAT(silent->blocked_reason,
              HasSubstr("no live worker is registered"));
}

// A stage may have its own job kind: workers are matched against each
// group's kind, not only the sweep's.
TEST_F(SchedulerTest, StageOfAnotherKindGoesOnlyToWorkersRunningIt) {
  Plan plan = MakePlan({.tasks = 4, .group_size = 2});  // synthetic sweep
  for (int i = 2; i < 4; ++i) {
    plan.tasks[i].spec.set_kind(v1::JOB_KIND_PROBE);  // group g1: a probe stage
  }
  auto r =
      Await<SubmitOutcome>([&](auto cb) { scheduler_->SubmitPlan(plan, cb); });
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string synthetic_only = RegisterKinds(
      scheduler_.get(), "synthetic-box", {v1::JOB_KIND_SYNTHETIC}, 1);
  LeaseBatch batch = Lease(synthetic_only, 4);
  ASSERT_THAT(batch.tasks, SizeIs(2));
  for (const auto& t : batch.tasks) {
    EXPECT_EQ(t.spec().kind(), v1::JOB_KIND_SYNTHETIC);
  }
  EXPECT_THAT(Lease(synthetic_only, 4).tasks, IsEmpty());
  auto s = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(s.has_value());
  ASSERT_THAT(s->waiting, SizeIs(1));
  EXPECT_EQ(s->waiting[0].kind(), v1::JOB_KIND_PROBE);
  EXPECT_EQ(s->waiting[0].pending(), 2);
  EXPECT_THAT(s->blocked_reason, HasSubstr("2 pending probe"));

  const std::string probe =
      RegisterKinds(scheduler_.get(), "probe-box", {v1::JOB_KIND_PROBE}, 1);
  LeaseBatch probes = Lease(probe, 4);
  ASSERT_THAT(probes.tasks, SizeIs(2));
  EXPECT_EQ(probes.tasks[0].spec().kind(), v1::JOB_KIND_PROBE);
}

TEST_F(SchedulerTest, CancelledSweepHasNothingWaiting) {
  Submit({.tasks = 2});
  auto n =
      Await<int64_t>([&](auto cb) { scheduler_->CancelSweep("sw-test", cb); });
  ASSERT_TRUE(n.ok()) << n.status();
  auto s = scheduler_->GetSweep("sw-test");
  ASSERT_TRUE(s.has_value());
  EXPECT_THAT(s->waiting, IsEmpty());
  EXPECT_EQ(s->blocked_reason, "");
}

}  // namespace
}  // namespace sweepd
