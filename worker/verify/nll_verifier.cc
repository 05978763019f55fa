#include "worker/verify/nll_verifier.h"

#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sweepd::verify {
namespace {

class NllVerifier : public Verifier {
 public:
  NllVerifier(std::optional<double> pass_threshold, NllScorer scorer)
      : pass_threshold_(pass_threshold), scorer_(std::move(scorer)) {}

  absl::StatusOr<std::vector<VerifyScore>> Score(
      absl::Span<const VerifyItem> items) override {
    std::vector<VerifyScore> out(items.size());
    std::vector<VerifyItem> asked;
    std::vector<size_t> asked_index;
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].reference.empty()) {
        out[i].error = "nll verifier: the item has no reference";
        continue;
      }
      asked.push_back(items[i]);
      asked_index.push_back(i);
    }
    if (asked.empty()) return out;
    absl::StatusOr<std::vector<double>> values = scorer_(asked);
    std::string failure;
    if (!values.ok()) {
      failure = absl::StrCat("nll verifier: scoring failed: ",
                             values.status().ToString());
    } else if (values->size() != asked.size()) {
      failure =
          absl::StrCat("nll verifier: the scorer returned ", values->size(),
                       " values for ", asked.size(), " items");
    }
    for (size_t j = 0; j < asked.size(); ++j) {
      VerifyScore& score = out[asked_index[j]];
      if (!failure.empty()) {
        score.error = failure;
        continue;
      }
      const double value = (*values)[j];
      if (std::isnan(value)) {
        score.error = "nll verifier: the scorer returned NaN";
        continue;
      }
      score.score = value;
      score.pass = pass_threshold_.has_value() && value >= *pass_threshold_;
    }
    return out;
  }
  std::string name() const override { return "nll"; }

 private:
  const std::optional<double> pass_threshold_;
  const NllScorer scorer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Verifier>> CreateNllVerifier(
    const VerifierSpec& spec, NllScorer scorer) {
  if (!scorer) {
    return absl::InvalidArgumentError(
        "verifier.kind: 'nll' needs the engine (no NLL scorer was given)");
  }
  if (spec.pass_threshold.has_value() && !std::isfinite(*spec.pass_threshold)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "verifier.pass_threshold: must be finite, got ", *spec.pass_threshold));
  }
  return std::make_unique<NllVerifier>(spec.pass_threshold, std::move(scorer));
}

}  // namespace sweepd::verify
