// The `numeric` verifier: the sample's answer number (ExtractAnswerNumber,
// number_extract.h) against the reference's, within
// max(abs_tolerance, rel_tolerance * |reference|). Score 1 and pass when
// within, else 0. A sample without a number fails (score 0, no error); an
// item whose reference holds no number is a per-sample error. Stateless:
// Score is thread-safe.
#ifndef SWEEPD_WORKER_VERIFY_NUMERIC_VERIFIER_H_
#define SWEEPD_WORKER_VERIFY_NUMERIC_VERIFIER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "worker/verify/verifier.h"
#include "worker/verify/verifier_spec.h"

namespace sweepd::verify {

// INVALID_ARGUMENT "verifier.abs_tolerance" / "verifier.rel_tolerance" for a
// negative or non-finite tolerance.
absl::StatusOr<std::unique_ptr<Verifier>> CreateNumericVerifier(
    const VerifierSpec& spec);

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_NUMERIC_VERIFIER_H_
