// Best-of-k curves of a generate or canary sweep, computed from its kept
// samples (`sweepctl results --best-of-k`, the report's best-of-k chart and
// category tables): for each grid point (client/sample_rows.h: stage,
// interventions, params) and each prompt of it, the estimators of
// common/best_of_k.h for every k <= n, and their mean over the point's prompts
// with bootstrap intervals. "The best of k" is a query over the kept samples,
// never a re-run (docs/GENERATION.md, "Best-of-k in sweepctl and the report").
//
// Which samples count:
//  - a prompt of a point is its prompt_id; tasks of one point that hold the
//    same prompt (dataset shards repeating inline prompts, seeds) pool its
//    samples;
//  - a sample whose verifier reported an error has no verdict: it is DROPPED
//    from every estimator (n is the number of scored samples) and counted in
//    `verifier_errors`, so an unreliable verifier shows as a count instead of
//    as made-up failures;
//  - a sample without a score and without an error (no verifier) is counted
//    in `unscored`; a prompt with no scored sample has no curve.
//
// Pure functions of their arguments; thread-safe; the caller owns everything.
#ifndef SWEEPD_CLIENT_BEST_OF_K_TABLE_H_
#define SWEEPD_CLIENT_BEST_OF_K_TABLE_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/ctl_format.h"
#include "client/sample_rows.h"
#include "common/best_of_k.h"

namespace sweepd {

struct PromptBestOfK {
  std::string prompt_id;
  std::string category;  // of its first sample
  int64_t samples = 0;   // scored samples: n
  int64_t passes = 0;    // c
  int64_t verifier_errors = 0;
  int64_t unscored = 0;
  double mean_score = 0;          // over the n scored samples
  bool has_first_sample = false;  // sample_index 0 is among the scored
  double first_sample_score = 0;
  bool first_sample_pass = false;
  BestOfKCurve curve;  // element k-1 is k; empty when n = 0
};

struct PointBestOfK {
  GridPoint point;
  int64_t prompts = 0;  // prompts with at least one scored sample
  int64_t samples = 0;  // scored samples over all prompts
  int64_t verifier_errors = 0;
  int64_t unscored = 0;
  int64_t max_samples = 0;  // the largest n: the curve's last k
  // Mean over prompts for k = 1..max_samples (AggregateBestOfK); empty when
  // no prompt has a scored sample.
  std::vector<AggregatePoint> curve;
  // Every prompt of the point (with or without scored samples), in order of
  // first appearance.
  std::vector<PromptBestOfK> per_prompt;
};

// Per grid point (sorted by point), from `samples` (any order). Only the
// samples `keep` accepts are used (null = all), e.g. one category's. Points
// without any accepted sample are left out. INVALID_ARGUMENT for bad bootstrap
// options or a non-finite score (naming the task and prompt).
absl::StatusOr<std::vector<PointBestOfK>> ComputeBestOfKTable(
    const std::vector<SampleRecord>& samples, const BootstrapOptions& options,
    const std::function<bool(const SampleRecord&)>& keep = nullptr);

// Writes the curves, one row per (point, k) with prompt "all" (mean over the
// prompts with n >= k, its interval at `level`), and with `per_prompt` one
// row per (point, prompt, k) after them. Columns: stage, interventions,
// params, prompt, category, k, prompts, samples, pass_at_k, best_score,
// selected_pass, verifier_errors, unscored; CSV and JSON add
// <estimator>_lower/_upper for the "all" rows (empty / null per prompt);
// the table shows "mean [lower, upper]" in one cell. Points without a curve
// get one row with k empty that carries their counts.
void WriteBestOfK(const std::vector<PointBestOfK>& points, bool per_prompt,
                  double level, ResultFormat format, std::ostream& out);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_BEST_OF_K_TABLE_H_
