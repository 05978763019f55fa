// Best-of-k estimators: from the n kept samples of one prompt (each with a
// verifier score and a pass bit), the expected outcome of drawing k of them
// without replacement, for every k <= n, and the mean over prompts with
// bootstrap confidence intervals. "The best of k" is a query over kept
// samples, never a re-run (docs/GENERATION.md, "Best-of-k estimators").
//
// Three estimators, all exact expectations over the C(n, k) subsets:
//  - pass@k (Chen et al. 2021, unbiased): 1 - C(n-c, k)/C(n, k), computed in
//    the stable product form 1 - prod_{i=n-c+1..n} (1 - k/i);
//  - expected best score: sum_{i=k..n} C(i-1, k-1)/C(n, k) * s_(i) over the
//    scores in ascending order (the weight of s_(i) is the probability that it
//    is the maximum of the subset);
//  - selected pass: the pass bit of the subset's highest-scoring sample, ties
//    broken uniformly at random -- the same weights applied to the pass bits
//    sorted by score, each tie group's bits replaced by their mean.
//
// Pure functions of their arguments; thread-safe; no ownership.
#ifndef SWEEPD_COMMON_BEST_OF_K_H_
#define SWEEPD_COMMON_BEST_OF_K_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sweepd {

// One kept sample of a prompt. Samples whose verifier reported an error are
// the caller's to drop or to count as failures (score 0, pass false).
struct ScoredSample {
  double score = 0;  // verifier score, higher is better; must be finite
  bool pass = false;
};

// Unbiased pass@k for n samples of which c pass. INVALID_ARGUMENT unless
// 0 <= c <= n and 1 <= k <= n.
absl::StatusOr<double> PassAtK(int64_t n, int64_t c, int64_t k);

// The weights w_i = C(i-1, k-1)/C(n, k), i = 1..n (w_i = 0 for i < k): the
// probability that the i-th smallest of n distinct values is the largest of a
// uniformly drawn k-subset. Computed by a running product from w_n = k/n down,
// so no binomial coefficient is formed (no overflow; tiny weights underflow to
// 0). INVALID_ARGUMENT unless 1 <= k <= n.
absl::StatusOr<std::vector<double>> BestOfKWeights(int64_t n, int64_t k);

// Expected maximum score of k samples drawn without replacement.
// INVALID_ARGUMENT for k outside [1, n] or a non-finite score.
absl::StatusOr<double> ExpectedBestOfK(absl::Span<const ScoredSample> samples,
                                       int64_t k);

// Expected pass of the highest-scoring of k samples drawn without replacement
// (ties broken uniformly). Same errors as ExpectedBestOfK.
absl::StatusOr<double> SelectedPassAtK(absl::Span<const ScoredSample> samples,
                                       int64_t k);

// One prompt's curves; element k-1 is the value for k, k = 1..n.
struct BestOfKCurve {
  std::vector<double> pass_at_k;
  std::vector<double> best_score;
  std::vector<double> selected_pass;
};

// All three curves of one prompt for k = 1..n. INVALID_ARGUMENT for an empty
// sample list or a non-finite score.
absl::StatusOr<BestOfKCurve> ComputeBestOfKCurve(
    absl::Span<const ScoredSample> samples);

// A mean over prompts with its percentile bootstrap interval.
struct MeanWithInterval {
  double mean = 0;
  double lower = 0;
  double upper = 0;
};

// The aggregate at one k over the prompts that have at least k samples.
struct AggregatePoint {
  int64_t k = 0;
  int64_t num_prompts = 0;  // prompts with n >= k (the ones averaged)
  MeanWithInterval pass_at_k;
  MeanWithInterval best_score;
  MeanWithInterval selected_pass;
};

struct BootstrapOptions {
  int resamples = 1000;       // B >= 1
  double level = 0.95;        // in (0, 1)
  uint64_t seed = 0x5eedULL;  // same seed, same intervals
};

// The mean curves over prompts for k = 1..max n, with bootstrap intervals:
// B resamples of the prompts with replacement (one shared list of resamples
// for every k, drawn from a splitmix64 stream of `seed`); at each k a
// resample's statistic is the mean over its drawn prompts with n >= k
// (resamples that drew none are left out); the interval is the
// ((1-level)/2, (1+level)/2) percentiles of those statistics with linear
// interpolation (numpy's default). INVALID_ARGUMENT for no prompts, an empty
// prompt, a non-finite score, resamples < 1 or level outside (0, 1).
absl::StatusOr<std::vector<AggregatePoint>> AggregateBestOfK(
    absl::Span<const std::vector<ScoredSample>> prompts,
    const BootstrapOptions& options);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_BEST_OF_K_H_
