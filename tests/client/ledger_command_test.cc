// `sweepctl backup` and `sweepctl restore` on real ledger files.
#include "client/ledger_command.h"

#include <sstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "coordinator/ledger.h"
#include "coordinator/ledger_lock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Await;
using ::sweepd::testing::MakePlan;
using ::sweepd::testing::TempPath;
using ::testing::HasSubstr;

class LedgerCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RegisterCtlCommand(BackupCtlCommand());
    RegisterCtlCommand(RestoreCtlCommand());
  }
  int Run(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    CtlEnv env;
    env.out = &out_;
    env.err = &err_;
    env.clock = &clock_;
    return RunSweepctl(args, env);
  }
  FakeClock clock_;
  std::ostringstream out_, err_;
};

TEST_F(LedgerCommandTest, BackupOfALiveLedgerRestoresAsTheLedger) {
  const std::string ledger = TempPath("live") + ".db";
  LedgerOptions options;
  options.clock = &clock_;
  auto open = Ledger::Open(ledger, options);
  ASSERT_TRUE(open.ok()) << open.status();
  ASSERT_TRUE(Await<InsertSweepOutcome>([&](auto cb) {
                (*open)->InsertSweep(MakePlan({.tasks = 4}), cb);
              }).ok());
  // The ledger stays open (a running sweepd) during the backup.
  const std::string backup = TempPath("backup") + ".db";
  ASSERT_EQ(Run({"backup", "--ledger", ledger, backup}), kCtlExitOk)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("backed up " + ledger + " to " + backup));
  ASSERT_TRUE((*open)->Close().ok());

  const std::string box = TempPath("new-box") + ".db";
  ASSERT_EQ(Run({"restore", "--ledger", box, backup}), kCtlExitOk)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("restore epoch 1"));
  auto restored = Ledger::Open(box, options);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto counts = (*restored)->CountTasks("sw-test");
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->pending(), 4);
}

TEST_F(LedgerCommandTest, RestoreIsRefusedWhileSweepdHoldsTheLedger) {
  const std::string ledger = TempPath("held") + ".db";
  const std::string backup = TempPath("b") + ".db";
  LedgerOptions options;
  options.clock = &clock_;
  {
    auto open = Ledger::Open(ledger, options);
    ASSERT_TRUE(open.ok()) << open.status();
  }
  ASSERT_EQ(Run({"backup", "--ledger", ledger, backup}), kCtlExitOk);
  auto lock = LedgerLock::Acquire(ledger);
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_EQ(Run({"restore", "--ledger", ledger, backup}), kCtlExitError);
  EXPECT_THAT(err_.str(), HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(err_.str(), HasSubstr("is in use by"));
}

TEST_F(LedgerCommandTest, UsageErrors) {
  EXPECT_EQ(Run({"backup", "out.db"}), kCtlExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--ledger PATH is required"));
  EXPECT_EQ(Run({"restore", "--ledger", "x.db"}), kCtlExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("missing argument BACKUP"));
  EXPECT_EQ(Run({"backup", "--ledger", "/nonexistent/l.db", "o.db"}),
            kCtlExitError);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace sweepd
