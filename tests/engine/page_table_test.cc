// The decode session's page bookkeeping (worker/engine/page_table.h): slots,
// sliding-window pages freed once out of reach, forks sharing full pages and
// copying the partial one, and exhaustion leaving the table unchanged.
#include "worker/engine/page_table.h"

#include <vector>

#include "gtest/gtest.h"

namespace sweepd::engine::internal {
namespace {

TEST(PageTableTest, FullGroupKeepsEveryPageAndSlidingGroupARing) {
  // Group 0 full, group 1 window 8; pages of 4 tokens.
  PageTable t({0, 8}, {16, 16}, 4);
  const int64_t s = t.Create();
  ASSERT_TRUE(t.Reserve(s, 6).ok());
  EXPECT_EQ(t.pages(s, 0).size(), 2u);
  EXPECT_EQ(t.Slot(s, 0, 5) % 4, 1);
  t.Advance(s, 6);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(t.Reserve(s, 1).ok());
    t.Advance(s, 1);
  }
  EXPECT_EQ(t.length(s), 36);
  EXPECT_EQ(t.pages(s, 0).size(), 9u);
  // The next query (position 36) sees keys 29..36: pages 7, 8 (+ 9 later).
  EXPECT_LE(t.pages(s, 1).size(), 3u);
  EXPECT_EQ(t.first_page(s, 1), 7);
  t.Release(s);
  EXPECT_EQ(t.free_pages(0), 16);
  EXPECT_EQ(t.free_pages(1), 16);
}

TEST(PageTableTest, PromptReservationSkipsPagesOutOfTheWindow) {
  PageTable t({0, 8}, {16, 16}, 4);
  const int64_t s = t.Create();
  ASSERT_TRUE(t.ReservePrompt(s, 20).ok());
  EXPECT_EQ(t.pages(s, 0).size(), 5u);
  // Positions >= 13 are visible to the query at 20: pages 3 and 4.
  EXPECT_EQ(t.first_page(s, 1), 3);
  EXPECT_EQ(t.Slot(s, 1, 5), -1);
  EXPECT_GE(t.Slot(s, 1, 13), 0);
}

TEST(PageTableTest, ForkSharesFullPagesAndCopiesThePartialOne) {
  PageTable t({0}, {8}, 4);
  const int64_t p = t.Create();
  ASSERT_TRUE(t.ReservePrompt(p, 6).ok());
  t.Advance(p, 6);
  std::vector<PageCopy> copies;
  auto a = t.Fork(p, &copies);
  auto b = t.Fork(p, &copies);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].src, t.pages(p, 0)[1]);
  EXPECT_EQ(t.pages(*a, 0)[0], t.pages(p, 0)[0]);   // shared
  EXPECT_NE(t.pages(*a, 0)[1], t.pages(*b, 0)[1]);  // private tails
  EXPECT_EQ(t.free_pages(0), 8 - 4);
  t.Release(p);
  EXPECT_EQ(t.free_pages(0), 8 - 3);  // the shared page stays
  t.Release(*a);
  t.Release(*b);
  EXPECT_EQ(t.free_pages(0), 8);
}

TEST(PageTableTest, ExhaustionChangesNothing) {
  PageTable t({0}, {2}, 4);
  const int64_t s = t.Create();
  EXPECT_EQ(t.Reserve(s, 9).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t.free_pages(0), 2);
  EXPECT_TRUE(t.pages(s, 0).empty());
}

}  // namespace
}  // namespace sweepd::engine::internal
