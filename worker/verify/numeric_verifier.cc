#include "worker/verify/numeric_verifier.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/verify/number_extract.h"

namespace sweepd::verify {
namespace {

class NumericVerifier : public Verifier {
 public:
  NumericVerifier(double abs_tolerance, double rel_tolerance)
      : abs_tolerance_(abs_tolerance), rel_tolerance_(rel_tolerance) {}

  absl::StatusOr<std::vector<VerifyScore>> Score(
      absl::Span<const VerifyItem> items) override {
    std::vector<VerifyScore> out(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      const std::optional<double> want =
          ExtractAnswerNumber(items[i].reference);
      if (!want.has_value()) {
        out[i].error = items[i].reference.empty()
                           ? "numeric verifier: the item has no reference"
                           : "numeric verifier: the reference holds no number";
        continue;
      }
      const std::optional<double> got = ExtractAnswerNumber(items[i].sample);
      if (!got.has_value()) continue;  // no answer: a fail, not an error
      const double tolerance =
          std::max(abs_tolerance_, rel_tolerance_ * std::fabs(*want));
      out[i].pass = std::fabs(*got - *want) <= tolerance;
      out[i].score = out[i].pass ? 1.0 : 0.0;
    }
    return out;
  }
  std::string name() const override { return "numeric"; }

 private:
  const double abs_tolerance_;
  const double rel_tolerance_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Verifier>> CreateNumericVerifier(
    const VerifierSpec& spec) {
  if (!std::isfinite(spec.abs_tolerance) || spec.abs_tolerance < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("verifier.abs_tolerance: must be finite and >= 0, got ",
                     spec.abs_tolerance));
  }
  if (!std::isfinite(spec.rel_tolerance) || spec.rel_tolerance < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("verifier.rel_tolerance: must be finite and >= 0, got ",
                     spec.rel_tolerance));
  }
  return std::make_unique<NumericVerifier>(spec.abs_tolerance,
                                           spec.rel_tolerance);
}

}  // namespace sweepd::verify
