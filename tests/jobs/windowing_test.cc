#include "worker/jobs/windowing.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

TEST(WindowingTest, EveryTokenAfterTheFirstIsScoredOnceWithMostContext) {
  for (int64_t n = 0; n <= 40; ++n) {
    for (int ctx = 2; ctx <= 9; ++ctx) {
      for (int stride = 1; stride <= ctx; ++stride) {
        Windowing w;
        w.context_length = ctx;
        w.stride = stride;
        const std::vector<TokenWindow> windows = MakeWindows(n, w);
        std::vector<int> scored(n, 0);
        for (size_t k = 0; k < windows.size(); ++k) {
          const TokenWindow& win = windows[k];
          ASSERT_LE(win.length(), ctx);
          ASSERT_GT(win.score_begin, win.begin);  // predicted inside
          for (int64_t j = win.score_begin; j < win.end; ++j) {
            ++scored[j];
            // No earlier window predicts j (it would have more left context).
            for (size_t e = 0; e < k; ++e) {
              EXPECT_FALSE(windows[e].begin <= j - 1 && j < windows[e].end)
                  << "n=" << n << " ctx=" << ctx << " stride=" << stride;
            }
          }
        }
        if (n >= 1) EXPECT_EQ(scored[0], 0);
        for (int64_t j = 1; j < n; ++j) {
          ASSERT_EQ(scored[j], 1) << "token " << j << " n=" << n
                                  << " ctx=" << ctx << " stride=" << stride;
        }
      }
    }
  }
}

TEST(WindowingTest, StrideAdvancesWindows) {
  Windowing w;
  w.context_length = 8;
  w.stride = 4;
  const std::vector<TokenWindow> v = MakeWindows(14, w);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].begin, 0);
  EXPECT_EQ(v[0].end, 8);
  EXPECT_EQ(v[0].score_begin, 1);
  EXPECT_EQ(v[1].begin, 4);
  EXPECT_EQ(v[1].end, 12);
  EXPECT_EQ(v[1].score_begin, 8);
  EXPECT_EQ(v[2].begin, 8);
  EXPECT_EQ(v[2].end, 14);
  EXPECT_EQ(v[2].score_begin, 12);
  // stride == context_length: consecutive windows share one token.
  w.stride = 8;
  const std::vector<TokenWindow> u = MakeWindows(15, w);
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[1].begin, 7);
  EXPECT_EQ(u[1].score_begin, 8);
  EXPECT_TRUE(MakeWindows(1, w).empty());
}

TEST(WindowingTest, ResolveDefaultsAndErrors) {
  auto d = ResolveWindowing(0, 0, "", "eval.windowing");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->context_length, 512);
  EXPECT_EQ(d->stride, 512);
  EXPECT_EQ(d->bos, BosPolicy::kOn);
  auto p = ResolveWindowing(64, 16, "off", "w");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->context_length, 64);
  EXPECT_EQ(p->stride, 16);
  EXPECT_STREQ(p->bos_name(), "off");

  auto e1 = ResolveWindowing(8, 9, "", "eval.windowing");
  ASSERT_FALSE(e1.ok());
  EXPECT_EQ(e1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e1.status().message(), HasSubstr("eval.windowing.stride"));
  auto e2 = ResolveWindowing(0, 0, "maybe", "probe.windowing");
  ASSERT_FALSE(e2.ok());
  EXPECT_THAT(e2.status().message(), HasSubstr("probe.windowing.bos"));
  auto e3 = ResolveWindowing(1, 0, "", "w");
  ASSERT_FALSE(e3.ok());
  EXPECT_THAT(e3.status().message(), HasSubstr("w.context_length"));
}

}  // namespace
}  // namespace sweepd
