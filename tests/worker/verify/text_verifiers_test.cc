// Tests of worker/verify/text_verifiers.h: exact, contains and regex.
#include "worker/verify/text_verifiers.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd::verify {
namespace {

using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;

VerifierSpec Spec(const std::string& kind) {
  VerifierSpec spec;
  spec.kind = kind;
  return spec;
}

std::vector<VerifyScore> ScoreAll(Verifier& v, std::vector<VerifyItem> items) {
  auto scores = v.Score(items);
  EXPECT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ(scores->size(), items.size());
  return scores.ok() ? *scores : std::vector<VerifyScore>{};
}

TEST(TextVerifiersTest, NormalizeText) {
  VerifierSpec spec;
  EXPECT_EQ(NormalizeText("  a  B\n", spec), "a  B");
  spec.collapse_whitespace = true;
  spec.case_insensitive = true;
  EXPECT_EQ(NormalizeText(" a \t\n B ", spec), "a b");
  spec.strip = false;
  EXPECT_EQ(NormalizeText(" a  b ", spec), " a b ");
}

TEST(TextVerifiersTest, ExactComparesNormalisedText) {
  auto v = CreateExactVerifier(Spec("exact"));
  ASSERT_TRUE(v.ok());
  auto s = ScoreAll(**v, {{"p", " Paris\n", "Paris", ""},
                          {"p", "paris", "Paris", ""},
                          {"p", "Paris", "", ""}});
  EXPECT_TRUE(s[0].pass);
  EXPECT_EQ(s[0].score, 1.0);
  EXPECT_FALSE(s[1].pass);
  EXPECT_EQ(s[1].score, 0.0);
  EXPECT_TRUE(s[1].error.empty());
  EXPECT_THAT(s[2].error, HasSubstr("no reference"));
  EXPECT_EQ((*v)->name(), "exact");

  VerifierSpec ci = Spec("exact");
  ci.case_insensitive = true;
  auto v2 = CreateExactVerifier(ci);
  EXPECT_TRUE(ScoreAll(**v2, {{"p", "PARIS", "paris", ""}})[0].pass);
}

TEST(TextVerifiersTest, ContainsLooksForTheReference) {
  VerifierSpec spec = Spec("contains");
  spec.collapse_whitespace = true;
  auto v = CreateContainsVerifier(spec);
  ASSERT_TRUE(v.ok());
  auto s = ScoreAll(**v, {{"", "The capital is  New\nYork.", "New York", ""},
                          {"", "The capital is Boston.", "New York", ""},
                          {"", "x", "", ""}});
  EXPECT_TRUE(s[0].pass);
  EXPECT_FALSE(s[1].pass);
  EXPECT_FALSE(s[2].error.empty());
}

TEST(TextVerifiersTest, RegexMatchesAnywhere) {
  VerifierSpec spec = Spec("regex");
  spec.pattern = R"(\bAnswer:\s*\d+)";
  auto v = CreateRegexVerifier(spec);
  ASSERT_TRUE(v.ok()) << v.status();
  auto s = ScoreAll(
      **v, {{"", "so... Answer: 42", "", ""}, {"", "answer: 42", "", ""}});
  EXPECT_TRUE(s[0].pass);
  EXPECT_FALSE(s[1].pass);
  EXPECT_TRUE(s[1].error.empty());
}

TEST(TextVerifiersTest, RegexSubstitutesTheQuotedReference) {
  VerifierSpec spec = Spec("regex");
  spec.pattern = "(?m)^Answer: {reference}$";
  spec.case_insensitive = true;
  auto v = CreateRegexVerifier(spec);
  ASSERT_TRUE(v.ok()) << v.status();
  auto s = ScoreAll(**v, {{"", "work\nANSWER: 3.5\n", "3.5", ""},
                          // The reference is quoted: '.' is not a wildcard.
                          {"", "Answer: 3x5", "3.5", ""},
                          {"", "Answer: (a+b)", "(a+b)", ""},
                          {"", "Answer: 1", "", ""}});
  EXPECT_TRUE(s[0].pass);
  EXPECT_FALSE(s[1].pass);
  EXPECT_TRUE(s[2].pass);
  EXPECT_THAT(s[3].error, HasSubstr("no reference"));
}

TEST(TextVerifiersTest, BadPatternsNameTheField) {
  VerifierSpec spec = Spec("regex");
  EXPECT_THAT(CreateRegexVerifier(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.pattern: required")));
  spec.pattern = "(unclosed";
  EXPECT_THAT(CreateRegexVerifier(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.pattern: invalid regular "
                                 "expression '(unclosed'")));
  spec.pattern = "{reference}[";
  EXPECT_THAT(CreateRegexVerifier(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.pattern")));
}

}  // namespace
}  // namespace sweepd::verify
