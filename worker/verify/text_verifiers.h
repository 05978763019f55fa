// The text verifiers: `exact` (normalised sample == normalised reference),
// `contains` (normalised reference is a substring of the normalised sample)
// and `regex` (an RE2 pattern, optionally with the quoted reference
// substituted for "{reference}", is found in the sample). Score 1 and pass on a
// match, else 0; an item without a reference is a per-sample error for exact,
// contains and a regex that uses {reference}. Stateless: Score is thread-safe.
// Made through MakeVerifier (verifier_factory.h) or these functions, which
// validate the fields they use (INVALID_ARGUMENT naming "verifier.<field>").
#ifndef SWEEPD_WORKER_VERIFY_TEXT_VERIFIERS_H_
#define SWEEPD_WORKER_VERIFY_TEXT_VERIFIERS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/verify/verifier.h"
#include "worker/verify/verifier_spec.h"

namespace sweepd::verify {

// The spec's strip / collapse_whitespace / case_insensitive applied to `text`
// (ASCII whitespace and ASCII case only).
std::string NormalizeText(absl::string_view text, const VerifierSpec& spec);

absl::StatusOr<std::unique_ptr<Verifier>> CreateExactVerifier(
    const VerifierSpec& spec);
absl::StatusOr<std::unique_ptr<Verifier>> CreateContainsVerifier(
    const VerifierSpec& spec);
// INVALID_ARGUMENT "verifier.pattern: ..." for an empty pattern or one RE2
// rejects (with RE2's message).
absl::StatusOr<std::unique_ptr<Verifier>> CreateRegexVerifier(
    const VerifierSpec& spec);

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_TEXT_VERIFIERS_H_
