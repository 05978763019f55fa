// PlanGroupRows: clusters of rows sharing leading pages, their shared and
// private parts, and the padding of both.
#include "worker/engine/decode_rows.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::engine::internal {
namespace {

using ::testing::ElementsAre;

TEST(DecodeRowsTest, ForkedRowsShareTheirCommonPagesAndKeepTheRest) {
  // Rows 0, 2 and 3 are samples of one prompt (pages 5, 6 shared, then each
  // its own); row 1 is another prompt alone.
  const std::vector<int32_t> a = {5, 6, 10}, b = {7, 8}, c = {5, 6, 11, 12},
                             d = {5, 6, 13};
  const GroupStepRows k =
      PlanGroupRows({{&a, 0}, {&b, 0}, {&c, 0}, {&d, 0}}, /*page_size=*/2);
  EXPECT_EQ(k.clusters, 2);
  EXPECT_EQ(k.rmax, 3);
  EXPECT_EQ(k.shared_pages, 2);
  EXPECT_EQ(k.private_pages, 2);
  EXPECT_THAT(k.sh_gather, ElementsAre(5, 6, 7, 8));
  EXPECT_THAT(k.sh_key_pos, ElementsAre(0, 1, 2, 3, 0, 1, 2, 3));
  EXPECT_THAT(k.sh_rows, ElementsAre(0, 2, 3, 1, 4, 4));  // padding = R = 4
  EXPECT_THAT(k.row_slot, ElementsAre(0, 3, 1, 2));
  EXPECT_THAT(k.pr_gather, ElementsAre(10, 0, 0, 0, 11, 12, 13, 0));
  EXPECT_THAT(k.pr_key_pos, ElementsAre(4, 5, -1, -1,    // row 0
                                        -1, -1, -1, -1,  // row 1: none
                                        4, 5, 6, 7,      // row 2
                                        4, 5, -1, -1));  // row 3
}

TEST(DecodeRowsTest, RingsWithAnotherFirstPageAreNotShared) {
  // Same leading page id but a different first page index cannot happen for
  // one page; rows with different first pages are separate clusters, and a
  // ring's positions start at its first page.
  const std::vector<int32_t> a = {3, 4}, b = {9, 4};
  const GroupStepRows k = PlanGroupRows({{&a, 5}, {&b, 5}}, /*page_size=*/4);
  EXPECT_EQ(k.clusters, 2);
  EXPECT_EQ(k.private_pages, 0);
  EXPECT_EQ(k.sh_key_pos[0], 20);
  EXPECT_EQ(k.sh_key_pos[7], 27);
}

TEST(DecodeRowsTest, IdenticalPageListsShareEverything) {
  const std::vector<int32_t> a = {1, 2};
  const GroupStepRows k = PlanGroupRows({{&a, 0}, {&a, 0}}, /*page_size=*/1);
  EXPECT_EQ(k.clusters, 1);
  EXPECT_EQ(k.shared_pages, 2);
  EXPECT_EQ(k.private_pages, 0);
  EXPECT_THAT(k.row_slot, ElementsAre(0, 1));
}

TEST(DecodeRowsTest, BelowTheSavedKeysThresholdThePlanIsFlat) {
  // The first test's rows: clustering saves (3 - 1) rows x 2 pages x 2 keys
  // = 8 key reads. With a threshold of 9 every row is its own cluster, in
  // row order, holding all its pages; at 8 the clusters stay.
  const std::vector<int32_t> a = {5, 6, 10}, b = {7, 8}, c = {5, 6, 11, 12},
                             d = {5, 6, 13};
  const std::vector<RowPages> rows = {{&a, 0}, {&b, 0}, {&c, 0}, {&d, 0}};
  EXPECT_EQ(PlanGroupRows(rows, 2, /*min_saved_keys=*/8).clusters, 2);
  const GroupStepRows k = PlanGroupRows(rows, 2, /*min_saved_keys=*/9);
  EXPECT_EQ(k.clusters, 4);
  EXPECT_EQ(k.rmax, 1);
  EXPECT_EQ(k.shared_pages, 4);
  EXPECT_EQ(k.private_pages, 0);
  EXPECT_THAT(k.sh_rows, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(k.row_slot, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(k.sh_gather, ElementsAre(5, 6, 10, 0,   //
                                       7, 8, 0, 0,    //
                                       5, 6, 11, 12,  //
                                       5, 6, 13, 0));
  EXPECT_EQ(k.sh_key_pos[2 * 8 + 7], 7);   // row 2's last key
  EXPECT_EQ(k.sh_key_pos[1 * 8 + 4], -1);  // row 1's padding
}

}  // namespace
}  // namespace sweepd::engine::internal
