// Tests of common/best_of_k.h: every estimator against brute-force enumeration
// of all k-subsets for small n (with ties), the edge cases, and the bootstrap's
// determinism and coverage of the mean.
#include "common/best_of_k.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;

// The three expectations by enumerating every k-subset (bitmask) of samples:
// pass = any passes; best = max score; selected = the pass rate among the
// subset's samples tied at the max (uniform tie break).
struct Brute {
  double pass_at_k = 0, best_score = 0, selected_pass = 0;
};
Brute Enumerate(const std::vector<ScoredSample>& s, int k) {
  const int n = static_cast<int>(s.size());
  Brute out;
  int64_t subsets = 0;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    if (__builtin_popcount(mask) != k) continue;
    ++subsets;
    bool any = false;
    double best = -INFINITY;
    for (int i = 0; i < n; ++i) {
      if (!(mask & (1u << i))) continue;
      any = any || s[i].pass;
      best = std::max(best, s[i].score);
    }
    int tied = 0, tied_pass = 0;
    for (int i = 0; i < n; ++i) {
      if ((mask & (1u << i)) && s[i].score == best) {
        ++tied;
        tied_pass += s[i].pass ? 1 : 0;
      }
    }
    out.pass_at_k += any ? 1 : 0;
    out.best_score += best;
    out.selected_pass += static_cast<double>(tied_pass) / tied;
  }
  out.pass_at_k /= subsets;
  out.best_score /= subsets;
  out.selected_pass /= subsets;
  return out;
}

// A fixed linear congruential stream for test data.
class TestRng {
 public:
  explicit TestRng(uint64_t seed) : state_(seed) {}
  uint32_t Next() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(state_ >> 33);
  }

 private:
  uint64_t state_;
};

TEST(BestOfKTest, MatchesBruteForceEnumerationWithTies) {
  TestRng rng(7);
  int cases = 0;
  for (int n = 1; n <= 8; ++n) {
    for (int rep = 0; rep < 12; ++rep) {
      std::vector<ScoredSample> samples(n);
      // Scores from a small set so ties are frequent; pass correlated with
      // score only loosely.
      for (auto& s : samples) {
        s.score = static_cast<double>(rng.Next() % 4) * 0.25 - 0.3;
        s.pass = rng.Next() % 3 == 0;
      }
      int c = 0;
      for (const auto& s : samples) c += s.pass;
      auto curve = ComputeBestOfKCurve(samples);
      ASSERT_TRUE(curve.ok()) << curve.status();
      ASSERT_EQ(curve->pass_at_k.size(), static_cast<size_t>(n));
      for (int k = 1; k <= n; ++k) {
        const Brute want = Enumerate(samples, k);
        SCOPED_TRACE(::testing::Message() << "n=" << n << " k=" << k);
        EXPECT_NEAR(*PassAtK(n, c, k), want.pass_at_k, 1e-12);
        EXPECT_NEAR(*ExpectedBestOfK(samples, k), want.best_score, 1e-12);
        EXPECT_NEAR(*SelectedPassAtK(samples, k), want.selected_pass, 1e-12);
        EXPECT_NEAR(curve->pass_at_k[k - 1], want.pass_at_k, 1e-12);
        EXPECT_NEAR(curve->best_score[k - 1], want.best_score, 1e-12);
        EXPECT_NEAR(curve->selected_pass[k - 1], want.selected_pass, 1e-12);
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 12 * 36);
}

TEST(BestOfKTest, AllTiedSelectsTheMeanPass) {
  std::vector<ScoredSample> s = {{1, true}, {1, false}, {1, false}, {1, true}};
  for (int k = 1; k <= 4; ++k) EXPECT_NEAR(*SelectedPassAtK(s, k), 0.5, 1e-15);
}

TEST(BestOfKTest, EdgeCases) {
  // k = n: the whole set.
  std::vector<ScoredSample> s = {{0.1, false}, {0.9, false}, {0.5, true}};
  EXPECT_DOUBLE_EQ(*PassAtK(3, 1, 3), 1.0);
  EXPECT_DOUBLE_EQ(*ExpectedBestOfK(s, 3), 0.9);
  EXPECT_DOUBLE_EQ(*SelectedPassAtK(s, 3), 0.0);
  // k = 1: the plain mean.
  EXPECT_NEAR(*ExpectedBestOfK(s, 1), 0.5, 1e-15);
  EXPECT_NEAR(*PassAtK(3, 1, 1), 1.0 / 3, 1e-15);
  // c = 0 and c = n.
  for (int k = 1; k <= 5; ++k) {
    EXPECT_EQ(*PassAtK(5, 0, k), 0.0);
    EXPECT_EQ(*PassAtK(5, 5, k), 1.0);
  }
  // n = 1.
  std::vector<ScoredSample> one = {{-2.5, true}};
  EXPECT_EQ(*PassAtK(1, 1, 1), 1.0);
  EXPECT_EQ(*ExpectedBestOfK(one, 1), -2.5);
  EXPECT_EQ(*SelectedPassAtK(one, 1), 1.0);
}

TEST(BestOfKTest, RejectsKOutsideRangeAndBadInput) {
  std::vector<ScoredSample> s = {{0.1, false}, {0.9, true}};
  EXPECT_THAT(PassAtK(2, 1, 3),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("k = 3 is outside [1, n] for n = 2")));
  EXPECT_THAT(ExpectedBestOfK(s, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k = 3")));
  EXPECT_THAT(SelectedPassAtK(s, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k = 0")));
  EXPECT_THAT(PassAtK(4, 5, 1), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("pass count c = 5")));
  EXPECT_THAT(ComputeBestOfKCurve({}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at least one sample")));
  std::vector<ScoredSample> nan = {{0.1, false}, {std::nan(""), true}};
  EXPECT_THAT(ExpectedBestOfK(nan, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sample 1 has a non-finite score")));
}

TEST(BestOfKTest, WeightsAreStableForLargeN) {
  // C(2000, 1000) overflows a double; the running product does not.
  auto w = BestOfKWeights(2000, 1000);
  ASSERT_TRUE(w.ok());
  double sum = 0;
  for (double x : *w) {
    EXPECT_TRUE(std::isfinite(x));
    sum += x;
  }
  EXPECT_NEAR(sum, 1.0, 1e-9);
  EXPECT_DOUBLE_EQ(w->back(), 0.5);
  // pass@k for large n against the closed form via lgamma.
  const int n = 500, c = 3, k = 50;
  const double lchoose = std::lgamma(n - c + 1) - std::lgamma(k + 1) -
                         std::lgamma(n - c - k + 1) - std::lgamma(n + 1) +
                         std::lgamma(k + 1) + std::lgamma(n - k + 1);
  EXPECT_NEAR(*PassAtK(n, c, k), 1 - std::exp(lchoose), 1e-10);
}

TEST(BestOfKTest, AggregateMeansPerKOverPromptsWithEnoughSamples) {
  std::vector<std::vector<ScoredSample>> prompts = {
      {{0.2, false}, {0.8, true}, {0.5, false}},
      {{1.0, true}},
  };
  auto agg = AggregateBestOfK(prompts, BootstrapOptions{});
  ASSERT_TRUE(agg.ok()) << agg.status();
  ASSERT_EQ(agg->size(), 3u);
  const auto c0 = *ComputeBestOfKCurve(prompts[0]);
  EXPECT_EQ((*agg)[0].num_prompts, 2);
  EXPECT_NEAR((*agg)[0].pass_at_k.mean, (c0.pass_at_k[0] + 1.0) / 2, 1e-15);
  EXPECT_NEAR((*agg)[0].best_score.mean, (c0.best_score[0] + 1.0) / 2, 1e-15);
  EXPECT_EQ((*agg)[2].num_prompts, 1);
  EXPECT_NEAR((*agg)[2].selected_pass.mean, c0.selected_pass[2], 1e-15);
  for (const AggregatePoint& p : *agg) {
    EXPECT_LE(p.pass_at_k.lower, p.pass_at_k.mean);
    EXPECT_GE(p.pass_at_k.upper, p.pass_at_k.mean);
  }
}

TEST(BestOfKTest, BootstrapIsDeterministicAndBracketsTheMean) {
  TestRng rng(11);
  std::vector<std::vector<ScoredSample>> prompts(40);
  for (auto& p : prompts) {
    p.resize(6);
    for (auto& s : p) {
      s.score = (rng.Next() % 1000) / 1000.0;
      s.pass = rng.Next() % 2 == 0;
    }
  }
  BootstrapOptions opts;
  opts.resamples = 400;
  opts.level = 0.9;
  opts.seed = 42;
  auto a = AggregateBestOfK(prompts, opts);
  auto b = AggregateBestOfK(prompts, opts);
  ASSERT_TRUE(a.ok() && b.ok());
  opts.seed = 43;
  auto c = AggregateBestOfK(prompts, opts);
  ASSERT_TRUE(c.ok());
  bool any_differs = false;
  for (size_t i = 0; i < a->size(); ++i) {
    const AggregatePoint& p = (*a)[i];
    EXPECT_EQ(p.best_score.lower, (*b)[i].best_score.lower);
    EXPECT_EQ(p.selected_pass.upper, (*b)[i].selected_pass.upper);
    EXPECT_LT(p.best_score.lower, p.best_score.mean);
    EXPECT_GT(p.best_score.upper, p.best_score.mean);
    EXPECT_LT(p.selected_pass.lower, p.selected_pass.upper);
    any_differs |= p.best_score.lower != (*c)[i].best_score.lower;
  }
  EXPECT_TRUE(any_differs) << "a different seed gives different resamples";
  // The interval narrows as the level drops.
  opts.seed = 42;
  opts.level = 0.5;
  auto narrow = AggregateBestOfK(prompts, opts);
  EXPECT_GT((*a)[0].best_score.upper - (*a)[0].best_score.lower,
            (*narrow)[0].best_score.upper - (*narrow)[0].best_score.lower);
}

TEST(BestOfKTest, AggregateRejectsBadOptions) {
  std::vector<std::vector<ScoredSample>> prompts = {{{0.5, true}}};
  BootstrapOptions opts;
  opts.resamples = 0;
  EXPECT_THAT(AggregateBestOfK(prompts, opts),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("resamples must be >= 1")));
  opts.resamples = 10;
  opts.level = 1.0;
  EXPECT_THAT(AggregateBestOfK(prompts, opts),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("level must be in (0, 1)")));
  EXPECT_THAT(AggregateBestOfK({}, BootstrapOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<std::vector<ScoredSample>> with_empty = {{{0.5, true}}, {}};
  EXPECT_THAT(
      AggregateBestOfK(with_empty, BootstrapOptions{}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt 1")));
}

}  // namespace
}  // namespace sweepd
