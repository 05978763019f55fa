#include "common/layer_selector.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

MATCHER_P2(StatusIs, code, message_matcher, "") {
  return arg.status().code() == code &&
         ::testing::ExplainMatchResult(message_matcher,
                                       std::string(arg.status().message()),
                                       result_listener);
}

// The planner's cases.
TEST(LayerSelectorTest, ParsesEveryForm) {
  EXPECT_THAT(*ParseLayerSelector("all", 4, "f"), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(*ParseLayerSelector("3", 8, "f"), ElementsAre(3));
  EXPECT_THAT(*ParseLayerSelector("0,5,7", 8, "f"), ElementsAre(0, 5, 7));
  EXPECT_THAT(*ParseLayerSelector("2-4", 8, "f"), ElementsAre(2, 3, 4));
  EXPECT_THAT(*ParseLayerSelector("0:8:3", 8, "f"), ElementsAre(0, 3, 6));
  EXPECT_THAT(*ParseLayerSelector("5:", 8, "f"), ElementsAre(5, 6, 7));
  EXPECT_THAT(*ParseLayerSelector(":2", 8, "f"), ElementsAre(0, 1));
  EXPECT_THAT(*ParseLayerSelector(" 6 , 1-2, 1 ", 8, "f"),
              ElementsAre(1, 2, 6));
}

TEST(LayerSelectorTest, ErrorsNameTheField) {
  EXPECT_THAT(
      ParseLayerSelector("61", 60, "grid.axes[1].layers.select"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "grid.axes[1].layers.select: layer 61 out of range [0, 60)"));
  EXPECT_THAT(
      ParseLayerSelector("5-3", 8, "x.sel"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.sel: ")));
  EXPECT_THAT(
      ParseLayerSelector("abc", 8, "x.sel"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"abc\"")));
  EXPECT_THAT(
      ParseLayerSelector("", 8, "x.sel"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.sel: empty")));
  EXPECT_THAT(ParseLayerSelector("0:9", 8, "x.sel"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("stop 9 out of range")));
  EXPECT_THAT(ParseLayerSelector("0:8:0", 8, "x.sel"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("step")));
  EXPECT_THAT(
      ParseLayerSelector("1,,2", 8, "x.sel"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty item")));
  EXPECT_THAT(ParseLayerSelector("-1", 8, "x.sel"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.sel")));
}

// The worker's cases (it had its own grammar before the two were merged).
TEST(LayerSelectorTest, WorkerForms) {
  auto a = ParseLayerSelector("all", 4, "f");
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(*a, ElementsAre(0, 1, 2, 3));
  auto b = ParseLayerSelector("3", 60, "f");
  ASSERT_TRUE(b.ok());
  EXPECT_THAT(*b, ElementsAre(3));
  auto c = ParseLayerSelector("5, 0", 60, "f");
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(*c, ElementsAre(0, 5));
  auto d = ParseLayerSelector("10-13", 60, "f");
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(*d, ElementsAre(10, 11, 12, 13));
  auto e = ParseLayerSelector("0:10:4,2,2-3", 60, "f");
  ASSERT_TRUE(e.ok());
  EXPECT_THAT(*e, ElementsAre(0, 2, 3, 4, 8));
  auto f = ParseLayerSelector("0:60:20", 60, "f");
  ASSERT_TRUE(f.ok());
  EXPECT_THAT(*f, ElementsAre(0, 20, 40));
}

TEST(LayerSelectorTest, WorkerErrorsNameTheField) {
  for (const char* bad :
       {"", "60", "-1", "3-1", "a", "0:70", "0:10:0", "1,,2", "5:5"}) {
    auto r = ParseLayerSelector(bad, 60,
                                "interventions.interventions[0].skip.layers");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(),
                HasSubstr("interventions.interventions[0].skip.layers"));
  }
}

TEST(LayerSelectorTest, UnknownLayerCountTakesExplicitListsOnly) {
  auto ok = ParseLayerSelector("0-3,7,9:12", kLayerCountUnknown, "f");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(*ok, ElementsAre(0, 1, 2, 3, 7, 9, 10, 11));
  EXPECT_THAT(
      ParseLayerSelector("all", kLayerCountUnknown, "f.layers"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f.layers")));
  EXPECT_THAT(
      ParseLayerSelector("5:", kLayerCountUnknown, "f.layers"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer count")));
}

TEST(LayerSelectorTest, FormatRoundTrips) {
  EXPECT_EQ(FormatLayerList({0, 1, 2, 3, 5, 7, 8}), "0-3,5,7-8");
  EXPECT_EQ(FormatLayerList({}), "");
  auto back = ParseLayerSelector("0-3,5,7-8", 9, "f");
  ASSERT_TRUE(back.ok());
  EXPECT_THAT(*back, ElementsAre(0, 1, 2, 3, 5, 7, 8));
}

}  // namespace
}  // namespace sweepd
