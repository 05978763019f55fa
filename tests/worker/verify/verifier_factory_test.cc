// Tests of worker/verify/verifier_factory.h (every kind, bad specs naming the
// field) and the nll adapter (worker/verify/nll_verifier.h) over a fake scorer.
#include "worker/verify/verifier_factory.h"

#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd::verify {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;

VerifierSpec Spec(const std::string& kind) {
  VerifierSpec spec;
  spec.kind = kind;
  return spec;
}

TEST(VerifierFactoryTest, BuildsEveryKind) {
  for (const std::string kind : {"exact", "contains", "numeric"}) {
    auto v = MakeVerifier(Spec(kind));
    ASSERT_THAT(v, IsOk()) << kind;
    EXPECT_EQ((*v)->name(), kind);
  }
  VerifierSpec regex = Spec("regex");
  regex.pattern = "a+";
  EXPECT_EQ((*MakeVerifier(regex))->name(), "regex");
  VerifierSpec command = Spec("command");
  command.command = {"/nonexistent/verifier"};  // nothing is started yet
  EXPECT_EQ((*MakeVerifier(command))->name(), "command");
  auto nll = MakeVerifier(Spec("nll"), [](absl::Span<const VerifyItem> items) {
    return absl::StatusOr<std::vector<double>>(
        std::vector<double>(items.size(), -1.0));
  });
  ASSERT_THAT(nll, IsOk());
  EXPECT_EQ((*nll)->name(), "nll");
}

TEST(VerifierFactoryTest, BadSpecsNameTheField) {
  EXPECT_THAT(MakeVerifier(Spec("bleu")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.kind: unknown kind 'bleu' (expected "
                                 "exact, contains, regex, numeric, command, "
                                 "nll)")));
  EXPECT_THAT(MakeVerifier(Spec("nll")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.kind: 'nll' needs the engine")));
  EXPECT_THAT(MakeVerifier(Spec("command")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.command")));
  VerifierSpec command = Spec("command");
  command.command = {"python3"};
  command.timeout = absl::ZeroDuration();
  EXPECT_THAT(MakeVerifier(command),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.timeout")));
  command.timeout = absl::Seconds(1);
  command.batch_size = 0;
  EXPECT_THAT(MakeVerifier(command),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.batch_size")));
  VerifierSpec regex = Spec("regex");
  regex.pattern = "a)";
  EXPECT_THAT(MakeVerifier(regex), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("verifier.pattern")));
}

TEST(NllVerifierTest, AdaptsTheScorer) {
  std::vector<std::string> seen;
  NllScorer scorer = [&](absl::Span<const VerifyItem> items) {
    std::vector<double> out;
    for (const VerifyItem& item : items) {
      seen.push_back(item.reference);
      out.push_back(-static_cast<double>(item.reference.size()) / 10);
    }
    return absl::StatusOr<std::vector<double>>(out);
  };
  VerifierSpec spec = Spec("nll");
  spec.pass_threshold = -0.25;
  auto v = MakeVerifier(spec, scorer);
  ASSERT_THAT(v, IsOk());
  std::vector<VerifyItem> items = {
      {"p", "s", "ab", ""}, {"p", "s", "", ""}, {"p", "s", "abcde", ""}};
  auto s = (*v)->Score(items);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(seen, (std::vector<std::string>{"ab", "abcde"}));
  EXPECT_DOUBLE_EQ((*s)[0].score, -0.2);
  EXPECT_TRUE((*s)[0].pass);
  EXPECT_THAT((*s)[1].error, HasSubstr("no reference"));
  EXPECT_DOUBLE_EQ((*s)[2].score, -0.5);
  EXPECT_FALSE((*s)[2].pass);
  // Without a threshold nothing passes.
  auto no_threshold = MakeVerifier(Spec("nll"), scorer);
  EXPECT_FALSE((*(*no_threshold)->Score(items))[0].pass);
}

TEST(NllVerifierTest, ScorerFailuresArePerSampleErrors) {
  auto failing = MakeVerifier(Spec("nll"), [](absl::Span<const VerifyItem>) {
    return absl::StatusOr<std::vector<double>>(
        absl::ResourceExhaustedError("out of memory"));
  });
  std::vector<VerifyItem> items = {{"p", "s", "r", ""}, {"p", "s", "", ""}};
  auto s = (*failing)->Score(items);
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT((*s)[0].error, HasSubstr("out of memory"));
  EXPECT_THAT((*s)[1].error, HasSubstr("no reference"));

  auto short_answer =
      MakeVerifier(Spec("nll"), [](absl::Span<const VerifyItem>) {
        return absl::StatusOr<std::vector<double>>(std::vector<double>{});
      });
  auto s2 = (*short_answer)->Score(items);
  ASSERT_THAT(s2, IsOk());
  EXPECT_THAT((*s2)[0].error, HasSubstr("returned 0 values for 1 items"));
}

}  // namespace
}  // namespace sweepd::verify
