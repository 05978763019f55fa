// Tests of worker/verify/number_extract.h and numeric_verifier.h.
#include "worker/verify/numeric_verifier.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/verify/number_extract.h"

namespace sweepd::verify {
namespace {

using ::sweepd::testing::StatusIs;
using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

TEST(NumberExtractTest, FindsEveryNumberForm) {
  EXPECT_THAT(FindNumbers("7 and -3 then 2.5 or .5"),
              ElementsAre(7, -3, 2.5, 0.5));
  EXPECT_THAT(FindNumbers("$1,234,567.50 total"), ElementsAre(1234567.5));
  EXPECT_THAT(FindNumbers("1,2,3"), ElementsAre(1, 2, 3));
  EXPECT_THAT(FindNumbers("12,34"), ElementsAre(12, 34));
  EXPECT_THAT(FindNumbers("3/4 of -1/2"), ElementsAre(0.75, -0.5));
  EXPECT_THAT(FindNumbers("1e-3 and 2.5E+4 and 3em"),
              ElementsAre(DoubleEq(1e-3), 25000, 3));
  EXPECT_THAT(FindNumbers("pages 3-5"), ElementsAre(3, 5));
  EXPECT_THAT(FindNumbers("x=-4"), ElementsAre(-4));
  EXPECT_THAT(FindNumbers("v1.2.3"), ElementsAre(1.2, 3));
  EXPECT_THAT(FindNumbers("\xE2\x88\x92"
                          "8 degrees"),
              ElementsAre(-8));
  EXPECT_THAT(FindNumbers("1/0 stays"), ElementsAre(1, 0));
  EXPECT_THAT(FindNumbers("\\frac{3}{8} and \\dfrac{-1}{4}"),
              ElementsAre(0.375, -0.25));
  EXPECT_THAT(FindNumbers("no numbers here"), ElementsAre());
}

TEST(NumberExtractTest, PrefersBoxedThenGsm8kMarkerThenTheFinalNumber) {
  EXPECT_THAT(ExtractAnswerNumber("so 3 + 4 = \\boxed{7}. Check: 8"),
              Optional(7.0));
  EXPECT_THAT(ExtractAnswerNumber("\\boxed{1} then \\boxed{\\frac{1}{2}}"),
              Optional(0.5));
  EXPECT_THAT(ExtractAnswerNumber("\\boxed{x} so 9"), Optional(9.0));
  EXPECT_THAT(
      ExtractAnswerNumber("She has 3 apples.\n#### 1,234\nThat took 5 steps"),
      Optional(1234.0));
  EXPECT_THAT(ExtractAnswerNumber("first 10, then 20, finally 30."),
              Optional(30.0));
  EXPECT_EQ(ExtractAnswerNumber("none"), std::nullopt);
}

TEST(NumericVerifierTest, ComparesWithinTolerance) {
  VerifierSpec spec;
  spec.kind = "numeric";
  spec.abs_tolerance = 1e-6;
  spec.rel_tolerance = 0.01;
  auto v = CreateNumericVerifier(spec);
  ASSERT_TRUE(v.ok()) << v.status();
  std::vector<VerifyItem> items = {
      {"", "The answer is 72.", "Natalia sold 48/2 = 24 ... #### 72", ""},
      {"", "The answer is 73.", "72", ""},
      {"", "about 1005", "1,000", ""},  // within 1 %
      {"", "about 1011", "1,000", ""},  // not
      {"", "I don't know", "5", ""},    // no number: fail, not an error
      {"", "5", "five", ""},            // reference without number: error
      {"", "5", "", ""},                // no reference: error
      {"", "0.0000001", "0", ""},       // abs tolerance near zero
  };
  auto s = (*v)->Score(items);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE((*s)[0].pass);
  EXPECT_EQ((*s)[0].score, 1.0);
  EXPECT_FALSE((*s)[1].pass);
  EXPECT_TRUE((*s)[2].pass);
  EXPECT_FALSE((*s)[3].pass);
  EXPECT_FALSE((*s)[4].pass);
  EXPECT_EQ((*s)[4].score, 0.0);
  EXPECT_TRUE((*s)[4].error.empty());
  EXPECT_THAT((*s)[5].error, HasSubstr("reference holds no number"));
  EXPECT_THAT((*s)[6].error, HasSubstr("no reference"));
  EXPECT_TRUE((*s)[7].pass);
}

TEST(NumericVerifierTest, RejectsBadTolerances) {
  VerifierSpec spec;
  spec.abs_tolerance = -1;
  EXPECT_THAT(CreateNumericVerifier(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.abs_tolerance")));
  spec.abs_tolerance = 0;
  spec.rel_tolerance = std::numeric_limits<double>::infinity();
  EXPECT_THAT(CreateNumericVerifier(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("verifier.rel_tolerance")));
}

}  // namespace
}  // namespace sweepd::verify
