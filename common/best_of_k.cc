#include "common/best_of_k.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd {
namespace {

absl::Status CheckK(int64_t n, int64_t k) {
  if (n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("best-of-k needs at least one sample, got n = ", n));
  }
  if (k < 1 || k > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("k = ", k, " is outside [1, n] for n = ", n, " samples"));
  }
  return absl::OkStatus();
}

absl::Status CheckScores(absl::Span<const ScoredSample> samples) {
  for (size_t i = 0; i < samples.size(); ++i) {
    if (!std::isfinite(samples[i].score)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sample ", i, " has a non-finite score ", samples[i].score));
    }
  }
  return absl::OkStatus();
}

// The samples sorted by ascending score (stable), as (score, pass-mean) where
// each tie group's pass bits are replaced by the group's mean.
struct SortedSamples {
  std::vector<double> scores;
  std::vector<double> tie_mean_pass;
};

SortedSamples SortByScore(absl::Span<const ScoredSample> samples) {
  std::vector<ScoredSample> sorted(samples.begin(), samples.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const ScoredSample& a, const ScoredSample& b) {
                     return a.score < b.score;
                   });
  SortedSamples out;
  out.scores.reserve(sorted.size());
  out.tie_mean_pass.resize(sorted.size());
  for (const ScoredSample& s : sorted) out.scores.push_back(s.score);
  size_t begin = 0;
  while (begin < sorted.size()) {
    size_t end = begin;
    double passes = 0;
    while (end < sorted.size() && sorted[end].score == sorted[begin].score) {
      passes += sorted[end].pass ? 1.0 : 0.0;
      ++end;
    }
    const double mean = passes / static_cast<double>(end - begin);
    for (size_t i = begin; i < end; ++i) out.tie_mean_pass[i] = mean;
    begin = end;
  }
  return out;
}

double WeightedSum(const std::vector<double>& weights,
                   const std::vector<double>& values) {
  double sum = 0;
  for (size_t i = 0; i < weights.size(); ++i) sum += weights[i] * values[i];
  return sum;
}

// splitmix64: a fixed, portable stream (std:: distributions differ between
// standard libraries).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), bound >= 1, by rejection (no modulo bias).
  uint64_t Below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do {
      x = Next();
    } while (x >= limit);
    return x % bound;
  }

 private:
  uint64_t state_;
};

// Linear-interpolation percentile of sorted, non-empty `v` at q in [0, 1].
double Percentile(const std::vector<double>& v, double q) {
  const double h = (static_cast<double>(v.size()) - 1) * q;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

}  // namespace

absl::StatusOr<double> PassAtK(int64_t n, int64_t c, int64_t k) {
  RETURN_IF_ERROR(CheckK(n, k));
  if (c < 0 || c > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pass count c = ", c, " is outside [0, n] for n = ", n, " samples"));
  }
  // C(n-c, k)/C(n, k) = prod_{i=n-c+1..n} (1 - k/i); a factor is 0 exactly
  // when n - c < k (some i equals k), giving pass@k = 1.
  double fail_all = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) {
    fail_all *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  }
  return 1.0 - fail_all;
}

absl::StatusOr<std::vector<double>> BestOfKWeights(int64_t n, int64_t k) {
  RETURN_IF_ERROR(CheckK(n, k));
  std::vector<double> w(static_cast<size_t>(n), 0.0);
  // w_n = C(n-1, k-1)/C(n, k) = k/n; w_{i-1} = w_i * (i-k)/(i-1).
  double current = static_cast<double>(k) / static_cast<double>(n);
  for (int64_t i = n; i >= k; --i) {
    w[static_cast<size_t>(i - 1)] = current;
    if (i > 1) {
      current *= static_cast<double>(i - k) / static_cast<double>(i - 1);
    }
  }
  return w;
}

absl::StatusOr<double> ExpectedBestOfK(absl::Span<const ScoredSample> samples,
                                       int64_t k) {
  const int64_t n = static_cast<int64_t>(samples.size());
  RETURN_IF_ERROR(CheckK(n, k));
  RETURN_IF_ERROR(CheckScores(samples));
  ASSIGN_OR_RETURN(std::vector<double> w, BestOfKWeights(n, k));
  return WeightedSum(w, SortByScore(samples).scores);
}

absl::StatusOr<double> SelectedPassAtK(absl::Span<const ScoredSample> samples,
                                       int64_t k) {
  const int64_t n = static_cast<int64_t>(samples.size());
  RETURN_IF_ERROR(CheckK(n, k));
  RETURN_IF_ERROR(CheckScores(samples));
  ASSIGN_OR_RETURN(std::vector<double> w, BestOfKWeights(n, k));
  return WeightedSum(w, SortByScore(samples).tie_mean_pass);
}

absl::StatusOr<BestOfKCurve> ComputeBestOfKCurve(
    absl::Span<const ScoredSample> samples) {
  const int64_t n = static_cast<int64_t>(samples.size());
  RETURN_IF_ERROR(CheckK(n, 1));
  RETURN_IF_ERROR(CheckScores(samples));
  const SortedSamples sorted = SortByScore(samples);
  int64_t c = 0;
  for (const ScoredSample& s : samples) c += s.pass ? 1 : 0;
  BestOfKCurve curve;
  for (int64_t k = 1; k <= n; ++k) {
    ASSIGN_OR_RETURN(double pass, PassAtK(n, c, k));
    ASSIGN_OR_RETURN(std::vector<double> w, BestOfKWeights(n, k));
    curve.pass_at_k.push_back(pass);
    curve.best_score.push_back(WeightedSum(w, sorted.scores));
    curve.selected_pass.push_back(WeightedSum(w, sorted.tie_mean_pass));
  }
  return curve;
}

absl::StatusOr<std::vector<AggregatePoint>> AggregateBestOfK(
    absl::Span<const std::vector<ScoredSample>> prompts,
    const BootstrapOptions& options) {
  if (prompts.empty()) {
    return absl::InvalidArgumentError("best-of-k aggregate needs prompts");
  }
  if (options.resamples < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bootstrap resamples must be >= 1, got ", options.resamples));
  }
  if (!(options.level > 0 && options.level < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap level must be in (0, 1), got ", options.level));
  }
  std::vector<BestOfKCurve> curves;
  curves.reserve(prompts.size());
  size_t max_n = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    auto curve = ComputeBestOfKCurve(prompts[p]);
    if (!curve.ok())
      return Annotate(curve.status(), absl::StrCat("prompt ", p));
    curves.push_back(*std::move(curve));
    max_n = std::max(max_n, prompts[p].size());
  }

  // Per-k sums over a multiset of prompts: metric m (0 pass@k, 1 best score,
  // 2 selected pass), value index k-1.
  struct Sums {
    std::vector<double> value[3];
    std::vector<int64_t> count;
  };
  auto accumulate = [&](const std::vector<int64_t>& multiplicity) {
    Sums s;
    for (auto& v : s.value) v.assign(max_n, 0.0);
    s.count.assign(max_n, 0);
    for (size_t p = 0; p < curves.size(); ++p) {
      const int64_t m = multiplicity[p];
      if (m == 0) continue;
      const double md = static_cast<double>(m);
      for (size_t i = 0; i < curves[p].pass_at_k.size(); ++i) {
        s.value[0][i] += md * curves[p].pass_at_k[i];
        s.value[1][i] += md * curves[p].best_score[i];
        s.value[2][i] += md * curves[p].selected_pass[i];
        s.count[i] += m;
      }
    }
    return s;
  };

  const Sums full = accumulate(std::vector<int64_t>(curves.size(), 1));
  std::vector<std::vector<double>> boot[3];
  for (auto& b : boot) b.assign(max_n, {});
  SplitMix64 rng(options.seed);
  std::vector<int64_t> multiplicity(curves.size());
  for (int b = 0; b < options.resamples; ++b) {
    std::fill(multiplicity.begin(), multiplicity.end(), 0);
    for (size_t draw = 0; draw < curves.size(); ++draw) {
      ++multiplicity[rng.Below(curves.size())];
    }
    const Sums s = accumulate(multiplicity);
    for (size_t i = 0; i < max_n; ++i) {
      if (s.count[i] == 0) continue;
      for (int m = 0; m < 3; ++m) {
        boot[m][i].push_back(s.value[m][i] / static_cast<double>(s.count[i]));
      }
    }
  }

  const double q_lo = (1 - options.level) / 2;
  const double q_hi = (1 + options.level) / 2;
  std::vector<AggregatePoint> points;
  for (size_t i = 0; i < max_n; ++i) {
    AggregatePoint point;
    point.k = static_cast<int64_t>(i) + 1;
    point.num_prompts = full.count[i];
    MeanWithInterval* out[3] = {&point.pass_at_k, &point.best_score,
                                &point.selected_pass};
    for (int m = 0; m < 3; ++m) {
      out[m]->mean = full.value[m][i] / static_cast<double>(full.count[i]);
      std::vector<double>& stats = boot[m][i];
      if (stats.empty()) {
        out[m]->lower = out[m]->upper = out[m]->mean;
        continue;
      }
      std::sort(stats.begin(), stats.end());
      out[m]->lower = Percentile(stats, q_lo);
      out[m]->upper = Percentile(stats, q_hi);
    }
    points.push_back(point);
  }
  return points;
}

}  // namespace sweepd
