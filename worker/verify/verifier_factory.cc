#include "worker/verify/verifier_factory.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/verify/command_verifier.h"
#include "worker/verify/numeric_verifier.h"
#include "worker/verify/text_verifiers.h"

namespace sweepd::verify {

const std::vector<std::string>& VerifierKinds() {
  static const auto* kinds = new std::vector<std::string>{
      "exact", "contains", "regex", "numeric", "command", "nll"};
  return *kinds;
}

absl::StatusOr<std::unique_ptr<Verifier>> MakeVerifier(const VerifierSpec& spec,
                                                       NllScorer nll_scorer) {
  if (spec.kind == "exact") return CreateExactVerifier(spec);
  if (spec.kind == "contains") return CreateContainsVerifier(spec);
  if (spec.kind == "regex") return CreateRegexVerifier(spec);
  if (spec.kind == "numeric") return CreateNumericVerifier(spec);
  if (spec.kind == "command") return CreateCommandVerifier(spec);
  if (spec.kind == "nll") return CreateNllVerifier(spec, std::move(nll_scorer));
  return absl::InvalidArgumentError(
      absl::StrCat("verifier.kind: unknown kind '", spec.kind, "' (expected ",
                   absl::StrJoin(VerifierKinds(), ", "), ")"));
}

}  // namespace sweepd::verify
