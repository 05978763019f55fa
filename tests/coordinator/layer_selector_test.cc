// Tests of the layer selector parser (coordinator/layer_selector.h).
#include "coordinator/layer_selector.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

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

}  // namespace
}  // namespace sweepd
