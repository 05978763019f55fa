// Tests of worker/verify/command_verifier.h with the shipped example verifier
// and the misbehaving scripts in testdata/: a crash (and the restart after
// it), a hang (a real 200 ms deadline; no durations are asserted), garbage,
// responses out of order, a missing score, and a command that cannot start.
#include "worker/verify/command_verifier.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/verify/verifier_factory.h"

#ifndef SWEEPD_VERIFY_TESTDATA
#error "SWEEPD_VERIFY_TESTDATA must point at tests/worker/verify/testdata"
#endif

namespace sweepd::verify {
namespace {

using ::sweepd::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kTestData = SWEEPD_VERIFY_TESTDATA;

std::unique_ptr<Verifier> Make(std::vector<std::string> argv, int batch_size,
                               absl::Duration timeout = absl::Seconds(30)) {
  VerifierSpec spec;
  spec.kind = "command";
  spec.command = std::move(argv);
  spec.batch_size = batch_size;
  spec.timeout = timeout;
  auto v = MakeVerifier(spec);
  EXPECT_THAT(v, IsOk());
  return v.ok() ? *std::move(v) : nullptr;
}

std::vector<VerifyItem> Items(int n) {
  std::vector<VerifyItem> items;
  for (int i = 0; i < n; ++i) {
    items.push_back({"prompt", absl::StrCat("s", i), absl::StrCat("s", i), ""});
  }
  return items;
}

TEST(CommandVerifierTest, ExampleNumericVerifier) {
  auto v = Make({"python3", SWEEPD_EXAMPLE_VERIFIER}, /*batch_size=*/3);
  ASSERT_NE(v, nullptr);
  std::vector<VerifyItem> items = {
      {"q", "so the answer is \\boxed{42}.", "42", "math"},
      {"q", "It is 1,234 apples", "#### 1234", "gsm8k"},
      {"q", "maybe 7", "8", "math"},
      {"q", "no idea", "3/4", "math"},
      {"q", "3/4", "0.75", "math"},
      {"q", "five", "none", "math"},
      {"q",
       "\"quoted\" \xE2\x80\x9C"
       "text\xE2\x80\x9D -12",
       "-12", "unicode"},
  };
  for (int round = 0; round < 2; ++round) {  // the process is reused
    auto s = v->Score(items);
    ASSERT_THAT(s, IsOk());
    ASSERT_EQ(s->size(), items.size());
    EXPECT_TRUE((*s)[0].pass);
    EXPECT_EQ((*s)[0].score, 1.0);
    EXPECT_TRUE((*s)[1].pass);
    EXPECT_FALSE((*s)[2].pass);
    EXPECT_TRUE((*s)[2].error.empty());
    EXPECT_FALSE((*s)[3].pass);
    EXPECT_TRUE((*s)[4].pass);
    EXPECT_EQ((*s)[5].error, "verifier: the reference holds no number");
    EXPECT_TRUE((*s)[6].pass) << (*s)[6].error;
  }
}

TEST(CommandVerifierTest, LargeBatchesDoNotDeadlockOnFullPipes) {
  auto v = Make({"python3", SWEEPD_EXAMPLE_VERIFIER}, /*batch_size=*/200);
  ASSERT_NE(v, nullptr);
  std::vector<VerifyItem> items;
  for (int i = 0; i < 400; ++i) {
    items.push_back({std::string(20000, 'p'),
                     absl::StrCat(std::string(20000, 'x'), " ", i), "7", ""});
  }
  auto s = v->Score(items);
  ASSERT_THAT(s, IsOk());
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE((*s)[i].error.empty()) << i << ": " << (*s)[i].error;
    EXPECT_EQ((*s)[i].pass, i == 7);
  }
}

TEST(CommandVerifierTest, OutOfOrderResponsesAreMatchedById) {
  auto v = Make({"python3", kTestData + "/reverse_pairs.py"}, 4);
  ASSERT_NE(v, nullptr);
  std::vector<VerifyItem> items = {{"", "a", "a", ""},
                                   {"", "bb", "x", ""},
                                   {"", "ERR", "", ""},
                                   {"", "dddd", "dddd", ""}};
  auto s = v->Score(items);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ((*s)[0].score, 1);
  EXPECT_TRUE((*s)[0].pass);
  EXPECT_EQ((*s)[1].score, 2);
  EXPECT_FALSE((*s)[1].pass);
  EXPECT_EQ((*s)[2].error, "verifier: cannot score ERR");
  EXPECT_EQ((*s)[3].score, 4);
  EXPECT_TRUE((*s)[3].pass);
}

TEST(CommandVerifierTest, CrashIsAPerSampleErrorAndTheProcessRestarts) {
  const std::string state =
      absl::StrCat(::testing::TempDir(), "/crash_once_state_", getpid());
  std::remove(state.c_str());
  auto v = Make({"python3", kTestData + "/crash_once.py", state}, 3);
  ASSERT_NE(v, nullptr);
  auto s = v->Score(Items(6));
  ASSERT_THAT(s, IsOk());
  // First process: answers item 0, then exits with status 3.
  EXPECT_TRUE((*s)[0].error.empty());
  EXPECT_EQ((*s)[0].score, 0.5);
  EXPECT_TRUE((*s)[0].pass);  // no "pass": score > 0
  for (int i : {1, 2}) {
    EXPECT_THAT((*s)[i].error,
                StartsWith("verifier command exited with status 3 after 1 of "
                           "3 responses"));
    EXPECT_THAT((*s)[i].error, HasSubstr("boom"));  // its stderr
  }
  // The next batch runs in a fresh process.
  for (int i : {3, 4, 5}) {
    EXPECT_TRUE((*s)[i].error.empty()) << (*s)[i].error;
    EXPECT_EQ((*s)[i].score, 0.5);
  }
  std::remove(state.c_str());
}

TEST(CommandVerifierTest, HangTimesOutAndIsKilled) {
  auto v = Make({"sh", kTestData + "/hang.sh"}, 2, absl::Milliseconds(200));
  ASSERT_NE(v, nullptr);
  auto s = v->Score(Items(3));
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ((*s)[0].error,
            "verifier command timed out after 200ms (0 of 2 responses)");
  EXPECT_EQ((*s)[1].error, (*s)[0].error);
  EXPECT_EQ((*s)[2].error,
            "verifier command timed out after 200ms (0 of 1 responses)");
}

TEST(CommandVerifierTest, GarbageEndsTheProcess) {
  auto v = Make({"sh", kTestData + "/garbage.sh"}, 2);
  ASSERT_NE(v, nullptr);
  auto s = v->Score(Items(2));
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ((*s)[0].error,
            "verifier command wrote a line that is not a JSON object: 'this "
            "is not json' (0 of 2 responses)");
  EXPECT_EQ((*s)[1].error, (*s)[0].error);
}

TEST(CommandVerifierTest, ResponseWithoutScoreIsAnError) {
  auto v = Make({"sh", kTestData + "/no_score.sh"}, 2);
  ASSERT_NE(v, nullptr);
  auto s = v->Score(Items(2));
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT((*s)[0].error, HasSubstr("without a finite \"score\""));
}

TEST(CommandVerifierTest, CommandThatCannotStart) {
  auto v = Make({"/nonexistent/sweepd-verifier"}, 2);
  ASSERT_NE(v, nullptr);
  auto s = v->Score(Items(3));
  ASSERT_THAT(s, IsOk());
  for (const VerifyScore& score : *s) {
    EXPECT_THAT(score.error,
                HasSubstr("cannot start '/nonexistent/sweepd-verifier'"));
  }
}

TEST(CommandVerifierTest, ProcessThatExitsAtOnce) {
  auto v = Make({"sh", "-c", "exit 7"}, 4);
  ASSERT_NE(v, nullptr);
  auto s = v->Score(Items(2));
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ((*s)[0].error,
            "verifier command exited with status 7 after 0 of 2 responses");
}

}  // namespace
}  // namespace sweepd::verify
