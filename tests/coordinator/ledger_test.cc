#include "coordinator/ledger.h"

#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "common/clock.h"
#include "coordinator/ledger_lock.h"
#include "coordinator/snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Await;
using ::sweepd::testing::MakePlan;
using ::sweepd::testing::PlanShape;
using ::sweepd::testing::TempPath;
using ::testing::HasSubstr;
using ::testing::SizeIs;

#define ASSERT_OK_AND_ASSIGN(lhs, expr)            \
  auto lhs##_or = (expr);                          \
  ASSERT_TRUE(lhs##_or.ok()) << lhs##_or.status(); \
  auto lhs = std::move(lhs##_or).value()

void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TempPath("ledger") + ".db";
    Reopen();
  }
  void Reopen() {
    ledger_.reset();
    LedgerOptions options;
    options.clock = &clock_;
    options.token_block = token_block_;
    auto l = Ledger::Open(path_, options);
    ASSERT_TRUE(l.ok()) << l.status();
    ledger_ = std::move(l).value();
  }
  absl::StatusOr<InsertSweepOutcome> Insert(const Plan& plan) {
    return Await<InsertSweepOutcome>(
        [&](auto cb) { ledger_->InsertSweep(plan, cb); });
  }
  absl::StatusOr<LeaseOutcome> Lease(const std::string& worker,
                                     const Plan& plan,
                                     std::vector<int> indexes) {
    std::vector<TaskId> ids;
    for (int i : indexes)
      ids.push_back(TaskId{plan.sweep_id, plan.tasks[i].task_key});
    return Await<LeaseOutcome>(
        [&](auto cb) { ledger_->LeaseTasks(worker, ids, cb); });
  }
  absl::StatusOr<ResultOutcome> Succeed(const std::string& worker,
                                        const std::string& key, int64_t token,
                                        double value) {
    ResultReport r;
    r.worker_id = worker;
    r.task_key = key;
    r.fencing_token = token;
    r.result.emplace();
    auto* m = r.result->add_metrics();
    m->set_name("v");
    m->set_value(value);
    return Await<ResultOutcome>([&](auto cb) { ledger_->RecordResult(r, cb); });
  }
  absl::StatusOr<ResultOutcome> Fail(const std::string& key, int64_t token,
                                     bool retryable) {
    ResultReport r;
    r.worker_id = "w";
    r.task_key = key;
    r.fencing_token = token;
    r.failure.emplace();
    r.failure->set_message("boom");
    r.failure->set_retryable(retryable);
    return Await<ResultOutcome>([&](auto cb) { ledger_->RecordResult(r, cb); });
  }

  absl::StatusOr<LeaseOutcome> Record(const std::string& worker,
                                      const Plan& plan, int index,
                                      int64_t token) {
    std::vector<GrantedLease> leases = {
        GrantedLease{TaskId{plan.sweep_id, plan.tasks[index].task_key}, token,
                     clock_.NowMs() + 30'000}};
    return Await<LeaseOutcome>(
        [&](auto cb) { ledger_->RecordLeases(worker, leases, cb); });
  }
  absl::StatusOr<RenewOutcome> Renew(const std::string& worker,
                                     const std::string& key, int64_t token) {
    std::vector<LeaseRef> refs = {{key, token}};
    return Await<RenewOutcome>(
        [&](auto cb) { ledger_->RenewLeases(worker, refs, cb); });
  }

  FakeClock clock_;
  std::string path_;
  int64_t token_block_ = 4096;
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(LedgerTest, FreshDatabaseIsMigratedToLatestAndKeepsDataOnReopen) {
  ASSERT_OK_AND_ASSIGN(version, ledger_->SchemaVersion());
  EXPECT_EQ(version, kLedgerSchemaVersion);
  ASSERT_TRUE(Insert(MakePlan({})).ok());
  Reopen();
  ASSERT_OK_AND_ASSIGN(version2, ledger_->SchemaVersion());
  EXPECT_EQ(version2, kLedgerSchemaVersion);
  ASSERT_OK_AND_ASSIGN(sweep, ledger_->GetSweep("sw-test"));
  EXPECT_EQ(sweep.total_tasks, 4);
  EXPECT_EQ(sweep.state, v1::SWEEP_STATE_RUNNING);
}

TEST_F(LedgerTest, VersionOneDatabaseIsMigratedOnOpen) {
  ASSERT_TRUE(Insert(MakePlan({})).ok());
  ledger_.reset();
  // Turn the file back into a schema-v1 ledger.
  RawExec(path_,
          "DROP TABLE leases; DROP INDEX tasks_by_key; ALTER TABLE sweeps "
          "DROP COLUMN deferred_stages; ALTER TABLE sweeps DROP COLUMN "
          "submitter; DELETE FROM schema_version WHERE version >= 2;");
  Reopen();
  ASSERT_OK_AND_ASSIGN(version, ledger_->SchemaVersion());
  EXPECT_EQ(version, kLedgerSchemaVersion);
  // The v2 lease table works: a lease and its fenced result go through.
  Plan plan = MakePlan({});
  ASSERT_OK_AND_ASSIGN(lease, Lease("w1", plan, {0}));
  ASSERT_THAT(lease.granted, SizeIs(1));
  ASSERT_OK_AND_ASSIGN(r, Succeed("w1", plan.tasks[0].task_key,
                                  lease.granted[0].row.fencing_token, 1));
  EXPECT_TRUE(r.committed);
}

TEST_F(LedgerTest, NewerSchemaIsRefused) {
  ledger_.reset();
  RawExec(path_, "INSERT INTO schema_version VALUES(99, 0)");
  LedgerOptions options;
  options.clock = &clock_;
  auto l = Ledger::Open(path_, options);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(l.status().message(), HasSubstr("schema version 99 is newer"));
}

TEST_F(LedgerTest, SubmitIsIdempotent) {
  Plan plan = MakePlan({.tasks = 5});
  ASSERT_OK_AND_ASSIGN(first, Insert(plan));
  EXPECT_FALSE(first.already_existed);
  EXPECT_EQ(first.total_tasks, 5);
  EXPECT_THAT(first.initial_states, SizeIs(5));
  ASSERT_OK_AND_ASSIGN(second, Insert(plan));
  EXPECT_TRUE(second.already_existed);
  EXPECT_EQ(second.total_tasks, 5);
  ASSERT_OK_AND_ASSIGN(counts, ledger_->CountTasks(plan.sweep_id));
  EXPECT_EQ(counts.total(), 5);
  EXPECT_EQ(counts.pending(), 5);
}

TEST_F(LedgerTest, LeaseThenResultThenDuplicateIsDropped) {
  Plan plan = MakePlan({.tasks = 2});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_OK_AND_ASSIGN(lease, Lease("w1", plan, {0, 1}));
  ASSERT_THAT(lease.granted, SizeIs(2));
  const LeaseGrant& g = lease.granted[0];
  EXPECT_EQ(g.row.state, v1::TASK_STATE_LEASED);
  EXPECT_EQ(g.row.attempts, 1);
  EXPECT_EQ(g.row.lease_expires_ms, clock_.NowMs() + 30'000);
  EXPECT_EQ(g.spec.index(), 0);
  EXPECT_LT(lease.granted[0].row.fencing_token,
            lease.granted[1].row.fencing_token);

  // Leasing a leased task again grants nothing.
  ASSERT_OK_AND_ASSIGN(again, Lease("w2", plan, {0}));
  EXPECT_THAT(again.granted, SizeIs(0));
  ASSERT_THAT(again.not_granted, SizeIs(1));
  EXPECT_EQ(again.not_granted[0].state, v1::TASK_STATE_LEASED);

  ASSERT_OK_AND_ASSIGN(r1,
                       Succeed("w1", g.row.task_key, g.row.fencing_token, 7.5));
  EXPECT_TRUE(r1.committed);
  ASSERT_OK_AND_ASSIGN(r2,
                       Succeed("w1", g.row.task_key, g.row.fencing_token, 9.0));
  EXPECT_FALSE(r2.committed);
  EXPECT_THAT(r2.reason, HasSubstr("already TASK_STATE_DONE"));

  ASSERT_OK_AND_ASSIGN(rec, ledger_->GetTask(plan.sweep_id, g.row.task_key));
  EXPECT_EQ(rec.state(), v1::TASK_STATE_DONE);
  ASSERT_EQ(rec.result().metrics_size(), 1);
  EXPECT_EQ(rec.result().metrics(0).value(), 7.5);  // the first result stays
  EXPECT_EQ(rec.worker_id(), "w1");
}

TEST_F(LedgerTest, StaleTokenIsAcceptedOnlyWhileNothingCommitted) {
  Plan plan = MakePlan({.tasks = 2, .lease_seconds = 10});
  ASSERT_TRUE(Insert(plan).ok());
  const std::string k0 = plan.tasks[0].task_key;
  const std::string k1 = plan.tasks[1].task_key;
  ASSERT_OK_AND_ASSIGN(a, Lease("old", plan, {0, 1}));
  const int64_t old0 = a.granted[0].row.fencing_token;
  const int64_t old1 = a.granted[1].row.fencing_token;
  clock_.AdvanceMs(10'001);
  std::vector<ExpiredLease> expired = {{plan.sweep_id, k0, old0},
                                       {plan.sweep_id, k1, old1}};
  ASSERT_OK_AND_ASSIGN(exp, Await<TaskChanges>([&](auto cb) {
                         ledger_->ExpireLeases(expired, cb);
                       }));
  ASSERT_THAT(exp.changed, SizeIs(2));
  EXPECT_EQ(exp.changed[0].state, v1::TASK_STATE_PENDING);
  ASSERT_OK_AND_ASSIGN(b, Lease("new", plan, {0, 1}));
  const int64_t new0 = b.granted[0].row.fencing_token;
  const int64_t new1 = b.granted[1].row.fencing_token;
  EXPECT_EQ(b.granted[0].row.attempts, 2);

  // Task 0: the stale lease reports first and is accepted; the newer one is a
  // duplicate.
  ASSERT_OK_AND_ASSIGN(s0, Succeed("old", k0, old0, 1));
  EXPECT_TRUE(s0.committed);
  ASSERT_OK_AND_ASSIGN(n0, Succeed("new", k0, new0, 2));
  EXPECT_FALSE(n0.committed);
  // Task 1: the newer lease commits; the stale report is then dropped.
  ASSERT_OK_AND_ASSIGN(n1, Succeed("new", k1, new1, 3));
  EXPECT_TRUE(n1.committed);
  ASSERT_OK_AND_ASSIGN(s1, Succeed("old", k1, old1, 4));
  EXPECT_FALSE(s1.committed);

  // A stale failure never counts.
  Plan other =
      MakePlan({.sweep_id = "sw-other", .tasks = 1, .lease_seconds = 10});
  ASSERT_TRUE(Insert(other).ok());
  ASSERT_OK_AND_ASSIGN(c, Lease("old", other, {0}));
  clock_.AdvanceMs(10'001);
  std::vector<ExpiredLease> e2 = {{other.sweep_id, other.tasks[0].task_key,
                                   c.granted[0].row.fencing_token}};
  ASSERT_TRUE(
      Await<TaskChanges>([&](auto cb) { ledger_->ExpireLeases(e2, cb); }).ok());
  ASSERT_OK_AND_ASSIGN(d, Lease("new", other, {0}));
  ASSERT_OK_AND_ASSIGN(
      f, Fail(other.tasks[0].task_key, c.granted[0].row.fencing_token, false));
  EXPECT_FALSE(f.committed);
  EXPECT_THAT(f.reason, HasSubstr("stale lease"));
  ASSERT_OK_AND_ASSIGN(
      rec, ledger_->GetTask(other.sweep_id, other.tasks[0].task_key));
  EXPECT_EQ(rec.state(), v1::TASK_STATE_LEASED);
}

TEST_F(LedgerTest, UnknownOrMismatchedTokenIsRejected) {
  Plan plan = MakePlan({.tasks = 2});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_OK_AND_ASSIGN(a, Lease("w", plan, {0}));
  auto unknown = Succeed("w", plan.tasks[0].task_key, 999, 1);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(),
              HasSubstr("fencing_token 999 was never issued"));
  auto mismatch =
      Succeed("w", plan.tasks[1].task_key, a.granted[0].row.fencing_token, 1);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("belongs to task_key"));
}

TEST_F(LedgerTest, RetryableFailureBacksOffThenFailsAtMaxAttempts) {
  Plan plan =
      MakePlan({.tasks = 2, .max_attempts = 3, .retry_backoff_ms = 100});
  ASSERT_TRUE(Insert(plan).ok());
  const std::string k = plan.tasks[0].task_key;
  int64_t expected_backoff = 100;
  for (int attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_OK_AND_ASSIGN(l, Lease("w", plan, {0}));
    ASSERT_THAT(l.granted, SizeIs(1));
    EXPECT_EQ(l.granted[0].row.attempts, attempt);
    ASSERT_OK_AND_ASSIGN(f, Fail(k, l.granted[0].row.fencing_token, true));
    EXPECT_TRUE(f.committed);
    ASSERT_TRUE(f.row.has_value());
    EXPECT_EQ(f.row->state, v1::TASK_STATE_PENDING);
    EXPECT_EQ(f.row->next_eligible_ms, clock_.NowMs() + expected_backoff);
    expected_backoff *= 2;
  }
  ASSERT_OK_AND_ASSIGN(l3, Lease("w", plan, {0}));
  ASSERT_OK_AND_ASSIGN(f3, Fail(k, l3.granted[0].row.fencing_token, true));
  EXPECT_EQ(f3.row->state, v1::TASK_STATE_FAILED);
  ASSERT_OK_AND_ASSIGN(rec, ledger_->GetTask(plan.sweep_id, k));
  EXPECT_THAT(rec.error(), HasSubstr("max_attempts 3 reached"));

  // Non-retryable: FAILED on the first attempt.
  ASSERT_OK_AND_ASSIGN(l4, Lease("w", plan, {1}));
  ASSERT_OK_AND_ASSIGN(
      f4, Fail(plan.tasks[1].task_key, l4.granted[0].row.fencing_token, false));
  EXPECT_EQ(f4.row->state, v1::TASK_STATE_FAILED);
  EXPECT_EQ(f4.row->attempts, 1);
  ASSERT_OK_AND_ASSIGN(sweep, ledger_->GetSweep(plan.sweep_id));
  EXPECT_EQ(sweep.state, v1::SWEEP_STATE_FAILED);
}

TEST_F(LedgerTest, ReleaseDoesNotCountAnAttemptAndRenewMatchesByToken) {
  Plan plan = MakePlan({.tasks = 1});
  ASSERT_TRUE(Insert(plan).ok());
  const std::string k = plan.tasks[0].task_key;
  ASSERT_OK_AND_ASSIGN(l, Lease("w1", plan, {0}));
  const int64_t token = l.granted[0].row.fencing_token;
  clock_.AdvanceMs(5'000);
  // A re-registered worker (new id) renews by task_key + token.
  std::vector<LeaseRef> refs = {{k, token}, {"nope", 12345}};
  ASSERT_OK_AND_ASSIGN(renew, Await<RenewOutcome>([&](auto cb) {
                         ledger_->RenewLeases("w1-new", refs, cb);
                       }));
  ASSERT_THAT(renew.renewed, SizeIs(1));
  EXPECT_EQ(renew.renewed[0].lease_expires_ms, clock_.NowMs() + 30'000);
  EXPECT_EQ(renew.renewed[0].lease_worker, "w1-new");
  EXPECT_THAT(renew.lost_task_keys, ::testing::ElementsAre("nope"));

  std::vector<LeaseRef> rel = {{k, token}};
  ASSERT_OK_AND_ASSIGN(released, Await<TaskChanges>([&](auto cb) {
                         ledger_->ReleaseLeases("w1-new", rel, cb);
                       }));
  ASSERT_THAT(released.changed, SizeIs(1));
  EXPECT_EQ(released.changed[0].state, v1::TASK_STATE_PENDING);
  EXPECT_EQ(released.changed[0].attempts, 0);
  ASSERT_OK_AND_ASSIGN(l2, Lease("w2", plan, {0}));
  EXPECT_EQ(l2.granted[0].row.attempts, 1);
}

TEST_F(LedgerTest, FencingCounterSurvivesReopen) {
  Plan plan = MakePlan({.tasks = 3});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_OK_AND_ASSIGN(a, Lease("w", plan, {0, 1}));
  const int64_t last = a.granted[1].row.fencing_token;
  Reopen();
  ASSERT_OK_AND_ASSIGN(stored, ledger_->LastFencingToken());
  EXPECT_EQ(stored, last);
  ASSERT_OK_AND_ASSIGN(b, Lease("w", plan, {2}));
  EXPECT_EQ(b.granted[0].row.fencing_token, last + 1);
  // The lease made before the reopen still fences its result.
  ASSERT_OK_AND_ASSIGN(r, Succeed("w", plan.tasks[0].task_key,
                                  a.granted[0].row.fencing_token, 1));
  EXPECT_TRUE(r.committed);
}

TEST_F(LedgerTest, ReservedTokensComeFromADurableBlock) {
  token_block_ = 8;
  Reopen();
  Plan plan = MakePlan({.tasks = 4});
  ASSERT_TRUE(Insert(plan).ok());
  // Nothing is reserved on a fresh ledger: the next transaction reserves.
  EXPECT_FALSE(ledger_->TakeReservedTokens(1).has_value());
  ASSERT_TRUE(ledger_->Flush().ok());
  ASSERT_OK_AND_ASSIGN(mark, ledger_->LastFencingToken());
  EXPECT_EQ(mark, 8);
  // Tokens up to the persisted mark are handed out without any write.
  EXPECT_EQ(ledger_->TakeReservedTokens(3), std::optional<int64_t>(1));
  EXPECT_EQ(ledger_->TakeReservedTokens(4), std::optional<int64_t>(4));
  // 7 of 8 used: asking for 2 more fails until the next block commits.
  EXPECT_FALSE(ledger_->TakeReservedTokens(2).has_value());
  ASSERT_TRUE(ledger_->Flush().ok());
  ASSERT_OK_AND_ASSIGN(mark2, ledger_->LastFencingToken());
  EXPECT_EQ(mark2, 7 + 8);
  EXPECT_EQ(ledger_->TakeReservedTokens(2), std::optional<int64_t>(8));
  EXPECT_EQ(ledger_->stats().reserved_token_grants, 3);
  EXPECT_EQ(ledger_->stats().reserved_token_misses, 2);
  // A lease written inside its transaction continues the same sequence.
  ASSERT_OK_AND_ASSIGN(durable, Lease("w", plan, {0}));
  ASSERT_THAT(durable.granted, SizeIs(1));
  EXPECT_EQ(durable.granted[0].row.fencing_token, 10);
}

TEST_F(LedgerTest, RecordedLeaseFencesLikeADurableOne) {
  token_block_ = 16;
  Reopen();
  Plan plan = MakePlan({.tasks = 2});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_TRUE(ledger_->Flush().ok());  // no block yet
  EXPECT_FALSE(ledger_->TakeReservedTokens(1).has_value());
  ASSERT_TRUE(ledger_->Flush().ok());
  std::optional<int64_t> token = ledger_->TakeReservedTokens(1);
  ASSERT_TRUE(token.has_value());
  ASSERT_OK_AND_ASSIGN(rec, Record("w1", plan, 0, *token));
  ASSERT_THAT(rec.granted, SizeIs(1));
  EXPECT_EQ(rec.granted[0].row.state, v1::TASK_STATE_LEASED);
  EXPECT_EQ(rec.granted[0].row.attempts, 1);
  EXPECT_EQ(rec.granted[0].row.fencing_token, *token);
  EXPECT_EQ(rec.granted[0].row.lease_worker, "w1");
  EXPECT_EQ(rec.granted[0].row.lease_expires_ms, clock_.NowMs() + 30'000);
  // The same task cannot be recorded twice (it is LEASED now).
  std::optional<int64_t> token2 = ledger_->TakeReservedTokens(1);
  ASSERT_TRUE(token2.has_value());
  ASSERT_OK_AND_ASSIGN(again, Record("w2", plan, 0, *token2));
  EXPECT_THAT(again.granted, SizeIs(0));
  ASSERT_THAT(again.not_granted, SizeIs(1));
  EXPECT_EQ(again.not_granted[0].state, v1::TASK_STATE_LEASED);
  EXPECT_EQ(again.not_granted[0].fencing_token, *token);
  // The refused grant's token has no lease: its result is refused.
  auto refused = Succeed("w2", plan.tasks[0].task_key, *token2, 1.0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(), HasSubstr("never issued"));
  ASSERT_OK_AND_ASSIGN(ok, Succeed("w1", plan.tasks[0].task_key, *token, 1.0));
  EXPECT_TRUE(ok.committed);
}

TEST_F(LedgerTest, RecordLeasesRefusesATokenAboveThePersistedMark) {
  Plan plan = MakePlan({.tasks = 1});
  ASSERT_TRUE(Insert(plan).ok());
  auto r = Record("w", plan, 0, 1'000'000);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("not from a persisted block"));
  ASSERT_OK_AND_ASSIGN(task,
                       ledger_->GetTask(plan.sweep_id, plan.tasks[0].task_key));
  EXPECT_EQ(task.state(), v1::TASK_STATE_PENDING);
}

// A coordinator that handed out tokens from a reserved block and died before
// their leases were written: after the restart the tasks are PENDING, the
// tokens are never issued again, and the old holder's lease is void.
TEST_F(LedgerTest, UnrecordedReservedTokensAreNeverReusedAfterRestart) {
  token_block_ = 8;
  Reopen();
  Plan plan = MakePlan({.tasks = 2});
  ASSERT_TRUE(Insert(plan).ok());
  EXPECT_FALSE(ledger_->TakeReservedTokens(1).has_value());
  ASSERT_TRUE(ledger_->Flush().ok());
  std::optional<int64_t> lost = ledger_->TakeReservedTokens(1);
  ASSERT_TRUE(lost.has_value());
  std::optional<int64_t> kept = ledger_->TakeReservedTokens(1);
  ASSERT_TRUE(kept.has_value());
  ASSERT_OK_AND_ASSIGN(rec, Record("w", plan, 1, *kept));
  ASSERT_THAT(rec.granted, SizeIs(1));
  // "Crash": the lease of task 0 with token `lost` was never recorded.
  Reopen();
  ASSERT_OK_AND_ASSIGN(task0,
                       ledger_->GetTask(plan.sweep_id, plan.tasks[0].task_key));
  EXPECT_EQ(task0.state(), v1::TASK_STATE_PENDING);
  EXPECT_EQ(task0.attempts(), 0);
  ASSERT_OK_AND_ASSIGN(renew, Renew("w", plan.tasks[0].task_key, *lost));
  EXPECT_THAT(renew.renewed, SizeIs(0));
  EXPECT_THAT(renew.lost_task_keys,
              ::testing::ElementsAre(plan.tasks[0].task_key));
  auto late = Succeed("w", plan.tasks[0].task_key, *lost, 1.0);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kNotFound);
  // New leases continue above the whole persisted block.
  ASSERT_OK_AND_ASSIGN(again, Lease("w2", plan, {0}));
  ASSERT_THAT(again.granted, SizeIs(1));
  EXPECT_GT(again.granted[0].row.fencing_token, 8);
  ASSERT_OK_AND_ASSIGN(done, Succeed("w2", plan.tasks[0].task_key,
                                     again.granted[0].row.fencing_token, 2.0));
  EXPECT_TRUE(done.committed);
  // The recorded lease survived the restart and still fences its result.
  ASSERT_OK_AND_ASSIGN(done1, Succeed("w", plan.tasks[1].task_key, *kept, 3.0));
  EXPECT_TRUE(done1.committed);
  ASSERT_OK_AND_ASSIGN(counts, ledger_->CountTasks(plan.sweep_id));
  EXPECT_EQ(counts.done(), 2);
}

TEST_F(LedgerTest, LeaseMsOfUsesThePolicyElseTheDefault) {
  v1::SweepSpec spec;
  EXPECT_EQ(ledger_->LeaseMsOf(spec),
            int64_t{LedgerOptions().policy_defaults.lease_seconds} * 1000);
  spec.mutable_policy()->set_lease_seconds(7);
  EXPECT_EQ(ledger_->LeaseMsOf(spec), 7'000);
}

TEST_F(LedgerTest, GroupCommitBatchesConcurrentReports) {
  constexpr int kTasks = 2000;
  constexpr int kThreads = 8;
  Plan plan = MakePlan({.tasks = kTasks});
  ASSERT_TRUE(Insert(plan).ok());
  std::vector<int> all(kTasks);
  for (int i = 0; i < kTasks; ++i) all[i] = i;
  ASSERT_OK_AND_ASSIGN(lease, Lease("w", plan, all));
  ASSERT_THAT(lease.granted, SizeIs(kTasks));
  const LedgerStats before = ledger_->stats();
  std::atomic<int> committed{0};
  std::atomic<int> callbacks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kTasks; i += kThreads) {
        ResultReport r;
        r.worker_id = "w";
        r.task_key = lease.granted[i].row.task_key;
        r.fencing_token = lease.granted[i].row.fencing_token;
        r.result.emplace();
        ledger_->RecordResult(r, [&](absl::StatusOr<ResultOutcome> o) {
          if (o.ok() && o->committed) committed++;
          callbacks++;
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(ledger_->Flush().ok());
  EXPECT_EQ(callbacks.load(), kTasks);
  EXPECT_EQ(committed.load(), kTasks);
  const LedgerStats after = ledger_->stats();
  EXPECT_GE(after.operations - before.operations, kTasks);
  // Queued reports share transactions.
  EXPECT_LT(after.transactions - before.transactions, kTasks);
  ASSERT_OK_AND_ASSIGN(counts, ledger_->CountTasks(plan.sweep_id));
  EXPECT_EQ(counts.done(), kTasks);
  ASSERT_OK_AND_ASSIGN(sweep, ledger_->GetSweep(plan.sweep_id));
  EXPECT_EQ(sweep.state, v1::SWEEP_STATE_DONE);
}

TEST_F(LedgerTest, CancelMovesPendingAndLeasedToCancelled) {
  Plan plan = MakePlan({.tasks = 3});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_OK_AND_ASSIGN(l, Lease("w", plan, {0, 1}));
  ASSERT_TRUE(
      Succeed("w", plan.tasks[0].task_key, l.granted[0].row.fencing_token, 1)
          .ok());
  ASSERT_OK_AND_ASSIGN(c, Await<CancelOutcome>([&](auto cb) {
                         ledger_->CancelSweep(plan.sweep_id, cb);
                       }));
  EXPECT_EQ(c.cancelled_tasks, 2);
  ASSERT_OK_AND_ASSIGN(counts, ledger_->CountTasks(plan.sweep_id));
  EXPECT_EQ(counts.done(), 1);
  EXPECT_EQ(counts.cancelled(), 2);
  ASSERT_OK_AND_ASSIGN(sweep, ledger_->GetSweep(plan.sweep_id));
  EXPECT_EQ(sweep.state, v1::SWEEP_STATE_CANCELLED);
  // The cancelled lease's result is a duplicate.
  ASSERT_OK_AND_ASSIGN(late, Succeed("w", plan.tasks[1].task_key,
                                     l.granted[1].row.fencing_token, 1));
  EXPECT_FALSE(late.committed);
  auto missing = Await<CancelOutcome>(
      [&](auto cb) { ledger_->CancelSweep("sw-nope", cb); });
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("sw-nope"));
}

TEST_F(LedgerTest, IdenticalTaskInAnotherSweepReusesTheCommittedResult) {
  Plan first = MakePlan({.sweep_id = "sw-1", .tasks = 2});
  ASSERT_TRUE(Insert(first).ok());
  ASSERT_OK_AND_ASSIGN(l, Lease("w", first, {0}));
  ASSERT_TRUE(Succeed("w", first.tasks[0].task_key,
                      l.granted[0].row.fencing_token, 4.25)
                  .ok());
  Plan second = MakePlan({.sweep_id = "sw-2", .tasks = 1});
  second.tasks[0].task_key = first.tasks[0].task_key;
  ASSERT_OK_AND_ASSIGN(ins, Insert(second));
  ASSERT_THAT(ins.initial_states, ::testing::ElementsAre(v1::TASK_STATE_DONE));
  ASSERT_OK_AND_ASSIGN(rec, ledger_->GetTask("sw-2", first.tasks[0].task_key));
  EXPECT_EQ(rec.result().metrics(0).value(), 4.25);
  ASSERT_OK_AND_ASSIGN(sweep, ledger_->GetSweep("sw-2"));
  EXPECT_EQ(sweep.state, v1::SWEEP_STATE_DONE);
}

TEST_F(LedgerTest, ListTasksPagesAndFiltersByState) {
  Plan plan = MakePlan({.tasks = 5});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_OK_AND_ASSIGN(l, Lease("w", plan, {1, 3}));
  ASSERT_OK_AND_ASSIGN(p1, ledger_->ListTasks(plan.sweep_id, {}, -1, 2));
  ASSERT_THAT(p1.tasks, SizeIs(2));
  EXPECT_TRUE(p1.more);
  EXPECT_EQ(p1.last_idx, 1);
  ASSERT_OK_AND_ASSIGN(p2,
                       ledger_->ListTasks(plan.sweep_id, {}, p1.last_idx, 10));
  EXPECT_THAT(p2.tasks, SizeIs(3));
  EXPECT_FALSE(p2.more);
  ASSERT_OK_AND_ASSIGN(
      leased,
      ledger_->ListTasks(plan.sweep_id, {v1::TASK_STATE_LEASED}, -1, 10));
  ASSERT_THAT(leased.tasks, SizeIs(2));
  EXPECT_EQ(leased.tasks[0].spec().index(), 1);
  EXPECT_EQ(leased.tasks[1].spec().index(), 3);
}

TEST_F(LedgerTest, ListTasksStopsAtTheByteBudget) {
  Plan plan = MakePlan({.tasks = 5});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_OK_AND_ASSIGN(all, ledger_->ListTasks(plan.sweep_id, {}, -1, 10));
  ASSERT_THAT(all.tasks, SizeIs(5));
  const int64_t one = static_cast<int64_t>(all.tasks[0].ByteSizeLong());
  // A budget of about two records gives pages of two, then the rest.
  ASSERT_OK_AND_ASSIGN(p1,
                       ledger_->ListTasks(plan.sweep_id, {}, -1, 10, 2 * one));
  EXPECT_THAT(p1.tasks, SizeIs(2));
  EXPECT_TRUE(p1.more);
  // A budget below one record still returns one.
  ASSERT_OK_AND_ASSIGN(
      p2, ledger_->ListTasks(plan.sweep_id, {}, p1.last_idx, 10, 1));
  EXPECT_THAT(p2.tasks, SizeIs(1));
  EXPECT_TRUE(p2.more);
}

TEST_F(LedgerTest, CopyToWritesAnIntactSnapshot) {
  ASSERT_TRUE(Insert(MakePlan({.tasks = 10})).ok());
  const std::string copy = TempPath("copy") + ".db";
  ASSERT_TRUE(ledger_->CopyTo(copy).ok());
  EXPECT_TRUE(CheckLedgerIntegrity(copy).ok());
  LedgerOptions options;
  options.clock = &clock_;
  ASSERT_OK_AND_ASSIGN(reopened, Ledger::Open(copy, options));
  ASSERT_OK_AND_ASSIGN(counts, reopened->CountTasks("sw-test"));
  EXPECT_EQ(counts.total(), 10);
  EXPECT_EQ(CheckLedgerIntegrity(TempPath("missing")).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LedgerTest, SnapshotsRotateAndRestoreOntoAMissingLedger) {
  ASSERT_TRUE(Insert(MakePlan({.tasks = 7})).ok());
  SnapshotOptions snap;
  snap.dir = TempPath("snapdir");
  snap.keep = 2;
  for (int64_t t = 1; t <= 3; ++t) {
    auto written = WriteSnapshot(*ledger_, snap, 1'700'000'000'000 + t);
    ASSERT_TRUE(written.ok()) << written.status();
  }
  ASSERT_OK_AND_ASSIGN(all, ListSnapshots(snap.dir));
  ASSERT_THAT(all, SizeIs(2));
  EXPECT_THAT(all[0], HasSubstr("ledger-1700000000003.db"));
  EXPECT_THAT(all[1], HasSubstr("ledger-1700000000002.db"));

  const std::string fresh = TempPath("fresh") + ".db";
  ASSERT_OK_AND_ASSIGN(restored, RestoreNewestSnapshotIfMissing(
                                     fresh, snap.dir, clock_.NowMs()));
  ASSERT_TRUE(restored.has_value());
  EXPECT_EQ(*restored, all[0]);
  LedgerOptions options;
  options.clock = &clock_;
  ASSERT_OK_AND_ASSIGN(reopened, Ledger::Open(fresh, options));
  ASSERT_OK_AND_ASSIGN(counts, reopened->CountTasks("sw-test"));
  EXPECT_EQ(counts.pending(), 7);
  // An existing ledger is never overwritten.
  ASSERT_OK_AND_ASSIGN(
      again, RestoreNewestSnapshotIfMissing(fresh, snap.dir, clock_.NowMs()));
  EXPECT_FALSE(again.has_value());
}

// A lease granted by the lost ledger after its last snapshot must not match
// any lease of the restored one. Without the raised counter the restored
// ledger hands out the very same token again (here to another worker for the
// same task) and the stale holder's result commits over the newer lease.
TEST_F(LedgerTest, RestoreFencesLeasesTheLostLedgerGrantedAfterTheSnapshot) {
  token_block_ = 4;
  Reopen();
  const Plan plan = MakePlan({.tasks = 12});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_TRUE(Lease("w-old", plan, {0, 1}).ok());
  SnapshotOptions snap;
  snap.dir = TempPath("fence-snaps");
  ASSERT_TRUE(WriteSnapshot(*ledger_, snap, clock_.NowMs()).ok());
  // After the snapshot the lost ledger leases more than one token block.
  int64_t lost_max = 0;
  int64_t lost_token_of_task5 = 0;
  for (int i = 5; i < 12; ++i) {
    ASSERT_OK_AND_ASSIGN(lease, Lease("w-old", plan, {i}));
    ASSERT_THAT(lease.granted, SizeIs(1));
    lost_max = std::max(lost_max, lease.granted[0].row.fencing_token);
    if (i == 5) lost_token_of_task5 = lease.granted[0].row.fencing_token;
  }
  // The box is gone.
  ledger_.reset();
  ASSERT_EQ(unlink(path_.c_str()), 0);
  unlink((path_ + "-wal").c_str());
  unlink((path_ + "-shm").c_str());
  ASSERT_OK_AND_ASSIGN(restored, RestoreNewestSnapshotIfMissing(
                                     path_, snap.dir, clock_.NowMs()));
  ASSERT_TRUE(restored.has_value());
  Reopen();
  ASSERT_OK_AND_ASSIGN(counter, ledger_->LastFencingToken());
  EXPECT_GT(counter, lost_max);
  EXPECT_GE(counter, clock_.NowMs() * kRestoreTokensPerMs);

  // Task 5 is PENDING again in the restored ledger and goes to a new worker.
  ASSERT_OK_AND_ASSIGN(fresh, Lease("w-new", plan, {5}));
  ASSERT_THAT(fresh.granted, SizeIs(1));
  const int64_t new_token = fresh.granted[0].row.fencing_token;
  EXPECT_GT(new_token, lost_max);
  // The stale holder's result (token from the lost ledger) is refused...
  auto stale = Succeed("w-old", plan.tasks[5].task_key, lost_token_of_task5, 1);
  EXPECT_FALSE(stale.ok() && stale->committed);
  // ...and the current holder's commits.
  ASSERT_OK_AND_ASSIGN(current,
                       Succeed("w-new", plan.tasks[5].task_key, new_token, 2));
  EXPECT_TRUE(current.committed);
  ASSERT_OK_AND_ASSIGN(task,
                       ledger_->GetTask("sw-test", plan.tasks[5].task_key));
  EXPECT_EQ(task.worker_id(), "w-new");
}

TEST_F(LedgerTest, RestoreSkipsACorruptNewerSnapshot) {
  ASSERT_TRUE(Insert(MakePlan({.tasks = 3})).ok());
  SnapshotOptions snap;
  snap.dir = TempPath("corrupt-snaps");
  ASSERT_OK_AND_ASSIGN(good, WriteSnapshot(*ledger_, snap, 1'700'000'000'001));
  const std::string corrupt = snap.dir + "/ledger-1700000000009.db";
  {
    std::ofstream out(corrupt, std::ios::binary);
    out << "SQLite format 3" << std::string(1, '\0')
        << std::string(4096, '\x5a');
  }
  const std::string fresh = TempPath("fresh") + ".db";
  ASSERT_OK_AND_ASSIGN(restored,
                       RestoreNewestSnapshotIfMissing(fresh, snap.dir, 1));
  ASSERT_TRUE(restored.has_value());
  EXPECT_EQ(*restored, good);
}

TEST_F(LedgerTest, OnlineBackupAndOfflineRestoreKeepTheReplacedLedger) {
  const Plan plan = MakePlan({.tasks = 5});
  ASSERT_TRUE(Insert(plan).ok());
  ASSERT_OK_AND_ASSIGN(lease, Lease("w", plan, {0}));
  ASSERT_TRUE(ledger_->Flush().ok());
  // The ledger is open (a running sweepd): the backup does not need it closed.
  const std::string backup = TempPath("backup") + ".db";
  ASSERT_TRUE(BackupLedger(path_, backup).ok());
  EXPECT_TRUE(CheckLedgerIntegrity(backup).ok());
  EXPECT_EQ(BackupLedger(path_, backup).code(),
            absl::StatusCode::kAlreadyExists);

  // Work after the backup.
  ASSERT_TRUE(Succeed("w", plan.tasks[0].task_key,
                      lease.granted[0].row.fencing_token, 1)
                  .ok());
  ledger_.reset();
  ASSERT_OK_AND_ASSIGN(restored, RestoreLedger(backup, path_, clock_.NowMs()));
  EXPECT_THAT(restored.moved_aside, HasSubstr(".pre-restore-"));
  EXPECT_EQ(restored.info.restore_epoch, 1);
  EXPECT_TRUE(CheckLedgerIntegrity(restored.moved_aside).ok());
  Reopen();
  ASSERT_OK_AND_ASSIGN(counts, ledger_->CountTasks("sw-test"));
  EXPECT_EQ(counts.done(), 0);  // the backup's state
  EXPECT_EQ(counts.leased(), 1);
  ASSERT_OK_AND_ASSIGN(counter, ledger_->LastFencingToken());
  EXPECT_EQ(counter, restored.info.fencing_counter);
  // A corrupt backup is refused and the ledger stays as it is.
  const std::string junk = TempPath("junk") + ".db";
  { std::ofstream(junk) << "not a database"; }
  ledger_.reset();
  auto refused = RestoreLedger(junk, path_, clock_.NowMs());
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr(junk));
}

TEST_F(LedgerTest, OfflineRestoreRefusesWhileACoordinatorHoldsTheLedger) {
  const std::string backup = TempPath("backup") + ".db";
  ASSERT_TRUE(BackupLedger(path_, backup).ok());
  ASSERT_OK_AND_ASSIGN(lock, LedgerLock::Acquire(path_));
  auto refused = RestoreLedger(backup, path_, clock_.NowMs());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("pid "));
}

}  // namespace
}  // namespace sweepd
