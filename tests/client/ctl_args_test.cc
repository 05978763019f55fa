// Tests of sweepctl's CLI11 glue (client/ctl_args.h): values, lists, flags,
// positional arguments and the wording of usage errors.
#include "client/ctl_args.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Parsed {
  std::string format;
  std::vector<std::string> states;
  bool watch = false;
  std::vector<std::string> positional;
};

absl::Status Parse(const std::vector<std::string>& args, Parsed* out) {
  CLI::App app;
  AddCtlValueFlag(app, "--format", &out->format);
  AddCtlListFlag(app, "--state", &out->states);
  AddCtlBoolFlag(app, "--watch", &out->watch);
  return ParseCtlArgs(app, args, &out->positional);
}

TEST(CtlArgsTest, ParsesValuesListsFlagsAndPositionals) {
  Parsed p;
  ASSERT_THAT(Parse({"sw-1", "--format", "csv", "--state=done,failed",
                     "--watch", "--state", "pending", "--format=json", "x"},
                    &p),
              IsOk());
  EXPECT_EQ(p.format, "json");  // the last value wins
  EXPECT_THAT(p.states, ElementsAre("done,failed", "pending"));
  EXPECT_TRUE(p.watch);
  EXPECT_THAT(p.positional, ElementsAre("sw-1", "x"));
}

TEST(CtlArgsTest, UsageErrorsInSweepctlWords) {
  Parsed p;
  EXPECT_THAT(
      Parse({"sw-1", "--bogus", "v"}, &p),
      StatusIs(absl::StatusCode::kInvalidArgument, "unknown flag --bogus"));
  EXPECT_THAT(
      Parse({"--colour=red"}, &p),
      StatusIs(absl::StatusCode::kInvalidArgument, "unknown flag --colour"));
  EXPECT_THAT(
      Parse({"sw-1", "--format"}, &p),
      StatusIs(absl::StatusCode::kInvalidArgument, "--format needs a value"));
  EXPECT_THAT(
      Parse({"sw-1", "--watch=yes"}, &p),
      StatusIs(absl::StatusCode::kInvalidArgument, "--watch takes no value"));
}

TEST(CtlArgsTest, LeavesUnknownArgumentsInOrderWithoutPositionals) {
  CLI::App app;
  std::string coordinator;
  AddCtlValueFlag(app, "--coordinator", &coordinator);
  std::vector<std::string> rest;
  ASSERT_THAT(ParseCtlArgs(app,
                           {"results", "sw-1", "--coordinator", "h:1",
                            "--format=csv", "--state", "done"},
                           nullptr, &rest),
              IsOk());
  EXPECT_EQ(coordinator, "h:1");
  EXPECT_THAT(
      rest, ElementsAre("results", "sw-1", "--format=csv", "--state", "done"));
}

TEST(CtlArgsTest, PositionalCount) {
  EXPECT_THAT(
      CheckPositionalCount({}, 1, 1, "missing argument SWEEP"),
      StatusIs(absl::StatusCode::kInvalidArgument, "missing argument SWEEP"));
  EXPECT_THAT(CheckPositionalCount({"a", "b"}, 0, 1, "missing"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected argument 'b'")));
  EXPECT_THAT(CheckPositionalCount({"a"}, 0, 1, "missing"), IsOk());
}

}  // namespace
}  // namespace sweepd
